"""Survey definitions: the questions a survey asks, as validated data files.

The three surveys of Arikan & Weissman (Survey A, semantic satisfaction; Survey B,
comparative semantic content; Survey C, detailed semantic content) ship as TOML
files in ``surveys/definitions/``. A user's own survey is a TOML file of the
same form, accepted wherever a survey name is (``--survey my_survey.toml``).
Unknown keys are errors naming the key and the file.

Survey definitions are also a plugin family (:data:`SURVEYS`, entry-point group
``semcomp.surveys``): a distribution that ships surveys names a
:class:`SurveyDefinition` object (e.g. ``read_definition(resources.files(...) / "D.toml")``)
under the survey's id, and ``--survey D`` finds it.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from semcomp.errors import ConfigError
from semcomp.registry import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Question(BaseModel):
    """One question. ``scale``: an integer from ``low`` to ``high``; ``text``: free text
    (comma-separated items, at most ``max_items``); ``choice``: up to ``max_items`` of
    ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: Literal["scale", "text", "choice"]
    text: str
    note: str = ""
    low: int | None = None
    high: int | None = None
    low_label: str = ""
    high_label: str = ""
    options: tuple[str, ...] = ()
    max_items: int = 1
    #: attention checks (an image next to itself) must be answered at least this
    check_min: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        if not self.id.isidentifier():
            raise ValueError(f"question id {self.id!r} must be a plain identifier")
        if self.kind == "scale":
            if self.low is None or self.high is None or self.low >= self.high:
                raise ValueError(f"scale question {self.id!r} needs integers low < high")
        elif self.low is not None or self.high is not None or self.check_min is not None:
            raise ValueError(f"{self.kind} question {self.id!r} takes no low/high/check_min")
        if self.kind == "choice" and len(self.options) < 2:
            raise ValueError(f"choice question {self.id!r} needs at least two options")
        slugs = [slug(option) for option in self.options]
        if len(set(slugs)) < len(slugs) or not all(slugs):
            raise ValueError(
                f"choice question {self.id!r}: options must differ in their letters and digits "
                "(they name form fields)"
            )
        if self.kind != "choice" and self.options:
            raise ValueError(f"{self.kind} question {self.id!r} takes no options")
        if self.max_items < 1:
            raise ValueError(f"question {self.id!r}: max_items must be at least 1")
        return self

    @property
    def numeric(self) -> bool:
        return self.kind == "scale"

    def option_for(self, answer: str) -> str | None:
        """The option an answer names: its label, a slug of it, or its 1-based position
        (``3``, ``option_3``); ``None`` if it names none."""
        key = answer.strip().lower()
        for position, option in enumerate(self.options, start=1):
            if key in (option.lower(), slug(option), str(position), f"option_{position}"):
                return option
        return None


class SurveyDefinition(BaseModel):
    """A survey: what it shows (``pair``: original and candidate side by side;
    ``candidate``: the candidate alone) and the questions it asks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    subject: Literal["pair", "candidate"]
    instructions: str = ""
    questions: tuple[Question, ...]
    #: where it was loaded from (built-in or a file), for messages
    source: str = ""

    @model_validator(mode="after")
    def _unique_questions(self) -> SurveyDefinition:
        if not self.id.replace("-", "_").isidentifier():
            raise ValueError(f"survey id {self.id!r} must be a plain identifier")
        ids = [q.id for q in self.questions]
        if not ids:
            raise ValueError("a survey needs at least one question")
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"duplicated question id(s) {duplicated}")
        return self

    def question(self, question_id: str) -> Question:
        for question in self.questions:
            if question.id == question_id:
                return question
        raise ConfigError(
            f"survey {self.id} has no question {question_id!r} "
            f"(questions: {', '.join(q.id for q in self.questions)})"
        )

    @property
    def has_checks(self) -> bool:
        return self.subject == "pair" and any(q.check_min is not None for q in self.questions)


def slug(text: str) -> str:
    """Lower-case letters, digits and underscores: a form-field-safe name for an option."""
    cleaned = "".join(c if c.isalnum() else "_" for c in text.strip().lower())
    return "_".join(part for part in cleaned.split("_") if part)


def read_toml(path: Path, what: str) -> dict:
    """The table of a TOML file the user gave (a survey definition, a mapping, synonyms);
    a :class:`ConfigError` naming ``what`` and the file if it cannot be read or parsed."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def validation_problems(exc: ValidationError) -> str:
    """Pydantic errors as ``key.path: message; ...`` (one wording for every settings file)."""
    from semcomp.validation import describe_errors

    return describe_errors(exc)


