"""From a form's flattened answers to the answer of one question.

A field ``q`` may be answered as ``q`` (text, slider, native radio button),
``q.label`` (crowd-classifier), or as one true/false entry per option:
``q.option_3``, ``q.3``, ``q.busy``, ``q__busy`` or ``q__busy.on`` (radio groups and
checkboxes, crowd or native). :func:`read_answer` turns whichever is present into
a number (scale), an ordered list of items (text) or a list of options (choice).
On a scale, a bare number (``q.7``) is the value itself and ``option_N`` the N-th value
from the scale's low end (``option_1`` of a 0–4 scale is 0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from semcomp.surveys.definitions import Question

TRUE = frozenset({"true", "on", "1", "yes", "checked"})
_OPTION_NUMBER = re.compile(r"^(option_?)?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """A readable answer: ``value`` for scales, ``text`` (comma-joined items or options)."""

    value: float | None
    text: str | None
    raw: str


class AnswerError(ValueError):
    """An answer that is blank, out of range or unreadable; the message says which."""

    def __init__(self, reason: str, raw: str, column: str):
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.column = column


#: what separates a field's name from an option in flattened answer names
SEPARATORS = (".", "__")


def option_entries(answers: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Every ``field<separator>option`` entry of a form, by field name (all prefixes).

    ``item1__adjectives__busy.on`` is listed under ``item1`` (``adjectives__busy.on``),
    ``item1__adjectives`` (``busy.on``) and ``item1__adjectives__busy`` (``on``). Built
    once per form so that finding a field's options does not scan every answer.
    """
    entries: dict[str, list[tuple[str, str]]] = {}
    for key, value in answers.items():
        start = 0
        while True:
            cuts = [(key.find(sep, start), sep) for sep in SEPARATORS]
            cuts = [(at, sep) for at, sep in cuts if at > 0]
            if not cuts:
                break
            at, sep = min(cuts)
            entries.setdefault(key[:at], []).append((key[at + len(sep) :], value))
            start = at + len(sep)
    return entries


class FormNames:
    """Where each field's answer is among a form's answer names, worked out once.

    Every row of a flattened results file has the same names (its columns), and a JSON
    layout's rows share a few shapes, so :func:`option_entries` runs once per shape, not
    once per row. :meth:`cells` gives the texts that decide a field's answer (equal cells:
    an equal answer, which a caller may reuse); :meth:`entries` what :func:`read_answer`
    takes as its ``entries``.
    """

    def __init__(self, names: Iterable[str]):
        self._where = option_entries({name: name for name in names})
        self._keys: dict[str, tuple[str, ...]] = {}

    def cells(self, answers: dict[str, str], name: str) -> tuple:
        """The direct answer of field ``name`` and the texts of its option entries."""
        keys = self._keys.get(name)
        if keys is None:
            keys = self._keys[name] = tuple(key for _, key in self._where.get(name, ()))
        if not keys:
            return (answers.get(name),)
        return answers.get(name), *map(answers.__getitem__, keys)

    def cell_names(self, name: str) -> tuple[str, ...]:
        """The answer names whose texts :meth:`cells` gives, the field's own first (a form
        may lack it: read it with ``answers.get``)."""
        return (name, *(key for _, key in self._where.get(name, ())))

    def entries(self, answers: dict[str, str], name: str) -> dict[str, list[tuple[str, str]]]:
        """:func:`option_entries` of ``answers``, for field ``name`` only."""
        return {name: [(suffix, answers[key]) for suffix, key in self._where.get(name, ())]}


def answer_parts(
    answers: dict[str, str], name: str, entries: dict[str, list[tuple[str, str]]] | None = None
) -> tuple[str | None, list[str], str]:
    """(direct text, chosen option suffixes, column label) of field ``name``.

    ``None`` as the direct text means the field is not there at all. ``entries`` is
    :func:`option_entries` of ``answers`` (computed here when not given).
    """
    entries = option_entries(answers) if entries is None else entries
    direct = answers.get(name)
    label = answers.get(f"{name}.label")
    if label is not None and (direct is None or not direct.strip()):
        direct = label
    options = [(suffix, value) for suffix, value in entries.get(name, []) if suffix != "label"]
    chosen = [
        suffix.removesuffix(".on")
        for suffix, value in options
        if str(value).strip().lower() in TRUE
    ]
    if direct is None and options:
        direct = ""
    return direct, chosen, f"Answer.{name}"


def read_answer(
    question: Question,
    answers: dict[str, str],
    name: str,
    values: dict[str, float | str],
    entries: dict[str, list[tuple[str, str]]] | None = None,
) -> Answer | None:
    """The answer to ``question`` in field ``name``; ``None`` if the field is absent.

    ``values`` maps answer texts or option names to values (a mapping file's
    option-to-value map). Raises :class:`AnswerError` for blank, out-of-range and
    unreadable answers. ``entries``: :func:`option_entries` of ``answers``, when known.
    """
    direct, chosen, column = answer_parts(answers, name, entries)
    if direct is None and not chosen:
        return None
    raw = "; ".join([*([direct] if direct and direct.strip() else []), *chosen])
    lookup = {str(k).strip().lower(): v for k, v in values.items()}
    if question.kind == "scale":
        texts = chosen or ([direct.strip()] if direct and direct.strip() else [])
        if not texts:
            raise AnswerError("blank answer", raw, column)
        if len(texts) > 1:
            raise AnswerError(f"{len(texts)} options chosen, expected one", raw, column)
        return Answer(
            value=_scale_value(question, texts[0], lookup, raw, column), text=None, raw=raw
        )
    if question.kind == "text":
        text = (direct or "").strip() or ", ".join(chosen)
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise AnswerError("blank answer", raw, column)
        return Answer(value=None, text=", ".join(items), raw=raw)
    picked = chosen or [p for p in (direct or "").split(",") if p.strip()]
    if not picked:
        raise AnswerError("blank answer (no option chosen)", raw, column)
    options: list[str] = []
    for part in picked:
        mapped = lookup.get(part.strip().lower())
        option = question.option_for(str(mapped) if mapped is not None else part)
        if option is None:
            raise AnswerError(
                f"{part.strip()!r} is not one of the options ({', '.join(question.options)})",
                raw,
                column,
            )
        if option not in options:
            options.append(option)
    if len(options) > question.max_items:
        raise AnswerError(
            f"{len(options)} options chosen, at most {question.max_items} allowed", raw, column
        )
    ordered = [o for o in question.options if o in options]
    return Answer(value=None, text=", ".join(ordered), raw=raw)


def _scale_value(
    question: Question, text: str, lookup: dict[str, float | str], raw: str, column: str
) -> float:
    mapped = lookup.get(text.lower())
    candidate = str(mapped) if mapped is not None else text
    number_match = _OPTION_NUMBER.match(candidate.strip())
    try:
        if number_match and number_match.group(1):
            # option_N numbers a radio group's buttons from 1: the scale's N-th value
            value = float(question.low + int(number_match.group(2)) - 1)
        else:
            value = float(number_match.group(2) if number_match else candidate)
    except ValueError:
        raise AnswerError(f"{text!r} is not a number", raw, column) from None
    if value != value or not float(value).is_integer():
        raise AnswerError(f"{text!r} is not a whole number on the scale", raw, column)
    if not question.low <= value <= question.high:
        raise AnswerError(
            f"{value:g} is outside the scale {question.low}–{question.high}", raw, column
        )
    return value
