"""Importing MTurk batch results: both layouts, QC, failures, idempotency, human scores."""

import json

import numpy as np
import pytest

from mturk_format import assignment, candidates, write_batch_results
from semcomp.analysis.rd import metric_columns, rd_points
from semcomp.errors import ConfigError
from semcomp.surveys import importer, mturk
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings

A, B = load_survey("A"), load_survey("B")

MAPPING_A = """
original = "Input.image_A_url"
candidate = "Input.image_B_url"

[questions.similarity]
field = "Q1"
"""


def survey_a_rows(
    store, ratings: dict[tuple[int, str], int], first: int = 0, **kwargs
) -> list[dict]:
    """One assignment per (candidate index, worker) → rating, in the default JSON layout."""
    found = candidates(store)
    return [
        assignment(
            number,
            worker,
            {"image_A_url": found[index]["original_file"], "image_B_url": found[index]["url"]},
            {"Q1": str(value)},
            **kwargs,
        )
        for number, ((index, worker), value) in enumerate(ratings.items(), start=first)
    ]


def write_mapping(tmp_path, text=MAPPING_A):
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return path


def test_json_layout_import_writes_ratings_and_human_scores(store, tmp_path):
    ratings = {(0, "W1"): 7, (0, "W2"): 9, (0, "W3"): 4, (1, "W1"): 10, (1, "W2"): 8}
    results = write_batch_results(tmp_path / "batch.csv", survey_a_rows(store, ratings))
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert (summary.rows, summary.kept, summary.failed, summary.unmatched) == (5, 5, [], [])
    assert summary.assignments_new == 5 and summary.ratings_new == 5
    found = candidates(store)
    scores = store.frame("SELECT candidate_id, metric, value FROM scores")
    by = {(r.candidate_id, r.metric): r.value for r in scores.itertuples()}
    assert by[(found[0]["id"], "human.A.median[similarity]")] == 7
    assert by[(found[0]["id"], "human.A.mean[similarity]")] == pytest.approx(20 / 3)
    assert by[(found[1]["id"], "human.A.median[similarity]")] == 9
    metric = store.frame("SELECT * FROM metrics WHERE name = 'human.A.median[similarity]'")
    assert metric.embedder_id.isna().all() and "median" in metric.formula[0]
    points = rd_points(store)
    assert "human.A.median[similarity]" in metric_columns(points)
    times = store.frame("SELECT submit_time FROM assignments").submit_time
    assert times.iloc[0].startswith("2012-06-08T17:")  # PDT is UTC-7


def test_flattened_layout_with_labels_and_option_columns(store, tmp_path):
    found = candidates(store)
    answers = {
        "objects": {"label": "4"},  # crowd-classifier
        "appearance": {"option_1": False, "option_2": True, "option_3": False},  # radio group
        "position": {"1": False, "5": True},  # radio group named by value
        "background": "3",  # slider or text
        "color": {"label": "1"},
    }
    rows = [
        assignment(
            1, "W1", {"original": found[2]["original_id"], "candidate": found[2]["id"]}, answers
        )
    ]
    results = write_batch_results(tmp_path / "flat.csv", rows, layout="flat")
    header = results.read_text().splitlines()[0]
    assert '"Answer.appearance.option_2"' in header and '"Answer.objects.label"' in header
    summary = import_ratings(store, results, B)
    assert summary.failed == [] and summary.kept == 5
    values = dict(store.conn.execute("SELECT question, value FROM ratings").fetchall())
    assert values == {"objects": 4, "appearance": 2, "position": 5, "background": 3, "color": 1}


