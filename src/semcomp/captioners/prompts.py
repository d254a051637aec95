"""Prompt presets: validated data files in ``captioners/prompts/`` (or any TOML path).

A preset has a ``prompt`` (a template whose ``{variables}`` the captioner's
``prompt_variables`` fill, e.g. ``max_words`` for a rate sweep), an optional
``system`` message, a ``description`` and a ``source``. Unknown keys are
errors that name the key and the file.
"""

from __future__ import annotations

import string
import sys
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from semcomp.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "prompts"


class PromptPreset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    source: str = ""
    system: str = ""
    prompt: str
    variables: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _variables_match_template(self) -> PromptPreset:
        used = {f for _, f, _, _ in string.Formatter().parse(self.prompt) if f}
        if used != set(self.variables):
            raise ValueError(
                f"prompt uses {{{', '.join(sorted(used))}}} but variables lists "
                f"{list(self.variables)}"
            )
        return self

    def render(self, values: dict[str, object]) -> str:
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise ConfigError(f"prompt needs prompt_variables {missing}")
        return self.prompt.format(**{v: values[v] for v in self.variables})


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name_or_path: str) -> PromptPreset:
    """A built-in preset by name (``dalle2``, ``human_protocol``, ``max_words``) or a TOML path.

    Files are read afresh (an edited preset is a new prompt); built-ins are cached.
    """
    if name_or_path.endswith(".toml"):
        return _load_preset(name_or_path)
    return _builtin_preset(name_or_path)


@cache
def _builtin_preset(name: str) -> PromptPreset:
    return _load_preset(name)


def _load_preset(name_or_path: str) -> PromptPreset:
    """A built-in preset by name (``dalle2``, ``human_protocol``, ``max_words``) or a TOML path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise ConfigError(
                f"no prompt preset {name_or_path!r}; built-in presets: {', '.join(preset_names())}"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return PromptPreset.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read prompt preset {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        from semcomp.validation import describe_errors

        raise ConfigError(f"{path}: {describe_errors(exc)}") from None
