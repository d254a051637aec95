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

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from pathlib import Path

from semcomp.csvtext import (
    MAX_FIELD,
    MAX_LINE,
    UTF8,
    CsvProblem,
    csv_encoding,
    csv_records,
    delimiter_hint,
    open_csv,
    shorten,
)
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
            return local.astimezone(timezone.utc).isoformat(), ""
        except (ValueError, OverflowError) as exc:  # Dec 31 9999 EST is after year 9999 UTC
            return None, f"not a valid time: {exc}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, "not a time (expected e.g. 'Fri Jun 08 09:21:50 PDT 2012' or ISO 8601)"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc).isoformat(), ""
    except OverflowError as exc:
        return None, f"not a valid time: {exc}"


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
    #: the row's input cells in column order (rows of one HIT share them and ``inputs``,
    #: which is read-only); ``None``: not known
    inputs_key: tuple[str, ...] | None = None


@dataclass
class BatchFile:
    path: Path
    encoding: str
    columns: list[str]
    input_columns: list[str]
    answer_columns: list[str]
    unknown_columns: list[str]
    rows: Iterator[AssignmentRow | tuple[int, str]]

    def chunks(self) -> ColumnarChunks | None:
        """The file parsed whole and handed out column by column (:func:`columnar_chunks`),
        or ``None`` where :attr:`rows` must read it (then iterate :attr:`rows` instead)."""
        return columnar_chunks(self.path, self.encoding, self.columns)


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
        rows=_all_rows(path, encoding, header),
    )


def _all_rows(
    path: Path, encoding: str, header: list[str]
) -> Iterator[AssignmentRow | tuple[int, str]]:
    """The rows, read column by column when the file allows (:func:`_columnar_rows`), else
    record by record (:func:`_rows`, which says what is wrong with each bad row)."""
    rows = _columnar_rows(path, encoding, header)
    yield from _rows(path, encoding, header) if rows is None else rows


def _rows(
    path: Path, encoding: str, header: list[str]
) -> Iterator[AssignmentRow | tuple[int, str]]:
    with open_csv(path, encoding) as handle:
        records = csv_records(handle)
        next(records, None)
        width = len(header)
        columns = _Columns(header)
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
            yield columns.assignment(line, cells)


def _read_forms(text: str) -> dict[str, str] | str:
    """An ``Answer.taskAnswers`` cell flattened (:func:`flatten_answer`), or why it is not
    JSON. Rows share the returned dictionary: it is read, never changed."""
    try:
        forms = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg}"
    flat: dict[str, str] = {}
    for form in forms if isinstance(forms, list) else [forms]:
        if isinstance(form, dict) and all(type(v) is str for v in form.values()):
            flat.update(form)  # what flatten_answer makes of a flat form
        else:
            flatten_answer(form, "", flat)
    return flat


#: the standard columns an :class:`AssignmentRow` keeps (stripped), in its field order
_KEPT = ("HITId", "AssignmentId", "WorkerId", "AssignmentStatus", "LifetimeApprovalRate")


