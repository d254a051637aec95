"""Mechanical Turk batch-results CSVs, as downloaded from the requester site.

One row per assignment: the standard columns (``HITId``, ``AssignmentId``,
``WorkerId``, ``AssignmentStatus``, ``AcceptTime``, ``SubmitTime``,
``WorkTimeInSeconds``, ``LifetimeApprovalRate``, ...), then ``Input.*`` (the HIT's
input CSV) and ``Answer.*``. Answers come in either of the two layouts MTurk
produces, and both are flattened here into one ``name → text`` dictionary:

- the default ``Answer.taskAnswers`` column holding a JSON array of one object per
  form (crowd-html-elements): nested objects flatten with dots, so
  ``{"q": {"label": "7"}}`` becomes ``q.label = "7"`` and ``{"adj": {"busy": true}}``
  becomes ``adj.busy = "true"``;
- the flattened layout, one column per field: ``Answer.q`` (text, sliders),
  ``Answer.q.label`` (classifiers), ``Answer.q.option_3`` / ``Answer.q.3`` = true/false
  (radio groups and checkboxes).

Times like ``Fri Jun 08 09:21:50 PDT 2012`` become ISO-8601 UTC; a time that cannot
be read (an impossible date, an unknown zone) is ``None`` and a problem of its row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from semcomp.csvtext import CsvProblem, csv_encoding, csv_records, delimiter_hint, open_csv, shorten
from semcomp.errors import ConfigError

REQUIRED_COLUMNS = ("HITId", "AssignmentId", "WorkerId", "AssignmentStatus")
STANDARD_COLUMNS = (
    *REQUIRED_COLUMNS,
    "HITTypeId",
    "Title",
    "Description",
    "Keywords",
    "Reward",
    "CreationTime",
    "MaxAssignments",
    "RequesterAnnotation",
    "AssignmentDurationInSeconds",
    "AutoApprovalDelayInSeconds",
    "Expiration",
    "NumberOfSimilarHITs",
    "LifetimeInSeconds",
    "AcceptTime",
    "SubmitTime",
    "AutoApprovalTime",
    "ApprovalTime",
    "RejectionTime",
    "RequesterFeedback",
    "WorkTimeInSeconds",
    "LifetimeApprovalRate",
    "Last30DaysApprovalRate",
    "Last7DaysApprovalRate",
    # the requester site's download ends with these two, for marking approvals offline
    "Approve",
    "Reject",
)
TASK_ANSWERS = "taskAnswers"

#: offsets of the zone abbreviations MTurk writes (it writes the requester site's zone)
ZONES = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "PDT": -7,
    "PST": -8,
    "MDT": -6,
    "MST": -7,
    "CDT": -5,
    "CST": -6,
    "EDT": -4,
    "EST": -5,
}
_TIME = re.compile(
    r"^\s*(?:[A-Za-z]{3}\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+"
    r"([A-Za-z]{1,5})\s+(\d{4})\s*$"
)
_MONTHS = {
    month: number
    for number, month in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def mturk_time(text: str) -> str | None:
    """``Fri Jun 08 09:21:50 PDT 2012`` → ``2012-06-08T16:21:50+00:00``; ISO passes through.

    ``None`` for a blank time (MTurk leaves unset times blank) and for one that cannot
    be read (:func:`read_time` says why).
    """
    return read_time(text)[0]


def read_time(text: str) -> tuple[str | None, str]:
    """(ISO-8601 UTC time or ``None``, why it could not be read or ``""``)."""
    text = (text or "").strip()
    if not text:
        return None, ""
    match = _TIME.match(text)
    if match:
        month, day, hour, minute, second, zone, year = match.groups()
        if month.title() not in _MONTHS:
            return None, f"unknown month {month!r}"
        if zone.upper() not in ZONES:
            return None, f"unknown time zone {zone!r} (known: {', '.join(ZONES)})"
        try:
            local = datetime(
                int(year),
                _MONTHS[month.title()],
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=timezone(timedelta(hours=ZONES[zone.upper()])),
            )
        except ValueError as exc:
            return None, f"not a valid time: {exc}"
        return local.astimezone(timezone.utc).isoformat(), ""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, "not a time (expected e.g. 'Fri Jun 08 09:21:50 PDT 2012' or ISO 8601)"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).isoformat(), ""


def flatten_answer(value: object, prefix: str, into: dict[str, str]) -> None:
    """Flatten one crowd-form answer value into ``name(.sub)* → text``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten_answer(inner, f"{prefix}.{key}" if prefix else str(key), into)
    elif isinstance(value, list):
        into[prefix] = ", ".join(str(v) for v in value)
    elif isinstance(value, bool):
        into[prefix] = "true" if value else "false"
    elif value is None:
        into[prefix] = ""
    else:
        into[prefix] = str(value)


