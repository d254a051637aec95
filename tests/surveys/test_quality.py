"""Quality control read as arrays: one survey's rules leave another survey's answers alone,
only changed rules are written, and packed integer columns come apart as they went in."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mturk_format import assignment, candidates, write_batch_results
from semcomp.surveys import quality
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings

A, B = load_survey("A"), load_survey("B")
B_ANSWERS = {"objects": "2", "appearance": "2", "position": "2", "background": "2", "color": "2"}


def gold_item(tmp_path, found: dict) -> Path:
    """A mapping for survey B whose gold item is ``found`` (a candidate): ``objects`` >= 4."""
    path = tmp_path / "gold.toml"
    path.write_text(
        'original = "Input.original"\ncandidate = "Input.candidate"\n[[checks]]\n'
        f'original = "{found["original_id"]}"\ncandidate = "{found["id"]}"\n'
        'question = "objects"\nmin = 4\n'
    )
    return path


def rules(store, survey: str) -> dict[tuple[str, str, str], str | None]:
    return {
        (r["assignment_id"], r["item"], r["question"]): r["excluded"]
        for r in store.conn.execute(
            "SELECT assignment_id, item, question, excluded FROM ratings WHERE survey = ?",
            (survey,),
        )
    }


def test_one_surveys_rules_leave_another_surveys_answers_alone(store, tmp_path):
    found = candidates(store)
    check = {"original": found[0]["original_id"], "candidate": found[0]["id"]}
    pair = {"original": found[2]["original_id"], "candidate": found[2]["id"]}
    # survey B: worker X fails an attention check there (a gold item rated too low)
    b_rows = [
        assignment(1, "X", check, B_ANSWERS, assignment_id="3B0000000000000000000001"),
        assignment(2, "X", pair, B_ANSWERS, assignment_id="3B0000000000000000000002"),
        assignment(3, "Y", pair, B_ANSWERS, assignment_id="3B0000000000000000000003"),
    ]
    b_file = write_batch_results(tmp_path / "b.csv", b_rows, layout="flat")
    assert import_ratings(store, b_file, B, mapping=gold_item(tmp_path, found[0])).excluded == {
        "attention_check": 5
    }
    before = rules(store, "B")
    # survey A: the same workers; X keeps their answer, Y's second answer is a duplicate
    inputs = {"original": found[1]["original_id"], "candidate": found[1]["id"]}
    a_rows = [
        assignment(10, "X", inputs, {"similarity": "7"}, minute=1),
        assignment(11, "Y", inputs, {"similarity": "8"}, minute=2),
        assignment(12, "Y", inputs, {"similarity": "3"}, minute=3),
    ]
    a_file = write_batch_results(tmp_path / "a.csv", a_rows)
    summary = import_ratings(store, a_file, A)
    assert summary.kept == 2 and summary.excluded == {"duplicate": 1}
    excluded = rules(store, "A")
    assert sorted(excluded.values(), key=lambda rule: rule or "") == [None, None, "duplicate"]
    assert rules(store, "B") == before
    # A again with a rule that excludes every answer of A: B's answers are not rewritten
    again = import_ratings(store, a_file, A, min_work_seconds=10_000)
    assert again.excluded == {"work_time": 3} and again.kept == 0
    assert rules(store, "B") == before
    # the scores are A's kept answers only
    assert (
        store.conn.execute("SELECT COUNT(*) FROM scores WHERE metric LIKE 'human.A.%'").fetchone()[
            0
        ]
        == 0
    )


def test_a_survey_is_read_from_its_range_of_assignments_with_another_surveys_inside(
    store, tmp_path
):
    """A survey's answers are read over the range of its assignments' ids: another survey
    imported between two of its files (ids inside that range) is read and left out, one
    imported before it (ids below the range) is not read at all."""
    found = candidates(store)
    pair = {"original": found[2]["original_id"], "candidate": found[2]["id"]}
    inputs = {"original": found[1]["original_id"], "candidate": found[1]["id"]}
    b_first = [assignment(1, "W", pair, B_ANSWERS, assignment_id="3B0000000000000000000001")]
    import_ratings(store, write_batch_results(tmp_path / "b1.csv", b_first, layout="flat"), B)
    a_first = [assignment(10, "Y", inputs, {"similarity": "8"}, minute=2)]
    import_ratings(store, write_batch_results(tmp_path / "a1.csv", a_first), A)
    b_between = [assignment(2, "Y", pair, B_ANSWERS, assignment_id="3B0000000000000000000002")]
    import_ratings(store, write_batch_results(tmp_path / "b2.csv", b_between, layout="flat"), B)
    before = rules(store, "B")
    # Y answers the same pair of A again in a later file: the later answer is the duplicate
    a_later = [assignment(11, "Y", inputs, {"similarity": "3"}, minute=3)]
    summary = import_ratings(store, write_batch_results(tmp_path / "a2.csv", a_later), A)
    assert summary.excluded == {"duplicate": 1} and summary.kept == 0
    assert rules(store, "B") == before
    scanned = []
    store.conn.set_trace_callback(scanned.append)
    a = quality.SurveyAnswers.read(store, A.id)
    b = quality.SurveyAnswers.read(store, B.id)
    store.conn.set_trace_callback(None)
    assert sorted(a.assignment_ids) == ["3ASSIGN00000010", "3ASSIGN00000011"]
    assert len(a.assignment) == 2 and sorted(a.excluded.tolist()) == [0, quality.DUPLICATE]
    assert sorted(b.assignment_ids) == [r["AssignmentId"] for r in b_first + b_between]
    assert len(b.assignment) == 10 and not b.excluded.any()
    ranges = [q for q in scanned if "BETWEEN" in q and "FROM answers r" in q]
    assert len(ranges) == 2 and all(
        "BETWEEN 2 AND 4" in q or "BETWEEN 1 AND 3" in q for q in ranges
    )


def test_rules_applied_again_unchanged_write_nothing(store, tmp_path):
    found = candidates(store)
    inputs = {"original": found[1]["original_id"], "candidate": found[1]["id"]}
    rows = [
        assignment(1, "Y", inputs, {"similarity": "8"}, minute=2),
        assignment(2, "Y", inputs, {"similarity": "3"}, minute=3),
        assignment(3, "Z", inputs, {"similarity": "3"}, status="Rejected"),
    ]
    import_ratings(store, write_batch_results(tmp_path / "a.csv", rows), A)
    # each answer written counted
    store.conn.execute("CREATE TEMP TABLE written (n INTEGER)")
    store.conn.execute("INSERT INTO temp.written VALUES (0)")
    store.conn.execute(
        "CREATE TEMP TRIGGER counted AFTER UPDATE ON main.answers "
        "BEGIN UPDATE written SET n = n + 1; END"
    )
    with store.transaction():
        answers = quality.apply_quality_control(
            store, A.id, min_work_seconds=None, include_rejected=False
        )
        assert store.conn.execute("SELECT n FROM temp.written").fetchone()[0] == 0
        assert sorted(quality.EXCLUDED[c] or "" for c in answers.excluded) == [
            "",
            "duplicate",
            "rejected",
        ]
        # the rejected one now kept: one answer written
        quality.apply_quality_control(store, A.id, min_work_seconds=None, include_rejected=True)
        assert store.conn.execute("SELECT n FROM temp.written").fetchone()[0] == 1


@pytest.mark.parametrize(
    "bounds",
    [[7, 1, 2, 1000], [2**40, 2**30, 5], [2**62, 3, 2**61], [1, 1]],
    ids=["one column", "two columns", "unbounded fields alone", "ones"],
)
def test_packed_columns_come_apart_as_they_went_in(store, bounds):
    rng = np.random.default_rng(0)
    values = [rng.integers(0, min(b, 2**62), 50, dtype=np.int64) for b in bounds]
    if bounds[0] == 2**62:  # a field of no bound may hold any integer
        values[0] = rng.integers(-(2**62), 2**62, 50, dtype=np.int64)
    store.conn.execute(
        "CREATE TEMP TABLE fields (k INTEGER, "
        + ", ".join(f"f{i} INTEGER" for i in range(len(bounds)))
        + ")"
    )
    store.conn.executemany(
        f"INSERT INTO temp.fields VALUES (?{', ?' * len(bounds)})",
        [(k, *(int(v[k]) for v in values)) for k in range(50)],
    )
    fields = quality.packed([(f"f{i}", b) for i, b in enumerate(bounds)])
    assert all(np.prod(b, dtype=object) < 2**62 or len(b) == 1 for _, b in fields)
    read = quality.read_columns(store, [e for e, _ in fields], "FROM temp.fields ORDER BY k", ())
    got = [
        f for column, (_, b) in zip(read, fields, strict=True) for f in quality.unpacked(column, b)
    ]
    assert len(got) == len(bounds)
    for want, have in zip(values, got, strict=True):
        assert have.tolist() == want.tolist()


def test_an_assignments_answers_changing_to_several_rules_are_written_one_by_one(store, tmp_path):
    """Where every answer of an assignment changes but not to one rule, each is written
    as it is: not the assignment's answers all alike."""
    found = candidates(store)
    pair = {"original": found[2]["original_id"], "candidate": found[2]["id"]}
    first = {"objects": "3", "color": "3"}  # the other three questions unanswered
    rows = [
        assignment(1, "X", pair, first, minute=1, assignment_id="3B0000000000000000000001"),
        assignment(2, "X", pair, B_ANSWERS, minute=2, assignment_id="3B0000000000000000000002"),
    ]
    import_ratings(store, write_batch_results(tmp_path / "b.csv", rows, layout="flat"), B)
    second = {q: r for (a, _, q), r in rules(store, "B").items() if a.endswith("2")}
    assert second == {
        "objects": "duplicate",
        "color": "duplicate",
        "appearance": None,
        "position": None,
        "background": None,
    }
    with store.transaction():
        # every answer of the second assignment held another rule before
        store.conn.execute(
            "UPDATE answers SET excluded = 'work_time' WHERE assignment = "
            "(SELECT id FROM assignments WHERE assignment_id = '3B0000000000000000000002')"
        )
        quality.apply_quality_control(store, B.id, min_work_seconds=None, include_rejected=False)
    assert {q: r for (a, _, q), r in rules(store, "B").items() if a.endswith("2")} == second


