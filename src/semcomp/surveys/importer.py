"""Importing ratings into a study: MTurk batch results or a long-format CSV, with QC.

Every answer is kept as a row of ``answers`` (integers; read through the ``ratings``
view) keyed on (AssignmentId, item slot, question), so importing the same file again adds
nothing, and a file with the same assignments but changed statuses (an approval, a
rejection) updates them. After each import the quality-control rules
(:mod:`semcomp.surveys.quality`: rejected and too quick assignments, workers who failed an
attention check, answers repeated by one worker) are applied again to the whole survey,
and the ``human.<survey>.<stat>[<question>]`` scores are recomputed.

The options are the survey's: an import that does not give one keeps the survey's
stored value (``min_work_seconds=0`` turns the work-time rule off), and a change is
said in the summary. Blank, out-of-range and unreadable answers (and unreadable
times) are failures (stage ``ratings``, with file, line, column and value); a blank
or unreadable answer to an attention check fails the check. Answers about images the
study does not know, or in a slot that names no image, are kept aside in
``ratings_unmatched`` and reported; an assignment none of whose answers names an image
of the study is not registered (a corrected import of the file counts it as new). An
assignment belongs to one survey: importing it under another is an error.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import itemgetter
from pathlib import Path

import numpy as np

from semcomp.csvtext import CsvProblem, csv_encoding, csv_records, delimiter_hint, open_csv
from semcomp.errors import ConfigError
from semcomp.params import file_sha256
from semcomp.store import Store, content_key, to_json, utc_now
from semcomp.surveys.answers import (
    SEPARATORS,
    Answer,
    AnswerError,
    FormNames,
    answer_parts,
    read_answer,
)
from semcomp.surveys.definitions import Question, SurveyDefinition
from semcomp.surveys.mapping import (
    Mapping,
    NamedItem,
    default_mapping,
    generated_mapping,
    list_hint,
    load_mapping,
    reference_keys,
)
from semcomp.surveys.mturk import (
    TASK_ANSWERS,
    AssignmentRow,
    ColumnarChunks,
    equal_rows,
    read_batch_results,
)
from semcomp.surveys.quality import (
    DUPLICATE,
    EXCLUDED,
    KEPT,
    OTHER,
    SurveyAnswers,
    apply_quality_control,
    groups,
    item_order,
    ranks,
    write_human_scores,
)

STAGE = "ratings"
FORMATS = ("mturk", "long")
LONG_COLUMNS = ("rater", "original", "candidate", "question", "value")
ASSIGNMENT_COLUMNS = (
    "assignment_id",
    "survey",
    "hit_id",
    "worker_id",
    "status",
    "accept_time",
    "submit_time",
    "work_seconds",
    "approval_rate",
    "source_file",
    "source_line",
    "import_id",
    "created_at",
    "id",
)
#: an answer's row in ``answers`` (the view ``ratings`` names its integers): its
#: assignment's ``id`` and its file line (the row's), then what the same answer in the
#: same item reads as in every row (:attr:`_Reader.tails`): the item slot, the question's
#: ``rating_names`` id, its ``rating_subjects`` id, ..., the file's and the import
#: time's ``rating_names`` ids
ANSWER_COLUMNS = (
    "assignment",
    "source_line",
    "item",
    "question",
    "subject",
    "check_passed",
    "value",
    "text",
    "raw",
    "source_file",
    "created_at",
)
ANSWER_KEY = ("assignment", "item", "question")
UNMATCHED_COLUMNS = (
    "assignment_id",
    "item",
    "survey",
    "worker_id",
    "original_ref",
    "candidate_ref",
    "reason",
    "answers",
    "source_file",
    "source_line",
    "created_at",
)


@dataclass
class ImportSummary:
    """What one import did; :meth:`lines` is what the CLI prints."""

    file: str
    survey: str
    format: str
    encoding: str
    rows: int = 0
    assignments_new: int = 0
    assignments_updated: int = 0
    assignments_unchanged: int = 0
    #: assignments left unregistered: every item they answered names no image of the study
    assignments_unmatched: int = 0
    ratings_new: int = 0
    #: answers of this file kept after quality control (attention checks not counted)
    kept: int = 0
    #: answers of this file excluded, by rule
    excluded: dict[str, int] = field(default_factory=dict)
    #: (where, reason) for the first :data:`LISTED` answers or rows that could not be read
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_count: int = 0
    #: (where, reason) for the first :data:`LISTED` items about images the study does not know
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    unmatched_count: int = 0
    #: the first :data:`LISTED` answers given twice by one worker: the later one is excluded
    duplicates: list[str] = field(default_factory=list)
    duplicates_count: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    scores_written: int = 0
    #: the survey's quality-control options after this import
    options: dict[str, object] = field(default_factory=dict)
    #: what changed in them ("" when nothing did)
    options_changed: str = ""

    def add(self, name: str, entries: list) -> None:
        """Count ``entries`` under ``name`` (failed, unmatched, duplicates); list the first
        :data:`LISTED` of them."""
        listed = getattr(self, name)
        listed += entries[: max(LISTED - len(listed), 0)]
        setattr(self, f"{name}_count", getattr(self, f"{name}_count") + len(entries))

    def nothing_kept(self) -> str:
        """Why this file gave the survey no answers (call when :attr:`kept` is 0)."""
        reasons = [
            f"{count} {what}"
            for count, what in (
                (self.unmatched_count, "about images the study does not know"),
                (self.failed_count, "unreadable"),
                (sum(self.excluded.values()), "excluded by quality control"),
            )
            if count
        ]
        return f"no answers kept from {Path(self.file).name} for survey {self.survey}" + (
            f" ({', '.join(reasons)})" if reasons else " (it holds no answers)"
        )

    def lines(self, limit: int = 20) -> list[str]:
        excluded = ", ".join(f"{n} {rule}" for rule, n in sorted(self.excluded.items())) or "none"
        out = [
            f"{self.file} ({self.format}, {self.encoding}) → survey {self.survey}: "
            f"{self.rows} rows; assignments {self.assignments_new} new, "
            f"{self.assignments_updated} updated, {self.assignments_unchanged} unchanged"
            + (
                f", {self.assignments_unmatched} not registered (no image of the study named)"
                if self.assignments_unmatched
                else ""
            )
            + f"; {self.ratings_new} new answers",
            f"  kept {self.kept} answers; excluded: {excluded}; failed {self.failed_count}; "
            f"unknown images {self.unmatched_count}; {self.scores_written} human score rows",
        ]
        if not self.kept:
            out.append(f"  {self.nothing_kept()}")
        if self.options_changed:
            out.append(f"  quality control of survey {self.survey} changed: {self.options_changed}")
        if self.unknown_columns:
            out.append(f"  ignored unknown columns: {', '.join(self.unknown_columns)}")
        for title, entries, count in (
            ("failed", self.failed, self.failed_count),
            (
                "unknown images (kept aside in ratings_unmatched)",
                self.unmatched,
                self.unmatched_count,
            ),
        ):
            if entries:
                out.append(f"  {title}:")
                out += [f"    {where}: {reason}" for where, reason in entries[:limit]]
                if count > min(limit, len(entries)):
                    out.append(f"    ... and {count - min(limit, len(entries))} more")
        if self.duplicates:
            out.append("  pairs rated twice by one worker (first rating kept):")
            out += [f"    {d}" for d in self.duplicates[:limit]]
            shown = min(limit, len(self.duplicates))
            if self.duplicates_count > shown:
                out.append(f"    ... and {self.duplicates_count - shown} more")
        return out


#: how many failures, unmatched items and duplicates a summary lists (all are counted)
LISTED = 100


# ---- the study's images, by every name a results file may use ------------------------


@dataclass
class Resolved:
    original_id: str
    candidate_id: str | None
    item_id: str | None = None
    is_check: bool = False
    #: question id → (min, max) an attention check must meet
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    #: its ``rating_subjects`` id, once an import has written an answer about it
    subject: int | None = None


class StudyIndex:
    """Originals, candidates and generated survey items by id, file name or URL."""

    def __init__(self, store: Store, survey: SurveyDefinition):
        self.originals: dict[str, set[str]] = defaultdict(set)
        self.candidates: dict[str, set[str]] = defaultdict(set)
        self.candidate_original: dict[str, str] = {}
        rows = store.conn.execute(
            "SELECT o.id, o.name, o.source_path, a.relpath FROM originals o "
            "JOIN artifacts a ON a.hash = o.artifact_hash"
        )
        for row in rows:
            for ref in [row["id"], row["name"], *reference_keys(row["source_path"])]:
                self.originals[ref].add(row["id"])
            for ref in reference_keys(row["relpath"])[1:]:
                self.originals[ref].add(row["id"])
        rows = store.conn.execute(
            "SELECT c.id, c.artifact_hash, r.original_id, a.relpath FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN artifacts a ON a.hash = c.artifact_hash"
        )
        for row in rows:
            self.candidate_original[row["id"]] = row["original_id"]
            for ref in [row["id"], row["artifact_hash"], *reference_keys(row["relpath"])[1:]]:
                self.candidates[ref].add(row["id"])
        #: (original, method name) → operating point → replicate → candidate ids
        self.by_method: dict[tuple[str, str], dict[str, dict[int, set[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(set))
        )
        rows = store.conn.execute(
            "SELECT c.id, c.replicate, r.original_id, r.operating_point, m.name FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN methods m ON m.id = r.method_id"
        )
        for row in rows:
            points = self.by_method[(row["original_id"], row["name"].lower())]
            points[row["operating_point"]][row["replicate"]].add(row["id"])
        self.method_names = {method.lower() for _, method in self.by_method}
        checks = {q.id: (q.check_min, None) for q in survey.questions if q.check_min is not None}
        self.items = {
            row["id"]: Resolved(
                original_id=row["original_id"],
                candidate_id=row["candidate_id"],
                item_id=row["id"],
                is_check=bool(row["is_check"]),
                bounds=checks if row["is_check"] else {},
            )
            for row in store.conn.execute(
                "SELECT id, original_id, candidate_id, is_check FROM survey_items WHERE survey = ?",
                (survey.id,),
            )
        }

    def _one(self, table: dict[str, set[str]], ref: str, what: str) -> tuple[str | None, str]:
        found: set[str] = set()
        for key in reference_keys(ref):
            found = table.get(key, set())
            if found:
                break
        if len(found) == 1:
            return next(iter(found)), ""
        if not found:
            return None, f"{what} {ref!r} is not in the study"
        return None, f"{what} {ref!r} names {len(found)} images; use its id"

    def resolve_named(
        self, original_ref: str | None, item: NamedItem
    ) -> tuple[Resolved | None, str]:
        """The candidate of an original (display name, id or file name) with a method's name,
        its operating point (the label, ``quality=5``, or its value, ``5``; optional when the
        method has one) and a replicate."""
        if not original_ref:
            return None, f"no original named for method {item.method!r}"
        original_id, reason = self._one(self.originals, original_ref, "original")
        if original_id is None:
            return None, reason
        method = item.method.strip().lower()
        if method not in self.method_names:
            return None, f"method {item.method!r} is not in the study"
        points = self.by_method.get((original_id, method), {})
        if not points:
            return None, f"method {item.method!r} has no candidate of {original_ref!r}"
        wanted = (item.operating_point or "").strip().lower()
        if not wanted:
            chosen = list(points) if len(points) == 1 else []
            if not chosen:
                return None, (
                    f"method {item.method!r} has {len(points)} operating points "
                    f"({', '.join(sorted(points))}); name one"
                )
        else:
            chosen = [p for p in points if p.lower() == wanted] or [
                p for p in points if p.lower().split("=", 1)[-1] == wanted
            ]
        if len(chosen) != 1:
            known = ", ".join(sorted(points))
            problem = "is not" if not chosen else "names several"
            return None, (
                f"operating point {item.operating_point!r} {problem} one of method "
                f"{item.method!r}'s ({known})"
            )
        found = points[chosen[0]].get(item.replicate, set())
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            return None, (
                f"{item.method} · {chosen[0]} of {original_ref!r} has {what} candidate(s) at "
                f"replicate {item.replicate}"
            )
        candidate_id = next(iter(found))
        return Resolved(original_id=original_id, candidate_id=candidate_id), ""

    def resolve(
        self, original_ref: str | None, candidate_ref: str | None, subject: str
    ) -> tuple[Resolved | None, str]:
        original_id = candidate_id = None
        if original_ref:
            original_id, reason = self._one(self.originals, original_ref, "original")
            if original_id is None:
                return None, reason
        if candidate_ref:
            candidate_id, reason = self._one(self.candidates, candidate_ref, "candidate")
            if candidate_id is None:
                same, _ = self._one(self.originals, candidate_ref, "original")
                if same is not None and same == original_id:  # an image next to itself
                    return Resolved(original_id=same, candidate_id=None), ""
                return None, reason
            owner = self.candidate_original[candidate_id]
            if original_id is not None and owner != original_id:
                return None, f"candidate {candidate_ref!r} is not a candidate of {original_ref!r}"
            return Resolved(original_id=owner, candidate_id=candidate_id), ""
        if subject == "candidate" or original_id is None:
            return None, "no candidate named"
        return None, "no candidate named for the pair"


# ---- reading -------------------------------------------------------------------------


@dataclass
class _Batch:
    assignments: list[tuple] = field(default_factory=list)
    ratings: list[tuple] = field(default_factory=list)
    unmatched: list[tuple] = field(default_factory=list)
    #: (item key, reason, detail)
    failures: list[tuple[str, str, dict]] = field(default_factory=list)
    #: the rows read through earlier rows' answers (:meth:`_Reader.read_chunk`), an integer
    #: matrix per run of rows: the assignment's ``id``, the line, then per slot the number
    #: of the slot's answer rows after both in ``temp.fast_tails`` (:data:`UNUSED`: none)
    fast: list[np.ndarray] = field(default_factory=list)
    #: how many answers :attr:`fast` stands for
    fast_answers: int = 0

    def answers(self) -> int:
        """How many answers the batch holds."""
        return len(self.ratings) + self.fast_answers


@dataclass
class _FileAnswers:
    """A parsed file's distinct answer cells, read once (:meth:`_Reader._file_answers`)."""

    #: their flattened answers, or why a ``taskAnswers`` text is not JSON
    forms: list
    #: their answer names (``None``: unreadable)
    form_names: list
    #: which of them each row of the file has
    answer_of: np.ndarray
    #: a number per distinct answer names
    shapes: np.ndarray
    #: whether each is unreadable (a problem of its rows)
    unreadable: np.ndarray
    #: per distinct answer and slot, a number for the cells the slot reads (+1; 0: none)
    cells_of: np.ndarray


