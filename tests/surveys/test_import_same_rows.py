"""The MTurk import writes exactly the rows it wrote before it was made columnar.

Every kind of MTurk file the other survey tests import (both answer layouts, mappings,
gold items, bad answers, times and rows, unknown images, several slots, packed list
cells, generated surveys A, B and C answered through their own forms, BOM and cp1252) is
imported in one sequence into one study; every row the imports leave (assignments,
ratings, ratings kept aside, failures, human scores, the import records and summaries)
is compared with ``data/import_rows.json``, written by the row-by-row importer of
commit c6592fe (``SEMCOMP_WRITE_IMPORT_ROWS=1 pytest tests/surveys/test_import_same_rows.py``
writes it again). Ids and paths are replaced by names, so the file does not depend on
where the study lives or on the JPEG library's bytes.
"""

import dataclasses
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mturk_format import assignment, candidates, simulate, write_batch_results
from semcomp.store import Store
from semcomp.surveys import importer, mturk
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings
from semcomp.surveys.make import make_survey
from semcomp.surveys.quality import SurveyAnswers

GOLDEN = Path(__file__).parent / "data" / "import_rows.json"
A, B, C = load_survey("A"), load_survey("B"), load_survey("C")

MAPPING_A = 'original = "Input.image_A_url"\ncandidate = "Input.image_B_url"\n\n'
MAPPING_A += '[questions.similarity]\nfield = "Q1"\n'
MAPPING_C = 'candidate = "Input.image_url"\n\n[questions.objects]\nfield = "standout"\n\n'
MAPPING_C += '[questions.relation]\nfield = "relation"\n\n[questions.adjectives]\nfield = "adj"\n'
MAPPING_SLOTS = 'original = "Input.original{slot}"\ncandidate = "Input.candidate{slot}"\n'
MAPPING_SLOTS += 'slots = ["2", "10"]\nfield_template = "{question}_{slot}"\n'
#: the HIT builder's key of test_real_hits: query id → (original's name, method, point)
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


def packed_mapping(candidate: str) -> str:
    lines = [f'candidate = "{candidate}"', "slots = 10", "", "[questions.similarity]"]
    lines += ['field = "rating_{slot}"', ""]
    for query, (original, method, point) in KEY.items():
        lines.append(
            f'[items."{query}"]\noriginal = "{original}"\nmethod = "{method}"\n'
            f'operating_point = "{point}"\n'
        )
    return "\n".join(lines)


def answered(
    store, prefix: Path, survey, form: str, layout: str, workers: int, failing: str
) -> tuple[list[dict], Path]:
    """The assignment rows of ``survey`` made by `survey make` (in ``prefix``-...) and answered
    through its own ``form`` by simulated workers, ``failing`` failing its checks; each
    assignment id ends with the form and layout, so several files' ids do not collide; and
    the survey's folder."""
    out = prefix.parent / f"{prefix.name}-{survey.id}-{form}-{layout}"
    make_survey(store, survey, base_url="https://images.example.org", out=out, items_per_hit=3)
    rows, _ = simulate(out, survey, workers=workers, scale_form=form, failing=frozenset({failing}))
    for row in rows:
        row["AssignmentId"] += f"{form}{layout}"
    return rows, out


