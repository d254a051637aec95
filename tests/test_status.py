"""`semcomp status` reads the store alone, in a fixed number of grouped queries; the image
folder is listed only with --rescan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import photo, write_study
from semcomp.cli import main
from semcomp.store import utc_now
from semcomp.study import Study

JPEG = '[[methods]]\nname = "{name}"\ncodec = "jpeg"\nquality = [30, 70]\n{params}\n'


def jpeg(index: int, name: str) -> str:
    """A JPEG method of its own (two methods with the same params are refused)."""
    subsampling, progressive = ["4:2:0", "4:4:4"][index % 2], ["false", "true"][index // 2]
    params = f'params = {{ subsampling = "{subsampling}", progressive = {progressive} }}\n'
    return JPEG.format(name=name, params=params)


SCORE = "clip_(cos+1)/2[tiny]"


def cli(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == 0, capsys.readouterr().err
    return capsys.readouterr().out


def encoded_study(tmp_path: Path, image_folder: Path, names: tuple[str, ...]) -> Path:
    methods = "".join(jpeg(i, name) for i, name in enumerate(names))
    root = write_study(tmp_path / "study", image_folder, "unused-clip-model", methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode", "decode"])
    assert summary.status == "finished" and not summary.failures
    return root


def test_status_lists_the_image_folder_only_with_rescan(
    tmp_path, image_folder, capsys, monkeypatch
):
    root = encoded_study(tmp_path, image_folder, ("jpeg",))
    photo(64, 48, 9).save(image_folder / "landscape" / "new.png")  # not ingested yet
    import semcomp.config

    scan = semcomp.config.find_sources

    def no_scan(source):
        raise AssertionError("status listed the image folder without --rescan")

    monkeypatch.setattr(semcomp.config, "find_sources", no_scan)
    out = cli(["status", str(root)], capsys)
    ingest = next(line for line in out.splitlines() if line.startswith("ingest: originals"))
    assert ingest.split()[2:] == ["4", "unknown", "0"]
    assert "`semcomp status --rescan`" in out
    document = json.loads(cli(["status", str(root), "--json"], capsys))
    assert document["stages"][0]["pending"] is None
    assert document["stages"][0]["pending_known"] is False
    assert all(row["pending_known"] for row in document["stages"][1:])
    with Study.open_to_read(root) as study:  # the library lists the folder only when asked
        assert study.status()[0].pending is None and not study.status()[0].pending_known
        # planning a run without ingest: images not ingested get no work, nothing listed
        assert [family for family, *_ in study.models_needed(["embed"])] == ["clip"]
        assert study.extras_needed(["encode", "decode"]) == []
    monkeypatch.setattr(semcomp.config, "find_sources", scan)
    out = cli(["status", str(root), "--rescan"], capsys)
    ingest = next(line for line in out.splitlines() if line.startswith("ingest: originals"))
    assert ingest.split()[2:] == ["4", "1", "0"] and "--rescan`" not in out
    with Study.open_to_read(root) as study:
        assert study.status(rescan=True)[0].pending == 1
        assert study.status(rescan=True)[0].pending_known


def test_a_run_that_ingests_lists_the_source_once_before_it_starts(
    tmp_path, image_folder, monkeypatch
):
    root = encoded_study(tmp_path, image_folder, ("jpeg",))
    photo(64, 48, 9).save(image_folder / "landscape" / "new.png")
    import semcomp.config

    listed = []
    scan = semcomp.config.find_sources
    monkeypatch.setattr(
        semcomp.config, "find_sources", lambda source: listed.append(source) or scan(source)
    )
    with Study.open(root) as study:
        study.run(progress=False, stages=["encode"])
        assert listed == []  # no ingest: the new image is no work of this run
        summary = study.run(progress=False, stages=["ingest", "encode", "decode"])
        assert summary.status == "finished" and not summary.failures
        # one listing plans extras and models (two before), one is the ingest stage's own
        assert len(listed) == 2
        assert {row.what: row.done for row in study.status()}["ingest: originals"] == 5


def test_status_runs_the_same_grouped_queries_for_any_number_of_methods(tmp_path, image_folder):
    statements = {}
    for names in (("a",), ("a", "b", "c", "d")):
        root = write_study(
            tmp_path / "-".join(names),
            image_folder,
            "unused-clip-model",
            methods="".join(jpeg(i, name) for i, name in enumerate(names)),
        )
        with Study.open(root) as study:
            run: list[str] = []
            study.store.conn.set_trace_callback(run.append)
            rows = study.status(rescan=False)
            study.store.conn.set_trace_callback(None)
        assert len(rows) == 1 + 2 * len(names) + 2  # ingest, per method 2, embed and score
        statements[len(names)] = len(run)
    # a query per method before (4 + 5 per method); now a fixed few: the counts, and the
    # hashes similarity needs read as sets (one read per embedder of its embeddings)
    assert statements[1] == statements[4] <= 10


def test_scores_of_methods_removed_from_the_study_file_are_not_counted(tmp_path, image_folder):
    root = encoded_study(tmp_path, image_folder, ("kept", "removed"))
    with Study.open(root) as study:
        conn = study.store.conn
        conn.execute(
            "INSERT INTO metrics (name, embedder_id, formula, description) "
            "VALUES (?, NULL, '(cos+1)/2', 'test')",
            [SCORE],
        )
        candidates = [r[0] for r in conn.execute("SELECT id FROM candidates")]
        conn.executemany(
            "INSERT INTO scores (candidate_id, metric, value, run_id, created_at) "
            "VALUES (?, ?, 0.5, NULL, ?)",
            [(c, SCORE, utc_now()) for c in candidates],
        )
        conn.commit()
        status = {row.what: row for row in study.status(rescan=False)}
    assert len(candidates) == 16  # 4 images x 2 qualities x 2 methods
    assert (status[f"score: {SCORE}"].done, status[f"score: {SCORE}"].pending) == (16, 0)
    toml = (root / "study.toml").read_text()
    (root / "study.toml").write_text(toml.replace(jpeg(1, "removed"), ""))
    with Study.open_to_read(root) as study:
        status = {row.what: row for row in study.status(rescan=False)}
    assert "candidates: removed" not in status
    assert (status[f"score: {SCORE}"].done, status[f"score: {SCORE}"].pending) == (8, 0)


def test_embed_counts_only_originals_still_in_the_sources(tmp_path, image_folder):
    """The embed row counts what the embed stage would embed: an original whose image left
    the sources is not counted, nor are its candidates (those of the other originals are)."""
    from semcomp.stages import StageContext, StageReport
    from semcomp.stages.embed import artifacts_to_score

    root = encoded_study(tmp_path, image_folder, ("kept",))
    with Study.open(root) as study:
        conn = study.store.conn
        before = {row.what: row for row in study.status(rescan=False)}
        gone = conn.execute("SELECT original_id FROM sources ORDER BY path").fetchone()[0]
        conn.execute("DELETE FROM sources WHERE original_id = ?", [gone])
        conn.commit()
        context = StageContext(study.store, study.config, 0, False, StageReport("embed"))
        needed = artifacts_to_score(context)
        after = {row.what: row for row in study.status(rescan=False)}
    embed = next(what for what in after if what.startswith("embed: "))
    assert before[embed].pending == 4 + 8  # 4 originals, 4 x 2 JPEG candidates
    assert after[embed].pending == len(needed) == 3 + 6
    assert after["candidates: kept"].done == 8  # made, whether current or not


def test_status_imports_no_progress_bars_tables_or_models(tmp_path, image_folder):
    """`semcomp status` reads counts: tqdm (with asyncio), pandas and torch stay unloaded
    (numpy is loaded: the sets of hashes are counted as its arrays), and the installed
    distributions' entry points are read once."""
    root = encoded_study(tmp_path, image_folder, ("kept",))
    code = (
        "import sys, importlib.metadata as md\nreads = []\nread = md.entry_points\n"
        "def counted(**kw):\n"
        "    if kw.get('group') != 'pydantic':  # pydantic reads its own plugins' group\n"
        "        reads.append(kw)\n"
        "    return read(**kw)\n"
        "md.entry_points = counted\n"
        "from semcomp.cli import main\n"
        f"try:\n    main(['status', {str(root)!r}])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tqdm', 'asyncio', 'pandas', 'torch') if m in sys.modules]\n"
        "print('HEAVY', heavy, 'READS', len(reads))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "candidates: kept" in out.stdout
    assert "HEAVY [] READS 1" in out.stdout