class _Reader:
    def __init__(
        self, path: Path, survey: SurveyDefinition, index: StudyIndex, mapping: Mapping, now: str
    ):
        self.path = path
        self.survey = survey
        self.index = index
        self.mapping = mapping
        self.now = now
        self.source = str(path.resolve())
        self.batch = _Batch()
        #: long format only: one assignment spans rows, so an answer can repeat
        self.seen_ratings: dict[tuple[str, str, str], int] | None = None
        self.gold = self._gold()
        #: whether the row being read named an image of the study
        self.matched = False
        #: assignments not registered: every item they answered names no image of the study
        self.unregistered = 0
        #: per slot: (question, answer field name, its values) of every question
        self.fields = {
            slot: [(q, *mapping.field(q.id, slot)) for q in survey.questions]
            for slot in mapping.slots
        }
        #: what a slot's inputs name (:meth:`_named`), by (slot, the cells of
        #: :attr:`slot_inputs`): the rows of a HIT, and the HITs showing an item there, share it
        self.slots: dict[tuple, tuple] = {}
        templates = (
            (mapping.item_id,)
            if mapping.item_id
            else (mapping.original, mapping.candidate, mapping.method, mapping.operating_point)
        )
        #: per slot, the input columns :meth:`_named` reads
        self.slot_inputs = {
            slot: [c for t in templates if (c := mapping.input_column(t, slot))]
            for slot in mapping.slots
        }
        #: answer names → where each field is; (names, question, field, its cells) → answer
        self.forms: dict[tuple[str, ...], FormNames] = {}
        self.answers: dict[tuple, Answer | AnswerError | None] = {}
        #: (answer names, inputs) → :meth:`_plan`
        self.plans: dict[tuple, list[tuple]] = {}
        #: (slot, answer names read, what the slot names) → the number standing for them
        self.contents: dict[tuple, int] = {}
        #: the same numbers by (the number of the answer names, the slot's key in :attr:`slots`)
        self.tokens: dict[tuple, int] = {}
        #: answer names → (a number, per slot the answer names its fields read)
        self.read_names: dict[tuple[str, ...], tuple[int, list[list[str]]]] = {}
        #: (a :meth:`_plan`'s number of the slot, the slot's answer cells) → :meth:`_outcomes`
        self.outcomes: dict[tuple, list[tuple]] = {}
        #: the same keys → the slot's answer rows after their assignment and line (only for
        #: slots whose answers all read without a failure, outside the long format)
        self.tails: dict[tuple, list[tuple]] = {}
        # the integers an answer's row holds (:meth:`number_rows`, in the import's transaction)
        self.store: Store | None = None
        #: assignment id → its ``id`` (those of the store, and those this import adds)
        self.numbers: dict[str, int] = {}
        #: the assignment ids the store held when the import began
        self.stored: set[str] = set()
        self.next_number = 1
        #: the ``id`` of the row's assignment (:meth:`items`)
        self.number = 0
        #: (item id, original, candidate, is check) → ``rating_subjects`` id
        self.subjects: dict[tuple, int] = {}
        #: question id → ``rating_names`` id; the file's and the import time's
        self.question_ids: dict[str, int] = {}
        self.file_id = self.time_id = 0
        #: columnar reading (:meth:`read_chunk`): a slot's key in :attr:`tails` → the
        #: number its answer rows have in ``temp.fast_tails``
        self.tail_numbers: dict[tuple, int] = {}
        #: how many answer rows each number of :attr:`tail_numbers` stands for
        self.tail_counts: list[int] = []
        #: (number, *answer row after assignment and line) not yet in ``temp.fast_tails``
        self.fast_tails: list[tuple] = []
        #: an unused slot's key → whether its cells answer anything
        self.unused_answered: dict[tuple, bool] = {}
        #: the distinct answer cells of the file read in columns (:meth:`read_chunk`; a
        #: reader reads one file)
        self.file_answers: _FileAnswers | None = None
        #: the ``rating_imports`` id of the import (set once it is recorded)
        self.import_id: int | None = None

    def read_chunk(
        self, columns: ColumnarChunks, first: int, chunk, times: dict[int, list], seen: dict
    ) -> int:
        """Read one chunk of a parsed file (:meth:`ColumnarChunks.slices`); returns its rows.

        The chunk is read in columns: each distinct answer cell (a ``taskAnswers`` text, or
        a flattened layout's row of answers), each distinct row of inputs, and each slot's
        distinct (item, answer cells) is read once, however many rows share it. A row with
        no problem of its own (a time, the work time, unreadable answers, a blank id, a
        repeated assignment) whose slots all read as earlier rows' did (the same item and
        answer cells: :attr:`tails`, or an unused slot left unanswered) is written through
        those slots' answer rows (``temp.fast_tails``) without being made an
        :class:`AssignmentRow`. Every other row is read, in its place in the file's order,
        as :func:`_mturk_row` reads it."""
        parse, n = columns.columns, chunk.num_rows
        names = tuple(name for name, _ in parse.answers)
        if TASK_ANSWERS in names and names != (TASK_ANSWERS,):  # JSON beside other answers
            for j, row in enumerate(columns.rows(chunk)):
                _mturk_row(self, parse.assignment(first + j, row), seen)
            return n
        blank = [""] * n
        hit_ids, assignment_ids, worker_ids, statuses, rates = (
            list(map(str.strip, columns.column(chunk, i).to_pylist())) if i is not None else blank
            for i in parse.kept
        )
        # each row's own problems, which the record reader reports (:func:`_mturk_row`)
        problem = _blank_or_repeated(assignment_ids, worker_ids, hit_ids, seen)
        accepted, submitted = (
            _chunk_times(columns, chunk, i, times[i], problem) if i is not None else [None] * n
            for _, i in parse.times
        )
        works = _work_seconds(columns, chunk, problem)
        answers = self._file_answers(columns, names)
        answer_of = answers.answer_of[first - 2 : first - 2 + n]
        problem |= answers.unreadable[answer_of]
        slots = self._slots_read(columns, chunk, answers, answer_of)
        found = np.empty((n, len(slots)), dtype=np.int64)
        for k, (_, status, combo_of) in enumerate(slots):
            found[:, k] = np.array(status, dtype=np.int64)[combo_of]
        fast = ~problem & (found != UNREAD).all(axis=1)

        numbers, batch, tail_counts = self.numbers, self.batch, self.tail_counts
        constant = (self.survey.id, self.source, self.import_id, self.now)

        def written_through(start: int, end: int, tails: np.ndarray) -> None:
            """Register rows ``start:end`` and write them through ``tails`` (theirs)."""
            ids = assignment_ids[start:end]
            got = list(map(numbers.get, ids))
            fresh = [j for j, number in enumerate(got) if number is None]
            if len(fresh) == len(got):  # all new (the rows are of distinct assignments)
                got = list(range(self.next_number, self.next_number + len(got)))
                numbers.update(zip(ids, got, strict=True))
            else:
                for j, number in enumerate(range(self.next_number, self.next_number + len(fresh))):
                    got[fresh[j]] = numbers[ids[fresh[j]]] = number
            self.next_number += len(fresh)
            lines = range(first + start, first + end)
            survey_id, source, import_id, now = map(repeat, constant)
            batch.assignments.extend(
                zip(  # (see ASSIGNMENT_COLUMNS)
                    ids,
                    survey_id,
                    hit_ids[start:end],
                    worker_ids[start:end],
                    statuses[start:end],
                    accepted[start:end],
                    submitted[start:end],
                    works[start:end],
                    rates[start:end],
                    source,
                    lines,
                    import_id,
                    now,
                    got,
                    strict=False,  # the repeated ones repeat without end
                )
            )
            batch.fast.append(np.column_stack((got, lines, tails)))
            batch.fast_answers += sum(map(tail_counts.__getitem__, tails[tails >= 0].tolist()))
            seen.update(zip(ids, lines, strict=True))

        start, slow_rows = 0, {}
        candidates = np.flatnonzero(~fast).tolist()
        for at, q in enumerate([*candidates, n]):
            if q < n and not problem[q]:  # an earlier row of the chunk may have read its slots
                tails = [status[combo_of[q]] for _, status, combo_of in slots]
                if UNREAD not in tails:
                    found[q] = tails
                    continue
            if start < q:
                written_through(start, q, found[start:q])
            if q == n:
                break
            if q not in slow_rows:  # the cells of the next candidates, a block at a time
                block = candidates[at : at + SLOW_BLOCK]
                slow_rows = dict(zip(block, columns.rows(chunk, block), strict=True))
            _mturk_row(self, parse.assignment(first + q, slow_rows[q]), seen)
            for slot_keys, status, combo_of in slots:  # what it read, later rows read through
                if slot_keys[combo_of[q]] is not None:
                    status[combo_of[q]] = self._slot_tails(*slot_keys[combo_of[q]])
            start = q + 1
        return n

    def _file_answers(self, columns: ColumnarChunks, names: tuple[str, ...]) -> _FileAnswers:
        """The distinct answer cells of the parsed file, each read once for the whole file
        (:func:`_distinct_answers`), with the answer cells each slot reads in them."""
        read = self.file_answers
        if read is None:
            forms, form_names, answer_of = _distinct_answers(columns, names)
            shape_of = {names: k for k, names in enumerate(dict.fromkeys(form_names))}
            read = self.file_answers = _FileAnswers(
                forms=forms,
                form_names=form_names,
                answer_of=answer_of,
                shapes=np.array([shape_of[names] for names in form_names], dtype=np.int64),
                unreadable=np.array([names is None for names in form_names], dtype=bool),
                cells_of=self._slot_cells(forms, form_names) + 1,
            )
        return read

    def _slots_read(
        self, columns: ColumnarChunks, chunk, answers: _FileAnswers, answer_of: np.ndarray
    ) -> list[tuple[list[tuple | None], list[int], np.ndarray]]:
        """Per slot: the key in :attr:`tails` of each distinct (item, answer cells) among a
        chunk's rows (``answer_of``: which of the file's distinct answers each row has),
        with what the item names (``None``: unreadable answers); what each reads through
        (:meth:`_slot_tails`); and which of them each row has. Each slot is planned
        (:meth:`_slot_plan`) once per distinct (answer names, the slot's own inputs)."""
        parse, n = columns.columns, len(answer_of)
        forms, form_names = answers.forms, answers.form_names
        given = {name: columns.column(chunk, i) for name, i in parse.inputs}
        input_names = list(given)
        shapes, cells_of = answers.shapes[answer_of], answers.cells_of[answer_of]
        slots = []
        for k, slot in enumerate(self.mapping.slots):
            # a slot's plan by (answer names, the slot's own inputs): a HIT's other items,
            # and HITs showing the same item in the slot, share it
            own = [given[c] for c in self.slot_inputs[slot] if c in given]
            own_of, _ = equal_rows(own, n)
            _, own_first, own_plan = np.unique(
                shapes * (int(own_of.max(initial=0)) + 1) + own_of,
                return_index=True,
                return_inverse=True,
            )
            entries: list[tuple | None] = []
            for j in own_first.tolist():
                names = form_names[answer_of[j]]
                if names is None:  # unreadable answers: a problem of the row
                    entries.append(None)
                    continue
                row_inputs = {name: given[name][j].as_py() for name in input_names}
                entries.append(self._slot_plan(k, row_inputs, names))
            tokens = np.array([-1 if e is None else e[4] for e in entries], dtype=np.int64)
            _, combo_first, combo_of = np.unique(
                tokens[own_plan] * (len(forms) + 1) + cells_of[:, k],
                return_index=True,
                return_inverse=True,
            )
            slot_keys: list[tuple | None] = []
            for j in combo_first.tolist():
                entry = entries[own_plan[j]]
                if entry is None:
                    slot_keys.append(None)
                    continue
                _, named, _, names_read, token = entry
                slot_keys.append(((token, *map(forms[answer_of[j]].get, names_read)), named))
            status = [UNREAD if key is None else self._slot_tails(*key) for key in slot_keys]
            slots.append((slot_keys, status, combo_of))
        return slots

    def _slot_cells(self, forms: list, form_names: list) -> np.ndarray:
        """Per distinct answer (``forms``, with their answer names) and slot, a number for
        the answer cells the slot's fields read: equal cells, equal numbers (-1: unreadable
        answers). Read in columns (:func:`equal_rows`), a column per answer name read."""
        import pyarrow as pa

        cells_of = np.full((len(forms), len(self.mapping.slots)), -1, dtype=np.int64)
        by_names: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for u, names in enumerate(form_names):
            if names is not None:
                by_names[names].append(u)
        numbered = 0
        for names, these in by_names.items():
            _, read = self._read_names(names)
            every = [name for slot_names in read for name in slot_names]
            cells = zip(*[tuple(map(forms[u].get, every)) for u in these], strict=True)
            columns = [pa.array(column, type=pa.string()) for column in cells]
            at = 0
            for k, slot_names in enumerate(read):
                group, _ = equal_rows(columns[at : at + len(slot_names)], len(these))
                cells_of[these, k] = group + numbered
                at += len(slot_names)
            numbered += len(these)
        return cells_of

    def _slot_tails(self, key: tuple, named: tuple) -> int:
        """A slot's answer rows (a key of :attr:`tails`) by their number in
        ``temp.fast_tails``; :data:`UNUSED` or :data:`UNREAD`."""
        number = self.tail_numbers.get(key)
        if number is not None:
            return number
        if named[0] == "unused" and not self.unused_answered.get(key, True):
            return UNUSED
        return UNREAD

    def _number_tail(self, key: tuple, tail: list[tuple]) -> None:
        """Give a slot's answer rows after assignment and line (:attr:`tails`) their
        number in ``temp.fast_tails``."""
        number = self.tail_numbers[key] = len(self.tail_counts)
        self.tail_counts.append(len(tail))
        self.fast_tails += [(number, *answer) for answer in tail]

    def number_rows(self, store: Store) -> None:
        """Read the integers answers are written with: the assignments' ids, the subjects',
        and the ``rating_names`` ids of the questions, the file and the import's time (added
        when new). Call inside the import's transaction."""
        self.store = store
        conn = store.conn
        self.numbers = dict(conn.execute("SELECT assignment_id, id FROM assignments"))
        self.stored = set(self.numbers)
        self.next_number = 1 + (conn.execute("SELECT MAX(id) FROM assignments").fetchone()[0] or 0)
        self.subjects = {
            tuple(row[1:]): row[0]
            for row in conn.execute(
                "SELECT id, item_id, original_id, candidate_id, is_check FROM rating_subjects"
            )
        }
        names = [q.id for q in self.survey.questions] + [self.source, self.now]
        conn.executemany(
            "INSERT OR IGNORE INTO rating_names (name) VALUES (?)", [(n,) for n in names]
        )
        ids = {
            name: conn.execute("SELECT id FROM rating_names WHERE name = ?", (name,)).fetchone()[0]
            for name in names
        }
        self.question_ids = {q.id: ids[q.id] for q in self.survey.questions}
        self.file_id, self.time_id = ids[self.source], ids[self.now]

    def subject(self, resolved: Resolved) -> int:
        """``resolved``'s ``rating_subjects`` id (a new row the first time it is answered)."""
        key = (
            resolved.item_id,
            resolved.original_id,
            resolved.candidate_id,
            int(resolved.is_check),
        )
        subject = self.subjects.get(key)
        if subject is None:
            assert self.store is not None, "number_rows first"
            cursor = self.store.conn.execute(
                "INSERT INTO rating_subjects (item_id, original_id, candidate_id, is_check) "
                "VALUES (?, ?, ?, ?)",
                key,
            )
            subject = self.subjects[key] = int(cursor.lastrowid)
        resolved.subject = subject
        return subject

    def _gold(self) -> dict[tuple[str, str | None], dict[str, tuple[float | None, float | None]]]:
        gold: dict[tuple[str, str | None], dict] = defaultdict(dict)
        for check in self.mapping.checks:
            resolved, reason = self.index.resolve(
                check.original, check.candidate, self.survey.subject
            )
            if resolved is None:
                raise ConfigError(f"gold item {check.original!r}/{check.candidate!r}: {reason}")
            key = (resolved.original_id, resolved.candidate_id)
            gold[key][check.question] = (check.min, check.max)
        return gold

    def fail(self, line: int, column: str, value: str, reason: str, **extra: object) -> None:
        item = f"{self.source}:{line}:{column}"
        label = f"{self.path.name} line {line}, {column}"
        detail = {"label": label, "file": self.source, "line": line, "column": column}
        detail |= {"value": value[:500], **extra}
        self.batch.failures.append((item, reason, detail))

    def assignment(self, row: AssignmentRow) -> None:
        self.batch.assignments.append(
            (
                row.assignment_id,
                self.survey.id,
                row.hit_id,
                row.worker_id,
                row.status,
                row.accept_time,
                row.submit_time,
                row.work_seconds,
                row.approval_rate,
                self.source,
                row.line,
                self.import_id,
                self.now,
                self.number,
            )
        )

    def items(self, row: AssignmentRow, *, absent_is_blank: bool) -> None:
        """Read the row's items, then register its assignment unless every item it answered
        names no image of the study (those answers are in ``ratings_unmatched`` only, so a
        corrected import later registers the assignment as new)."""
        self.matched = False
        unmatched_before = len(self.batch.unmatched)
        number = self.numbers.get(row.assignment_id)
        self.number = self.next_number if number is None else number
        self._items(row, absent_is_blank)
        if self.matched or len(self.batch.unmatched) == unmatched_before:
            self.assignment(row)
            if number is None:
                self.numbers[row.assignment_id] = self.number
                self.next_number += 1
        else:
            self.unregistered += 1

    def _items(self, row: AssignmentRow, absent_is_blank: bool) -> None:
        for column, value, reason in row.problems:
            self.fail(row.line, column, value, reason, assignment=row.assignment_id)
        if any(column == f"Answer.{TASK_ANSWERS}" for column, _, _ in row.problems):
            return  # its answers are unreadable: one failure says so, not one per question
        names = tuple(row.answers)
        inputs = row.inputs_key
        if inputs is None:
            inputs = tuple(row.inputs.items())
        plan = self.plans.get((names, inputs))
        if plan is None:
            plan = self.plans[(names, inputs)] = self._plan(row.inputs, names)
        head = (self.number, row.line)
        cell = row.answers.get
        tails, ratings = self.tails, self.batch.ratings
        for slot, named, form, cell_names, token in plan:
            # a slot's answers as the last row with the same item and the same cells read
            # them (a HIT's rows share their items; a scale's cells take few values)
            key = (token, *map(cell, cell_names))
            tail = tails.get(key)
            if tail is None:
                self._item(row, slot, absent_is_blank, named, form, key)
            else:
                self.matched = True
                ratings.extend([head + answer for answer in tail])

    def _plan(self, inputs: dict[str, str], names: tuple[str, ...]) -> list[tuple]:
        """Per slot, for rows with these answer names and inputs, :meth:`_slot_plan`."""
        return [self._slot_plan(k, inputs, names) for k in range(len(self.mapping.slots))]

    def _slot_plan(self, k: int, inputs: dict[str, str], names: tuple[str, ...]) -> tuple:
        """For the ``k``-th slot of rows with these answer names and inputs: the slot, what
        its inputs name (:meth:`_named`), the form, the answer names its fields read, and a
        number that stands for all of these in :attr:`outcomes`' and :attr:`tails`' keys
        (the same for every row whose slot names the same item and reads the same answer
        names)."""
        form = self._form(names)
        number, read = self._read_names(names)
        slot, cell_names = self.mapping.slots[k], read[k]
        # what the slot names depends on its own inputs only (a HIT's other items aside)
        named_by = (slot, *map(inputs.get, self.slot_inputs[slot]))
        named = self.slots.get(named_by)
        if named is None:
            named = self.slots[named_by] = self._named(inputs, slot)
        token = self.tokens.get((number, named_by))
        if token is None:
            content = (slot, tuple(cell_names), _named_key(named))
            token = self.tokens[(number, named_by)] = self.contents.setdefault(
                content, len(self.contents)
            )
        return (slot, named, form, cell_names, token)

    def _form(self, names: tuple[str, ...]) -> FormNames:
        """Where each field's answer is among these answer names (made once per names)."""
        form = self.forms.get(names)
        if form is None:
            form = self.forms[names] = FormNames(names)
        return form

    def _read_names(self, names: tuple[str, ...]) -> tuple[int, list[list[str]]]:
        """A number for these answer names, and per slot the answer names its fields read
        among them (worked out once per names)."""
        read = self.read_names.get(names)
        if read is None:
            form = self._form(names)
            slots = [
                [cell for _, name, _ in self.fields[slot] for cell in form.cell_names(name)]
                for slot in self.mapping.slots
            ]
            read = self.read_names[names] = (len(self.read_names), slots)
        return read

    def _item(
        self,
        row: AssignmentRow,
        slot: str,
        absent_is_blank: bool,
        named: tuple,
        form: FormNames,
        key: tuple,
    ) -> None:
        kind, references, resolved, reason = named
        if kind == "unused":
            answered = self.unused_answered[key] = self._answered(row, slot, form)
            if answered:
                self._unmatched(row, slot, references, reason)
            return  # an unused slot
        if resolved is None:
            self._unmatched(row, slot, references, reason)
            return
        self.matched = True
        fields = self.fields[slot]
        outcomes = self.outcomes.get(key)
        if outcomes is None:
            outcomes = self.outcomes[key] = self._outcomes(
                row, resolved, fields, form, absent_is_blank
            )
        if self.seen_ratings is None and all(o[3] is None for o in outcomes):
            tail = self.tails[key] = [
                self._tail(slot, question_id, resolved, answer, passed)
                for question_id, answer, passed, _, _ in outcomes
            ]
            self._number_tail(key, tail)
            head = (self.number, row.line)
            self.batch.ratings.extend([head + answer for answer in tail])
            return
        line, assignment_id = row.line, row.assignment_id
        for question_id, answer, passed, failure, column in outcomes:
            if failure is not None:
                self.fail(line, *failure, assignment=assignment_id)
                if answer is not None:  # a blank or unreadable answer fails a check
                    self._rating(row, slot, question_id, resolved, answer, 0)
                continue
            if self.seen_ratings is not None:
                seen = (assignment_id, slot, question_id)
                if seen in self.seen_ratings:
                    first = self.seen_ratings[seen]
                    reason = f"duplicated answer (first on line {first})"
                    self.fail(line, column, answer.raw, reason)
                    continue
                self.seen_ratings[seen] = line
            self._rating(row, slot, question_id, resolved, answer, passed)

    def _outcomes(
        self, row: AssignmentRow, resolved: Resolved, fields: list, form: FormNames, absent: bool
    ) -> list[tuple[str, Answer | None, int | None, tuple[str, str, str] | None, str]]:
        """What a slot's answers in ``row`` are, question by question: (question id, the
        answer to record or ``None``, whether it passed a check, the failure (column, value,
        reason) or ``None``, the answer's column). The same for every row with the same
        item and cells."""
        outcomes = []
        for question, name, values in fields:
            check = resolved.is_check and question.id in resolved.bounds
            column = f"Answer.{name}"
            answer = self._answer(question, row.answers, name, values, form)
            if isinstance(answer, AnswerError):
                missing = Answer(None, None, answer.raw) if check else None
                failure = (answer.column, answer.raw, answer.reason)
                outcomes.append((question.id, missing, 0, failure, column))
            elif answer is None:
                if absent:
                    missing = Answer(None, None, "") if check else None
                    failure = (column, "", "no answer (field missing)")
                    outcomes.append((question.id, missing, 0, failure, column))
            else:
                passed = None
                if check and answer.value is not None:
                    low, high = resolved.bounds[question.id]
                    passed = int(
                        (low is None or answer.value >= low)
                        and (high is None or answer.value <= high)
                    )
                outcomes.append((question.id, answer, passed, None, column))
        return outcomes

    def _answer(
        self,
        question: Question,
        answers: dict[str, str],
        name: str,
        values: dict[str, float | str],
        form: FormNames,
    ) -> Answer | AnswerError | None:
        """:func:`read_answer`, or its error; equal cells of a field (in forms of the same
        names) read once."""
        key = (form, question.id, name, form.cells(answers, name))
        if key not in self.answers:
            try:
                entries = form.entries(answers, name)
                self.answers[key] = read_answer(question, answers, name, values, entries)
            except AnswerError as exc:
                self.answers[key] = exc
        return self.answers[key]

    def _named(
        self, inputs: dict[str, str], slot: str
    ) -> tuple[str, tuple[str | None, str | None], Resolved | None, str]:
        """What a row's inputs name in ``slot``: (``"unused"`` or ``"item"``, the
        references, the resolved pair or ``None``, why not). The same for every row with
        the same inputs."""
        mapping = self.mapping
        if mapping.item_id:
            item_id = inputs.get(mapping.column(mapping.item_id, slot), "").strip()
            if not item_id:
                return "unused", (None, None), None, "no image named"
            resolved = self.index.items.get(item_id)
            references: tuple[str | None, str | None] = (None, item_id)
            reason = "" if resolved else f"item id {item_id!r} was not made for this study"
        else:
            original_ref, problem = mapping.reference(inputs, mapping.original, slot)
            candidate_ref, candidate_problem = mapping.reference(inputs, mapping.candidate, slot)
            method_ref, method_problem = mapping.reference(inputs, mapping.method, slot)
            point_ref, point_problem = mapping.reference(inputs, mapping.operating_point, slot)
            problem = problem or candidate_problem or method_problem or point_problem
            references = (original_ref or None, candidate_ref or None)
            if problem or not (original_ref or candidate_ref or method_ref):
                return "unused", references, None, problem or "no image named"
            named = mapping.items.get(candidate_ref) if candidate_ref else None
            if named is not None:
                resolved, reason = self.index.resolve_named(named.original or original_ref, named)
            elif method_ref:
                item = NamedItem(method=method_ref, operating_point=point_ref or None)
                resolved, reason = self.index.resolve_named(original_ref, item)
            else:
                resolved, reason = self.index.resolve(*references, self.survey.subject)
            if resolved is None and reason.endswith("is not in the study"):
                side = "original" if reason.startswith("original") else "candidate"
                reference = original_ref if side == "original" else candidate_ref
                reason += list_hint(reference, getattr(mapping, side))
            if resolved is not None:
                bounds = self.gold.get((resolved.original_id, resolved.candidate_id))
                if bounds:
                    resolved.is_check, resolved.bounds = True, bounds
                elif resolved.candidate_id is None:
                    resolved, reason = None, "an image compared with itself is not a gold item"
        return "item", references, resolved, reason

    def _answered(self, row: AssignmentRow, slot: str, form: FormNames) -> bool:
        """Whether any of the slot's answer fields holds an answer (text or a chosen option)."""
        for _, name, _ in self.fields[slot]:
            direct, chosen, _ = answer_parts(row.answers, name, form.entries(row.answers, name))
            if chosen or (direct and direct.strip()):
                return True
        return False

    def _unmatched(
        self,
        row: AssignmentRow,
        slot: str,
        references: tuple[str | None, str | None],
        reason: str,
    ) -> None:
        answers = {
            k: v
            for k, v in row.answers.items()
            if not self.mapping.item_id or k.startswith(f"item{slot}__")
        }
        self.batch.unmatched.append(
            (
                row.assignment_id,
                slot,
                self.survey.id,
                row.worker_id,
                references[0],
                references[1],
                reason,
                to_json(answers),
                self.source,
                row.line,
                self.now,
            )
        )

    def _rating(
        self,
        row: AssignmentRow,
        slot: str,
        question_id: str,
        resolved: Resolved,
        answer: Answer,
        passed: int | None,
    ) -> None:
        self.batch.ratings.append(
            (self.number, row.line, *self._tail(slot, question_id, resolved, answer, passed))
        )

    def _tail(
        self,
        slot: str,
        question_id: str,
        resolved: Resolved,
        answer: Answer,
        passed: int | None,
    ) -> tuple:
        """An answer's row after its assignment and line (see :data:`ANSWER_COLUMNS`)."""
        return (
            slot,
            self.question_ids[question_id],
            resolved.subject or self.subject(resolved),
            passed,
            answer.value,
            answer.text,
            answer.raw,
            self.file_id,
            self.time_id,
        )


