"""Quality control over a survey's answers, and the human scores of the answers it keeps.

After each import the rules are applied again to the survey's whole answers (every file):

- rejected assignments are excluded (unless ``include_rejected``);
- assignments shorter than ``min_work_seconds`` are excluded;
- a worker who fails an attention check (an image next to itself, or a mapping's gold
  item: ``check_passed = 0`` on any of the survey's answers) is excluded from the survey;
- a worker who answered the same question about the same pair twice keeps the first
  answer: by submit time (unknown times last), then by the file's first import (and
  name), its line, the item slot (as a number, then as text) and the AssignmentId.

The first rule that applies is the answer's ``excluded`` (NULL: kept). The survey's answers
are read once, in the order of their key, as integer arrays (:class:`SurveyAnswers`), or
taken from what an import into a survey that held none wrote; the rules run on them with
numpy, and only the answers whose rule changes are written. The kept answers with a value
then give the ``human.<survey>.<stat>[<question>]`` scores.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from semcomp.store import Store, utc_now
from semcomp.surveys.definitions import SurveyDefinition

#: ``answers.excluded`` by code: kept, then each rule in the order it is applied; an answer
#: whose stored text is none of these (not written by the rules) reads as ``OTHER``
EXCLUDED = (None, "rejected", "work_time", "attention_check", "duplicate")
KEPT, REJECTED, WORK_TIME, ATTENTION_CHECK, DUPLICATE = range(len(EXCLUDED))
OTHER = len(EXCLUDED)

#: the survey's assignments (``a``) by id; the answers (``r``, each with its item's place
#: ``i``) of assignments from the survey's first id to its last, in the order of their key:
#: a range of the key, read whole (an import numbers its new assignments together, so
#: another survey's answers are mostly outside it; those inside are dropped afterwards:
#: filtering them by the survey's assignments in SQLite looks each answer's assignment up,
#: about twice a plain scan)
SURVEY_ASSIGNMENTS = "FROM assignments a NOT INDEXED WHERE a.survey = ? ORDER BY a.id"
SURVEY_RANGE_ANSWERS = (
    "FROM answers r CROSS JOIN temp.rating_items i ON i.item = r.item "
    "WHERE r.assignment BETWEEN ? AND ? ORDER BY r.assignment, r.item, r.question"
)


def _integers(text: str | None) -> np.ndarray:
    return np.fromstring(text, np.int64, sep=",") if text else np.zeros(0, np.int64)


def read_columns(
    store: Store, expressions: Sequence[str], source: str, params: Sequence, *, texts: int = 0
) -> list:
    """The columns of ``SELECT <expressions> <source>``, rows in the query's order: the
    first ``texts`` as lists of ``str`` (or ``None``), the rest as ``int64`` arrays (their
    expressions are never NULL).

    Read without a Python tuple per row: SQLite joins each column into one text
    (``json_group_array``, ``group_concat``) that Python decodes at once (about a third of
    the time); row by row when a text would pass SQLite's length limit."""
    named = ", ".join(f"{e} AS c{k}" for k, e in enumerate(expressions))
    joined = ", ".join(
        f"json_group_array(c{k})" if k < texts else f"group_concat(c{k})"
        for k in range(len(expressions))
    )
    try:
        (found,) = store.tuples(f"SELECT {joined} FROM (SELECT {named} {source})", params)
    except sqlite3.DataError:  # texts past SQLite's length limit: the rows as tuples
        rows = store.tuples(f"SELECT {named} {source}", params).fetchall()
        columns = list(zip(*rows, strict=True)) or [() for _ in expressions]
        return [
            list(c) if k < texts else np.array(c, dtype=np.int64) for k, c in enumerate(columns)
        ]
    return [json.loads(t) if k < texts else _integers(t) for k, t in enumerate(found)]


#: the bits of a packed integer column (SQLite's integers are 64-bit, signed)
PACKED_BITS = 62


def packed(fields: Sequence[tuple[str, int]]) -> list[tuple[str, list[int]]]:
    """Integer fields (an expression whose values lie in ``[0, bound)``, and the bound)
    packed in their order into as few expressions as stay below ``2**PACKED_BITS``: each
    expression with the bounds of its fields (:func:`unpacked` takes them apart). Each
    column read is a text SQLite writes and numpy parses: packing saves the work per column,
    not per digit (a million answers' eight columns read as five: about 1.0 → 0.9 s)."""
    columns: list[tuple[str, list[int], int]] = []
    for expression, bound in fields:
        bound = max(bound, 1)
        if columns and columns[-1][2] * bound < 2**PACKED_BITS:
            joined, bounds, product = columns[-1]
            joined = f"({joined}) * {bound} + {expression}"
            columns[-1] = (joined, [*bounds, bound], product * bound)
        else:
            columns.append((expression, [bound], bound))
    return [(expression, bounds) for expression, bounds, _ in columns]