def test_reimport_adds_nothing_and_status_changes_update(store, tmp_path):
    ratings = {(0, "W1"): 2, (0, "W2"): 9, (0, "W3"): 8}
    mapping = write_mapping(tmp_path)
    rows = survey_a_rows(store, ratings)
    results = write_batch_results(tmp_path / "batch.csv", rows)
    import_ratings(store, results, A, mapping=mapping)
    counts = (store.count("assignments"), store.count("ratings"), store.count("scores"))
    again = import_ratings(store, results, A, mapping=mapping)
    assert (store.count("assignments"), store.count("ratings"), store.count("scores")) == counts
    assert again.ratings_new == 0 and again.assignments_unchanged == 3
    rows[0]["AssignmentStatus"] = "Rejected"
    for row in rows[1:]:
        row["AssignmentStatus"] = "Approved"
    write_batch_results(results, rows)
    updated = import_ratings(store, results, A, mapping=mapping)
    assert updated.assignments_updated == 3 and updated.ratings_new == 0
    assert updated.excluded == {"rejected": 1} and updated.kept == 2
    statuses = set(store.frame("SELECT status FROM assignments").status)
    assert statuses == {"Rejected", "Approved"}
    median = store.conn.execute(
        "SELECT value FROM scores WHERE metric = 'human.A.median[similarity]'"
    ).fetchone()[0]
    assert median == 8.5  # the rejected 2 no longer counts
    kept = import_ratings(store, results, A, mapping=mapping, include_rejected=True)
    assert kept.kept == 3 and kept.excluded == {}


def test_quality_control_work_time_gold_items_and_duplicates(store, tmp_path):
    found = candidates(store)
    mapping = write_mapping(
        tmp_path,
        MAPPING_A + f'\n[[checks]]\noriginal = "{found[0]["original_file"]}"\n'
        f'candidate = "{found[0]["original_file"]}"\nquestion = "similarity"\nmin = 8\n',
    )
    rows = survey_a_rows(store, {(1, "FAST"): 5}, seconds=3)
    rows += survey_a_rows(store, {(1, "CARELESS"): 6}, first=1)
    check = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["original_file"]}
    # the careless worker fails a check: all their answers are excluded
    rows.append(assignment(50, "CARELESS", check, {"Q1": "3"}))
    # a worker who rates the same pair in two assignments: the first (earlier) counts
    rows += survey_a_rows(store, {(1, "TWICE"): 9}, first=2, minute=1)
    rows += survey_a_rows(store, {(1, "TWICE"): 2}, first=3, minute=30)
    rows.append(assignment(60, "GOOD", check, {"Q1": "10"}))
    results = write_batch_results(tmp_path / "qc.csv", rows)
    summary = import_ratings(store, results, A, mapping=mapping, min_work_seconds=10)
    assert summary.failed == []
    assert summary.excluded == {"work_time": 1, "attention_check": 1, "duplicate": 1}
    assert summary.kept == 1
    assert len(summary.duplicates) == 1 and "TWICE" in summary.duplicates[0]
    kept = store.frame(
        "SELECT worker_id, value FROM ratings WHERE excluded IS NULL AND is_check = 0"
    )
    assert kept.values.tolist() == [["TWICE", 9.0]]
    checks = store.frame("SELECT worker_id, check_passed FROM ratings WHERE is_check = 1")
    assert dict(checks.values.tolist()) == {"CARELESS": 0, "GOOD": 1}


def test_bad_answers_are_failures_with_file_line_and_column(store, tmp_path):
    found = candidates(store)
    inputs = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["url"]}
    rows = [
        assignment(1, "W1", inputs, {"Q1": ""}),
        assignment(2, "W2", inputs, {"Q1": "11"}),
        assignment(3, "W3", inputs, {"Q1": "very"}),
        assignment(4, "W4", inputs, {"Q1": "6"}),
    ]
    results = write_batch_results(tmp_path / "bad.csv", rows)
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert summary.kept == 1
    reasons = [reason for _, reason in summary.failed]
    assert reasons == ["blank answer", "11 is outside the scale 1–10", "'very' is not a number"]
    assert next(where for where, _ in summary.failed) == "bad.csv line 2, Answer.Q1"
    failures = store.frame("SELECT * FROM failures WHERE stage = 'ratings' ORDER BY item")
    assert len(failures) == 3
    detail = json.loads(failures.detail[1])
    assert detail["line"] == 3 and detail["column"] == "Answer.Q1" and detail["value"] == "11"
    assert detail["file"] == str(results.resolve())
    # fixing the file and importing again clears its failures
    for row in rows[:3]:
        row["answers"] = {"Q1": "5"}
    write_batch_results(results, rows)
    import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert store.frame("SELECT * FROM failures WHERE stage = 'ratings'").empty