def imports(store, folder: Path) -> list[tuple]:
    """(file, survey, options) in the order they are imported; the files are written here."""
    found = candidates(store)
    done: list[tuple] = []

    def mapping(name: str, text: str) -> Path:
        path = folder / name
        path.write_text(text)
        return path

    def pair(index: int, worker: str, value, number: int, **kwargs) -> dict:
        inputs = {"image_A_url": found[index]["original_file"], "image_B_url": found[index]["url"]}
        return assignment(number, worker, inputs, {"Q1": str(value)}, **kwargs)

    mapping_a = mapping("a.toml", MAPPING_A)
    check = {"image_A_url": found[0]["original_file"], "image_B_url": found[0]["original_file"]}
    gold = mapping(
        "gold.toml",
        MAPPING_A + f'\n[[checks]]\noriginal = "{found[0]["original_file"]}"\n'
        f'candidate = "{found[0]["original_file"]}"\nquestion = "similarity"\nmin = 8\n',
    )
    # both layouts, a re-import, then status changes
    rows = [pair(i % 3, f"W{i % 4}", 1 + i % 10, i) for i in range(12)]
    done.append((write_batch_results(folder / "a.csv", rows), A, {"mapping": mapping_a}))
    done.append((folder / "a.csv", A, {"mapping": mapping_a}))
    statuses = ("Rejected", "Approved")
    changed = [dict(r, AssignmentStatus=statuses[i % 2]) for i, r in enumerate(rows)]
    done.append((write_batch_results(folder / "a2.csv", changed), A, {"mapping": mapping_a}))
    # work time, gold items, duplicates within and across files
    rows = [pair(1, "FAST", 5, 100, seconds=3), pair(1, "CARELESS", 6, 101)]
    rows += [assignment(150, "CARELESS", check, {"Q1": "3"}), pair(1, "TWICE", 9, 102, minute=1)]
    rows += [pair(1, "TWICE", 2, 103, minute=30), assignment(160, "GOOD", check, {"Q1": "10"})]
    rows += [assignment(161, "BLANK", check, {"Q1": ""}), pair(2, "W1", 4, 104)]
    done.append((write_batch_results(folder / "qc.csv", rows), A, {"mapping": gold}))
    # bad answers, unreadable times, a blank submit time
    rows = [pair(0, f"B{n}", v, 200 + n) for n, v in enumerate(["", "11", "very", "6", "0"])]
    rows[1]["SubmitTime"] = "Fri Feb 30 10:00:00 PDT 2012"
    rows[2]["AcceptTime"] = "Fri Jun 08 25:00:00 PDT 2012"
    rows[3]["SubmitTime"] = "Fri Jun 08 10:00:00 XYZ 2012"
    rows[4]["SubmitTime"] = ""
    rows[4]["WorkTimeInSeconds"] = "soon"
    done.append((write_batch_results(folder / "bad.csv", rows), A, {"mapping": mapping_a}))
    # extra columns, a duplicated assignment, a short row, blank required cells
    rows = [pair(0, "D1", 5, 300), pair(1, "D2", 6, 301), pair(2, "", 7, 302)]
    rows.append(dict(rows[0], answers={"Q1": "9"}))
    path = write_batch_results(folder / "dup.csv", rows, extra_columns={"MyNotes": "fine"})
    with path.open("a", encoding="utf-8") as handle:
        handle.write('"3HIT","only three","fields"\n')
    done.append((path, A, {"mapping": mapping_a}))
    # unknown candidates; an unreadable taskAnswers cell
    rows = [pair(0, "U1", 5, 400)]
    rows.append(
        assignment(
            401,
            "U2",
            {"image_A_url": found[0]["original_file"], "image_B_url": "https://x.org/n.jpg"},
            {"Q1": "8"},
        )
    )
    rows.append(
        assignment(
            402,
            "U3",
            {"image_A_url": found[0]["original_file"], "image_B_url": found[-1]["url"]},
            {"Q1": "8"},
        )
    )
    rows.append(pair(1, "U4", 6, 403))
    path = write_batch_results(folder / "unknown.csv", rows)
    path.write_text(path.read_text().replace('[{""Q1"": ""6""}]', '[{""Q1"": ""6""'))
    done.append((path, A, {"mapping": mapping_a}))
    # two slots named "2" and "10"; a slot that names no image
    slots = mapping("slots.toml", MAPPING_SLOTS)
    rows = []
    for number, (first, second, answers) in enumerate(
        [
            (0, 0, {"similarity_2": "3", "similarity_10": "9"}),
            (1, None, {"similarity_2": "2", "similarity_10": "7"}),
            (1, None, {"similarity_2": "8", "similarity_10": ""}),
        ]
    ):
        inputs = {"original2": "", "candidate2": "", "original10": "", "candidate10": ""}
        for slot, index in (("2", first), ("10", second)):
            if index is not None:
                inputs[f"original{slot}"] = found[index]["original_id"]
                inputs[f"candidate{slot}"] = found[index]["id"]
        rows.append(assignment(500 + number, "S1" if number < 2 else "S2", inputs, answers))
    rows[1]["SubmitTime"] = ""
    done.append((write_batch_results(folder / "slots.csv", rows), A, {"mapping": slots}))
    # survey B in the flattened layout: labels, radio groups by option and by value
    answers = {
        "objects": {"label": "4"},
        "appearance": {"option_1": False, "option_2": True, "option_3": False},
        "position": {"1": False, "5": True},
        "background": "3",
        "color": {"label": "1"},
    }
    inputs = {"original": found[2]["original_id"], "candidate": found[2]["id"]}
    rows = [assignment(600, "F1", inputs, answers)]
    rows.append(assignment(601, "F2", inputs, answers | {"color": {"label": "9"}}))
    done.append((write_batch_results(folder / "flat.csv", rows, layout="flat"), B, {}))
    # survey C with checkboxes and choice limits, both layouts
    adjectives = {"busy": True, "eerie": True, "calm": False, "warm": False}
    rows = [
        assignment(
            700,
            "C1",
            {"image_url": found[0]["url"]},
            {"standout": "Dogs, a ball", "relation": "chasing", "adj": adjectives},
        ),
        assignment(
            701,
            "C2",
            {"image_url": found[1]["url"]},
            {"standout": "tree", "relation": "", "adj": dict.fromkeys(adjectives, True)},
        ),
        assignment(
            702,
            "C3",
            {"image_url": found[2]["url"]},
            {"standout": "sky", "relation": "above", "adj": {"spooky": True}},
        ),
    ]
    mapping_c = mapping("c.toml", MAPPING_C)
    for layout in ("json", "flat"):
        if layout == "flat":
            for row in rows:
                row["AssignmentId"] += "F"
        path = write_batch_results(folder / f"c-{layout}.csv", rows, layout=layout)
        done.append((path, C, {"mapping": mapping_c}))
    # a HIT built elsewhere: ten items packed in one cell, named by the builder's ids
    rows = []
    for number, worker in enumerate(("P1", "P2", "P3")):
        answers = {f"rating_{slot}": str((slot + number) % 10 + 1) for slot in range(1, 11)}
        inputs = {"query_id": "[" + ", ".join(ORDER) + "]", "batch_name": "pilot"}
        rows.append(assignment(800 + number, worker, inputs, answers, hit="3HITPACKED"))
    path = write_batch_results(folder / "Batch_4242_batch_results.csv", rows)
    for name, column in (("wrong", "Input.query_id"), ("packed", "Input.query_id[{slot}]")):
        done.append((path, A, {"mapping": mapping(f"{name}.toml", packed_mapping(column))}))
    # surveys made by `survey make`, answered through their own forms (value and radio
    # forms, failing workers), in both layouts; BOM and cp1252 encodings
    for survey, form, layout, encoding in (
        (A, "value", "json", "utf-8"),
        (B, "radio", "flat", "utf-8-sig"),
        (C, "value", "json", "cp1252"),
        (A, "radio", "flat", "utf-8"),
    ):
        assignments, _ = answered(store, folder / "made", survey, form, layout, 4, "A001WORKER")
        for row in assignments:
            row["WorkerId"] = row["WorkerId"].replace("A002", "Aé02")
        path = write_batch_results(
            folder / f"made-{survey.id}-{form}-{layout}.csv",
            assignments,
            layout=layout,
            encoding=encoding,
        )
        done.append((path, survey, {"min_work_seconds": 60}))
    return done