def unpacked(column: np.ndarray, bounds: list[int]) -> list[np.ndarray]:
    """The fields of a column :func:`packed` made, given their bounds, each in the
    smallest integer type that holds it (a million answers' fields in a fraction of the
    memory)."""
    fields = []
    for bound in reversed(bounds[1:]):
        column, field = np.divmod(column, bound)
        fields.append(field.astype(np.min_scalar_type(-bound)))
    return [column.astype(np.min_scalar_type(-bounds[0])), *reversed(fields)]


def _bound(store: Store, table: str) -> int:
    """A bound of ``table``'s ids for :func:`packed` (none that fits if an id is negative)."""
    low, high = store.conn.execute(f"SELECT MIN(id), MAX(id) FROM {table}").fetchone()
    return 2**PACKED_BITS if (low or 0) < 0 else (high or 0) + 1


def ranks(values: list) -> np.ndarray:
    """Each of ``values``' place among the distinct values in SQLite's ascending order
    (NULL first, 0; text in byte order, which is the order of code points that numpy and
    Python compare by). Few distinct values (a worker's many answers) are sorted by Python,
    many by numpy (about three times faster; ASCII texts as bytes, five times faster
    again), unless a text ends in NUL, which numpy's fixed-width strings drop."""
    distinct = set(values)
    distinct.discard(None)
    if len(distinct) * 4 > len(values):
        known = [v for v in values if v is not None] if None in values else values
        try:
            texts = np.array(known, dtype=bytes)
        except UnicodeEncodeError:
            texts = np.array(known, dtype=str)
        if (np.char.str_len(texts) == np.array(list(map(len, known)))).all():
            _, inverse = np.unique(texts, return_inverse=True)
            if len(known) == len(values):
                return inverse.astype(np.int64) + 1
            places = np.zeros(len(values), dtype=np.int64)
            places[[v is not None for v in values]] = inverse + 1
            return places
    place = {v: k for k, v in enumerate(sorted(distinct), start=1)} | {None: 0}
    return np.array(list(map(place.__getitem__, values)), dtype=np.int64)


#: the order quality control numbers item slots in: as a number, then as text
ITEM_ORDER = "CAST(item AS INTEGER), item"


def item_order(store: Store, items: list[str]) -> list[str]:
    """Item slots in :data:`ITEM_ORDER`."""
    return [
        i
        for (i,) in store.tuples(
            f"SELECT item FROM (SELECT value AS item FROM json_each(?)) ORDER BY {ITEM_ORDER}",
            (json.dumps(items),),
        )
    ]


def _lookup(keys: np.ndarray, values: np.ndarray, default: int = -1, size: int = 0) -> np.ndarray:
    """A table from small non-negative integer ``keys`` to ``values``: an array indexed by
    key (at least ``size`` long), ``default`` where no key."""
    table = np.full(max(int(keys.max(initial=0)) + 1, int(size)), default, dtype=np.int64)
    table[keys] = values
    return table


def groups(*keys: np.ndarray) -> np.ndarray:
    """Each entry's group: entries equal in every one of ``keys`` share one (numbered 0...)."""
    order = np.lexsort(keys[::-1])
    new = np.zeros(len(order), dtype=bool)
    new[:1] = True
    for key in keys:
        ordered = key[order]
        new[1:] |= ordered[1:] != ordered[:-1]
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return group


