"""HITs made outside semcomp, shaped as real ones are: ten items packed into one input cell
as a list, items named by the HIT builder's own ids, the original's name, the method and
the operating point; imports that keep nothing say so."""

import json

import pytest

from mturk_format import assignment, write_batch_results
from semcomp.cli import main
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings
from semcomp.surveys.mapping import list_cell

A = load_survey("A")
#: the HIT builder's key: query id → (original's name, method, operating point); 9 and 10
#: name a WebP the study does not have
KEY = {
    **{
        str(1 + i + 4 * j): ("img" + str(i + 1), "jpeg", ("quality=30", "70")[j])
        for j in range(2)
        for i in range(4)
    },
    "9": ("img1", "webp", "q1"),
    "10": ("img2", "webp", "q1"),
}
ORDER = ["9", "6", "8", "2", "10", "1", "3", "7", "5", "4"]


def mapping_text(candidate: str = "Input.query_id[{slot}]") -> str:
    lines = [
        f'candidate = "{candidate}"',
        "slots = 10",
        "",
        "[questions.similarity]",
        'field = "rating_{slot}"',
        "",
    ]
    for query, (original, method, point) in KEY.items():
        lines.append(
            f'[items."{query}"]\noriginal = "{original}"\nmethod = "{method}"\n'
            f'operating_point = "{point}"\n'
        )
    return "\n".join(lines)


def packed_export(tmp_path, workers=("A1WORKER", "A2WORKER", "A3WORKER")):
    """One HIT of ten items whose ids sit in one cell, as MTurk exports it (JSON layout)."""
    rows = []
    for number, worker in enumerate(workers):
        answers = {f"rating_{slot}": str((slot + number) % 10 + 1) for slot in range(1, 11)}
        inputs = {"query_id": "[" + ", ".join(ORDER) + "]", "batch_name": "pilot"}
        rows.append(assignment(number, worker, inputs, answers, hit="3HITPACKED"))
    return write_batch_results(tmp_path / "Batch_4242_batch_results.csv", rows)


