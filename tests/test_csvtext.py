"""CSV files as people save them: UTF-8, UTF-8 with a BOM, Windows-1252."""

import pytest

from semcomp.captioners.human import read_caption_rows
from semcomp.csvtext import csv_encoding
from semcomp.errors import ConfigError
from semcomp.images import SourceImage, read_manifest


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("path,id\na.png,Café\n".encode(), "utf-8-sig"),
        (b"\xef\xbb\xbf" + "path,id\na.png,Café\n".encode(), "utf-8-sig"),
        ("path,id\na.png,Café – 2\n".encode("cp1252"), "cp1252"),
    ],
)
def test_encoding_is_detected(tmp_path, data, encoding):
    path = tmp_path / "file.csv"
    path.write_bytes(data)
    assert csv_encoding(path) == encoding
    (image,) = read_manifest(path)
    assert isinstance(image, SourceImage) and image.name.startswith("Café")


def test_strict_mode_and_unreadable_files(tmp_path):
    path = tmp_path / "file.csv"
    path.write_bytes("x\né\n".encode("cp1252"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        csv_encoding(path, fallback=None)
    with pytest.raises(ConfigError, match="cannot read"):
        csv_encoding(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("tail", "encoding"),
    [
        ("é".encode() + b"b" * 10, "utf-8-sig"),  # a character split between two blocks
        ("é".encode()[:1], "cp1252"),  # cut short at the end
        ("é".encode()[:1] + b"b" * 10, "cp1252"),  # cut short, ASCII after it
        (b"a\xff" + b"b" * 10, "cp1252"),  # a byte UTF-8 never has, after ASCII blocks
    ],
    ids=["split", "cut at the end", "cut mid-file", "invalid byte"],
)
def test_encoding_is_checked_across_blocks(tmp_path, tail, encoding):
    """Blocks of ASCII are passed over, but a character across a block's end is decoded."""
    path = tmp_path / "file.csv"
    path.write_bytes(b"a" * ((1 << 20) - 1) + tail)
    assert csv_encoding(path) == encoding


def test_excel_captions_csv_keeps_its_accents(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_bytes("image,caption\ncafe.jpg,A café – at noon\n".encode("cp1252"))
    by_image, problems = read_caption_rows(path)
    assert problems == [] and by_image["cafe.jpg"][0].text == "A café – at noon"


# ---- hostile CSVs (issue 12, items 4, 5, 7) -----------------------------------------------------


def write_rows(path, header: str, rows: list[str]):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    return path


def mturk_file(path, rows: list[str], *, delimiter=",", end="\n"):
    header = delimiter.join(["HITId", "AssignmentId", "WorkerId", "AssignmentStatus", "Answer.q"])
    path.write_text(header + "\n" + "\n".join(rows) + end, encoding="utf-8")
    return path


def read_mturk(path):
    from semcomp.surveys.mturk import read_batch_results

    return list(read_batch_results(path).rows)


HUGE_FIELD = "x" * 200_000  # over Python's default field limit of 131,072
HUGE_LINE = "y" * 3_000_000  # a few MB on one line, no quotes


def test_a_field_over_the_limit_is_a_problem_of_its_line_everywhere(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    manifest = write_rows(tmp_path / "m.csv", "path,id", [f"a.png,{HUGE_FIELD}", "a.png,ok"])
    found = list(read_manifest(manifest))
    assert [type(f).__name__ for f in found] == ["SourceProblem", "SourceImage"]
    assert found[0].item.endswith("m.csv:2") and "longer than 131,072" in found[0].reason
    captions = write_rows(
        tmp_path / "c.csv", "image,caption", [f"a.jpg,{HUGE_FIELD}", "b.jpg,fine"]
    )
    by_image, problems = read_caption_rows(captions)
    assert list(by_image) == ["b.jpg"]
    assert problems == [(f"{captions}:2", "a field is longer than 131,072 characters")]
    rows = read_mturk(
        mturk_file(tmp_path / "r.csv", [f"H,A1,W,Submitted,{HUGE_FIELD}", "H,A2,W,Submitted,7"])
    )
    assert rows[0] == (2, "a field is longer than 131,072 characters")
    assert rows[1].assignment_id == "A2" and rows[1].line == 3


def test_a_pathological_line_is_skipped_without_holding_it(tmp_path):
    import tracemalloc

    from semcomp import csvtext

    path = write_rows(tmp_path / "c.csv", "image,caption", [f"a.jpg,{HUGE_LINE}", "b.jpg,fine"])
    tracemalloc.start()
    try:
        with csvtext.open_csv(path, csvtext.UTF8) as handle:
            records = list(csvtext.csv_records(handle, max_line=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_500_000  # the 3 MB line is never held whole
    assert [type(r).__name__ for r in records] == ["CsvRecord", "CsvProblem", "CsvRecord"]
    assert records[1] == csvtext.CsvProblem(
        2, "line is longer than 100,000 characters; skipped unread"
    )
    assert records[2].cells == ["b.jpg", "fine"] and records[2].line == 3


def test_a_line_over_the_default_bound_is_a_problem_in_the_readers(tmp_path, monkeypatch):
    from semcomp import csvtext

    monkeypatch.setattr(csvtext, "MAX_LINE", 1_000_000)
    by_image, problems = read_caption_rows(
        write_rows(tmp_path / "c.csv", "image,caption", [f"a.jpg,{HUGE_LINE}", "b.jpg,fine"])
    )
    assert list(by_image) == ["b.jpg"] and "line is longer than" in problems[0][1]


def test_nul_characters_reject_their_row_with_the_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    manifest = write_rows(tmp_path / "m.csv", "path,id", ["a.png,one\0two", "a.png,ok"])
    found = list(read_manifest(manifest))
    assert found[0].item.endswith("m.csv:2") and "NUL" in found[0].reason
    assert isinstance(found[1], SourceImage) and found[1].name == "ok"
    captions = write_rows(tmp_path / "c.csv", "image,caption", ["a.jpg,bad\0caption", "b.jpg,x"])
    by_image, problems = read_caption_rows(captions)
    assert list(by_image) == ["b.jpg"] and problems[0][0] == f"{captions}:2"
    assert "NUL" in problems[0][1]
    rows = read_mturk(mturk_file(tmp_path / "r.csv", ["H,A1,W,Submitted,7\0"]))
    assert rows[0][0] == 2 and "NUL" in rows[0][1]


def test_nul_in_a_header_is_a_problem_not_a_column(tmp_path):
    (problem,) = read_manifest(write_rows(tmp_path / "m.csv", "pa\0th,id", ["a.png,x"]))
    assert problem.item.endswith("m.csv:1") and "NUL" in problem.reason
    with pytest.raises(ConfigError, match="NUL"):
        read_caption_rows(write_rows(tmp_path / "c.csv", "image,cap\0tion", ["a.jpg,x"]))


def test_mturk_file_that_ends_mid_row_says_so(tmp_path):
    cut = mturk_file(tmp_path / "r.csv", ["H,A1,W,Submitted,7", "H,A2,W,Sub"], end="")
    rows = read_mturk(cut)
    assert rows[0].assignment_id == "A1"
    assert rows[1] == (3, "the file ends early, at line 3: the row has 4 of 5 fields")
    quoted = mturk_file(tmp_path / "q.csv", ['H,A1,W,Submitted,"{""a"": 1', "}"], end="")
    (only,) = read_mturk(quoted)
    assert only[0] == 2 and "the file ends early, at line 3" in only[1]
    # a full last row without a final line break is fine
    (full,) = read_mturk(mturk_file(tmp_path / "f.csv", ["H,A1,W,Submitted,7"], end=""))
    assert full.assignment_id == "A1"


def test_a_quoted_caption_cut_off_at_the_end_is_not_stored(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('image,caption\na.jpg,"a caption that\ngoes on', encoding="utf-8")
    by_image, problems = read_caption_rows(path)
    assert by_image == {} and "the file ends early, at line 3" in problems[0][1]


def test_semicolon_separated_mturk_file_names_the_delimiter(tmp_path):
    header = ";".join(
        ["HITId", "AssignmentId", "WorkerId", "AssignmentStatus"]
        + [f"Answer.q{i}" for i in range(3000)]
    )
    path = tmp_path / "r.csv"
    path.write_text(header + "\nH;A;W;Submitted" + ";7" * 3000 + "\n", encoding="utf-8")
    from semcomp.surveys.mturk import read_batch_results

    with pytest.raises(ConfigError) as refused:
        read_batch_results(path)
    message = str(refused.value)
    assert "semicolons (;)" in message and len(message) < 1000


def test_long_format_ratings_read_with_the_same_bounds(tmp_path):
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.importer import _long_rows

    path = write_rows(
        tmp_path / "long.csv",
        "rater,original,candidate,question,value",
        [f"r1,a.png,c1,objects,{HUGE_FIELD}", "r2,a.png,c1,objects,4\0", "r3,a.png,c1,objects,5"],
    )
    rows = list(_long_rows(path, load_survey("B")))
    assert rows[0] == (2, "a field is longer than 131,072 characters")
    assert rows[1][0] == 3 and "NUL" in rows[1][1]
    assert rows[2].worker_id == "r3" and rows[2].line == 4


def test_the_field_bound_holds_when_other_code_raised_the_csv_limit(tmp_path):
    import csv

    path = write_rows(tmp_path / "c.csv", "image,caption", [f"a.jpg,{HUGE_FIELD}", "b.jpg,ok"])
    previous = csv.field_size_limit(10_000_000)
    try:
        by_image, problems = read_caption_rows(path)
    finally:
        csv.field_size_limit(previous)
    assert list(by_image) == ["b.jpg"]
    assert problems == [(f"{path}:2", "a field is longer than 131,072 characters")]