def test_bom_and_cp1252_files_import(store, tmp_path):
    found = candidates(store)
    inputs = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["url"]}
    rows = [assignment(1, "Wé", inputs, {"Q1": "7", "comment": "très bien – merci"})]
    bom = write_batch_results(tmp_path / "bom.csv", rows, encoding="utf-8-sig")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")
    assert import_ratings(store, bom, A, mapping=write_mapping(tmp_path)).kept == 1
    rows[0] |= {"AssignmentId": "3ASSIGNCP1252", "WorkerId": "Wè"}
    cp = write_batch_results(tmp_path / "excel.csv", rows, encoding="cp1252")
    summary = import_ratings(store, cp, A, mapping=write_mapping(tmp_path))
    assert summary.encoding == "cp1252" and summary.kept == 1
    workers = set(store.frame("SELECT worker_id FROM assignments").worker_id)
    assert workers == {"Wé", "Wè"}


def test_missing_required_columns_lists_expected_and_found(store, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text('"HITId","WorkerId","Answer.Q1"\n"h","w","5"\n')
    with pytest.raises(ConfigError) as caught:
        import_ratings(store, path, A, mapping=write_mapping(tmp_path))
    message = str(caught.value)
    assert "missing AssignmentId, AssignmentStatus" in message
    assert "expected columns HITId, AssignmentId" in message and "found HITId, WorkerId" in message
    rows = survey_a_rows(store, {(0, "W1"): 5})
    results = write_batch_results(tmp_path / "batch.csv", rows)
    with pytest.raises(ConfigError, match=r"Input\.original.*Input\.image_A_url"):
        import_ratings(store, results, A)  # no mapping, and no default columns


def test_extra_columns_duplicated_assignments_and_short_rows(store, tmp_path):
    rows = survey_a_rows(store, {(0, "W1"): 5, (1, "W2"): 6})
    rows.append(dict(rows[0], answers={"Q1": "9"}))
    results = write_batch_results(
        tmp_path / "dup.csv", rows, extra_columns={"MyNotes": "looked fine"}
    )
    with results.open("a", encoding="utf-8") as handle:
        handle.write('"3HIT","only three","fields"\n')
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert summary.unknown_columns == ["MyNotes"]
    assert summary.kept == 2
    assert [reason.split(" (")[0] for _, reason in summary.failed] == [
        "duplicated assignment",
        "row has 3 fields, the header has 33",
    ]
    assert store.conn.execute("SELECT value FROM ratings WHERE worker_id = 'W1'").fetchone()[0] == 5


def test_answers_for_unknown_candidates_are_kept_aside(store, tmp_path):
    found = candidates(store)
    rows = survey_a_rows(store, {(0, "W1"): 5})
    rows.append(
        assignment(
            7,
            "W2",
            {"image_A_url": found[0]["original_file"], "image_B_url": "https://x.org/nope.jpg"},
            {"Q1": "8"},
        )
    )
    rows.append(
        assignment(
            8,
            "W3",
            {"image_A_url": found[0]["original_file"], "image_B_url": found[-1]["url"]},
            {"Q1": "8"},
        )
    )
    results = write_batch_results(tmp_path / "unknown.csv", rows)
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert summary.kept == 1 and len(summary.unmatched) == 2
    reasons = [reason for _, reason in summary.unmatched]
    assert "candidate 'https://x.org/nope.jpg' is not in the study" in reasons
    assert any("is not a candidate of" in reason for reason in reasons)
    aside = store.frame("SELECT * FROM ratings_unmatched ORDER BY source_line")
    assert aside.worker_id.tolist() == ["W2", "W3"]
    assert json.loads(aside.answers[0]) == {"Q1": "8"}
    # once the answer names a known candidate, importing again matches it and clears it
    rows[1]["inputs"]["image_B_url"] = found[0]["url"]
    write_batch_results(results, rows)
    again = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert again.kept == 2 and len(again.unmatched) == 1
    assert store.frame("SELECT worker_id FROM ratings_unmatched").worker_id.tolist() == ["W3"]


def test_long_format(store, tmp_path):
    found = candidates(store)
    lines = ["rater,original,candidate,question,value"]
    for rater, value in (("r1", 3), ("r2", 5), ("r3", 4)):
        lines.append(f"{rater},{found[0]['original_file']},{found[0]['id']},objects,{value}")
    lines.append(f"r1,{found[0]['original_file']},{found[0]['id']},color,2")
    lines.append(f"r1,{found[0]['original_file']},{found[0]['id']},color,2")  # twice
    lines.append(f"r2,{found[0]['original_file']},{found[0]['id']},mood,2")  # no such question
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = import_ratings(store, path, B, format="long")
    assert summary.kept == 4
    assert [r.split(" (")[0] for _, r in summary.failed] == [
        "duplicated answer",
        "survey B has no question 'mood'",
    ]
    medians = store.frame("SELECT metric, value FROM scores WHERE metric LIKE 'human.B.median%'")
    assert dict(medians.values.tolist()) == {
        "human.B.median[objects]": 4.0,
        "human.B.median[color]": 2.0,
    }
    again = import_ratings(store, path, B, format="long")
    assert again.ratings_new == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fri Jun 08 09:21:50 PDT 2012", "2012-06-08T16:21:50+00:00"),
        ("Mon Jan 09 23:00:00 PST 2023", "2023-01-10T07:00:00+00:00"),
        ("Tue Mar 05 10:00:00 UTC 2024", "2024-03-05T10:00:00+00:00"),
        ("2024-03-05T10:00:00Z", "2024-03-05T10:00:00+00:00"),
        ("", None),
        ("yesterday", None),
    ],
)
def test_mturk_times(text, expected):
    assert mturk.mturk_time(text) == expected


