"""Which columns of a results file name the images, and which answer is which question.

A mapping file (TOML) for a HIT made outside semcomp::

    original = "Input.image_A_url"    # id, file name or URL of the original
    candidate = "Input.image_B_url"   # id, file name or URL of the candidate
    # slots = ["1", "2", "3"]         # several items per HIT: {slot} in the names below

    [questions.similarity]
    field = "Q1"                      # the answer's name (Answer.Q1, or in taskAnswers)
    values = { "Totally dissimilar" = 1, "Identical" = 10 }   # optional

    [[checks]]                        # gold items: answers outside [min, max] fail
    original = "dog.jpg"
    candidate = "dog.jpg"
    question = "similarity"
    min = 8

Surveys made by ``semcomp survey make`` need no mapping: their HITs carry
``Input.item<k>_id`` columns with opaque item ids the store maps back to
(original, candidate), and their answers are named ``item<k>__<question>``.
Without a mapping and without item ids, the defaults are ``Input.original`` (pair
surveys) and ``Input.candidate`` and answers named by question id.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from semcomp.errors import ConfigError
from semcomp.surveys.definitions import SurveyDefinition, read_toml, validation_problems

GENERATED_ID = re.compile(r"^item(\d+)_id$")
#: answer names in HITs made by ``semcomp survey make``
GENERATED_FIELD = "item{slot}__{question}"


class QuestionField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    values: dict[str, float | str] = {}


class GoldItem(BaseModel):
    """An item with a known answer: a rating outside ``[min, max]`` fails the check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    original: str | None = None
    candidate: str | None = None
    question: str
    min: float | None = None
    max: float | None = None


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    original: str | None = None
    candidate: str | None = None
    #: generated surveys: the column of the opaque item id
    item_id: str | None = None
    slots: tuple[str, ...] = ("",)
    #: the answer name of a question the ``questions`` table does not list
    field_template: str = "{question}"
    questions: dict[str, QuestionField] = {}
    checks: tuple[GoldItem, ...] = ()

    def field(self, question_id: str, slot: str) -> tuple[str, dict[str, float | str]]:
        spec = self.questions.get(question_id)
        name = spec.field if spec else self.field_template.replace("{question}", question_id)
        return _strip("Answer.", name.replace("{slot}", slot)), dict(spec.values) if spec else {}

    def column(self, template: str | None, slot: str) -> str | None:
        return _strip("Input.", template.replace("{slot}", slot)) if template else None


def _strip(prefix: str, name: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def load_mapping(path: Path, survey: SurveyDefinition) -> Mapping:
    try:
        mapping = Mapping(**read_toml(path, "mapping"))
    except ValidationError as exc:
        raise ConfigError(f"mapping {path}: {validation_problems(exc)}") from None
    known = {q.id for q in survey.questions}
    unknown = sorted(set(mapping.questions) - known)
    unknown += sorted({c.question for c in mapping.checks} - known)
    if unknown:
        raise ConfigError(
            f"mapping {path} names question(s) {unknown} that survey {survey.id} does not ask "
            f"(questions: {', '.join(sorted(known))})"
        )
    if not mapping.candidate:
        raise ConfigError(f"mapping {path}: set `candidate`, the column naming the candidate")
    return mapping


def default_mapping(survey: SurveyDefinition) -> Mapping:
    """Without a mapping file: ``Input.original`` (pair surveys) and ``Input.candidate``,
    answers named by question id."""
    original = "Input.original" if survey.subject == "pair" else None
    return Mapping(original=original, candidate="Input.candidate")


def generated_mapping(input_columns: list[str]) -> Mapping | None:
    """The mapping of a survey made by semcomp, if the file has ``Input.item<k>_id`` columns."""
    slots = sorted(
        (m.group(1) for c in input_columns if (m := GENERATED_ID.match(_strip("Input.", c)))),
        key=int,
    )
    if not slots:
        return None
    return Mapping(
        original=None,
        candidate=None,
        item_id="item{slot}_id",
        slots=tuple(slots),
        field_template=GENERATED_FIELD,
    )


def reference_keys(reference: str) -> list[str]:
    """The forms a reference may match: itself, and for paths and URLs the file name and stem."""
    text = reference.strip()
    if not text:
        return []
    keys = [text]
    path = unquote(urlsplit(text).path) if "://" in text else text
    name = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if name:
        keys.append(name)
        if "." in name:
            keys.append(name.rsplit(".", 1)[0])
    return list(dict.fromkeys(keys))