#: a slot's tails in :meth:`_Reader.read_chunk`: not read yet; an unused slot, unanswered
UNREAD, UNUSED = -1, -2
#: rows :meth:`_Reader.read_chunk` may read as :func:`_mturk_row` does, made Python strings
#: at a time (in a file's first chunk every row may, but most are written through once the
#: first rows of each item and cells are read)
SLOW_BLOCK = 256


def _named_key(named: tuple) -> tuple:
    """What a slot's answer rows depend on in what its inputs name (:meth:`_Reader._named`):
    the item, its pair and its check, or why it names none."""
    kind, references, resolved, reason = named
    if resolved is None:
        return (kind, references, reason)
    bounds = tuple(sorted(resolved.bounds.items()))
    return (
        kind,
        resolved.item_id,
        resolved.original_id,
        resolved.candidate_id,
        resolved.is_check,
        bounds,
    )


def _blank_or_repeated(
    assignment_ids: list[str], worker_ids: list[str], hit_ids: list[str], seen: dict
) -> np.ndarray:
    """Which rows lack an assignment, worker or HIT id, or repeat an assignment of an earlier
    row (of the file: ``seen``, or of these rows): problems :func:`_mturk_row` reports."""
    rows = len(assignment_ids)
    complete = zip(assignment_ids, worker_ids, hit_ids, strict=True)
    problem = ~np.fromiter(map(all, complete), dtype=bool, count=rows)
    problem |= np.fromiter(map(seen.__contains__, assignment_ids), dtype=bool, count=rows)
    kept = list(compress(assignment_ids, (~problem).tolist()))
    if len(set(kept)) < len(kept):  # an assignment twice among these rows: the later ones
        earlier: set[str] = set()
        for j in np.flatnonzero(~problem).tolist():
            if assignment_ids[j] in earlier:
                problem[j] = True
            earlier.add(assignment_ids[j])
    return problem


