"""The columnar reader of MTurk batch results (pyarrow, times decoded together) gives the
rows the record-by-record reader gives, and leaves every file it cannot read line by line
(cells spanning lines, blank lines, short rows, Windows encodings) to that reader."""

from pathlib import Path

import pytest

from mturk_format import assignment, write_batch_results
from semcomp.csvtext import csv_encoding
from semcomp.surveys import mturk
from semcomp.surveys.mturk import (
    _columnar_rows,
    _rows,
    equal_rows,
    iso_utc,
    read_batch_results,
    read_time,
    usual_times,
)

TIMES = [
    "Fri Jun 08 09:21:50 PDT 2012",
    " Sat Jun 09 23:59:59 EST 2012 ",
    "Feb 29 10:00:00 UTC 2012",
    "Fri jUN 8 09:01:05 pdt 2012",
    "Mon Feb 30 10:00:00 PDT 2012",  # no such day
    "Feb 29 10:00:00 UTC 2011",
    "Fri Jun 08 24:00:00 PDT 2012",  # no such hour
    "Fri Jun 08 09:21:60 PDT 2012",
    "Fri Jun 08 09:21:50 XYZ 2012",  # unknown zone
    "Fri Jux 08 09:21:50 PDT 2012",
    "Dec 31 23:00:00 EST 9999",  # past year 9999 in UTC
    "Jan 01 00:00:00 PST 1800",
    "2012-06-08T09:21:50",
    "2012-06-08T09:21:50+02:00",
    "",
    "yesterday",
]


def test_times_read_together_are_read_as_one_by_one():
    """Decoded together (:func:`usual_times`), with :func:`read_time` for the rest, as the
    columnar import reads a time column."""
    import pyarrow as pa

    unique = list(dict.fromkeys(text.strip() for text in TIMES))
    decoded = usual_times(pa.array(unique, pa.string())).tolist()
    together = {
        text: read_time(text) if iso is None else (iso, "")
        for text, iso in zip(unique, decoded, strict=True)
    }
    assert {text.strip(): read_time(text) for text in TIMES} == together
    assert together["Fri Jun 08 09:21:50 PDT 2012"] == ("2012-06-08T16:21:50+00:00", "")


def test_times_decoded_row_by_row_in_columns_are_read_as_one_by_one():
    """The columnar import decodes each row's cell as it is (unstripped): a usual time
    reads as :func:`read_time` of the stripped cell; any other is left to it (``None``)."""
    import pyarrow as pa

    texts = [*TIMES, "\x0bFri Jun 08 09:21:50 PDT 2012", "Fri Jun 08 09:21:50 PDT 2012\u3000"]
    texts += ["\tFri Jun 08 09:21:50 PDT 2012\r\n"]
    decoded = usual_times(pa.array(texts, pa.string())).tolist()
    for text, iso in zip(texts, decoded, strict=True):
        assert iso is None or (iso, "") == read_time(text.strip()), text
    assert decoded[0] == "2012-06-08T16:21:50+00:00"
    assert decoded[1] == read_time(TIMES[1])[0] and decoded[-1] == decoded[0]
    assert sum(iso is not None for iso in decoded) == 5  # 4 of TIMES, the last


def test_iso_times_formatted_together_are_pythons():
    """:func:`iso_utc` gives :meth:`datetime.isoformat` of each UTC time, across the
    years the usual times allow (and past them), leap days and the ends of days."""
    from datetime import datetime, timezone

    import numpy as np

    first, last = (
        datetime(*d, tzinfo=timezone.utc).timestamp()
        for d in ((1000, 1, 1), (9999, 12, 31, 23, 59, 59))
    )
    stamps = np.random.default_rng(0).integers(int(first), int(last), 20_000)
    edges = [int(first), int(last), 0, -1, 951_782_400, 951_868_799, 4_107_542_399]
    stamps = [*edges, *stamps.tolist()]
    assert iso_utc(np.array(stamps)) == [
        datetime.fromtimestamp(s, timezone.utc).isoformat() for s in stamps
    ]


def rows_of(path: Path) -> list:
    batch = read_batch_results(path)
    return list(batch.rows)


def by_records(path: Path) -> list:
    header = read_batch_results(path).columns
    return list(_rows(path, csv_encoding(path), header))