def write(tmp_path, text, name="mapping.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_list_cells_read_as_json_or_python_literals():
    assert list_cell("[9, 6, 8, 2]") == ("9", "6", "8", "2")
    assert list_cell("['a.jpg', \"b c.png\"]") == ("a.jpg", "b c.png")
    assert list_cell("(1.0, 2)") == ("1", "2")
    assert list_cell("[null, 3]") == ("", "3")
    for text in ("9, 6, 8", "[9, 6", "{'a': 1}", "[__import__('os')]", ""):
        assert list_cell(text) is None, text


def test_ten_items_packed_in_one_cell_named_by_the_builders_ids(store, tmp_path):
    results = packed_export(tmp_path)
    summary = import_ratings(store, results, A, mapping=write(tmp_path, mapping_text()))
    assert summary.assignments_new == 3 and summary.failed == []
    assert summary.kept == 3 * 8
    assert summary.unmatched_count == 3 * 2
    assert {reason for _, reason in summary.unmatched} == {"method 'webp' is not in the study"}
    ratings = store.frame(
        "SELECT r.item, r.worker_id, r.value, o.name AS original, m.name AS method, "
        "rep.operating_point FROM ratings r JOIN originals o ON o.id = r.original_id "
        "JOIN candidates c ON c.id = r.candidate_id "
        "JOIN representations rep ON rep.id = c.representation_id "
        "JOIN methods m ON m.id = rep.method_id"
    )
    for row in ratings.itertuples():
        original, method, point = KEY[ORDER[int(row.item) - 1]]
        assert (row.original, row.method) == (original, method)
        assert row.operating_point.endswith(point)
        number = int(row.worker_id[1]) - 1
        assert row.value == (int(row.item) + number) % 10 + 1
    assert len(ratings) == 24 and ratings.operating_point.nunique() == 2


def test_an_unindexed_list_cell_says_how_to_index_it_and_registers_nothing(store, tmp_path, capsys):
    results = packed_export(tmp_path)
    wrong = write(tmp_path, mapping_text("Input.query_id"), "wrong.toml")
    summary = import_ratings(store, results, A, mapping=wrong)
    assert summary.kept == 0 and summary.unmatched_count == 30
    _, reason = summary.unmatched[0]
    assert reason == (
        "candidate '[9, 6, 8, 2, 10, 1, 3, 7, 5, 4]' is not in the study; this cell holds a "
        'list; index it with [{slot}] (e.g. "Input.query_id[{slot}]")'
    )
    assert (summary.assignments_new, summary.assignments_unchanged) == (0, 0)
    assert summary.assignments_unmatched == 3
    assert store.count("assignments") == 0 and store.count("ratings") == 0
    assert any("no answers kept from Batch_4242" in line for line in summary.lines())
    # the corrected import registers the assignments as new (it used to say "0 new, 3 unchanged")
    fixed = import_ratings(store, results, A, mapping=write(tmp_path, mapping_text()))
    assert (fixed.assignments_new, fixed.assignments_unchanged, fixed.kept) == (3, 0, 24)
    assert fixed.unmatched_count == 6  # the file's earlier unmatched answers were replaced
    assert store.count("ratings_unmatched") == 6


def test_original_method_and_operating_point_columns_with_python_literal_lists(store, tmp_path):
    rows = []
    for number, worker in enumerate(("W1", "W2")):
        inputs = {
            "images": str(["img1.png", "img2.png", "img3.png", "img4.png"]),
            "codec": "JPEG",
            "levels": str([30, 70, 30, 70]),
        }
        answers = {f"Q{slot}": str(number + slot) for slot in range(1, 5)}
        rows.append(assignment(number, worker, inputs, answers))
    results = write_batch_results(tmp_path / "batch.csv", rows, layout="flat")
    mapping = write(
        tmp_path,
        'original = "Input.images[{slot}]"\nmethod = "Input.codec"\n'
        'operating_point = "Input.levels[{slot}]"\nslots = 4\n\n'
        '[questions.similarity]\nfield = "Q{slot}"\n',
    )
    summary = import_ratings(store, results, A, mapping=mapping)
    assert (summary.kept, summary.unmatched_count, summary.failed_count) == (8, 0, 0)
    named = store.frame(
        "SELECT o.name, rep.operating_point, r.value FROM ratings r "
        "JOIN originals o ON o.id = r.original_id JOIN candidates c ON c.id = r.candidate_id "
        "JOIN representations rep ON rep.id = c.representation_id WHERE r.worker_id = 'W1' "
        "ORDER BY r.item"
    )
    assert named.values.tolist() == [
        ["img1", "quality=30", 1.0],
        ["img2", "quality=70", 2.0],
        ["img3", "quality=30", 3.0],
        ["img4", "quality=70", 4.0],
    ]


def test_a_short_list_leaves_the_slot_unused_and_a_missing_column_is_named(store, tmp_path):
    answers = {"rating_1": "5", "rating_2": "6", "rating_3": "7"}
    rows = [assignment(0, "W1", {"query_id": json.dumps([1, 2])}, answers)]
    results = write_batch_results(tmp_path / "batch.csv", rows)
    text = mapping_text().replace("slots = 10", "slots = 3")
    summary = import_ratings(store, results, A, mapping=write(tmp_path, text))
    assert summary.kept == 2
    assert summary.unmatched == [
        (
            "batch.csv line 2, item 3",
            "Input.query_id holds 2 item(s); there is no item 3 (slots count from 1)",
        )
    ]
    from semcomp.errors import ConfigError

    missing = mapping_text("Input.ids[{slot}]")
    with pytest.raises(ConfigError, match=r"Input\.ids that the file lacks"):
        import_ratings(store, results, A, mapping=write(tmp_path, missing, "missing.toml"))


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    captured = capsys.readouterr()
    return raised.value.code, captured.out, captured.err


def test_cli_import_that_keeps_nothing_fails_and_summary_prints_one_line(study, tmp_path, capsys):
    results = packed_export(tmp_path)
    wrong = write(tmp_path, mapping_text("Input.query_id"), "wrong.toml")
    args = ["ratings", "import", str(study), str(results), "--survey", "A", "--mapping"]
    code, out, err = run([*args, str(wrong)], capsys)
    assert code == 1 and "index it with [{slot}]" in out
    assert "no answers kept from Batch_4242_batch_results.csv for survey A" in err
    assert "30 about images the study does not know" in err
    # every answer excluded by quality control: the import fails, the summary is one line
    fixed = str(write(tmp_path, mapping_text()))
    code, _, err = run([*args, fixed, "--min-work-seconds", "500"], capsys)
    assert code == 1 and "24 excluded by quality control" in err
    code, out, _ = run(["ratings", "summary", str(study), "--survey", "A"], capsys)
    assert code == 0
    assert out.strip().splitlines() == [
        "survey A: no kept ratings (24 answers imported, 24 excluded as work_time, "
        "6 about images the study does not know)"
    ]
    code, out, _ = run([*args, fixed, "--min-work-seconds", "0"], capsys)
    assert code == 0 and "kept 24 answers" in out