def _chunk_times(
    columns: ColumnarChunks, chunk, i: int, times: list[str | None], problem: np.ndarray
) -> list[str | None]:
    """Time column ``i`` of a chunk as ISO-8601 UTC: the usual times decoded in columns
    (``times``), any other cell as the record reader reads it (:meth:`_Columns.time`); a
    time that cannot be read is a problem of its row."""
    unusual = [j for j, iso in enumerate(times) if iso is None]
    if unusual:
        cells = columns.column(chunk, i).take(unusual).to_pylist()
        for j, cell in zip(unusual, cells, strict=True):
            times[j], why = columns.columns.time(cell.strip())
            problem[j] |= bool(why)
    return times


def _work_seconds(columns: ColumnarChunks, chunk, problem: np.ndarray) -> list[float | None]:
    """A chunk's work times in seconds, each distinct cell read once; a cell that is not a
    number is a problem of its row."""
    import pyarrow.compute as pc

    parse = columns.columns
    if parse.work is None:
        return [None] * len(problem)
    coded = pc.dictionary_encode(columns.column(chunk, parse.work))
    read = [
        parse.seconds(work) if work else None
        for work in (cell.strip() for cell in coded.dictionary.to_pylist())
    ]
    read_as = coded.indices.to_numpy()
    problem |= np.array([type(r) is str for r in read], dtype=bool)[read_as]
    return np.array(read, dtype=object)[read_as].tolist()