def answered(number: int, **kwargs) -> dict:
    inputs = {"original": f"img{number % 3}.png", "candidate": f"c{number % 4}.jpg"}
    return assignment(
        number, f"W{number % 5}", inputs, {"similarity": str(1 + number % 10)}, **kwargs
    )


@pytest.mark.parametrize("layout", ["json", "flat"])
def test_a_usual_file_is_read_in_columns_into_the_same_rows(tmp_path, layout, monkeypatch):
    monkeypatch.setattr(mturk, "_CHUNK_ROWS", 7)  # rows become Python strings 7 at a time
    rows = [answered(n, minute=n % 60) for n in range(40)]
    rows[3]["AcceptTime"] = "Mon Feb 30 10:00:00 PDT 2012"  # a problem of its row
    rows[4]["WorkTimeInSeconds"] = "two minutes"
    rows[5]["SubmitTime"] = "2012-06-08T09:21:50+02:00"
    rows[6]["AssignmentStatus"] = " Approved "
    path = write_batch_results(tmp_path / "batch.csv", rows, layout=layout)
    header = read_batch_results(path).columns
    assert _columnar_rows(path, csv_encoding(path), header) is not None
    read = rows_of(path)
    assert read == by_records(path)
    assert [row.line for row in read] == list(range(2, 42))
    assert read[3].problems == [
        ("AcceptTime", rows[3]["AcceptTime"], "not a valid time: day is out of range for month")
    ]
    assert read[4].problems[0][0] == "WorkTimeInSeconds"


def test_a_bad_json_cell_is_a_problem_of_its_row_in_columns_too(tmp_path):
    rows = [answered(n) for n in range(6)]
    path = write_batch_results(tmp_path / "batch.csv", rows)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('"[{""similarity"": ""3""}]"', '"[{""similarity"": 3"', 1), encoding="utf-8"
    )
    header = read_batch_results(path).columns
    assert _columnar_rows(path, csv_encoding(path), header) is not None
    read = rows_of(path)
    assert read == by_records(path)
    assert [p[0] for row in read for p in row.problems] == ["Answer.taskAnswers"]


@pytest.mark.parametrize(
    "damage",
    [
        "cell spanning lines",
        "blank line",
        "short row",
        "long row",
        "windows encoding",
        "no final line break",
        "blank assignment",
    ],
)
def test_files_the_columnar_reader_cannot_read_line_by_line_go_to_the_record_reader(
    tmp_path, damage, monkeypatch
):
    rows = [answered(n) for n in range(8)]
    encoding = "cp1252" if damage == "windows encoding" else "utf-8"
    if damage == "cell spanning lines":
        rows[2]["inputs"] = {**rows[2]["inputs"], "original": "img\n1.png"}
    if damage == "windows encoding":
        rows[2]["WorkerId"] = "Wé"
    if damage == "blank assignment":
        rows[2]["AssignmentId"] = " "
        rows[2]["HITId"] = " "
    path = write_batch_results(tmp_path / "batch.csv", rows, encoding=encoding)
    text = path.read_bytes()
    lines = text.split(b"\r\n")
    if damage == "blank line":
        lines.insert(3, b"")
    if damage == "short row":
        lines[3] = lines[3].rsplit(b",", 1)[0]
    if damage == "long row":
        lines[3] += b',"extra"'
    path.write_bytes(b"\r\n".join(lines))
    if damage == "no final line break":
        path.write_bytes(text[:-2])
    header = read_batch_results(path).columns
    assert _columnar_rows(path, csv_encoding(path), header) is None
    read = rows_of(path)
    assert read == by_records(path)
    if damage in ("short row", "long row"):
        fields = len(header) + (1 if damage == "long row" else -1)
        assert (4, f"row has {fields} fields, the header has {len(header)}") in read


def test_only_the_columns_an_assignment_reads_become_python_strings(tmp_path, monkeypatch):
    """The standard columns semcomp does not keep (Title, Reward, ...) stay in pyarrow."""
    rows = [answered(n) for n in range(5)]
    path = write_batch_results(tmp_path / "batch.csv", rows)
    header = read_batch_results(path).columns
    used = {header[i] for i in mturk._Columns(header).used() if i is not None}
    assert "Title" not in used and "Reward" not in used
    assert {"HITId", "AssignmentId", "AcceptTime", "Answer.taskAnswers"} <= used