@dataclass
class SurveyAnswers:
    """A survey's answers as arrays, one entry per answer in the order of ``answers``' key
    (assignment, item, question); ``assignment`` indexes the survey's assignments."""

    assignment: np.ndarray
    item: np.ndarray  # the slot's place in the order of slots (as a number, then as text)
    items: list[str]  # the slot at each place
    question: np.ndarray
    subject: np.ndarray
    pair: np.ndarray  # the subject's (original, candidate), numbered
    is_check: np.ndarray
    source_file: np.ndarray
    source_line: np.ndarray
    failed: np.ndarray  # an attention check failed (``check_passed = 0``)
    excluded: np.ndarray  # the code in EXCLUDED
    others: dict[int, str]  # the text ``excluded`` holds where its code is OTHER
    has_value: np.ndarray
    value: np.ndarray
    # the survey's assignments, by ``assignment``
    ids: np.ndarray
    workers: list[str]
    worker: np.ndarray  # the worker's place in the order of worker ids
    rejected: np.ndarray
    short: np.ndarray  # shorter than the work time it was read with
    submit_times: list[str | None]
    assignment_ids: list[str]

    @classmethod
    def read(
        cls, store: Store, survey_id: str, *, min_work_seconds: float | None = None
    ) -> SurveyAnswers:
        conn = store.conn
        workers, submit_times, assignment_ids, ids, rejected, short = read_columns(
            store,
            (
                "a.worker_id",
                "a.submit_time",
                "a.assignment_id",
                "a.id",
                "lower(a.status) = 'rejected'",
                "ifnull(a.work_seconds IS NOT NULL AND a.work_seconds < ?, 0)",
            ),
            SURVEY_ASSIGNMENTS,
            (min_work_seconds, survey_id),
            texts=3,
        )
        span = (int(ids[0]), int(ids[-1])) if len(ids) else (1, 0)
        conn.execute("DROP TABLE IF EXISTS temp.rating_items")
        conn.execute(
            "CREATE TEMP TABLE rating_items (item TEXT PRIMARY KEY, position INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        conn.execute(
            f"INSERT INTO temp.rating_items SELECT item, DENSE_RANK() OVER (ORDER BY "
            f"{ITEM_ORDER}) - 1 FROM (SELECT DISTINCT item FROM answers WHERE assignment "
            "BETWEEN ? AND ?)",
            span,
        )
        items = [i for (i,) in conn.execute("SELECT item FROM temp.rating_items ORDER BY position")]
        rule = " ".join(f"WHEN '{e}' THEN {code}" for code, e in enumerate(EXCLUDED) if e)
        names = _bound(store, "rating_names")
        fields = packed(
            [
                ("r.assignment", _bound(store, "assignments")),
                ("r.subject", _bound(store, "rating_subjects")),
                ("r.question", names),
                ("i.position", len(items)),
                ("r.source_file", names),
                (
                    f"CASE WHEN r.excluded IS NULL THEN {KEPT} "
                    f"ELSE CASE r.excluded {rule} ELSE {OTHER} END END",
                    OTHER + 1,
                ),
                ("ifnull(r.check_passed = 0, 0)", 2),  # failed
                ("(r.value IS NULL)", 2),
                ("ifnull(r.value <> CAST(r.value AS INTEGER), 0)", 2),  # not a whole number
            ]
        )
        # lines and values not packed: a column's read costs about its digits, and their
        # bounds would take another pass over the answers, dearer than packing saves
        *codes, lines, whole = read_columns(
            store,
            [e for e, _ in fields] + ["r.source_line", "ifnull(CAST(r.value AS INTEGER), 0)"],
            SURVEY_RANGE_ANSWERS,
            span,
        )
        columns = [
            field
            for code, (_, bounds) in zip(codes, fields, strict=True)
            for field in unpacked(code, bounds)
        ]
        # the survey's answers (the others are those of other surveys' assignments numbered
        # inside the survey's range)
        place = _lookup(ids, np.arange(len(ids)), size=columns[0].max(initial=0) + 1)
        ours = np.flatnonzero(place[columns[0]] >= 0)
        if len(ours) < len(columns[0]):
            columns, lines, whole = [c[ours] for c in columns], lines[ours], whole[ours]
        assignment, subject, question, item, source_file, excluded, failed, no_value, fraction = (
            columns
        )
        others, value = {}, whole.astype(np.float64)
        if (excluded == OTHER).any() or fraction.any():  # texts and values as stored
            texts, values = zip(
                *store.tuples(
                    f"SELECT r.excluded, ifnull(r.value, 0.0) {SURVEY_RANGE_ANSWERS}", span
                ),
                strict=True,
            )
            others = {int(k): texts[ours[k]] for k in np.flatnonzero(excluded == OTHER)}
            if fraction.any():
                value = np.array(values, dtype=np.float64)[ours]
        conn.execute("DROP TABLE temp.rating_items")
        return cls.of_columns(
            store,
            assignment=assignment,
            item=item,
            items=items,
            question=question,
            subject=subject,
            source_file=source_file,
            source_line=lines,
            failed=failed.astype(bool),
            excluded=excluded,
            others=others,
            has_value=no_value == 0,
            value=value,
            ids=ids,
            workers=workers,
            rejected=rejected.astype(bool),
            short=short.astype(bool),
            submit_times=submit_times,
            assignment_ids=assignment_ids,
        )

    @classmethod
    def of_columns(
        cls, store: Store, *, assignment: np.ndarray, ids: np.ndarray, **columns
    ) -> SurveyAnswers:
        """The survey's answers from their columns (as :class:`SurveyAnswers`' fields, but
        ``assignment`` the ``id`` of each answer's assignment, and ``pair``, ``is_check``
        and ``worker`` not given): these found from the store's subjects and the workers."""
        subjects = store.tuples(
            "SELECT id, MIN(id) OVER (PARTITION BY original_id, candidate_id), is_check "
            "FROM rating_subjects"
        ).fetchall()
        subject_ids, pairs, is_check = np.array(subjects, dtype=np.int64).reshape(-1, 3).T
        subject = columns["subject"]
        place = _lookup(ids, np.arange(len(ids)), size=assignment.max(initial=0) + 1)
        return cls(
            assignment=place[assignment],
            pair=_lookup(subject_ids, pairs)[subject],
            is_check=_lookup(subject_ids, is_check, 1)[subject].astype(bool),
            ids=ids,
            worker=ranks(columns["workers"]),
            **columns,
        )