def _distinct_answers(
    columns: ColumnarChunks, names: tuple[str, ...]
) -> tuple[list[dict[str, str] | str], list[tuple[str, ...] | None], np.ndarray]:
    """A parsed file's distinct answer cells, each read once: their flattened answers (or
    why a ``taskAnswers`` text is not JSON), their answer names (``None``: unreadable), and
    which of them each row has."""
    import pyarrow.compute as pc

    parse, table = columns.columns, columns.table
    if names == (TASK_ANSWERS,):  # the default layout: a form's answers in JSON
        coded = pc.dictionary_encode(columns.column(table, parse.answers[0][1]))
        forms = [
            parse.form(text) if text else {}
            for text in (cell.strip() for cell in coded.dictionary.to_pylist())
        ]
        shapes = [tuple(form) if type(form) is not str else None for form in forms]
        return forms, shapes, coded.indices.to_numpy()
    # the flattened layout: a column per answer name
    answered = [columns.column(table, i) for _, i in parse.answers]
    answer_of, firsts = equal_rows(answered, table.num_rows)
    cells = zip(*[column.take(firsts).to_pylist() for column in answered], strict=True)
    return [dict(zip(names, row, strict=True)) for row in cells], [names] * len(firsts), answer_of


def _read_each(
    handle: Callable[[_Reader, object, dict], None], reader: _Reader, rows: Iterable, seen: dict
) -> Iterator[int]:
    """Read ``rows`` with ``handle`` one at a time; yields the rows read at each step (1)."""
    for row in rows:
        handle(reader, row, seen)
        yield 1


def _mturk_row(reader: _Reader, row: AssignmentRow | tuple[int, str], seen: dict) -> None:
    if isinstance(row, tuple):
        reader.fail(row[0], "row", "", row[1])
        return
    required = {"AssignmentId": row.assignment_id, "WorkerId": row.worker_id, "HITId": row.hit_id}
    missing = [name for name, value in required.items() if not value]
    if missing:
        reader.fail(row.line, missing[0], "", f"blank {', '.join(missing)}")
        return
    if row.assignment_id in seen:
        reader.fail(
            row.line,
            "AssignmentId",
            row.assignment_id,
            f"duplicated assignment (first on line {seen[row.assignment_id]}); row skipped",
        )
        return
    seen[row.assignment_id] = row.line
    reader.items(row, absent_is_blank=True)


def _long_row(reader: _Reader, row: AssignmentRow | tuple[int, str], seen: dict) -> None:
    if isinstance(row, tuple):
        reader.fail(row[0], "row", "", row[1])
        return
    question = next(iter(row.answers))
    if question not in {q.id for q in reader.survey.questions}:
        reader.fail(
            row.line,
            "question",
            question,
            f"survey {reader.survey.id} has no question {question!r}",
        )
        return
    reader.items(row, absent_is_blank=False)