TABLES = {
    # the columns before schema 5 (which gave each assignment an integer id)
    "assignments": "SELECT assignment_id, survey, hit_id, worker_id, status, accept_time, "
    "submit_time, work_seconds, approval_rate, source_file, source_line, import_id, created_at "
    "FROM assignments ORDER BY assignment_id",
    "ratings": "SELECT * FROM ratings ORDER BY assignment_id, item, question",
    "ratings_unmatched": "SELECT * FROM ratings_unmatched ORDER BY source_file, source_line, item",
    "failures": "SELECT * FROM failures WHERE stage = 'ratings' ORDER BY item",
    "scores": "SELECT s.* FROM scores s WHERE metric LIKE 'human.%' ORDER BY candidate_id, metric",
    "rating_imports": "SELECT * FROM rating_imports ORDER BY id",
    # the columns the golden file has (later columns describe scores for every metric kind)
    "metrics": "SELECT name, embedder_id, formula, description FROM metrics "
    "WHERE name LIKE 'human.%' ORDER BY name",
}
#: columns that hold the time of the import, not its content
TIMES = {"created_at", "imported_at", "run_id"}


def names(store, folder: Path) -> dict[str, str]:
    """Ids, hashes and paths → names that do not depend on bytes or folders."""
    named = {str(folder.resolve()) + os.sep: "", str(folder) + os.sep: ""}
    for row in store.conn.execute("SELECT id, name, artifact_hash FROM originals"):
        named[row["artifact_hash"]] = f"<file of {row['name']}>"
        named[row["id"]] = f"<original {row['name']}>"  # the same hash: the id's name wins
    for row in store.conn.execute(
        "SELECT c.id, c.artifact_hash, o.name, m.name AS method, r.operating_point, c.replicate "
        "FROM candidates c JOIN representations r ON r.id = c.representation_id "
        "JOIN methods m ON m.id = r.method_id JOIN originals o ON o.id = r.original_id"
    ):
        label = f"{row['name']} {row['method']} {row['operating_point']} {row['replicate']}"
        named[row["id"]] = f"<candidate {label}>"
        named[row["artifact_hash"]] = f"<file of {label}>"
    for row in store.conn.execute("SELECT id, survey, batch, hit, slot FROM survey_items"):
        named[row["id"]] = f"<item {row['survey']} {row['hit']} {row['slot']}>"
    return named