def apply_quality_control(
    store: Store,
    survey_id: str,
    *,
    min_work_seconds: float | None,
    include_rejected: bool,
    answers: SurveyAnswers | None = None,
) -> SurveyAnswers:
    """Set ``excluded`` for every answer of the survey (NULL: kept); only the answers whose
    rule changes are written. In a transaction; returns the survey's answers as they are
    now. ``answers``: the survey's answers as the store holds them, read with
    ``min_work_seconds`` (read here when not given)."""
    if answers is None:
        answers = SurveyAnswers.read(store, survey_id, min_work_seconds=min_work_seconds)
    assignment = answers.assignment
    rule = np.full(len(assignment), KEPT, dtype=np.int64)
    if not include_rejected:
        rule[answers.rejected[assignment]] = REJECTED
    rule[(rule == KEPT) & answers.short[assignment]] = WORK_TIME
    worker = answers.worker[assignment]
    rule[(rule == KEPT) & np.isin(worker, worker[answers.failed])] = ATTENTION_CHECK
    # one worker, one question about one pair: the first answer is kept, by submit time
    # (unknown last), the file's place, line, slot and AssignmentId. Only the (worker,
    # pair, question) answered more than once are ordered, their assignments' times and
    # ids ranked
    open_ = np.flatnonzero((rule == KEPT) & ~answers.is_check)
    group = groups(worker[open_], answers.pair[open_], answers.question[open_])
    twice = np.bincount(group)[group] > 1
    repeated, group = open_[twice], group[twice]
    of = assignment[repeated]
    involved = np.unique(of)
    submitted = np.zeros(len(answers.ids), dtype=np.int64)
    submitted[involved] = ranks([answers.submit_times[a] for a in involved.tolist()])
    submitted[submitted == 0] = len(involved) + 1  # unknown times last
    named = np.zeros(len(answers.ids), dtype=np.int64)
    named[involved] = ranks([answers.assignment_ids[a] for a in involved.tolist()])
    files = store.tuples(
        "SELECT fn.id, DENSE_RANK() OVER (ORDER BY f.first_import, fn.name) FROM rating_names fn "
        "LEFT JOIN (SELECT file, MIN(id) AS first_import FROM rating_imports GROUP BY file) f "
        "ON f.file = fn.name"
    ).fetchall()
    file_ids, file_places = np.array(files, dtype=np.int64).reshape(-1, 2).T
    order = np.lexsort(
        (
            named[of],
            answers.item[repeated],
            answers.source_line[repeated],
            _lookup(file_ids, file_places)[answers.source_file[repeated]],
            submitted[of],
            group,
        )
    )
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    rule[repeated[order[~first]]] = DUPLICATE
    _write_rules(store, answers, rule)
    answers.excluded, answers.others = rule, {}
    return answers


def _write_rules(store: Store, answers: SurveyAnswers, rule: np.ndarray) -> None:
    """Write ``rule`` where it is not what ``answers`` hold: by assignment where each of an
    assignment's answers changes to one rule (the rules but the duplicates are an
    assignment's: about three times cheaper than by answer), the others answer by answer."""
    if not len(rule):
        return
    changed = rule != answers.excluded
    # an assignment's answers are together (the answers are in the order of their key)
    assignment = answers.assignment
    starts = np.flatnonzero(np.r_[True, assignment[1:] != assignment[:-1]])
    whole = np.logical_and.reduceat(changed, starts) & (
        np.minimum.reduceat(rule, starts) == np.maximum.reduceat(rule, starts)
    )
    store.conn.executemany(
        "UPDATE answers SET excluded = ? WHERE assignment = ?",
        zip(
            [EXCLUDED[r] for r in rule[starts[whole]].tolist()],
            answers.ids[assignment[starts[whole]]].tolist(),
            strict=True,
        ),
    )
    alone = np.flatnonzero(changed & ~np.repeat(whole, np.diff(np.r_[starts, len(rule)])))
    store.conn.executemany(
        "UPDATE answers SET excluded = ? WHERE assignment = ? AND item = ? AND question = ?",
        zip(
            [EXCLUDED[r] for r in rule[alone].tolist()],
            answers.ids[assignment[alone]].tolist(),
            [answers.items[i] for i in answers.item[alone].tolist()],
            answers.question[alone].tolist(),
            strict=True,
        ),
    )