def test_human_scores_follow_new_imports(store, tmp_path):
    mapping = write_mapping(tmp_path)
    first = write_batch_results(tmp_path / "one.csv", survey_a_rows(store, {(0, "W1"): 2}))
    import_ratings(store, first, A, mapping=mapping)
    rows = survey_a_rows(store, {(0, "W2"): 8, (0, "W3"): 9})
    for row in rows:
        row["AssignmentId"] += "B"
    second = write_batch_results(tmp_path / "two.csv", rows)
    import_ratings(store, second, A, mapping=mapping)
    values = store.frame("SELECT metric, value FROM scores WHERE metric LIKE 'human.A.%'")
    assert dict(values.values.tolist()) == {
        "human.A.median[similarity]": 8.0,
        "human.A.mean[similarity]": pytest.approx(np.mean([2, 8, 9])),
    }


def test_writing_in_small_chunks_gives_the_same_result(store, tmp_path, monkeypatch):
    from semcomp.surveys import importer

    monkeypatch.setattr(importer, "FLUSH_ANSWERS", 1)
    found = candidates(store)
    lines = ["rater,original,candidate,question,value"]
    for question, value in (("objects", 3), ("color", 4), ("objects", 5)):
        lines.append(f"r1,{found[0]['original_file']},{found[0]['id']},{question},{value}")
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = import_ratings(store, path, B, format="long")
    assert (summary.assignments_new, summary.kept, len(summary.failed)) == (1, 2, 1)
    again = import_ratings(store, path, B, format="long")
    assert (again.assignments_new, again.assignments_unchanged, again.ratings_new) == (0, 1, 0)


def ratings_indexes(store) -> list[tuple[str, str]]:
    """The secondary indexes of the tables behind the ``ratings`` view."""
    rows = store.conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
        "AND tbl_name IN ('assignments', 'answers') AND sql IS NOT NULL ORDER BY name"
    )
    return [tuple(row) for row in rows]


def test_a_large_import_builds_the_ratings_indexes_again(store, tmp_path, monkeypatch):
    """An import of more answers than one write into an empty table drops the ratings'
    secondary indexes and builds them again at its end; a failed one leaves them as they
    were (its transaction is rolled back) and the next import reads the same."""
    from semcomp.surveys import importer

    monkeypatch.setattr(importer, "FLUSH_ANSWERS", 2)
    indexes = ratings_indexes(store)
    assert indexes  # assignments_by_worker
    ratings = {(index, f"W{worker}"): 5 + worker for index in (0, 1) for worker in range(3)}
    results = write_batch_results(tmp_path / "batch.csv", survey_a_rows(store, ratings))
    mapping = write_mapping(tmp_path)
    dropped = []
    drop = importer._drop_secondary_indexes
    monkeypatch.setattr(
        importer, "_drop_secondary_indexes", lambda *a: dropped.append(a[1]) or drop(*a)
    )

    flush, flushed = importer._flush, []

    def killed(*args):
        if flushed and ratings_indexes(store) == []:  # dropped, answers written
            raise KeyboardInterrupt
        flushed.append(flush(*args))

    with monkeypatch.context() as patched:
        patched.setattr(importer, "_flush", killed)
        with pytest.raises(KeyboardInterrupt):
            import_ratings(store, results, A, mapping=mapping)
    assert ratings_indexes(store) == indexes and store.count("ratings") == 0
    summary = import_ratings(store, results, A, mapping=mapping)
    assert dropped == ["assignments", "answers"] * 2
    assert ratings_indexes(store) == indexes
    assert (summary.ratings_new, summary.kept) == (6, 6)
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM ratings WHERE survey = 'A' AND worker_id = 'W1'"
    ).fetchall()
    assert "assignments_by_worker" in str([tuple(row) for row in plan])
    # into a table that holds more rows than one write, the indexes are kept up to date
    again = write_batch_results(tmp_path / "again.csv", survey_a_rows(store, ratings, first=10))
    import_ratings(store, again, A, mapping=mapping)
    assert dropped == ["assignments", "answers"] * 2 and ratings_indexes(store) == indexes