def dump(store, folder: Path, summaries: list) -> dict:
    named = names(store, folder)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(named, key=len, reverse=True)))

    def clean(value):
        if isinstance(value, str):
            return pattern.sub(lambda m: named[m.group(0)], value)
        return value

    out: dict = {}
    for table, sql in TABLES.items():
        rows = []
        for row in store.conn.execute(sql):
            rows.append({k: clean(v) for k, v in dict(row).items() if k not in TIMES})
        out[table] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    out["summaries"] = [[clean(line) for line in lines] for lines in summaries]
    return out


def read_by(reading: str, monkeypatch) -> list[int]:
    """Make imports read as ``reading`` says; returns the list that collects, flush by
    flush, how many answers were written through ``temp.fast_tails``.

    ``columnar``: as installed (pyarrow parses the file; rows read slot by slot);
    ``small``: the same in chunks of 7 rows and a flush every 9 answers; ``records``:
    without pyarrow, as the base install reads (record by record, every row an
    :class:`AssignmentRow`)."""
    if reading == "records":
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow: ImportError
    if reading == "small":
        monkeypatch.setattr(mturk, "_CHUNK_ROWS", 7)
        monkeypatch.setattr(importer, "FLUSH_ANSWERS", 9)
        monkeypatch.setattr(importer, "SLOW_BLOCK", 2)
    fast: list[int] = []
    flush = importer._flush

    def counting(store, reader, *args):
        fast.append(reader.batch.fast_answers)
        flush(store, reader, *args)

    monkeypatch.setattr(importer, "_flush", counting)
    return fast