def human_metric(survey_id: str, stat: str, question_id: str) -> str:
    return f"human.{survey_id}.{stat}[{question_id}]"


#: the statistics written as scores (``human.<survey>.<stat>[<question>]``)
SCORE_STATS = {
    "median": (np.median, "median of the kept ratings"),
    "mean": (np.mean, "mean of the kept ratings"),
}


def _places(ids: np.ndarray, names: dict[int, str], order: list[str]) -> np.ndarray:
    """For each of ``ids``, the position in ``order`` of its name in ``names`` (-1: none)."""
    position = {name: rank for rank, name in enumerate(order)}
    keys = np.array(list(names), dtype=np.int64)
    places = np.array([position[name] for name in names.values()], dtype=np.int64)
    return _lookup(keys, places, size=int(ids.max(initial=0)) + 1)[ids]


def write_human_scores(
    store: Store, survey: SurveyDefinition, answers: SurveyAnswers | None = None
) -> int:
    """Replace the survey's ``human.*`` score rows with the current kept ratings (of
    ``answers``, the survey's answers as quality control left them; read when not given).
    In a transaction; returns the number of score rows written.

    The kept answers are grouped with numpy; each group's values keep the order of the
    answers' key, as a per-answer ORDER BY gives them (a mean sums them in that order).
    """
    prefix = f"human.{survey.id}."
    store.conn.execute("DELETE FROM scores WHERE substr(metric, 1, ?) = ?", (len(prefix), prefix))
    numeric = [q for q in survey.questions if q.numeric]
    if not numeric:
        return 0
    for question in numeric:
        for stat, (_, description) in SCORE_STATS.items():
            store.upsert(
                "metrics",
                {
                    "name": human_metric(survey.id, stat, question.id),
                    "embedder_id": None,
                    "formula": f"{stat}(ratings of survey {survey.id} question "
                    f"{question.id}, {question.low}–{question.high})",
                    "description": f"Survey {survey.id} ({survey.name}): {description} of "
                    f"“{question.text}” per (original, candidate) after quality control",
                    "kind": "human",
                },
                key=("name",),
            )
    if answers is None:
        answers = SurveyAnswers.read(store, survey.id)
    candidates = dict(
        store.tuples(
            "SELECT id, candidate_id FROM rating_subjects "
            "WHERE is_check = 0 AND candidate_id IS NOT NULL"
        )
    )
    placeholders = ", ".join("?" for _ in numeric)
    questions = dict(
        store.tuples(
            f"SELECT id, name FROM rating_names WHERE name IN ({placeholders})",
            [q.id for q in numeric],
        )
    )
    kept = (answers.excluded == KEPT) & answers.has_value
    subjects, question_ids = answers.subject[kept], answers.question[kept]
    candidate_ids = sorted(set(candidates.values()))
    question_names = sorted(set(questions.values()))
    candidate_rank = _places(subjects, candidates, candidate_ids)
    question_rank = _places(question_ids, questions, question_names)
    group = np.where(
        (candidate_rank >= 0) & (question_rank >= 0),
        candidate_rank * len(question_names) + question_rank,
        -1,
    )
    scored = group >= 0
    # a stable sort of the groups: each group's values in the order of the answers' key
    order = np.argsort(group[scored], kind="stable")
    grouped, values = group[scored][order], answers.value[kept][scored][order]
    bounds = [0, *(np.flatnonzero(grouped[1:] != grouped[:-1]) + 1), len(grouped)]
    now = utc_now()
    rows = []
    for start, end in pairwise(bounds) if len(grouped) else ():
        candidate, question = divmod(int(grouped[start]), len(question_names))
        candidate_id, group_values = candidate_ids[candidate], values[start:end]
        for stat, (function, _) in SCORE_STATS.items():
            metric = human_metric(survey.id, stat, question_names[question])
            rows.append((candidate_id, metric, float(function(group_values)), None, now))
    store.upsert_scores(rows)
    return len(rows)