def _long_rows(path: Path, survey: SurveyDefinition) -> Iterator[AssignmentRow | tuple[int, str]]:
    """Long-format rows as one-answer assignments keyed by (file, rater, original,
    candidate): a second file's answer to the same question is a later answer, which the
    duplicate rule excludes, not a replacement of the first."""
    source = str(Path(path).resolve())
    encoding = csv_encoding(path)
    with open_csv(path, encoding) as handle:
        records = csv_records(handle)
        first = next(records, None)
        if isinstance(first, CsvProblem):
            raise ConfigError(f"{path}:{first.line}: the header cannot be read: {first.reason}")
        header = [h.strip().lower() for h in (first.cells if first else [])]
        missing = [c for c in LONG_COLUMNS if c not in header]
        if missing:
            raise ConfigError(
                f"{path}: a long-format ratings CSV needs columns {', '.join(LONG_COLUMNS)}; "
                f"missing {', '.join(missing)}; "
                + (delimiter_hint(header) or f"found {', '.join(header) or 'none'}")
            )
        at = {name: header.index(name) for name in LONG_COLUMNS}
        for record in records:
            if isinstance(record, CsvProblem):
                yield (record.line, record.reason)
                continue
            cells, line = record.cells, record.line
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                yield (line, f"row has {len(cells)} fields, the header has {len(header)}")
                continue
            rater, original, candidate, question, value = (cells[at[c]].strip() for c in at)
            if not rater:
                yield (line, "blank rater")
                continue
            yield AssignmentRow(
                line=line,
                hit_id="long-format",
                assignment_id="long:" + content_key(survey.id, source, rater, original, candidate),
                worker_id=rater,
                status="Approved",
                accept_time=None,
                submit_time=None,
                work_seconds=None,
                approval_rate="",
                inputs={"original": original, "candidate": candidate},
                answers={question: value},
            )


# ---- writing, quality control, scores ------------------------------------------------


def register_survey(store: Store, survey: SurveyDefinition) -> None:
    """Record a survey's definition so reads know its questions (call in a transaction)."""
    store.upsert(
        "surveys",
        {
            "id": survey.id,
            "definition": to_json(survey.model_dump(mode="json", exclude={"source"})),
            "created_at": utc_now(),
        },
        key=("id",),
    )


def import_ratings(
    store: Store,
    path: Path,
    survey: SurveyDefinition,
    *,
    mapping: Path | None = None,
    format: str = "mturk",
    min_work_seconds: float | None = None,
    include_rejected: bool | None = None,
    progress: bool = False,
) -> ImportSummary:
    """Import one results file into the study store; see the module docstring.

    ``min_work_seconds`` and ``include_rejected`` left ``None`` keep the survey's stored
    quality-control options (at first: no work-time rule, rejected assignments excluded).
    ``progress`` shows the rows read and the step under way on stderr once the import has
    taken :data:`PROGRESS_AFTER` seconds (a batch of 200,000 assignments takes seconds to
    parse, read, check and score; a file refused at once prints only why).
    """
    from tqdm.auto import tqdm

    bar = tqdm(desc="ratings import", unit=" rows", disable=not progress, delay=PROGRESS_AFTER)
    with bar:
        return _import_ratings(
            store,
            Path(path),
            survey,
            mapping=mapping,
            format=format,
            min_work_seconds=min_work_seconds,
            include_rejected=include_rejected,
            bar=bar,
        )


#: seconds an import runs before its progress is shown
PROGRESS_AFTER = 1.0


def _step(bar, what: str) -> None:
    """Name the step under way on ``bar``; shown now once the bar shows (after
    :data:`PROGRESS_AFTER`), else with the bar when it first shows."""
    shown = not bar.disable and bar.format_dict["elapsed"] >= PROGRESS_AFTER
    bar.set_postfix_str(what, refresh=shown)


def _import_ratings(
    store: Store,
    path: Path,
    survey: SurveyDefinition,
    *,
    mapping: Path | None,
    format: str,
    min_work_seconds: float | None,
    include_rejected: bool | None,
    bar,
) -> ImportSummary:
    """:func:`import_ratings`, its progress on ``bar`` (tqdm)."""
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if not path.is_file():
        raise ConfigError(f"no ratings file at {path}")
    index = StudyIndex(store, survey)
    now = utc_now()
    summary = ImportSummary(file=str(path), survey=survey.id, format=format, encoding="")
    if format == "mturk":
        batch = read_batch_results(path)
        summary.encoding, summary.unknown_columns = batch.encoding, batch.unknown_columns
        chosen = load_mapping(mapping, survey) if mapping else None
        chosen = chosen or generated_mapping(batch.input_columns) or default_mapping(survey)
        _check_columns(chosen, batch.input_columns, path)
        _check_answer_columns(chosen, survey, batch.answer_columns, path)
        reader = _Reader(path, survey, index, chosen, now)
        rows, handle = batch.rows, _mturk_row
        _step(bar, "parsing")
        chunks = batch.chunks()
        if chunks is not None:
            bar.total = chunks.table.num_rows
    else:
        summary.encoding = csv_encoding(path)
        chosen = load_mapping(mapping, survey) if mapping else Mapping()
        # the long format's own columns; a mapping file contributes its gold items
        long_columns = {"original": "original", "candidate": "candidate", "questions": {}}
        reader = _Reader(path, survey, index, chosen.model_copy(update=long_columns), now)
        reader.seen_ratings = {}
        rows, handle = _long_rows(path, survey), _long_row
        chunks = None
    source = reader.source
    stored = quality_control_options(store, survey.id)
    given = {"min_work_seconds": min_work_seconds, "include_rejected": include_rejected}
    options = {k: stored[k] if v is None else v for k, v in given.items()}
    if options["min_work_seconds"] is not None and options["min_work_seconds"] <= 0:
        options["min_work_seconds"] = None  # 0 turns the rule off
    summary.options = options
    if store.get_info(_options_key(survey.id)) is not None and options != stored:
        summary.options_changed = "; ".join(
            f"{k} {stored[k]} → {options[k]}" for k in options if options[k] != stored[k]
        )
    # a file parsed in columns was hashed as it was scanned
    sha256 = chunks.sha256 if chunks is not None else file_sha256(path, "ratings file")
    before = store.count("answers")
    slots = len(reader.mapping.slots)
    with foreign_keys_unchecked(store), store.transaction(), fast_tables(store, slots):
        register_survey(store, survey)
        cursor = store.conn.execute(
            "INSERT INTO rating_imports (survey, file, sha256, format, options, summary, "
            "imported_at) VALUES (?, ?, ?, ?, ?, '{}', ?)",
            (survey.id, source, sha256, format, to_json(options), now),
        )
        import_id = reader.import_id = int(cursor.lastrowid)
        reader.number_rows(store)
        # a survey with nothing stored yet holds only this import's answers after it: what
        # the import writes is kept as columns for quality control
        kept = _Written() if _survey_is_empty(store, survey.id, reader.next_number) else None
        # this file's earlier failures and unmatched answers are replaced by what it holds now
        # (an answer whose candidate the study has since gained is matched this time)
        store.conn.execute(
            "DELETE FROM failures WHERE stage = ? AND substr(item, 1, ?) = ?",
            (STAGE, len(source) + 1, source + ":"),
        )
        store.conn.execute("DELETE FROM ratings_unmatched WHERE source_file = ?", (source,))
        seen: dict[str, int] = {}
        counted: set[str] = set()
        # a file of more answers than one write, into a table of at most as many rows: its
        # indexes are built once afterwards (None: not decided yet)
        rebuilt: list[str] | None = None
        if chunks is not None:  # the file parsed whole: read a chunk of rows at a time
            steps = (
                reader.read_chunk(chunks, first, chunk, times, seen)
                for first, chunk, times in chunks.slices()
            )
        else:
            steps = _read_each(handle, reader, rows, seen)
        _step(bar, "reading rows")
        for read in steps:
            summary.rows += read
            bar.update(read)
            if reader.batch.answers() >= FLUSH_ANSWERS:
                if rebuilt is None:
                    big = before <= FLUSH_ANSWERS
                    rebuilt = (
                        [
                            sql
                            for table in ANSWER_TABLES
                            for sql in _drop_secondary_indexes(store, table)
                        ]
                        if big
                        else []
                    )
                _flush(store, reader, summary, counted, kept)
        _flush(store, reader, summary, counted, kept)
        for sql in rebuilt or []:
            store.conn.execute(sql)
        summary.assignments_unmatched = reader.unregistered
        store.set_info(_options_key(survey.id), options)
        _step(bar, "quality control")
        answers = apply_quality_control(
            store,
            survey.id,
            **options,
            answers=kept.survey_answers(store, reader.tail_counts, options["min_work_seconds"])
            if kept is not None
            else None,
        )
        _step(bar, "human scores")
        summary.scores_written = write_human_scores(store, survey, answers)
        summary.ratings_new = store.count("answers") - before
        _step(bar, "summary")
        _file_counts(store, source, summary, answers)
        store.conn.execute(
            "UPDATE rating_imports SET summary = ? WHERE id = ?",
            (to_json(vars(summary)), import_id),
        )
    return summary


@contextmanager
def foreign_keys_unchecked(store: Store) -> Iterator[None]:
    """SQLite's foreign-key checks off while an import writes (outside its transaction:
    the pragma is ignored inside one), on again afterwards whatever happens.

    An import refers only to rows it read from the store or wrote before (the survey, its
    items, originals and candidates from :class:`StudyIndex`; each answer's assignment is
    written before the answer), and one writer holds the study meanwhile, so the checks
    find nothing; made per answer they were about a fifth of the time spent writing them.
    """
    store.conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        store.conn.execute("PRAGMA foreign_keys = ON")


def _drop_secondary_indexes(store: Store, table: str) -> list[str]:
    """Drop ``table``'s secondary indexes; returns the statements that build them again.

    For a large import into a table that held few rows: building an index once after the
    inserts sorts its keys in one go, where keeping it up to date costs a B-tree descent
    per row. Done inside the import's transaction, so an import that fails or is killed
    leaves the indexes as they were.
    """
    rows = store.conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL",
        (table,),
    ).fetchall()
    for name, _ in rows:
        store.conn.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in rows]


#: ``temp.fast_tails``: a slot's answer rows after their assignment and line, by number
FAST_TAILS = ("tails", *ANSWER_COLUMNS[2:])


