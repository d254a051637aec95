"""Killing `semcomp run` at any point and running it again loses and duplicates nothing."""

import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from helpers import photo, write_study
from semcomp.cli import main
from semcomp.study import Study

PIXEL_METHODS = """
[[methods]]
name = "jpeg"
codec = "jpeg"
quality = [20, 50, 80]
reduction = [0.9]

[[methods]]
name = "webp"
codec = "webp"
quality = [30, 60]
"""
#: originals per kind of study: each kill below lands mid-stage (the textual kills after 10
#: of the study's 20 captions or candidates, written a batch of 2 at a time)
IMAGES = {"pixel": 40, "textual": 20}


def textual_methods(blip, sd) -> str:
    return f"""
[[methods]]
name = "blip-sd"
captioner = "blip"
captioner_params = {{ model = "{blip}", max_new_tokens = 8 }}
reconstructor_params = {{ model = "{sd}", steps = 2, width = 64, height = 64 }}
batch_size = 2
"""


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> dict[str, Path]:
    """Each kind's image folder: the textual study's are the first of the pixel study's."""
    folders = {}
    for kind, images in IMAGES.items():
        root = folders[kind] = tmp_path_factory.mktemp(f"many-{kind}")
        for index in range(images):
            folder = root / ("a" if index % 2 else "b")
            folder.mkdir(exist_ok=True)
            photo(192, 144, seed=index).save(folder / f"{index:03d}.png")
    return folders


def study_rows(root: Path) -> dict[str, set]:
    conn = sqlite3.connect(root / "study.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {
            "originals": set(conn.execute("SELECT id, width, height, file_bytes FROM originals")),
            "representations": set(
                conn.execute(
                    "SELECT original_id, method_id, operating_point, rate_bits, payload_hash "
                    "FROM representations"
                )
            ),
            "captions": set(
                conn.execute("SELECT original_id, captioner_key, variant, text FROM captions")
            ),
            # a resumed diffusion batch may differ from an uninterrupted one by float rounding,
            # so reconstructions are compared by identity (and seed), not by pixels
            "candidates": set(conn.execute("SELECT id, seed FROM candidates")),
            "embeddings": set(conn.execute("SELECT COUNT(*), embedder_id FROM embeddings")),
            "scores": set(conn.execute("SELECT candidate_id, metric FROM scores")),
        }
    finally:
        conn.close()


def count(db: Path, table: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def _semcomp_run_in_child(root: Path, stderr: Path) -> None:
    """`semcomp run ROOT` in a forked child, its output to /dev/null and ``stderr``."""
    if "torch" in sys.modules:  # an OpenMP team of the parent's is not in the child
        sys.modules["torch"].set_num_threads(1)
    # not into the test's captured output (pytest's files are the parent's too)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the killed child never closes them)
    sys.stderr = stderr.open("w", buffering=1)
    os.dup2(sys.stdout.fileno(), 1)
    os.dup2(sys.stderr.fileno(), 2)
    main(["run", str(root), "--no-progress"])


def semcomp_run(root: Path, stderr: Path) -> multiprocessing.Process:
    """`semcomp run ROOT` in a process of its own, to be killed with SIGKILL: forked from
    this one, whose imports (torch, open_clip, transformers, diffusers: seconds in a fresh
    interpreter) the references' runs have done. The command line runs in a fresh process
    elsewhere (test_readme.py re-runs the demo, test_one_writer.py runs it beside another)."""
    process = multiprocessing.get_context("fork").Process(
        target=_semcomp_run_in_child, args=(root, stderr), daemon=True
    )
    process.start()
    return process


@pytest.fixture(scope="module")
def methods(request, tiny_blip, tiny_sd) -> dict[str, str]:
    return {"pixel": PIXEL_METHODS, "textual": textual_methods(tiny_blip, tiny_sd)}


@pytest.fixture(scope="module")
def references(many_images, tiny_clip, methods, tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for kind, text in methods.items():
        images = many_images[kind]
        root = write_study(tmp_path_factory.mktemp(f"ref-{kind}"), images, tiny_clip, text)
        with Study.open(root) as study:
            assert study.run(progress=False).status == "finished"
        roots[kind] = root
    return roots


def scores(root: Path) -> dict[str, float]:
    conn = sqlite3.connect(root / "study.db")
    return dict(conn.execute("SELECT candidate_id || metric, value FROM scores"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "table", "after"),
    [
        ("pixel", "representations", 30),
        ("pixel", "embeddings", 40),
        ("textual", "captions", 10),
        ("textual", "candidates", 10),
    ],
)
def test_kill_mid_stage_then_rerun(
    tmp_path, many_images, tiny_clip, methods, references, kind, table, after
):
    reference = study_rows(references[kind])
    root = write_study(tmp_path / "s", many_images[kind], tiny_clip, methods=methods[kind])
    db = root / "study.db"
    errors = tmp_path / "killed-run.stderr"
    process = semcomp_run(root, errors)
    deadline = time.monotonic() + 120
    while count(db, table) < after:
        assert process.is_alive(), f"run ended before the kill: {errors.read_text()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.kill()
    process.join()
    assert process.exitcode == -signal.SIGKILL
    finished = count(references[kind] / "study.db", table)
    assert 0 < count(db, table) < finished, "the kill did not land mid-stage"

    # the rerun in this process (the same command; only the kill needs a process of its own)
    with pytest.raises(SystemExit) as rerun:
        main(["run", str(root), "--no-progress"])
    assert rerun.value.code == 0
    assert study_rows(root) == reference
    if kind == "pixel":  # embeddings do not depend on how a killed run split the batches
        assert scores(root) == pytest.approx(scores(references[kind]), abs=1e-5)
    statuses = sqlite3.connect(db).execute("SELECT status FROM runs ORDER BY id").fetchall()
    assert [s for (s,) in statuses] == ["interrupted", "finished"]  # marked by the rerun