MAPPING_C = """
candidate = "Input.image_url"

[questions.objects]
field = "standout"

[questions.relation]
field = "relation"

[questions.adjectives]
field = "adj"
"""


@pytest.mark.parametrize("layout", ["json", "flat"])
def test_survey_c_with_a_mapping_checkboxes_and_choice_limits(store, tmp_path, layout):
    found = candidates(store)
    adjectives = {"busy": True, "eerie": True, "calm": False, "warm": False}
    rows = [
        assignment(
            1,
            "W1",
            {"image_url": found[0]["url"]},
            {"standout": "Dogs, a ball", "relation": "chasing", "adj": adjectives},
        ),
        assignment(
            2,
            "W2",
            {"image_url": found[1]["url"]},
            {"standout": "tree", "relation": "", "adj": dict.fromkeys(adjectives, True)},
        ),
        assignment(
            3,
            "W3",
            {"image_url": found[2]["url"]},
            {"standout": "sky", "relation": "above", "adj": {"spooky": True}},
        ),
    ]
    results = write_batch_results(tmp_path / "c.csv", rows, layout=layout)
    mapping = write_mapping(tmp_path, MAPPING_C)
    summary = import_ratings(store, results, load_survey("C"), mapping=mapping)
    failed = sorted(reason for _, reason in summary.failed)
    assert failed[0].startswith("'spooky' is not one of the options (Busy, Calm, Cheerful")
    assert failed[1:] == ["4 options chosen, at most 3 allowed", "blank answer"]
    texts = store.frame(
        "SELECT worker_id, question, text FROM ratings ORDER BY worker_id, question"
    ).values.tolist()
    assert texts[:3] == [
        ["W1", "adjectives", "Busy, Eerie"],
        ["W1", "objects", "Dogs, a ball"],
        ["W1", "relation", "chasing"],
    ]
    assert summary.kept == 6 and summary.scores_written == 0


def test_unreadable_task_answers_is_one_failure(store, tmp_path):
    rows = survey_a_rows(store, {(0, "W1"): 5, (1, "W2"): 6})
    results = write_batch_results(tmp_path / "broken.csv", rows)
    text = results.read_text().replace('[{""Q1"": ""6""}]', '[{""Q1"": ""6""')
    results.write_text(text)
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert summary.kept == 1
    assert len(summary.failed) == 1
    where, reason = summary.failed[0]
    assert where == "broken.csv line 3, Answer.taskAnswers" and reason.startswith("not JSON")


# ---- review fixes: unknown images, duplicates across files, times, QC options -------------


