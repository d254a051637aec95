"""Which columns of a results file name the images, and which answer is which question.

A mapping file (TOML) for a HIT made outside semcomp::

    original = "Input.image_A_url"    # id, display name, file name or URL of the original
    candidate = "Input.image_B_url"   # id, file name or URL of the candidate
    # slots = ["1", "2", "3"]         # several items per HIT: {slot} in the names below
                                      # (slots = 3 is the same as ["1", "2", "3"])
    # candidate = "Input.query_id[{slot}]"   # a cell holding a list (JSON or Python
                                             # literal): its {slot}-th item, counted from 1
    # method = "Input.codec"          # or name the candidate by the original (above), its
    # operating_point = "Input.level" # method's name and operating point ("quality=5" or "5")

    [items."9"]                       # or say what a cell's value means, in your own terms
    original = "Object 3"             # (original's display name, id or file name)
    method = "jpeg"
    operating_point = "quality=5"     # optional when the method has one; replicate = 0

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

import ast
import json
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from semcomp.errors import ConfigError
from semcomp.surveys.definitions import SurveyDefinition, read_toml, validation_problems

GENERATED_ID = re.compile(r"^item(\d+)_id$")
#: answer names in HITs made by ``semcomp survey make``
GENERATED_FIELD = "item{slot}__{question}"
#: ``query_id[3]``: the third item of the list held by the ``query_id`` cell
INDEXED = re.compile(r"^(?P<column>.+?)\[(?P<index>\d+)\]$")
#: the longest list cell read (a real HIT's list of ten ids is a few dozen characters)
LIST_CELL_MAX = 100_000


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


class NamedItem(BaseModel):
    """What a cell's value names, in the terms of the person who built the HIT: an original
    (display name, id or file name), a method's name and its operating point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    original: str | None = None
    method: str
    operating_point: str | None = None
    replicate: int = 0


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    original: str | None = None
    candidate: str | None = None
    #: the columns of the candidate's method and operating point (with ``original``)
    method: str | None = None
    operating_point: str | None = None
    #: cell value → the item it names (for HITs that name items by their own ids)
    items: dict[str, NamedItem] = {}
    #: generated surveys: the column of the opaque item id
    item_id: str | None = None
    slots: tuple[str, ...] = ("",)
    #: the answer name of a question the ``questions`` table does not list
    field_template: str = "{question}"
    questions: dict[str, QuestionField] = {}
    checks: tuple[GoldItem, ...] = ()

    @field_validator("slots", mode="before")
    @classmethod
    def _count(cls, value: object) -> object:
        """``slots = 10`` is ``["1", ..., "10"]``."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("slots must be at least 1")
            return tuple(str(slot) for slot in range(1, value + 1))
        return value

    def field(self, question_id: str, slot: str) -> tuple[str, dict[str, float | str]]:
        spec = self.questions.get(question_id)
        name = spec.field if spec else self.field_template.replace("{question}", question_id)
        return _strip("Answer.", name.replace("{slot}", slot)), dict(spec.values) if spec else {}

    def column(self, template: str | None, slot: str) -> str | None:
        return _strip("Input.", template.replace("{slot}", slot)) if template else None

    def input_column(self, template: str | None, slot: str) -> str | None:
        """The input column ``template`` reads for ``slot`` (``query_id[3]`` reads
        ``query_id``)."""
        column = self.column(template, slot)
        match = INDEXED.match(column) if column else None
        return match["column"] if match else column

    def reference(self, inputs: dict[str, str], template: str | None, slot: str) -> tuple[str, str]:
        """(the text ``template`` names in this row for ``slot``, why it cannot be read).

        A plain column gives its cell; ``column[k]`` the k-th item (from 1) of the list
        the cell holds. A blank cell is ``""`` with no problem (an unused slot).
        """
        column = self.column(template, slot)
        if not column:
            return "", ""
        match = INDEXED.match(column)
        if not match:
            return inputs.get(column, "").strip(), ""
        name, index = match["column"], int(match["index"])
        text = inputs.get(name, "").strip()
        if not text:
            return "", ""
        items = list_cell(text)
        if items is None:
            return "", f"Input.{name} = {_short(text)} is not a list (JSON or Python literal)"
        if not 1 <= index <= len(items):
            return "", (
                f"Input.{name} holds {len(items)} item(s); there is no item {index} "
                "(slots count from 1)"
            )
        return items[index - 1], ""


def _strip(prefix: str, name: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


@lru_cache(maxsize=256)
def list_cell(text: str) -> tuple[str, ...] | None:
    """The items of a cell holding a list, ``"[9, 6, 8]"`` (JSON) or ``"['a.jpg', 'b.jpg']"``
    (a Python literal), as text; ``None`` when the cell holds no list. Whole floats read as
    integers (``9.0`` is ``"9"``)."""
    text = text.strip()
    if len(text) > LIST_CELL_MAX or text[:1] not in "[(" or text[-1:] not in ")]":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)  # literals only: evaluates no code
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if not isinstance(value, list | tuple):
        return None
    items = []
    for item in value:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        items.append("" if item is None else str(item).strip())
    return tuple(items)


def list_hint(reference: str | None, template: str | None) -> str:
    """``"; this cell holds a list; ..."`` when an unmatched reference is a list, else ``""``."""
    if not reference or not list_cell(reference):
        return ""
    if template and not INDEXED.match(template.replace("{slot}", "1")):
        example = f' (e.g. "{template}[{{slot}}]")'
    else:
        example = ""
    return f"; this cell holds a list; index it with [{{slot}}]{example}"


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
    if not mapping.candidate and not (mapping.method and mapping.original):
        raise ConfigError(
            f"mapping {path}: set `candidate`, the column naming the candidate (or `original` "
            "and `method`, with `operating_point` when the method has several)"
        )
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