class _Columns:
    """Rows of one file's header into :class:`AssignmentRow`: where each column is, and
    what its repeated cells read as (times, work seconds, a HIT's inputs), read once."""

    def __init__(self, header: list[str]):
        index = {name: i for i, name in enumerate(header)}
        self.kept = [index.get(name) for name in _KEPT]
        #: a column every row has (a row blank there may be blank everywhere)
        self.first_required = index[REQUIRED_COLUMNS[0]]
        self.times = [(name, index.get(name)) for name in ("AcceptTime", "SubmitTime")]
        self.work = index.get("WorkTimeInSeconds")
        self.inputs = [
            (name[len("Input.") :], i) for name, i in index.items() if name.startswith("Input.")
        ]
        #: a row's input cells as a tuple (itemgetter gives a bare cell for one index)
        at = [i for _, i in self.inputs]
        self.input_cells = (
            itemgetter(*at) if len(at) > 1 else lambda cells: tuple(cells[i] for i in at)
        )
        self.answers = [
            (name[len("Answer.") :], i) for name, i in index.items() if name.startswith("Answer.")
        ]
        #: a HIT's assignments share their inputs: one dict per distinct row of inputs
        self.input_dicts: dict[tuple[str, ...], dict[str, str]] = {}
        self.read_times: dict[str, tuple[str | None, str]] = {}
        self.read_seconds: dict[str, float | str] = {}
        #: ``Answer.taskAnswers`` texts → their flattened answers, or why they are unreadable
        self.read_forms: dict[str, dict[str, str] | str] = {}

    def used(self) -> list[int | None]:
        """The columns :meth:`assignment` reads."""
        return [
            *self.kept,
            *(i for _, i in self.times),
            self.work,
            *(i for _, i in self.inputs),
            *(i for _, i in self.answers),
        ]

    def seconds(self, work: str) -> float | str:
        """A ``WorkTimeInSeconds`` cell (stripped, not blank) as a number, or why not."""
        seconds = self.read_seconds.get(work)
        if seconds is None:
            try:
                seconds = float(work)
            except ValueError:
                seconds = "not a number"
            self.read_seconds[work] = seconds
        return seconds

    def form(self, text: str) -> dict[str, str] | str:
        """:func:`_read_forms` of an ``Answer.taskAnswers`` cell (stripped, not blank), read
        once per text."""
        read = self.read_forms.get(text)
        if read is None:
            read = self.read_forms[text] = _read_forms(text)
        return read

    def time(self, text: str) -> tuple[str | None, str]:
        """:func:`read_time` of a cell (stripped), read once per text."""
        read = self.read_times.get(text)
        if read is None:
            read = self.read_times[text] = read_time(text)
        return read

    def assignment(self, line: int, cells: Sequence[str]) -> AssignmentRow:
        problems: list[tuple[str, str, str]] = []
        flat: dict[str, str] = {}
        for name, i in self.answers:
            if name == TASK_ANSWERS:
                text = cells[i].strip()
                if not text:
                    continue
                read = self.form(text)
                if isinstance(read, str):
                    problems.append((f"Answer.{name}", text[:200], read))
                    continue
                flat.update(read)
            else:
                flat[name] = cells[i]
        hit_id, assignment_id, worker_id, status, approval_rate = (
            cells[i].strip() if i is not None else "" for i in self.kept
        )
        times: list[str | None] = []
        for name, i in self.times:
            text = cells[i].strip() if i is not None else ""
            read = self.time(text)
            times.append(read[0])
            if read[1]:
                problems.append((name, text, read[1]))
        work = cells[self.work].strip() if self.work is not None else ""
        work_seconds: float | None = None
        if work:
            seconds = self.seconds(work)
            if isinstance(seconds, str):
                problems.append(("WorkTimeInSeconds", work, seconds))
            else:
                work_seconds = seconds
        key = self.input_cells(cells)
        inputs = self.input_dicts.get(key)
        if inputs is None:
            inputs = self.input_dicts[key] = {name: cells[i] for name, i in self.inputs}
        return AssignmentRow(
            line=line,
            hit_id=hit_id,
            assignment_id=assignment_id,
            worker_id=worker_id,
            status=status,
            accept_time=times[0],
            submit_time=times[1],
            work_seconds=work_seconds,
            approval_rate=approval_rate,
            inputs=inputs,
            answers=flat,
            problems=problems,
            inputs_key=key,
        )


# ---- the columnar reader ----------------------------------------------------------------

#: the blocks a file is scanned in before it is parsed whole
_SCAN_BLOCK = 1 << 24