@dataclass
class AssignmentRow:
    """One row of a batch-results file: an assignment and its flattened answers."""

    line: int
    hit_id: str
    assignment_id: str
    worker_id: str
    status: str
    accept_time: str | None
    submit_time: str | None
    work_seconds: float | None
    approval_rate: str
    inputs: dict[str, str]
    answers: dict[str, str]
    #: (column, value, reason) for cells that could not be read (bad JSON, number or time)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class BatchFile:
    path: Path
    encoding: str
    columns: list[str]
    input_columns: list[str]
    answer_columns: list[str]
    unknown_columns: list[str]
    rows: Iterator[AssignmentRow | tuple[int, str]]


def read_batch_results(path: Path) -> BatchFile:
    """Open a batch-results CSV; rows are read lazily (``BatchFile.rows``).

    A row whose field count differs from the header's is yielded as
    ``(line, reason)``. Missing required columns are a :class:`ConfigError` listing
    the columns expected and found.
    """
    encoding = csv_encoding(path)
    with open_csv(path, encoding) as handle:
        first = next(csv_records(handle), None)
    if isinstance(first, CsvProblem):
        raise ConfigError(f"{path}:{first.line}: the header cannot be read: {first.reason}")
    if first is None:
        raise ConfigError(f"{path} is empty; expected an MTurk batch-results CSV")
    header = [h.strip() for h in first.cells]
    answer_columns = [h for h in header if h.startswith("Answer.")]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing or not answer_columns:
        expected = [*REQUIRED_COLUMNS, "Answer.* (at least one)"]
        hint = delimiter_hint(header)
        raise ConfigError(
            f"{path} is not an MTurk batch-results CSV: "
            + (
                hint
                or f"missing {', '.join(missing + ([] if answer_columns else ['Answer.*']))}; "
                f"expected columns {', '.join(expected)}; "
                f"found {', '.join(shorten(h) for h in header[:40])}"
                + (" ..." if len(header) > 40 else "")
            )
        )
    input_columns = [h for h in header if h.startswith("Input.")]
    unknown = [
        h for h in header if h not in STANDARD_COLUMNS and not h.startswith(("Input.", "Answer."))
    ]
    return BatchFile(
        path=path,
        encoding=encoding,
        columns=header,
        input_columns=input_columns,
        answer_columns=answer_columns,
        unknown_columns=unknown,
        rows=_rows(path, encoding, header),
    )


def _rows(
    path: Path, encoding: str, header: list[str]
) -> Iterator[AssignmentRow | tuple[int, str]]:
    with open_csv(path, encoding) as handle:
        records = csv_records(handle)
        next(records, None)
        width = len(header)
        index = {name: i for i, name in enumerate(header)}
        inputs = [
            (name[len("Input.") :], i) for name, i in index.items() if name.startswith("Input.")
        ]
        answers = [
            (name[len("Answer.") :], i) for name, i in index.items() if name.startswith("Answer.")
        ]
        for record in records:
            if isinstance(record, CsvProblem):
                yield (record.line, record.reason)
                continue
            cells, line = record.cells, record.line
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != width:
                if record.unterminated and len(cells) < width:
                    yield (
                        line,
                        f"the file ends early, at line {line}: "
                        f"the row has {len(cells)} of {width} fields",
                    )
                else:
                    yield (line, f"row has {len(cells)} fields, the header has {width}")
                continue
            yield _assignment(line, cells, index, inputs, answers)


def _assignment(
    line: int,
    cells: list[str],
    index: dict[str, int],
    inputs: list[tuple[str, int]],
    answers: list[tuple[str, int]],
) -> AssignmentRow:
    def cell(name: str) -> str:
        i = index.get(name)
        return cells[i].strip() if i is not None else ""

    problems: list[tuple[str, str, str]] = []
    flat: dict[str, str] = {}
    for name, i in answers:
        if name == TASK_ANSWERS:
            text = cells[i].strip()
            if not text:
                continue
            try:
                forms = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append((f"Answer.{name}", text[:200], f"not JSON: {exc.msg}"))
                continue
            for form in forms if isinstance(forms, list) else [forms]:
                flatten_answer(form, "", flat)
        else:
            flat[name] = cells[i]
    times: dict[str, str | None] = {}
    for name in ("AcceptTime", "SubmitTime"):
        times[name], reason = read_time(cell(name))
        if reason:
            problems.append((name, cell(name), reason))
    work = cell("WorkTimeInSeconds")
    work_seconds: float | None = None
    if work:
        try:
            work_seconds = float(work)
        except ValueError:
            problems.append(("WorkTimeInSeconds", work, "not a number"))
    return AssignmentRow(
        line=line,
        hit_id=cell("HITId"),
        assignment_id=cell("AssignmentId"),
        worker_id=cell("WorkerId"),
        status=cell("AssignmentStatus"),
        accept_time=times["AcceptTime"],
        submit_time=times["SubmitTime"],
        work_seconds=work_seconds,
        approval_rate=cell("LifetimeApprovalRate"),
        inputs={name: cells[i] for name, i in inputs},
        answers=flat,
        problems=problems,
    )