def test_an_import_checks_no_foreign_key_per_answer_and_turns_the_checks_on_again(
    store, tmp_path, monkeypatch
):
    """The checks are off while answers are written (they found nothing: an import refers
    only to rows of the store), on after the import, also after one that fails."""
    from test_import import A, survey_a_rows, write_mapping

    from semcomp.errors import ConfigError
    from semcomp.surveys.definitions import SurveyDefinition
    from semcomp.surveys.importer import import_ratings

    seen = []
    upsert_many = type(store).upsert_many

    def watching(self, table, *args, **kwargs):
        seen.append(self.conn.execute("PRAGMA foreign_keys").fetchone()[0])
        return upsert_many(self, table, *args, **kwargs)

    monkeypatch.setattr(type(store), "upsert_many", watching)
    rows = survey_a_rows(store, {(0, "W1"): 5, (1, "W2"): 7})
    results = write_batch_results(tmp_path / "a.csv", rows)
    import_ratings(store, results, A, mapping=write_mapping(tmp_path))
    assert seen and not any(seen)
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    other = SurveyDefinition(**(A.model_dump() | {"id": "A2", "source": ""}))
    with pytest.raises(ConfigError):
        import_ratings(store, results, other, mapping=write_mapping(tmp_path))
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


@pytest.mark.parametrize("block", [64, 1 << 24])
def test_line_ends_counted_by_block_carriage_returns_only_in_some_blocks(
    tmp_path, block, monkeypatch
):
    """A block without a carriage return holds no ``\\r\\n`` (not counted there): files
    with ``\\n`` line ends read in columns, with a lone ``\\r`` or a NUL in one cell by
    records (a tab or a form feed in columns), and ``\\r\\n`` split between two blocks
    still ends one line."""
    monkeypatch.setattr(mturk, "_SCAN_BLOCK", block)
    rows = [answered(n) for n in range(8)]
    crlf = write_batch_results(tmp_path / "crlf.csv", rows).read_bytes()
    lf = tmp_path / "lf.csv"
    lf.write_bytes(crlf.replace(b"\r\n", b"\n"))
    lone = tmp_path / "lone.csv"
    lone.write_bytes(crlf.replace(b"\r\n", b"\n").replace(b"W3", b"W\r3", 1))
    nul = tmp_path / "nul.csv"
    nul.write_bytes(crlf.replace(b"W3", b"W\x003", 1))
    tab = tmp_path / "tab.csv"  # other control bytes are no line ends
    tab.write_bytes(crlf.replace(b"W3", b"W\t\x0b\x0c3", 1))
    files = ((tmp_path / "crlf.csv", True), (lf, True), (lone, False), (nul, False), (tab, True))
    for path, columnar in files:
        header = read_batch_results(path).columns
        found = _columnar_rows(path, csv_encoding(path), header)
        assert (found is not None) == columnar, path.name
        assert rows_of(path) == by_records(path)
    if block == 64:  # some \r\n pairs are split between blocks
        ends = [i for i in range(len(crlf)) if crlf[i : i + 2] == b"\r\n"]
        assert any((i + 1) % block == 0 for i in ends)


def test_rows_of_equal_cells_are_grouped_together_a_missing_cell_apart_from_a_blank_one():
    pa = pytest.importorskip("pyarrow")
    left = pa.array(["a", "a", "b", None, "a", "", None, "a"], type=pa.string())
    right = pa.array(["x", "y", "x", "x", "x", "x", "x", "y"], type=pa.string())
    group, first = equal_rows([left, right], 8)
    cells = list(zip(left.to_pylist(), right.to_pylist(), strict=True))
    # equal cells in both columns: one group; any difference (None is not ""): another
    assert [[cells[i] == cells[j] for j in range(8)] for i in range(8)] == [
        [group[i] == group[j] for j in range(8)] for i in range(8)
    ]
    assert sorted(set(group.tolist())) == list(range(len(set(cells))))
    assert first.tolist() == sorted(cells.index(c) for c in set(cells))  # each group's first
    assert all(group[first[g]] == g for g in range(len(first)))
    group, first = equal_rows([], 3)  # no column: one group
    assert group.tolist() == [0, 0, 0] and first.tolist() == [0]
