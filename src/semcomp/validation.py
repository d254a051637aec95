"""Validating configuration with pydantic: the one home for the helpers every section uses.

``Section`` forbids unknown keys; :func:`registered` checks a plugin name against
its family's registry; :func:`validated_params` validates a plugin's parameters
with its own ``Params`` model; :func:`describe_errors` turns pydantic's errors
into ``key.path: message`` lines that name what the user wrote.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo

from semcomp.errors import ConfigError
from semcomp.params import PluginParams
from semcomp.registry import Registry

#: the tags of ``study.toml``'s tagged unions (method kinds, metric names), which pydantic
#: puts in an error's location although the user never wrote them
UNION_TAGS: set[str] = set()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def registered(registry: Registry, name: str) -> str:
    """``name`` if ``registry`` has it; else a ValueError, which pydantic places at the key."""
    try:
        registry.check(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return name


def describe_errors(
    exc: ValidationError, prefix: str = "", tags: Collection[str] | None = None
) -> str:
    """Pydantic errors as ``key.path: message`` (union tags left out of the path)."""
    tags = UNION_TAGS if tags is None else tags
    messages = []
    for error in exc.errors():
        parts = [prefix] if prefix else []
        for part in error["loc"]:
            if isinstance(part, int):
                parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
            elif part not in tags:
                parts.append(str(part))
        where = ".".join(parts) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        messages.append(f"{where}: {message.removeprefix('Value error, ')}")
    return "; ".join(messages)


def validated_params(
    registry: Registry, name: str, params: dict[str, Any], key: str, info: ValidationInfo
) -> PluginParams:
    """A plugin's parameters validated by its ``Params`` model, defaults filled in.

    Paths come back absolute (resolved against the study folder).
    """
    plugin = registry.get(name)
    try:
        return plugin.Params.model_validate(params, context=info.context)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc, prefix=key)) from None
