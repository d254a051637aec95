"""The human scores give what the per-answer SQL they replace gave; the duplicate rule
marks what it marked.

``reference_scores`` is the score computation of commit f87f56d (an ORDER BY over a
four-table join, grouped in Python); ``reference_duplicates`` that commit's duplicate rule
(the importer's still: a faster one must match it). The survey's answers are made to
disagree on everything the orders read: two files, unknown and equal submit times, and
values whose float sum depends on the order they are added in (a mean that read a
group's values in another order would differ): fractions (read as tuples) or whole
numbers (read as texts of integers)."""

from itertools import groupby
from operator import itemgetter

import numpy as np
import pytest

from mturk_format import simulate, write_batch_results
from semcomp.surveys import importer
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
        for stat, (function, _) in importer.SCORE_STATS.items():
            metric = importer.human_metric(survey.id, stat, question_id)
            rows.append((candidate_id, metric, float(function(values))))
    return rows


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


@pytest.mark.parametrize("values", ORDERED_VALUES)
def test_duplicates_and_scores_match_the_per_answer_sql(store, tmp_path, monkeypatch, values):
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
        importer.apply_quality_control(store, A.id, min_work_seconds=60, include_rejected=False)
        written = importer.write_human_scores(store, A)
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