@pytest.mark.parametrize("nul", [False, True], ids=["numpy", "a text ending in NUL"])
@pytest.mark.parametrize("distinct", [1000, 20], ids=["many distinct", "few distinct"])
@pytest.mark.parametrize("wide", [True, False], ids=["any characters", "ASCII"])
@pytest.mark.parametrize("seed", range(2))
def test_ranks_are_sqlites_order_of_texts_nulls_first(seed, wide, distinct, nul):
    """Texts ranked as SQLite orders them (by code point), NULL first, whatever the
    characters: accents, wide and astral ones, and NUL (which numpy's strings drop at the
    end of a text); many distinct texts are sorted by numpy (ASCII ones as bytes), few by
    Python."""
    import random

    rng = random.Random(seed)
    alphabet = ["a", "b", "Z", "0", " ", "~"] + ["é", "\u3000", "\U0001f600"] * wide
    alphabet += ["\x00"] * nul
    pool = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))) for _ in range(distinct)
    ]
    values = [None if rng.random() < 0.2 else rng.choice(pool) for _ in range(300)]
    values += ["b\x00", "b"] * nul
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k INTEGER, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", enumerate(values))
    expected = [
        r
        for (r,) in conn.execute(
            "SELECT CASE WHEN v IS NULL THEN 0 ELSE (SELECT COUNT(DISTINCT u.v) FROM t u "
            "WHERE u.v <= t.v) END FROM t ORDER BY k"
        )
    ]
    assert any(v.endswith("\x00") for v in values if v) == nul
    assert quality.ranks(values).tolist() == expected