def _one_row_per_line(path: Path) -> tuple[int, int, str] | None:
    """The number of lines of ``path``, the length of its longest in bytes and the file's
    SHA-256 (taken in the same pass) if each line can be one CSV record: ``\n`` or
    ``\r\n`` line ends and a final one, no blank or one-character line, no NUL, none
    longer than :data:`MAX_LINE` bytes. ``None`` otherwise: such a file is left to the
    record reader, which says what is wrong where."""
    import numpy as np

    lines, offset, last_end, previous, longest = 0, 0, -1, b"", 0
    carriage_returns = line_ends_after_one = 0
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_SCAN_BLOCK), b""):
            digest.update(block)
            data = np.frombuffer(block, dtype=np.uint8)
            # the control bytes up to \r, found in one pass (NUL, \n, \r among them)
            control = np.flatnonzero(data <= 13)
            kinds = data[control]
            if (kinds == 0).any():
                return None
            carriage_returns += int(np.count_nonzero(kinds == 13))
            newlines = control[kinds == 10]
            # the line ends after a carriage return: a \r before a \n of the block (looked
            # up at the line ends, not searched for: bytes.count(b"\r\n") is slower)
            inside = newlines[newlines > 0]
            line_ends_after_one += int(np.count_nonzero(data[inside - 1] == 13)) + (
                previous == b"\r" and block[:1] == b"\n"
            )
            ends = newlines + offset
            if len(ends):
                lengths = np.diff(ends, prepend=last_end)
                if lengths.min() <= 2 or lengths.max() > MAX_LINE:
                    return None
                longest = max(longest, int(lengths.max()))
                last_end = int(ends[-1])
                lines += len(ends)
            offset += len(block)
            previous = block[-1:]
    if previous != b"\n" or carriage_returns != line_ends_after_one or offset - last_end > 1:
        return None
    return lines, longest, digest.hexdigest()


def _columnar_rows(path: Path, encoding: str, header: list[str]) -> Iterator[AssignmentRow] | None:
    """Every row of the file, parsed whole by pyarrow and decoded column by column, when
    each record is one line of the header's width (the usual download). ``None`` for any
    other file (cells spanning lines, blank lines, short or long rows, a Windows
    encoding), which :func:`_rows` reads record by record. Both give the same rows.
    Also ``None`` without pyarrow (the base install has none: imports are then slower)."""
    found = columnar_chunks(path, encoding, header)
    if found is None:
        return None
    return _assignments(found)


@dataclass
class ColumnarChunks:
    """A batch-results file parsed whole: :meth:`slices` gives its rows a chunk at a
    time, whose columns stay pyarrow's until a reader takes them (:meth:`column`) or
    makes rows of Python strings of them (:meth:`rows`); :attr:`columns` makes an
    :class:`AssignmentRow` of a row's cells."""

    columns: _Columns
    #: the parsed columns (pyarrow), of the used ones at least
    table: object
    #: the file's columns rows are read from
    used: set[int]
    #: a file column's position in :attr:`table`
    position: dict[int, int]
    #: the file's number of columns
    width: int
    #: a time column's times, row by row: ISO-8601 UTC, or ``None`` where the cell is not
    #: one of MTurk's usual times (:func:`usual_times`; :meth:`_Columns.time` reads it)
    times: dict[int, object]
    #: the file's SHA-256 (hex), taken as it was scanned
    sha256: str

    def slices(self) -> Iterator[tuple[int, object, dict[int, list[str | None]]]]:
        """(the file line of the chunk's first row, its rows of :attr:`table`, its times by
        column), chunk by chunk: the columns stay pyarrow's (:meth:`column`, :meth:`rows`)."""
        table = self.table
        for start in range(0, table.num_rows, _CHUNK_ROWS):
            yield (
                start + 2,
                table.slice(start, _CHUNK_ROWS),
                {i: t[start : start + _CHUNK_ROWS].tolist() for i, t in self.times.items()},
            )

    def column(self, chunk, i: int | None):
        """File column ``i`` of a chunk of :meth:`slices` (or of the whole :attr:`table`)
        as one pyarrow array (``None`` for a column the file lacks)."""
        return None if i is None else chunk.column(self.position[i]).combine_chunks()

    def rows(self, chunk, indices: list[int] | None = None) -> list[tuple[str, ...]]:
        """The cells of rows ``indices`` (all: ``None``) of a chunk of :meth:`slices`, a
        list of the file's width per row (``""`` in every column rows are not read from)."""
        taken = chunk if indices is None else chunk.take(indices)
        blank = [""] * taken.num_rows
        columns = [
            taken.column(self.position[i]).to_pylist() if i in self.used else blank
            for i in range(self.width)
        ]
        return list(zip(*columns, strict=True))