def import_all(store, folder: Path) -> list[list[str]]:
    folder.mkdir(exist_ok=True)
    return [
        import_ratings(store, path, survey, **options).lines(limit=1000)
        for path, survey, options in imports(store, folder)
    ]


@pytest.mark.parametrize("reading", ["columnar", "small", "records"])
def test_mturk_imports_write_the_rows_they_wrote_before(store, tmp_path, reading, monkeypatch):
    fast = read_by(reading, monkeypatch)
    summaries = import_all(store, tmp_path)
    # the columnar readings wrote some answers through the rows of earlier answers
    assert (sum(fast) > 0) == (reading != "records"), sum(fast)
    got = dump(store, tmp_path, summaries)
    if os.environ.get("SEMCOMP_WRITE_IMPORT_ROWS"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in expected.items()}
    for table in expected:
        assert got[table] == expected[table], table
    kinds = {r[0] for r in store.conn.execute("SELECT kind FROM metrics WHERE name LIKE 'human.%'")}
    assert kinds == {"human"}


#: the integer tables behind the ``ratings`` view, ids included
NUMBERED = {
    "answers": "SELECT * FROM answers ORDER BY assignment, item, question",
    "assignments": "SELECT id, assignment_id, source_line, import_id FROM assignments ORDER BY id",
    "rating_subjects": "SELECT * FROM rating_subjects ORDER BY id",
    "rating_names": "SELECT id, name FROM rating_names ORDER BY id",
}


#: an import's time (:func:`semcomp.store.utc_now`)
IMPORT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def numbered(store, folder: Path) -> dict:
    named = names(store, folder)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(named, key=len, reverse=True)))

    def clean(value):
        if isinstance(value, str) and IMPORT_TIME.fullmatch(value):
            return "<import time>"
        return pattern.sub(lambda m: named[m.group(0)], value) if isinstance(value, str) else value

    return {
        table: [tuple(clean(v) for v in row) for row in store.conn.execute(sql)]
        for table, sql in NUMBERED.items()
    }


def repeated(store, folder: Path) -> list[list[str]]:
    """Generated surveys answered by many workers (most slots' answers repeat an earlier
    row's), with rows of every kind of problem among them; their import's summaries."""
    summaries = []
    for survey, form, layout in ((A, "value", "json"), (A, "radio", "flat"), (C, "value", "json")):
        rows, out = answered(store, folder / "many", survey, form, layout, 30, "A004WORKER")
        rows[5]["SubmitTime"] = "Fri Jun 08 25:00:00 PDT 2012"
        rows[7]["AssignmentId"] = rows[3]["AssignmentId"]
        rows[9]["WorkerId"] = " "
        rows[11]["WorkTimeInSeconds"] = "soon"
        rows[13]["inputs"] = dict(rows[13]["inputs"], item1_id="not-an-item")
        rows[15]["inputs"] = {
            k: "" if k.startswith("item3") else v for k, v in rows[15]["inputs"].items()
        }
        rows[17]["answers"] = {k: "" for k in rows[17]["answers"]}
        rows[19]["AssignmentStatus"] = "Rejected"
        rows[21]["AcceptTime"] = "2012-06-08T09:00:00"
        rows += [dict(row, AssignmentId=row["AssignmentId"] + "again") for row in rows[:40]]
        path = write_batch_results(out / "results.csv", rows, layout=layout)
        if layout == "json":
            text = path.read_text(encoding="utf-8").splitlines(keepends=True)
            text[24] = text[24].replace('"}]"', '"}"', 1)  # unreadable JSON
            path.write_text("".join(text), encoding="utf-8")
        summary = import_ratings(store, path, survey, min_work_seconds=60)
        # a time, a duplicated assignment, a blank worker, a work time, blank answers,
        # (JSON: unreadable answers); an unknown item, an answered slot naming no image
        assert summary.failed_count >= 5 + (layout == "json"), summary.failed
        assert summary.unmatched_count == 4, summary.unmatched  # and the copies of both
        assert summary.excluded["rejected"]
        assert summary.excluded.get("attention_check", 0) > 0 or survey is C
        summaries.append(summary.lines(limit=1000))
    return summaries