def write_long(tmp_path, rows: list[tuple], name: str = "long.csv"):
    """rows: (rater, original, candidate, question, value) → a long-format CSV."""
    path = tmp_path / name
    lines = ["rater,original,candidate,question,value"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_long_format_keeps_every_answer_about_an_unknown_pair(store, tmp_path):
    found = candidates(store)
    questions = [q.id for q in B.questions]
    rows = [("r1", found[0]["original_file"], "nope.jpg", q, 3) for q in questions]
    path = write_long(tmp_path, rows)
    summary = import_ratings(store, path, B, format="long")
    assert summary.unmatched_count == len(summary.unmatched) == 5 and summary.kept == 0
    aside = store.frame("SELECT * FROM ratings_unmatched ORDER BY source_line")
    assert [json.loads(a) for a in aside.answers] == [{q: "3"} for q in questions]
    import_ratings(store, path, B, format="long")  # importing again adds nothing
    assert store.count("ratings_unmatched") == 5


def test_unmatched_answers_are_keyed_by_file_line_and_slot(store):
    key = [r["name"] for r in store.conn.execute("PRAGMA table_info(ratings_unmatched)")
           if r["pk"]]  # fmt: skip
    assert sorted(key) == ["item", "source_file", "source_line"]


def test_long_format_second_file_answer_is_a_duplicate_not_a_replacement(store, tmp_path):
    found = candidates(store)
    pair = (found[0]["original_file"], found[0]["id"])
    first = write_long(tmp_path, [("r1", *pair, "objects", 5), ("r2", *pair, "objects", 4)])
    second = write_long(tmp_path, [("r1", *pair, "objects", 2)], name="later.csv")
    import_ratings(store, first, B, format="long")
    summary = import_ratings(store, second, B, format="long")
    assert summary.excluded == {"duplicate": 1} and summary.kept == 0
    assert summary.duplicates_count == 1 and "long.csv line 2" in summary.duplicates[0]
    kept = store.frame("SELECT worker_id, value FROM ratings WHERE excluded IS NULL")
    assert sorted(kept.values.tolist()) == [["r1", 5.0], ["r2", 4.0]]
    # importing the first file again does not make it the later one
    import_ratings(store, first, B, format="long")
    kept = store.frame("SELECT value FROM ratings WHERE worker_id = 'r1' AND excluded IS NULL")
    assert kept.value.tolist() == [5.0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Fri Feb 30 09:21:50 PDT 2012", "day is out of range"),
        ("Fri Jun 08 25:00:00 PDT 2012", "hour must be in"),
        ("Fri Jun 08 09:00:00 XYZ 2012", "unknown time zone 'XYZ'"),
        ("Fri Jun 08 09:00:00 CEST 2012", "unknown time zone 'CEST'"),
        ("Fri Foo 08 09:00:00 PDT 2012", "unknown month 'Foo'"),
        ("yesterday", "not a time"),
    ],
)
def test_unreadable_times_are_none_with_a_reason(text, reason):
    assert mturk.mturk_time(text) is None
    value, why = mturk.read_time(text)
    assert value is None and reason in why


def test_unreadable_times_are_failures_and_the_import_goes_on(store, tmp_path):
    rows = survey_a_rows(store, {(0, "W1"): 5, (1, "W2"): 6, (2, "W3"): 7})
    rows[0]["SubmitTime"] = "Fri Feb 30 10:00:00 PDT 2012"
    rows[1]["AcceptTime"] = "Fri Jun 08 25:00:00 PDT 2012"
    rows[2]["SubmitTime"] = "Fri Jun 08 10:00:00 XYZ 2012"
    results = write_batch_results(tmp_path / "times.csv", rows)
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert summary.kept == 3
    assert [where for where, _ in summary.failed] == [
        "times.csv line 2, SubmitTime",
        "times.csv line 3, AcceptTime",
        "times.csv line 4, SubmitTime",
    ]
    times = store.frame("SELECT accept_time, submit_time FROM assignments ORDER BY source_line")
    assert times.submit_time.isna().tolist() == [True, False, True]
    assert times.accept_time.isna().tolist() == [False, True, False]


MAPPING_SLOTS = """
original = "Input.original{slot}"
candidate = "Input.candidate{slot}"
slots = ["2", "10"]
field_template = "{question}_{slot}"
"""


def two_slot_row(number, worker, found, first, second, answers, **kwargs):
    inputs = {"original2": "", "candidate2": "", "original10": "", "candidate10": ""}
    for slot, index in (("2", first), ("10", second)):
        if index is not None:
            inputs[f"original{slot}"] = found[index]["original_id"]
            inputs[f"candidate{slot}"] = found[index]["id"]
    return assignment(number, worker, inputs, answers, **kwargs)