def columnar_chunks(path: Path, encoding: str, header: list[str]) -> ColumnarChunks | None:
    """The file parsed whole by pyarrow (:class:`ColumnarChunks`), when each record is one
    line of the header's width (the usual download); ``None`` as :func:`_columnar_rows`."""
    if encoding != UTF8:
        return None
    try:
        import pyarrow as pa
        from pyarrow import csv as arrow_csv
    except ImportError:
        return None
    scanned = _one_row_per_line(path)
    if scanned is None or scanned[0] < 2:
        return None
    lines, longest, sha256 = scanned
    width = len(header)
    names = [f"c{i}" for i in range(width)]
    columns = _Columns(header)
    used = {i for i in columns.used() if i is not None}
    limit = min(MAX_FIELD, csv.field_size_limit())
    # no line as long as the longest field the record reader reads: only the columns an
    # assignment reads become arrow strings (the others are split off, not kept)
    kept = sorted(used) if longest <= limit else range(width)
    try:
        table = arrow_csv.read_csv(
            path,
            read_options=arrow_csv.ReadOptions(skip_rows=1, column_names=names),
            parse_options=arrow_csv.ParseOptions(newlines_in_values=False),
            convert_options=arrow_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                include_columns=[names[i] for i in kept],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a row of another width, or bad UTF-8
        return None
    if table.num_rows != lines - 1:
        return None
    import pyarrow.compute as pc

    if any((pc.max(pc.utf8_length(column)).as_py() or 0) > limit for column in table.columns):
        return None  # a field the record reader reports as too long
    position = {i: p for p, i in enumerate(kept)}
    required = table.column(position[columns.first_required])
    if not pc.all(pc.not_equal(pc.utf8_trim_whitespace(required), "")).as_py():
        return None  # a row without the first required column: the record reader's case
    times = {
        i: usual_times(table.column(position[i]).combine_chunks())
        for _, i in columns.times
        if i is not None
    }
    del required
    return ColumnarChunks(columns, table, used, position, width, times, sha256)


def equal_rows(columns: list, rows: int):
    """Rows whose cells are equal in every one of ``columns`` (pyarrow string arrays of
    ``rows`` rows; a missing cell equals missing ones only), found together: (each row's
    group, numbered 0..k-1; the first row of each group). No column: one group."""
    import numpy as np
    import pyarrow.compute as pc

    group = np.zeros(rows, dtype=np.int64)
    for column in columns:
        coded = pc.dictionary_encode(column, null_encoding="encode")
        codes = coded.indices.to_numpy().astype(np.int64)
        _, group = np.unique(group * (int(codes.max(initial=0)) + 1) + codes, return_inverse=True)
    _, first = np.unique(group, return_index=True)
    return group, first


#: rows made Python strings at a time (the whole file's cells would hold about 1 GB at
#: 200,000 assignments)
_CHUNK_ROWS = 20_000


def _assignments(found: ColumnarChunks) -> Iterator[AssignmentRow]:
    """The rows of a parsed file, a chunk at a time; only the columns an assignment reads
    become Python strings."""
    columns = found.columns
    for i, times in found.times.items():
        column = found.table.column(found.position[i]).to_pylist()
        columns.read_times |= {
            text.strip(): (iso, "") for text, iso in zip(column, times.tolist(), strict=True) if iso
        }
    for first, chunk, _ in found.slices():
        for line, row in enumerate(found.rows(chunk), start=first):
            yield found.columns.assignment(line, row)


#: :data:`_TIME` with named groups, for pyarrow (RE2: it matches a subset of what Python's
#: ``re`` does, so what it leaves is read by :func:`read_time`)
_TIME_PARTS = (
    r"^\s*(?:[A-Za-z]{3}\s+)?(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})\s+(?P<zone>[A-Za-z]{1,5})\s+"
    r"(?P<year>\d{4})\s*$"
)


def usual_times(texts):
    """The ISO-8601 UTC time of each of ``texts`` (a pyarrow string array) that is one of
    MTurk's usual times (``Fri Jun 08 09:21:50 PDT 2012``, a valid date in the years
    1900-2200; space around it allowed), as :func:`read_time` reads it, decoded together with
    numpy; ``None`` for any other text (:func:`read_time` says what it is). A numpy array
    of objects."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.extract_regex(texts, _TIME_PARTS)
    month = pc.index_in(pc.utf8_capitalize(found.field("month")), pa.array(list(_MONTHS)))
    zone = pc.index_in(pc.utf8_upper(found.field("zone")), pa.array(list(ZONES)))
    usual = pc.and_(pc.and_(found.is_valid(), month.is_valid()), zone.is_valid())
    matched = found.filter(usual)
    year, day, hour, minute, second = (
        pc.cast(matched.field(part), pa.int64()).to_numpy()
        for part in ("year", "day", "hour", "minute", "second")
    )
    months = (year - 1970) * 12 + month.filter(usual).to_numpy()
    first = months.astype("datetime64[M]")
    date = first.astype("datetime64[D]") + (day - 1)
    ok = (year >= 1900) & (year <= 2200) & (day >= 1) & (hour < 24) & (minute < 60)
    ok &= (second < 60) & (date.astype("datetime64[M]") == first)
    hours = np.array(list(ZONES.values()), dtype=np.int64)[zone.filter(usual).to_numpy()]
    seconds = hour * 3600 + minute * 60 + second - hours * 3600
    stamps = date.astype("datetime64[s]").astype(np.int64)[ok] + seconds[ok]
    decoded = np.full(len(texts), None, dtype=object)
    decoded[np.flatnonzero(usual.to_numpy(zero_copy_only=False))[ok]] = iso_utc(stamps)
    return decoded


#: an ISO-8601 UTC time as :func:`read_time` writes it, and where its numbers go in it
_ISO_UTC = b"0000-00-00T00:00:00+00:00"
_ISO_PARTS = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2))


def iso_utc(stamps):
    """The ISO-8601 UTC texts (``2012-06-08T16:21:50+00:00``) of seconds since 1970 (years
    1000-9999): the digits of all put in one ASCII buffer with numpy, cut into texts (about
    three times faster than numpy's ``datetime_as_string`` and a join)."""
    import numpy as np

    days, seconds = np.divmod(np.asarray(stamps, dtype=np.int64), 86_400)
    dates = days.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    parts = (
        months.astype("datetime64[Y]").astype(np.int64) + 1970,
        months.astype(np.int64) % 12 + 1,
        (dates - months).astype(np.int64) + 1,
        seconds // 3600,
        seconds // 60 % 60,
        seconds % 60,
    )
    width = len(_ISO_UTC)
    buffer = np.tile(np.frombuffer(_ISO_UTC, dtype=np.uint8), (len(days), 1))
    for (start, digits), value in zip(_ISO_PARTS, parts, strict=True):
        for k in range(digits):
            buffer[:, start + digits - 1 - k] = 48 + value // 10**k % 10
    text = buffer.tobytes().decode("ascii")
    return [text[i : i + width] for i in range(0, len(text), width)]