def test_the_columnar_import_numbers_rows_as_the_record_reader_does(
    store, jpeg_study, tmp_path, monkeypatch
):
    """The same files into two copies of the study, read with and without pyarrow: the
    same integer rows, the same ids, the same summaries."""
    fast = read_by("columnar", monkeypatch)
    columnar = import_all(store, tmp_path / "columnar") + repeated(store, tmp_path / "columnar")
    assert sum(fast) > 500
    shutil.copytree(jpeg_study, tmp_path / "other")
    with monkeypatch.context() as patched, Store(tmp_path / "other") as other:
        fast = read_by("records", patched)
        records = import_all(other, tmp_path / "records") + repeated(other, tmp_path / "records")
        assert sum(fast) == 0
        expected = numbered(other, tmp_path / "records")
    assert numbered(store, tmp_path / "columnar") == expected
    assert columnar == [
        [line.replace(str(tmp_path / "records"), str(tmp_path / "columnar")) for line in lines]
        for lines in records
    ]


def assert_read_by_records_alike(store, jpeg_study, tmp_path, monkeypatch, one_file) -> None:
    """``one_file(store, folder)``, imported by records into a copy of the study as it was,
    leaves the integer rows its columnar import left in ``store``."""
    shutil.copytree(jpeg_study, tmp_path / "other")
    with monkeypatch.context() as patched, Store(tmp_path / "other") as other:
        read_by("records", patched)
        import_ratings(other, one_file(other, tmp_path / "records"), A)
        expected = numbered(other, tmp_path / "records")
    assert numbered(store, tmp_path / "columnar") == expected


def test_rows_with_fewer_answered_slots_write_through_their_own_slots(
    store, jpeg_study, tmp_path, monkeypatch
):
    """``temp.fast_rows`` holds a column per slot; a row whose last slot names no image
    (unused, unanswered) leaves it empty. Read in columns and by records: the same rows."""

    def one_file(into, folder: Path) -> Path:
        rows, _ = answered(into, folder / "few", A, "value", "json", 12, "A003WORKER")
        for row in rows[1::2]:  # every other assignment: the last slot shows no image
            last = max(k for k in row["inputs"] if k.endswith("_id"))[: -len("_id")]
            row["inputs"] = {k: "" if k.startswith(last) else v for k, v in row["inputs"].items()}
            row["answers"] = {k: v for k, v in row["answers"].items() if not k.startswith(last)}
        return write_batch_results(folder / "few.csv", rows)

    widths = []
    flush = importer._flush

    def watching(store, reader, *args):
        widths.extend(w for m in reader.batch.fast for w in (m[:, 2:] >= 0).sum(axis=1).tolist())
        flush(store, reader, *args)

    monkeypatch.setattr(importer, "_flush", watching)
    import_ratings(store, one_file(store, tmp_path / "columnar"), A)
    assert {2, 3} <= set(widths), sorted(set(widths))  # rows of three slots and of two
    assert_read_by_records_alike(store, jpeg_study, tmp_path, monkeypatch, one_file)