def test_first_rating_is_by_submit_time_then_line_then_slot_as_a_number(store, tmp_path):
    found = candidates(store)
    mapping = write_mapping(tmp_path, MAPPING_SLOTS)
    rows = [
        # one assignment shows pair 0 in slots 2 and 10: slot 2 is the first, not "10" < "2"
        two_slot_row(1, "W1", found, 0, 0, {"similarity_2": "3", "similarity_10": "9"}),
        # a blank submit time is not the earliest: the timed assignment on line 4 counts
        two_slot_row(2, "W2", found, 1, None, {"similarity_2": "2"}),
        two_slot_row(3, "W2", found, 1, None, {"similarity_2": "8"}),
    ]
    rows[1]["SubmitTime"] = ""
    results = write_batch_results(tmp_path / "order.csv", rows)
    summary = import_ratings(store, results, A, mapping=mapping)
    assert summary.failed == [] and summary.excluded == {"duplicate": 2}
    kept = store.frame("SELECT worker_id, item, value FROM ratings WHERE excluded IS NULL")
    assert sorted(kept.values.tolist()) == [["W1", "2", 3.0], ["W2", "2", 8.0]]


def test_answers_in_a_slot_that_names_no_image_are_kept_aside(store, tmp_path):
    found = candidates(store)
    rows = [
        # slot 10 names no image but was answered: kept aside; an unanswered one is skipped
        two_slot_row(1, "W1", found, 0, None, {"similarity_2": "4", "similarity_10": "7"}),
        two_slot_row(2, "W2", found, 0, None, {"similarity_2": "5", "similarity_10": ""}),
    ]
    results = write_batch_results(tmp_path / "slots.csv", rows)
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path, MAPPING_SLOTS))
    assert summary.kept == 2 and summary.unmatched == [
        ("slots.csv line 2, item 10", "no image named")
    ]
    aside = store.frame("SELECT * FROM ratings_unmatched")
    assert (
        aside.worker_id.tolist() == ["W1"] and json.loads(aside.answers[0])["similarity_10"] == "7"
    )


def test_a_blank_answer_to_an_attention_check_fails_it(store, tmp_path):
    found = candidates(store)
    mapping = write_mapping(
        tmp_path,
        MAPPING_A + f'\n[[checks]]\noriginal = "{found[0]["original_file"]}"\n'
        f'candidate = "{found[0]["original_file"]}"\nquestion = "similarity"\nmin = 8\n',
    )
    check = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["original_file"]}
    rows = survey_a_rows(store, {(1, "BLANK"): 6, (1, "GOOD"): 7})
    rows.append(assignment(50, "BLANK", check, {"Q1": ""}))
    rows.append(assignment(51, "GOOD", check, {"Q1": "9"}))
    results = write_batch_results(tmp_path / "checks.csv", rows)
    summary = import_ratings(store, results, A, mapping=mapping)
    assert [reason for _, reason in summary.failed] == ["blank answer"]
    assert summary.excluded == {"attention_check": 1} and summary.kept == 1
    checks = store.frame("SELECT worker_id, check_passed FROM ratings WHERE is_check = 1")
    assert dict(checks.values.tolist()) == {"BLANK": 0, "GOOD": 1}


def test_quality_control_options_not_given_keep_the_surveys(store, tmp_path):
    mapping = write_mapping(tmp_path)
    short = survey_a_rows(store, {(0, "FAST"): 5}, seconds=3)
    first = write_batch_results(tmp_path / "one.csv", short)
    summary = import_ratings(store, first, A, mapping=mapping, min_work_seconds=10)
    assert summary.excluded == {"work_time": 1} and summary.options_changed == ""
    later = write_batch_results(tmp_path / "two.csv", survey_a_rows(store, {(1, "W"): 6}, first=9))
    summary = import_ratings(store, later, A, mapping=mapping)  # no --min-work-seconds
    assert summary.options == {"min_work_seconds": 10, "include_rejected": False}
    assert (
        store.count("ratings") - 1
        == store.frame("SELECT * FROM ratings WHERE excluded IS NULL").shape[0]
    )  # the short assignment of the first file is still excluded
    off = import_ratings(store, later, A, mapping=mapping, min_work_seconds=0)
    assert off.options["min_work_seconds"] is None
    assert "min_work_seconds 10 → None" in off.options_changed
    assert any("quality control of survey A changed" in line for line in off.lines())
    assert store.frame("SELECT * FROM ratings WHERE excluded IS NOT NULL").empty


