"""Killing `semcomp run` at any point and running it again loses and duplicates nothing."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import photo, write_study
from semcomp.study import Study

METHODS = """
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
IMAGES = 40


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for index in range(IMAGES):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(exist_ok=True)
        photo(192, 144, seed=index).save(folder / f"{index:03d}.png")
    return root


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
            "candidates": set(conn.execute("SELECT id, artifact_hash FROM candidates")),
            "embeddings": set(conn.execute("SELECT artifact_hash, embedder_id FROM embeddings")),
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


def semcomp_run(root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "semcomp", "run", str(root), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def reference_root(many_images, tiny_clip, tmp_path_factory) -> Path:
    root = write_study(tmp_path_factory.mktemp("ref"), many_images, tiny_clip, methods=METHODS)
    with Study.open(root) as study:
        assert study.run(progress=False).status == "finished"
    return root


@pytest.fixture(scope="module")
def reference(reference_root) -> dict[str, set]:
    return study_rows(reference_root)


@pytest.fixture(scope="module")
def reference_scores(reference_root) -> dict[str, float]:
    conn = sqlite3.connect(reference_root / "study.db")
    return dict(conn.execute("SELECT candidate_id || metric, value FROM scores"))


@pytest.mark.slow
@pytest.mark.parametrize(("table", "after"), [("representations", 30), ("embeddings", 40)])
def test_kill_mid_stage_then_rerun(
    tmp_path, many_images, tiny_clip, reference, reference_scores, table, after
):
    root = write_study(tmp_path / "s", many_images, tiny_clip, methods=METHODS)
    db = root / "study.db"
    process = semcomp_run(root)
    deadline = time.monotonic() + 120
    while count(db, table) < after:
        assert process.poll() is None, f"run ended before the kill: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = study_rows(root)
    assert 0 < len(partial[table]) < len(reference[table]), "the kill did not land mid-stage"

    rerun = semcomp_run(root)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert study_rows(root) == reference
    # Embeddings do not depend on how a killed run split the batches.
    values = dict(sqlite3.connect(db).execute("SELECT candidate_id || metric, value FROM scores"))
    assert values == pytest.approx(reference_scores, abs=1e-5)
    statuses = sqlite3.connect(db).execute("SELECT status FROM runs ORDER BY id").fetchall()
    assert [s for (s,) in statuses] == ["running", "finished"]
