"""The human scores give what the per-answer SQL they replace gave; the duplicate rule
marks what it marked.

``reference_scores`` is the score computation of commit f87f56d (an ORDER BY over a
four-table join, grouped in Python); ``reference_duplicates`` that commit's duplicate rule
(the importer's still: a faster one must match it). The survey's answers are made to
disagree on everything the orders read: two files, unknown and equal submit times, and
values whose float sum depends on the order they are added in (a mean that read a
group's values in another order would differ): fractions (read as tuples) or whole
numbers (read as texts of integers)."""

import sqlite3
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import numpy as np
import pytest

from mturk_format import simulate, write_batch_results
from semcomp.surveys import importer, quality
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings
from semcomp.surveys.make import make_survey

A = load_survey("A")


def reference_duplicates(store, survey_id: str) -> None:
    conn = store.conn
    for table in ("rating_pairs", "duplicate_answers"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
    conn.execute(
        "CREATE TEMP TABLE rating_pairs "
        "(subject INTEGER PRIMARY KEY, pair INTEGER NOT NULL, is_check INTEGER NOT NULL)"
    )
    conn.execute(
        "INSERT INTO temp.rating_pairs SELECT id, MIN(id) OVER (PARTITION BY original_id, "
        "candidate_id), is_check FROM rating_subjects"
    )
    conn.execute(
        "CREATE TEMP TABLE duplicate_answers (assignment INTEGER, item TEXT, question INTEGER, "
        "PRIMARY KEY (assignment, item, question)) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO temp.duplicate_answers"
        " SELECT assignment, item, question FROM (SELECT r.assignment, r.item, r.question,"
        "  ROW_NUMBER() OVER (PARTITION BY a.worker_id, p.pair, r.question"
        "  ORDER BY a.submit_time IS NULL, a.submit_time, f.first_import, fn.name,"
        "  r.source_line, CAST(r.item AS INTEGER), r.item, a.assignment_id) AS position"
        "  FROM (SELECT a.worker_id, p.pair, r.question"
        "   FROM assignments a JOIN answers r ON r.assignment = a.id"
        "   JOIN temp.rating_pairs p ON p.subject = r.subject"
        "   WHERE a.survey = ? AND r.excluded IS NULL AND p.is_check = 0"
        "   GROUP BY a.worker_id, p.pair, r.question HAVING COUNT(*) > 1) d"
        "  CROSS JOIN assignments a ON a.survey = ? AND a.worker_id = d.worker_id"
        "  JOIN answers r ON r.assignment = a.id AND r.question = d.question"
        "  JOIN temp.rating_pairs p ON p.subject = r.subject AND p.pair = d.pair"
        "  JOIN rating_names fn ON fn.id = r.source_file"
        "  LEFT JOIN (SELECT file, MIN(id) AS first_import FROM rating_imports GROUP BY file) f"
        "  ON f.file = fn.name"
        "  WHERE r.excluded IS NULL AND p.is_check = 0)"
        " WHERE position > 1",
        (survey_id, survey_id),
    )
    conn.execute(
        "UPDATE answers SET excluded = 'duplicate' "
        "WHERE (assignment, item, question) IN (SELECT * FROM temp.duplicate_answers)"
    )
    for table in ("rating_pairs", "duplicate_answers"):
        conn.execute(f"DROP TABLE temp.{table}")


def reference_scores(store, survey) -> list[tuple]:
    numeric = [q for q in survey.questions if q.numeric]
    placeholders = ", ".join("?" for _ in numeric)
    cursor = store.tuples(
        "SELECT s.candidate_id, q.name, r.value FROM assignments a "
        "JOIN answers r ON r.assignment = a.id JOIN rating_subjects s ON s.id = r.subject "
        "JOIN rating_names q ON q.id = r.question WHERE a.survey = ? AND r.excluded IS NULL "
        "AND s.is_check = 0 AND s.candidate_id IS NOT NULL AND r.value IS NOT NULL "
        f"AND q.name IN ({placeholders}) ORDER BY s.candidate_id, q.name, r.assignment, r.item",
        (survey.id, *[q.id for q in numeric]),
    )
    rows = []
    for (candidate_id, question_id), group in groupby(cursor, key=itemgetter(0, 1)):
        values = np.fromiter((r[2] for r in group), dtype=float)
        for stat, (function, _) in quality.SCORE_STATS.items():
            metric = quality.human_metric(survey.id, stat, question_id)
            rows.append((candidate_id, metric, float(function(values))))
    return rows


def reference_file_counts(store, survey_id: str, source: str, summary, listed: int) -> None:
    """The import summary's counts of one file as commit b13a74f made them (three passes)."""
    found = store.conn.execute("SELECT id FROM rating_names WHERE name = ?", (source,)).fetchone()
    survey_file = (survey_id, found[0])
    rows = store.conn.execute(
        "SELECT COALESCE(r.excluded, '') AS rule, COUNT(*) FROM assignments a "
        "JOIN answers r ON r.assignment = a.id JOIN rating_subjects s ON s.id = r.subject "
        "WHERE a.survey = ? AND r.source_file = ? AND s.is_check = 0 GROUP BY rule",
        survey_file,
    )
    for rule, count in rows:
        if rule:
            summary.excluded[rule] = count
        else:
            summary.kept = count
    summary.duplicates_count = store.conn.execute(
        "SELECT COUNT(*) FROM (SELECT DISTINCT r.source_line, r.item, a.worker_id "
        "FROM assignments a JOIN answers r ON r.assignment = a.id "
        "WHERE a.survey = ? AND r.source_file = ? AND r.excluded = 'duplicate')",
        survey_file,
    ).fetchone()[0]
    summary.duplicates = [
        f"worker {worker} on line {line} (item {item or '-'}): already rated in "
        f"{Path(first_file).name} line {first_line}"
        for worker, line, item, first_file, first_line in store.conn.execute(
            "WITH listed AS (SELECT DISTINCT r.source_line, r.item, a.worker_id "
            " FROM assignments a JOIN answers r ON r.assignment = a.id"
            " WHERE a.survey = ? AND r.source_file = ? AND r.excluded = 'duplicate'"
            " ORDER BY r.source_line, CAST(r.item AS INTEGER), r.item, a.worker_id LIMIT ?) "
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
            (*survey_file, listed, *survey_file),
        )
    ]


def excluded(store) -> list[tuple]:
    return [
        tuple(r)
        for r in store.conn.execute(
            "SELECT assignment, item, question, excluded FROM answers ORDER BY 1, 2, 3"
        )
    ]


def scores(store) -> list[tuple]:
    return [
        tuple(r)
        for r in store.conn.execute(
            "SELECT candidate_id, metric, value FROM scores WHERE metric LIKE 'human.%' "
            "ORDER BY rowid"
        )
    ]


#: answer values whose mean depends on the order they are added in: fractions, or whole
#: numbers past 2**52 (read by the scores as texts of integers, not as tuples)
ORDERED_VALUES = {
    "fractions": "CASE assignment % 3 WHEN 0 THEN 1e16 WHEN 1 THEN -1e16 "
    "ELSE 0 END + (assignment % 7) * 0.1 + 0.01 * length(item)",
    "whole numbers": "4503599627370496 + (assignment % 7) * 3 + length(item)",
}


def two_files(store, tmp_path) -> None:
    """Survey A answered by six workers, then again by the same workers in a second file."""
    out = tmp_path / "survey"
    make_survey(store, A, base_url="https://images.example.org", out=out, items_per_hit=3)
    rows, _ = simulate(out, A, workers=6, failing=frozenset({"A005WORKER"}))
    # the same workers again in a second file (new assignments: every pair repeated), some
    # at the same submit time as before, some earlier, some later, some too quick
    times = ["Fri Jun 08 08:00:50 PDT 2012", rows[0]["SubmitTime"], "Fri Jun 08 11:59:50 PDT 2012"]
    again = [
        dict(
            row,
            AssignmentId=row["AssignmentId"] + "B",
            SubmitTime=times[number % 3],
            WorkTimeInSeconds="30" if number % 4 == 0 else "90",
        )
        for number, row in enumerate(rows)
    ]
    first = import_ratings(store, write_batch_results(tmp_path / "one.csv", rows), A)
    second = import_ratings(
        store, write_batch_results(tmp_path / "two.csv", again), A, min_work_seconds=60
    )
    assert first.failed == [] and second.failed == []
    conn = store.conn
    rules = dict(
        conn.execute(
            "SELECT excluded, COUNT(*) FROM ratings WHERE excluded IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    assert set(rules) == {"duplicate", "attention_check", "work_time"}, rules


@pytest.mark.parametrize("values", ORDERED_VALUES)
def test_duplicates_and_scores_match_the_per_answer_sql(store, tmp_path, monkeypatch, values):
    two_files(store, tmp_path)
    conn = store.conn
    with store.transaction():
        # unknown submit times (ordered last) and ties broken by file, line and slot
        conn.execute("UPDATE assignments SET submit_time = NULL WHERE id % 5 = 0")
        conn.execute("UPDATE assignments SET submit_time = '2012-06-08T17:00:50' WHERE id % 5 = 1")
        # a mean of these in another order rounds differently
        conn.execute(f"UPDATE answers SET value = {ORDERED_VALUES[values]} WHERE value IS NOT NULL")
    whole = conn.execute("SELECT MIN(value = CAST(value AS INTEGER)) FROM answers").fetchone()[0]
    assert whole == (values == "whole numbers")
    if whole:  # read without a tuple per answer
        monkeypatch.setattr(np, "fromiter", None)
    with store.transaction():
        quality.apply_quality_control(store, A.id, min_work_seconds=60, include_rejected=False)
        written = quality.write_human_scores(store, A)
    monkeypatch.undo()
    got_excluded, got_scores = excluded(store), scores(store)
    assert written == len(got_scores) > 0
    assert sum(r[3] == "duplicate" for r in got_excluded) > 20
    with store.transaction():
        # the reference marks them again from the state the other rules left
        conn.execute("UPDATE answers SET excluded = NULL WHERE excluded = 'duplicate'")
        reference_duplicates(store, A.id)
    assert excluded(store) == got_excluded
    expected = reference_scores(store, A)
    assert got_scores == expected
    # the order of a group's values matters for these values: in another order, some
    # means differ
    differs = 0
    for candidate_id, metric, value in expected:
        if ".mean[" in metric:
            group = conn.execute(
                "SELECT value FROM ratings WHERE candidate_id = ? AND excluded IS NULL "
                "AND is_check = 0 AND question = ? ORDER BY assignment_id DESC, item DESC",
                (candidate_id, metric[metric.index("[") + 1 : -1]),
            ).fetchall()
            differs += float(np.mean([v for (v,) in group])) != value
    assert differs > 0, "no mean depends on the order of its values"


def test_file_counts_match_the_three_pass_sql(store, tmp_path, monkeypatch):
    """The summary's counts of each file, from one pass, are those the three passes gave:
    kept and excluded answers by rule, the distinct duplicates, and which of them are
    listed (the first by line, then by slot as a number: slot 10 after slot 2) with where
    each was first rated."""
    two_files(store, tmp_path)
    conn = store.conn
    with store.transaction():
        # slots that sort differently as numbers and as text
        conn.execute(
            "UPDATE answers SET item = item || '0' WHERE item = '1' AND assignment % 2 = 0"
        )
        # rules the importer does not write: '' (counted as kept), and odd characters
        conn.execute(
            "UPDATE answers SET excluded = '' WHERE excluded IS NULL AND assignment % 11 = 0"
        )
        conn.execute(
            "UPDATE answers SET excluded = 'a \"rule\", [odd]' "
            "WHERE excluded = 'attention_check' AND item = '2'"
        )
    sources = [f for (f,) in conn.execute("SELECT file FROM rating_imports ORDER BY id")]
    assert len(sources) == 2
    seen_duplicates = 0
    for listed in (1, 2, 3, 4, 5, 7, 11, 100):
        monkeypatch.setattr(importer, "LISTED", listed)
        for source in sources:
            got, want = (
                importer.ImportSummary(file=source, survey=A.id, format="mturk", encoding="")
                for _ in range(2)
            )
            importer._file_counts(store, source, got, quality.SurveyAnswers.read(store, A.id))
            reference_file_counts(store, A.id, source, want, listed)
            assert vars(got) == vars(want)
            assert list(got.excluded) == sorted(want.excluded)
            seen_duplicates = max(seen_duplicates, got.duplicates_count)
    assert seen_duplicates > 11
    # the counts are this file's: both rules the importer does not write among them
    assert {'a "rule", [odd]', "duplicate", "attention_check"} <= set(got.excluded)


def test_scores_past_sqlites_length_limit_are_read_as_rows(store, tmp_path, monkeypatch):
    """Kept answers too many for one text within SQLite's length limit: the scores are read
    row by row instead, and are the same."""
    two_files(store, tmp_path)
    (width,) = store.conn.execute("SELECT MAX(id) + 1 FROM rating_names").fetchone()
    (codes,) = store.conn.execute(
        f"SELECT length(group_concat(subject * {width} + question)) FROM answers "
        "WHERE excluded IS NULL AND value IS NOT NULL"
    ).fetchone()
    tuples, limited = store.tuples, []

    def limited_texts(sql, params=()):  # the limit while the answers are read as texts
        if "group_concat" not in sql:
            return tuples(sql, params)
        limited.append(sql)
        store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, codes - 1)
        try:
            return tuples(sql, params).fetchall()
        finally:
            store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000_000)

    monkeypatch.setattr(store, "tuples", limited_texts)
    with store.transaction():
        written = quality.write_human_scores(store, A)
    monkeypatch.undo()
    assert limited  # the texts were tried
    assert written == len(scores(store)) > 0
    assert scores(store) == reference_scores(store, A)