def test_hits_of_their_own_showing_the_same_items_are_read_through_each_other(
    store, jpeg_study, tmp_path, monkeypatch
):
    """A large batch publishes many HITs, each answered by a few workers; the same item
    shows up in other HITs, in other slots. What a slot's answers read as depends on its
    item and its answer cells only, so a row of a HIT of its own is written through the
    answer rows of earlier HITs (the same item and cells), not read again; and the rows are
    those the record reader writes."""

    def one_file(into, folder: Path) -> Path:
        rows, _ = answered(into, folder / "own", A, "value", "json", 80, "A003WORKER")
        slots = sorted(k[: -len("_id")] for k in rows[0]["inputs"] if k.endswith("_id"))
        moved = []
        for number, row in enumerate(rows):  # every row a HIT of its own, its items reordered
            order = slots[number % len(slots) :] + slots[: number % len(slots)]
            if number % 2:
                order.reverse()
            inputs, answers = {}, {}
            for slot, shown in zip(slots, order, strict=True):
                inputs |= {
                    k.replace(shown, slot, 1): v
                    for k, v in row["inputs"].items()
                    if k.startswith(shown + "_")
                }
                answers |= {
                    k.replace(shown, slot, 1): v
                    for k, v in row["answers"].items()
                    if k.startswith(shown + "__")
                }
            inputs["published"] = f"batch 7, HIT {number}"  # an input of the HIT's own
            moved.append(
                dict(row, HITId=f"{row['HITId']}x{number}", inputs=inputs, answers=answers)
            )
        return write_batch_results(folder / "own.csv", moved)

    fast = read_by("columnar", monkeypatch)
    summary = import_ratings(store, one_file(store, tmp_path / "columnar"), A)
    assert summary.ratings_new > 0 and not summary.failed
    # many rows' slots were all read before, in other HITs: written through those answer
    # rows (459 of 960 answers; none when slots were keyed by their HIT's inputs)
    assert sum(fast) > summary.ratings_new // 3, (sum(fast), summary.ratings_new)
    assert_read_by_records_alike(store, jpeg_study, tmp_path, monkeypatch, one_file)


def test_a_file_partly_of_assignments_imported_before_keeps_their_ids(
    store, jpeg_study, tmp_path, monkeypatch
):
    """A file whose every other row is of an assignment an earlier file imported, read in
    columns: those keep their ids, the others are numbered after them, as the record
    reader numbers them (runs of rows written through hold both)."""

    def one_file(into, folder: Path) -> Path:
        rows, _ = answered(into, folder / "twice", A, "value", "json", 30, "A003WORKER")
        import_ratings(into, write_batch_results(folder / "first.csv", rows[::2]), A)
        return write_batch_results(folder / "second.csv", rows)  # every other row known

    fast = read_by("columnar", monkeypatch)
    summary = import_ratings(store, one_file(store, tmp_path / "columnar"), A)
    assert summary.assignments_new and summary.assignments_unchanged, vars(summary)
    assert sum(fast) > summary.ratings_new, (sum(fast), summary.ratings_new)
    assert_read_by_records_alike(store, jpeg_study, tmp_path, monkeypatch, one_file)


def same_answers(kept: SurveyAnswers, read: SurveyAnswers) -> None:
    """Field by field; the items as each answer's slot (``read`` numbers every slot of the
    study, ``kept`` those of the import, in the same order)."""
    assert [kept.items[i] for i in kept.item] == [read.items[i] for i in read.item]
    assert kept.items == [i for i in read.items if i in kept.items]
    for name in (f.name for f in dataclasses.fields(SurveyAnswers)):
        if name in ("item", "items"):
            continue
        got, expected = getattr(kept, name), getattr(read, name)
        if isinstance(expected, np.ndarray):
            assert got.shape == expected.shape and np.array_equal(got, expected), name
        else:
            assert got == expected, name