@contextmanager
def fast_tables(store: Store, slots: int) -> Iterator[None]:
    """The temporary tables :meth:`_Reader.read_chunk` writes answers through (no column
    affinity: values reach ``answers`` as bound): ``fast_rows`` holds a row per
    assignment, with a column per slot (``tails0``...) that numbers its answer rows in
    ``fast_tails`` (one bound row per assignment, not per slot, is about four times
    cheaper to write)."""
    conn = store.conn
    for table in ("fast_rows", "fast_tails"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    columns = ", ".join(f"tails{k}" for k in range(slots))
    conn.execute(f"CREATE TEMP TABLE fast_rows (assignment, source_line, {columns})")
    conn.execute(f"CREATE TEMP TABLE fast_tails ({', '.join(FAST_TAILS)})")
    # every column in the index: a row's answer rows are read from it alone (a tenth less
    # time than the index and the table, a million answers)
    conn.execute(f"CREATE INDEX temp.fast_tails_by_number ON fast_tails ({', '.join(FAST_TAILS)})")
    try:
        yield
    finally:
        for table in ("fast_rows", "fast_tails"):
            conn.execute(f"DROP TABLE IF EXISTS temp.{table}")


#: answers held in memory before they are written (all in the import's one transaction)
FLUSH_ANSWERS = 20_000
#: the tables an import writes a row to per assignment and per answer
ANSWER_TABLES = ("assignments", "answers")
#: an assignment's upsert: its ``id`` and first import time stay
ASSIGNMENT_UPSERT = (
    f"INSERT INTO assignments ({', '.join(ASSIGNMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ASSIGNMENT_COLUMNS)}) "
    "ON CONFLICT (assignment_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ASSIGNMENT_COLUMNS[1:-2])
)
#: the quality-control options a survey starts with
DEFAULT_OPTIONS: dict[str, object] = {"min_work_seconds": None, "include_rejected": False}


def _options_key(survey_id: str) -> str:
    return f"surveys.{survey_id}.quality_control"


def quality_control_options(store: Store, survey_id: str) -> dict[str, object]:
    """The survey's quality-control options (those of its imports so far)."""
    return DEFAULT_OPTIONS | (store.get_info(_options_key(survey_id)) or {})


def _flush(
    store: Store,
    reader: _Reader,
    summary: ImportSummary,
    counted: set[str],
    kept: _Written | None = None,
) -> None:
    """Write what the reader has collected; count new, updated and unchanged assignments.
    ``kept``: where what is written is kept as columns too."""
    written, reader.batch = reader.batch, _Batch()
    # an assignment's last row (the long format's rows of one assignment share it)
    assignments = dict(
        zip(map(itemgetter(0), written.assignments), written.assignments, strict=True)
    )
    fresh = [a for a in assignments if a not in counted]
    existing = _existing_statuses(store, [a for a in fresh if a in reader.stored])
    moved = sorted(a for a, (_, survey) in existing.items() if survey != reader.survey.id)
    if moved:
        earlier = existing[moved[0]][1]
        raise ConfigError(
            f"{reader.path}: assignment {moved[0]}"
            + (f" (and {len(moved) - 1} more)" if len(moved) > 1 else "")
            + f" was imported for survey {earlier}, not {reader.survey.id}; "
            f"import this file with --survey {earlier} (nothing was imported)"
        )
    summary.assignments_new += len(fresh) - len(existing)
    for assignment_id, (status, _) in existing.items():
        if status != assignments[assignment_id][4]:
            summary.assignments_updated += 1
        else:
            summary.assignments_unchanged += 1
    counted.update(fresh)
    if kept is not None:
        kept.add(assignments.values(), written.ratings, written.fast, reader.fast_tails)
    store.conn.executemany(ASSIGNMENT_UPSERT, assignments.values())
    store.upsert_many("answers", ANSWER_COLUMNS, written.ratings, key=ANSWER_KEY)
    if reader.fast_tails:
        store.conn.executemany(
            f"INSERT INTO temp.fast_tails VALUES ({', '.join('?' * len(FAST_TAILS))})",
            reader.fast_tails,
        )
        reader.fast_tails = []
    if written.fast:
        slots = len(reader.mapping.slots)
        # (an unused slot's UNUSED numbers no answer rows: it joins none below)
        store.conn.executemany(
            f"INSERT INTO temp.fast_rows VALUES ({', '.join('?' * (2 + slots))})",
            np.concatenate(written.fast).tolist(),
        )
        # row by row, each row's slots in order (as the rows are read): the answers go in
        # the order of their key, about a third cheaper than slot by slot
        slot_tails = " ".join(f"WHEN {k} THEN r.tails{k}" for k in range(slots))
        store.upsert_select(
            "answers",
            ANSWER_COLUMNS,
            "SELECT r.assignment, r.source_line, "
            + ", ".join(f"t.{c}" for c in ANSWER_COLUMNS[2:])
            + f" FROM temp.fast_rows r CROSS JOIN json_each(?) s CROSS JOIN temp.fast_tails t"
            f" ON t.tails = CASE s.value {slot_tails} END",
            (json.dumps(list(range(slots))),),
            key=ANSWER_KEY,
        )
        store.conn.execute("DELETE FROM temp.fast_rows")
    store.upsert_many(
        "ratings_unmatched",
        UNMATCHED_COLUMNS,
        written.unmatched,
        key=("source_file", "source_line", "item"),
    )
    for item, reason, detail in written.failures:
        store.record_failure(STAGE, item, reason, retryable=False, run_id=None, detail=detail)
    summary.add("failed", [(d["label"], reason) for _, reason, d in written.failures])
    summary.add(
        "unmatched",
        [
            (f"{reader.path.name} line {u[9]}" + (f", item {u[1]}" if u[1] else ""), u[6])
            for u in written.unmatched
        ],
    )


#: the columns of an assignment's row :class:`_Written` keeps, by their place
_KEPT_COLUMNS = tuple(
    ASSIGNMENT_COLUMNS.index(c)
    for c in ("id", "assignment_id", "worker_id", "status", "submit_time", "work_seconds")
)


class _Written:
    """What an import into a survey that held no answer writes, kept as columns: the
    survey's answers are then these alone, as the upserts leave them (the last write of
    an assignment stands; an answer's key is written once). Quality control takes them
    (:meth:`survey_answers`) instead of reading every answer back from the store (a
    million answers: about 1.3 s)."""

    def __init__(self) -> None:
        #: per write of assignments: their ``id``, AssignmentIds, workers, statuses,
        #: submit times and work seconds
        self.assignments: list[tuple] = []
        #: per write of answers, in the order written: ``(columns, None)`` of rows, or
        #: ``(None, matrix)`` of rows written through ``temp.fast_tails`` (assignment,
        #: line, then per slot the number of its rows there, or :data:`UNUSED`)
        self.answers: list[tuple[dict | None, np.ndarray | None]] = []
        #: the rows of ``temp.fast_tails``, in the order of their numbers
        self.tails: list[tuple] = []
        #: item slot → its code in :meth:`_columns`
        self.items: dict[str, int] = {}

    def add(
        self,
        assignments: Iterable[tuple],
        ratings: list[tuple],
        fast: list[np.ndarray],
        tails: list[tuple],
    ) -> None:
        """One flush's writes (rows as :data:`ASSIGNMENT_COLUMNS`, :data:`ANSWER_COLUMNS`,
        :attr:`_Batch.fast` and ``temp.fast_tails`` hold them), in the order written."""
        rows = list(assignments)
        if rows:
            self.assignments.append(tuple(list(map(itemgetter(k), rows)) for k in _KEPT_COLUMNS))
        if ratings:
            number, line, *tail = zip(*ratings, strict=True)
            self.answers.append((self._columns(tail) | {"number": number, "line": line}, None))
        self.tails += tails
        if fast:
            self.answers.append((None, np.concatenate(fast)))

    def _columns(self, tail: list) -> dict[str, np.ndarray]:
        """The columns quality control reads of answer rows after their assignment and
        line (``tail``: a tuple of values per column after those)."""
        item, question, subject, passed, value, _, _, source_file, _ = tail
        codes = self.items
        return {
            "item": np.array([codes.setdefault(i, len(codes)) for i in item], dtype=np.int64),
            "question": np.array(question, dtype=np.int64),
            "subject": np.array(subject, dtype=np.int64),
            "failed": np.array([p == 0 for p in passed], dtype=bool),
            "has_value": np.array([v is not None for v in value], dtype=bool),
            "value": np.array([0.0 if v is None else v for v in value], dtype=np.float64),
            "source_file": np.array(source_file, dtype=np.int64),
        }

    def survey_answers(
        self, store: Store, tail_counts: list[int], min_work_seconds: float | None
    ) -> SurveyAnswers | None:
        """The survey's answers after the import (``tail_counts``: how many rows each number
        of ``temp.fast_tails`` has), as :meth:`SurveyAnswers.read` reads them; ``None``
        where an answer's key was written twice or its assignment was not."""
        ids, assignment_ids, workers, statuses, submit_times, works = (
            list(chain.from_iterable(part[j] for part in self.assignments)) for j in range(6)
        )
        ids = np.array(ids, dtype=np.int64)
        if len(ids) and not (ids[1:] > ids[:-1]).all():  # each assignment's last write, by id
            _, last = np.unique(ids[::-1], return_index=True)
            last_writes = (len(ids) - 1 - last).tolist()
            ids = ids[last_writes]
            assignment_ids, workers, statuses, submit_times, works = (
                [column[k] for k in last_writes]
                for column in (assignment_ids, workers, statuses, submit_times, works)
            )
        rejected = {s: s.isascii() and s.lower() == "rejected" for s in set(statuses)}
        limit = float("-inf") if min_work_seconds is None else min_work_seconds
        # the columns of ``temp.fast_tails``' rows after their number
        tails = self._columns(list(zip(*self.tails, strict=True))[1:] or [()] * 9)
        counts = np.array(tail_counts, dtype=np.int64)
        parts = [
            columns if matrix is None else _through_tails(matrix, tails, counts)
            for columns, matrix in self.answers
        ]
        dtypes = {name: column.dtype for name, column in tails.items()}
        answers = {
            name: np.concatenate(
                [np.zeros(0, dtype), *(np.asarray(part[name], dtype=dtype) for part in parts)]
            )
            for name, dtype in (dtypes | {"number": np.int64, "line": np.int64}).items()
        }
        # in the order of the key (assignment, item as text, question)
        number, item, question = answers["number"], answers["item"], answers["question"]
        text_order = ranks(list(self.items)) if self.items else np.zeros(1, dtype=np.int64)
        order = _key_order(number, text_order[item], question)
        again = np.ones(max(len(order) - 1, 0), dtype=bool)
        for key in (number, item, question):
            again &= key[order][1:] == key[order][:-1]
        # an answer written twice, or of no assignment (the readers write neither): the
        # store's answers are read instead
        if again.any() or not np.isin(number, ids).all():
            return None
        moved = np.flatnonzero(order != np.arange(len(order)))
        if len(moved):  # rows read one by one, written before the rows read through them
            window = slice(moved[0], moved[-1] + 1)
            for column in answers.values():
                column[window] = column[order[window]]
        items = item_order(store, list(self.items))
        place = {name: k for k, name in enumerate(items)}
        position = np.array([place[name] for name in self.items] or [0], dtype=np.int64)
        return SurveyAnswers.of_columns(
            store,
            assignment=answers["number"],
            ids=ids,
            item=position[answers["item"]],
            items=items,
            question=answers["question"],
            subject=answers["subject"],
            source_file=answers["source_file"],
            source_line=answers["line"],
            failed=answers["failed"],
            excluded=np.full(len(order), KEPT, dtype=np.int64),
            others={},
            has_value=answers["has_value"],
            value=answers["value"],
            workers=workers,
            rejected=np.array(list(map(rejected.__getitem__, statuses)), dtype=bool),
            short=np.array([w is not None and w < limit for w in works], dtype=bool),
            submit_times=submit_times,
            assignment_ids=assignment_ids,
        )


def _key_order(*keys: np.ndarray) -> np.ndarray:
    """The order of entries by ``keys`` (non-negative integers), equal ones in their order:
    as one integer where they fit in one (a stable sort of written runs of answers
    merges them), else by :func:`numpy.lexsort`."""
    key, bound = np.zeros(len(keys[0]), dtype=np.int64), 1
    for column in keys:
        top = int(column.max(initial=0)) + 1
        if bound * top >= 2**62:
            return np.lexsort(keys[::-1])  # a stable sort
        key, bound = key * top + column, bound * top
    if (key[1:] >= key[:-1]).all():
        return np.arange(len(key))
    return np.argsort(key, kind="stable")


def _through_tails(matrix: np.ndarray, tails: dict, counts: np.ndarray) -> dict[str, np.ndarray]:
    """The answers of rows written through ``temp.fast_tails`` (``matrix``: per row its
    assignment, line and per slot the number of its answer rows there, or :data:`UNUSED`),
    row by row and slot by slot as written, with ``tails``' columns (``counts`` rows per
    number)."""
    rows, slots = len(matrix), matrix.shape[1] - 2
    numbers = matrix[:, 2:].ravel()
    row = np.repeat(np.arange(rows), slots)[numbers >= 0]
    numbers = numbers[numbers >= 0]
    each = counts[numbers]
    ends = np.cumsum(each)
    # each answer's row in ``tails``: the first of its number's rows, then the next ones
    at = np.repeat(np.cumsum(counts)[numbers] - each, each) + np.arange(
        ends[-1] if len(ends) else 0
    )
    at -= np.repeat(ends - each, each)
    row = np.repeat(row, each)
    return {name: column[at] for name, column in tails.items()} | {
        "number": matrix[row, 0],
        "line": matrix[row, 1],
    }


def _check_columns(mapping: Mapping, input_columns: list[str], path: Path) -> None:
    present = {c.removeprefix("Input.") for c in input_columns}
    templates = (
        mapping.item_id,
        mapping.original,
        mapping.candidate,
        mapping.method,
        mapping.operating_point,
    )
    wanted = {
        mapping.input_column(template, slot)
        for template in templates
        if template
        for slot in mapping.slots
    }
    missing = sorted(c for c in wanted if c and c not in present)
    if missing:
        named = ", ".join("Input." + c for c in missing)
        found = ", ".join(sorted(input_columns)) or "no Input.* columns"
        raise ConfigError(
            f"{path}: the mapping names input column(s) {named} that the file lacks; found {found}"
            " (give --mapping FILE.toml to say which columns name the original and the candidate)"
        )


def _check_answer_columns(
    mapping: Mapping, survey: SurveyDefinition, answer_columns: list[str], path: Path
) -> None:
    """In the flattened layout (no ``Answer.taskAnswers``), every answer field the mapping
    names must have a column (``Answer.<field>`` or ``Answer.<field>.<option>``...)."""
    names = [c.removeprefix("Answer.") for c in answer_columns]
    if TASK_ANSWERS in names:
        return  # the answers are in JSON: which fields a form has is known row by row
    prefixes = set()
    for name in names:
        prefixes.add(name)
        for separator in SEPARATORS:
            at = name.find(separator)
            while at > 0:
                prefixes.add(name[:at])
                at = name.find(separator, at + len(separator))
    wanted = {mapping.field(q.id, slot)[0] for q in survey.questions for slot in mapping.slots}
    missing = sorted(w for w in wanted if w not in prefixes)
    if missing:
        raise ConfigError(
            f"{path}: no answer column for "
            + ", ".join(f"Answer.{m}" for m in missing[:20])
            + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
            + f"; found {', '.join(answer_columns[:40])}"
            + (" ..." if len(answer_columns) > 40 else "")
            + " (give --mapping FILE.toml to say which answer is which question)"
        )


def _survey_is_empty(store: Store, survey_id: str, next_number: int) -> bool:
    """Whether the store holds no assignment of the survey, nor an answer of an assignment
    numbered ``next_number`` or later (those an import adds: such an answer, left without
    its assignment, would become one of the survey's)."""
    (found,) = store.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM assignments WHERE survey = ?) "
        "OR EXISTS (SELECT 1 FROM answers WHERE assignment >= ?)",
        (survey_id, next_number),
    ).fetchone()
    return not found