def test_an_assignment_cannot_move_to_another_survey(store, tmp_path):
    from semcomp.surveys.definitions import SurveyDefinition

    other = SurveyDefinition(**(A.model_dump() | {"id": "A2", "source": ""}))
    results = write_batch_results(tmp_path / "a.csv", survey_a_rows(store, {(0, "W1"): 5}))
    import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    before = store.frame("SELECT survey, COUNT(*) AS n FROM ratings GROUP BY survey")
    with pytest.raises(ConfigError, match=r"was imported for survey A, not A2.*--survey A"):
        import_ratings(store, results, other, mapping=write_mapping(tmp_path))
    after = store.frame("SELECT survey, COUNT(*) AS n FROM ratings GROUP BY survey")
    assert after.equals(before)


def test_a_mapped_answer_without_a_column_is_one_error(store, tmp_path):
    found = candidates(store)
    inputs = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["url"]}
    rows = [assignment(n, f"W{n}", inputs, {"Q2": "5"}) for n in range(3)]
    results = write_batch_results(tmp_path / "flat.csv", rows, layout="flat")
    with pytest.raises(ConfigError, match=r"no answer column for Answer\.Q1; found Answer\.Q2"):
        import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert store.count("failures") == 0


def test_summary_lists_the_first_hundred_problems_and_counts_all(store, tmp_path):
    found = candidates(store)
    inputs = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["url"]}
    rows = [assignment(n, f"W{n}", inputs, {"Q1": "eleven"}) for n in range(150)]
    results = write_batch_results(tmp_path / "bad.csv", rows)
    summary = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert summary.failed_count == 150 and len(summary.failed) == 100
    assert "failed 150" in summary.lines()[1] and "... and 130 more" in summary.lines()[-1]
    stored = json.loads(store.conn.execute("SELECT summary FROM rating_imports").fetchone()[0])
    assert stored["failed_count"] == 150 and len(stored["failed"]) == 100
    assert store.count("failures") == 150  # every one is still recorded


def test_option_numbers_count_from_the_low_end_of_the_scale(store, tmp_path):
    from semcomp.surveys.answers import read_answer
    from semcomp.surveys.definitions import Question

    calm = Question(id="calm", kind="scale", text="How calm?", low=0, high=4)
    assert read_answer(calm, {"calm.option_1": "true"}, "calm", {}).value == 0
    assert read_answer(calm, {"calm.option_5": "true"}, "calm", {}).value == 4
    assert read_answer(calm, {"calm.0": "true"}, "calm", {}).value == 0  # a value, not a number
    assert read_answer(A.questions[0], {"Q1.option_3": "true"}, "Q1", {}).value == 3


@pytest.mark.parametrize("text", ["Fri Dec 31 23:00:00 EST 9999", "9999-12-31T23:00:00-05:00"])
def test_a_time_after_the_last_utc_year_is_unreadable_not_a_crash(text):
    value, why = mturk.read_time(text)
    assert value is None and why == "not a valid time: date value out of range"


@pytest.mark.parametrize("reading", ["columnar", "records"])
def test_an_import_shows_the_rows_read_and_each_step_and_is_quiet_without_progress(
    store, tmp_path, capsys, monkeypatch, reading
):
    if reading == "records":
        monkeypatch.setattr(mturk, "columnar_chunks", lambda *args: None)
    monkeypatch.setattr(importer, "PROGRESS_AFTER", 0)  # a small file: shown at once
    ratings = {(index, f"W{worker}"): 1 + worker for index in range(2) for worker in range(4)}
    results = write_batch_results(tmp_path / "batch.csv", survey_a_rows(store, ratings))
    shown = import_ratings(store, results, A, mapping=write_mapping(tmp_path), progress=True)
    err = capsys.readouterr().err
    for step in ("ratings import", "reading rows", "quality control", "human scores", "summary"):
        assert step in err
    # the rows read, out of the file's when it is parsed whole
    assert ("8/8" if reading == "columnar" else "8 rows") in err
    again = import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert capsys.readouterr().err == ""
    assert (shown.rows, shown.kept, again.rows, again.kept) == (8, 8, 8, 8)


def test_a_file_refused_at_once_prints_only_why(store, tmp_path, capsys):
    """The progress shows after a second (:data:`importer.PROGRESS_AFTER`): a missing
    column is one line on stderr, with no bar before it."""
    results = tmp_path / "batch.csv"
    results.write_text("HITId,WorkerId\nH1,W1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an MTurk batch-results CSV"):
        import_ratings(store, results, A, progress=True)
    assert capsys.readouterr().err == ""