@pytest.mark.parametrize("reading", ["columnar", "small", "records"])
def test_an_import_into_a_survey_without_answers_keeps_the_answers_it_leaves(
    store, tmp_path, reading, monkeypatch
):
    """An import into a survey that held no answer gives quality control the answers it
    wrote, kept as columns: the same, field by field, as those read back from the store
    (other surveys' answers in the store, assignments and answers written twice, rows of
    every kind of problem, each way of reading)."""
    read_by(reading, monkeypatch)
    given, apply = [], importer.apply_quality_control

    def comparing(store, survey_id, *, answers=None, **options):
        if answers is not None:
            read = SurveyAnswers.read(
                store, survey_id, min_work_seconds=options["min_work_seconds"]
            )
            same_answers(answers, read)
        given.append(None if answers is None else len(answers.assignment))
        return apply(store, survey_id, answers=answers, **options)

    monkeypatch.setattr(importer, "apply_quality_control", comparing)
    folder = tmp_path / "files"
    folder.mkdir()

    def forget(*surveys) -> None:
        with store.transaction():
            for survey in surveys:
                store.conn.execute(
                    "DELETE FROM answers WHERE assignment IN "
                    "(SELECT id FROM assignments WHERE survey = ?)",
                    (survey.id,),
                )
                store.conn.execute("DELETE FROM assignments WHERE survey = ?", (survey.id,))

    found = candidates(store)
    long = folder / "long.csv"  # an assignment per rater and pair, over several writes
    long.write_text(
        "rater,original,candidate,question,value\n"
        + "".join(
            f"r{r},{c['original_file']},{c['id']},{q.id},{1 + (r + k) % 5}\n"
            for r in range(3)
            for k, c in enumerate(found[:4])
            for q in B.questions
        )
    )
    for path, survey, options in [*imports(store, folder), (long, B, {"format": "long"})]:
        forget(survey)  # each import the survey's first
        import_ratings(store, path, survey, **options)
    assert None not in given and sum(given) > 100, given
    forget(A, C)
    repeated(store, tmp_path)  # A, then A again (read back from the store), then C
    assert given[-3] > 400 and given[-2] is None and given[-1] > 400, given[-3:]


def test_answers_written_twice_or_left_without_their_assignment_are_read_from_the_store(
    store, tmp_path, monkeypatch
):
    """Where the kept columns could differ from the store, quality control reads the store:
    an answer's key written twice (the upsert leaves it once: the same outcome as without),
    an answer left in the store without its assignment (the import's numbering gives it to
    this survey)."""
    read_by("records", monkeypatch)  # every answer row goes through ``_Batch.ratings``
    given, apply = [], importer.apply_quality_control

    def recording(store, survey_id, *, answers=None, **options):
        given.append(answers)
        return apply(store, survey_id, answers=answers, **options)

    monkeypatch.setattr(importer, "apply_quality_control", recording)
    rows, _ = answered(store, tmp_path / "twice", A, "value", "json", 8, "A003WORKER")
    path = write_batch_results(tmp_path / "twice.csv", rows)
    expected = import_ratings(store, path, A).lines(limit=1000)
    assert given[-1] is not None
    flush = importer._flush

    def writing_twice(store, reader, *args):
        reader.batch.ratings += reader.batch.ratings[:1]
        flush(store, reader, *args)

    forget = ("DELETE FROM answers", "DELETE FROM assignments", "DELETE FROM rating_imports")
    for changed in ("twice", "orphan"):
        with store.transaction():
            for sql in forget:
                store.conn.execute(sql)
        with monkeypatch.context() as patched:
            if changed == "twice":
                patched.setattr(importer, "_flush", writing_twice)
            else:
                with importer.foreign_keys_unchecked(store), store.transaction():
                    store.conn.execute(  # the number the import gives its first assignment
                        "INSERT INTO answers (assignment, item, question, subject, raw, "
                        "source_file, source_line, created_at) VALUES (1, 'x', 1, 1, '', 1, 1, 1)"
                    )
            got = import_ratings(store, path, A).lines(limit=1000)
        assert given[-1] is None, changed
        assert got == expected or changed == "orphan"


@pytest.mark.parametrize("high", [10, 2**40], ids=["one integer key", "lexsort"])
def test_key_order_is_a_stable_sort_by_the_keys(high):
    rng = np.random.default_rng(0)
    keys = [rng.integers(0, high, 500), rng.integers(0, 3, 500), rng.integers(0, high, 500)]
    order = importer._key_order(*keys)
    assert order.tolist() == np.lexsort(keys[::-1]).tolist()
    assert importer._key_order(*(np.sort(k) for k in keys[:1])).tolist() == list(range(500))