def _existing_statuses(store: Store, assignment_ids: list[str]) -> dict[str, tuple[str, str]]:
    """(status, survey) of the assignments already in the store."""
    found: dict[str, tuple[str, str]] = {}
    for start in range(0, len(assignment_ids), 900):
        chunk = assignment_ids[start : start + 900]
        rows = store.conn.execute(
            f"SELECT assignment_id, status, survey FROM assignments "
            f"WHERE assignment_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        found.update((r[0], (r[1], r[2])) for r in rows)
    return found


def _file_counts(store: Store, source: str, summary: ImportSummary, answers: SurveyAnswers) -> None:
    """The summary's counts of the file ``source`` among the survey's ``answers``: kept and
    excluded by rule (attention checks not counted), and the duplicates (listed: the first
    :data:`LISTED`, by line, slot and worker, with where each was first rated)."""
    found = store.conn.execute("SELECT id FROM rating_names WHERE name = ?", (source,)).fetchone()
    if found is None:  # no answer of the study came from this file
        return
    survey_file = (summary.survey, found[0])
    here = answers.source_file == found[0]
    counted = np.flatnonzero(here & ~answers.is_check)
    codes = answers.excluded[counted]
    rules = np.bincount(codes, minlength=OTHER)[:OTHER]
    by_rule = Counter({EXCLUDED[code]: int(n) for code, n in enumerate(rules) if code and n})
    by_rule.update(answers.others[k] for k in counted[codes == OTHER].tolist())
    # kept: the rest, and a rule of '' as before
    kept = len(counted) - by_rule.total() + by_rule.pop("", 0)
    for rule in sorted(by_rule):
        summary.excluded[rule] = by_rule[rule]
    if kept:
        summary.kept = kept
    # the distinct (line, slot, worker) of the duplicates, in the order they are listed in
    duplicates = np.flatnonzero(here & (answers.excluded == DUPLICATE))
    worker = answers.worker[answers.assignment[duplicates]]
    line, item = answers.source_line[duplicates], answers.item[duplicates]
    group = groups(line, item, worker)
    _, first = np.unique(group, return_index=True)
    summary.duplicates_count = len(first)
    listed = [
        (int(line[k]), answers.items[item[k]], answers.workers[answers.assignment[duplicates[k]]])
        for k in first[:LISTED].tolist()
    ]
    if not listed:
        summary.duplicates = []
        return
    summary.duplicates = [
        f"worker {worker} on line {line} (item {item or '-'}): already rated in "
        f"{Path(first_file).name} line {first_line}"
        for worker, line, item, first_file, first_line in store.conn.execute(
            # the first LISTED of them (a line is one assignment: one worker), then where
            # each was first rated (the kept answer of the same worker, pair and question)
            "WITH listed (source_line, item, worker_id) AS (SELECT json_extract(value, '$[0]'), "
            "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)) "
            "SELECT l.worker_id, l.source_line, l.item, MIN(kf.name), MIN(k.source_line) "
            "FROM listed l CROSS JOIN assignments a ON a.survey = ? AND a.worker_id = l.worker_id "
            "JOIN answers r ON r.assignment = a.id AND r.item = l.item "
            "AND r.source_file = ? AND r.source_line = l.source_line "
            "AND r.excluded = 'duplicate' "
            "JOIN rating_subjects s ON s.id = r.subject "
            "JOIN assignments ka ON ka.survey = a.survey AND ka.worker_id = a.worker_id "
            "JOIN answers k ON k.assignment = ka.id AND k.question = r.question "
            "AND k.excluded IS NULL "
            "JOIN rating_subjects ks ON ks.id = k.subject AND ks.original_id = s.original_id "
            "AND ks.candidate_id IS s.candidate_id AND ks.is_check = 0 "
            "JOIN rating_names kf ON kf.id = k.source_file "
            "GROUP BY l.source_line, l.item, l.worker_id "
            "ORDER BY l.source_line, CAST(l.item AS INTEGER)",
            (json.dumps(listed), *survey_file),
        )
    ]