def _parse(data: dict, where: str) -> SurveyDefinition:
    try:
        return SurveyDefinition(**data, source=where)
    except ValidationError as exc:
        raise ConfigError(f"survey definition {where}: {validation_problems(exc)}") from None
    except TypeError as exc:
        raise ConfigError(f"survey definition {where}: {exc}") from None


@cache
def builtin_surveys() -> dict[str, SurveyDefinition]:
    """The surveys shipped with semcomp, by id (A, B, C)."""
    surveys = {}
    for entry in _shipped_files():
        definition = _parse(tomllib.loads(entry.read_text("utf-8")), f"built-in {entry.name}")
        surveys[definition.id] = definition
    return surveys


def _shipped_files() -> list:
    folder = resources.files("semcomp.surveys") / "definitions"
    return sorted((e for e in folder.iterdir() if e.name.endswith(".toml")), key=lambda e: e.name)


class _Shipped:
    """The built-in surveys as attributes (``SHIPPED.A``), for the registry's lazy targets:
    the TOML files are read on first use."""

    def __getattr__(self, name: str) -> SurveyDefinition:
        try:
            return builtin_surveys()[name]
        except KeyError:
            raise AttributeError(name) from None


SHIPPED = _Shipped()

#: survey definitions by id: the built-in A, B, C and those installed distributions provide
SURVEYS = Registry(
    "survey",
    entry_point_group="semcomp.surveys",
    base="semcomp.surveys.definitions:SurveyDefinition",
    instances=True,
    named_by="id",
)
for _file in _shipped_files():  # each file is named by its survey's id
    SURVEYS.register(
        _file.name.removesuffix(".toml"),
        f"semcomp.surveys.definitions:SHIPPED.{_file.name.removesuffix('.toml')}",
    )


def read_definition(path: Path) -> SurveyDefinition:
    """A survey definition TOML file (a user's, or one a plugin distribution ships)."""
    return _parse(read_toml(Path(path), "survey definition"), str(path))


def registered_survey(name: str) -> SurveyDefinition | None:
    """The registered survey ``name`` (built-in ids in any case: ``b`` is B), or ``None``."""
    key = name.upper() if name.upper() in builtin_surveys() else name
    if key not in SURVEYS and key not in SURVEYS.refused():
        return None
    return SURVEYS.get(key)


def load_survey(name_or_path: str | Path) -> SurveyDefinition:
    """A registered survey by id (``A``, ``B``, ``C`` in any case, or one a plugin
    provides) or a definition TOML file."""
    text = str(name_or_path)
    if not text.lower().endswith(".toml"):
        definition = registered_survey(text)
        if definition is None:
            raise ConfigError(
                f"unknown survey {text!r}: registered surveys are {', '.join(SURVEYS.names())}, "
                "or give the path of a survey definition .toml"
            )
        return definition
    path = Path(text)
    definition = read_definition(path)
    taken = definition.id.upper() if definition.id.upper() in builtin_surveys() else definition.id
    if taken in SURVEYS:
        owner = (
            "a built-in survey"
            if SURVEYS.source(taken).builtin
            else (f"the survey {SURVEYS.source(taken)} provides")
        )
        raise ConfigError(
            f"survey definition {path} uses the id {definition.id!r} of {owner}; choose another id"
        )
    return definition
