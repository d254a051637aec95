"""One study, one writer: the writer lock, runs a killed process left, read-only folders,
a full disk (issue 12, items 8-11)."""

import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import command_outputs, photo, rows, semcomp_in_one_process, write_study
from semcomp.cli import main
from semcomp.store import WRITER_NAME, Store, _open_new
from semcomp.study import Study

PIXEL_STAGES = ["--stage", "ingest", "--stage", "encode", "--stage", "decode"]
SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A JPEG study of six photos, not run yet (pixel stages need no model)."""
    images = tmp_path / "images"
    for index in range(6):
        folder = images / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        photo(96, 64, index).save(folder / f"{index}.png")
    return write_study(tmp_path / "study", images, "unused-clip-model")


def python(code: str, **kwargs) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([SRC, TESTS]), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def semcomp(*args: str, **kwargs) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "semcomp", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as raised:
        main(list(args))
    out = capsys.readouterr()
    return raised.value.code, out.out, out.err


# ---- item 8: one writer at a time; readers never wait ---------------------------------------


HOLD_THE_LOCK = """
    import sys
    from semcomp.study import Study

    with Study.open(sys.argv[1]) as study, study.store.transaction():
        study.store.set_info("uncommitted", True)  # a write in progress, not committed
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes stdin
"""


def test_a_second_writer_is_refused_naming_the_first_and_readers_do_not_wait(
    study, tmp_path, capsys
):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_THE_LOCK), str(study)],
        env=os.environ | {"PYTHONPATH": SRC},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, _, err = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
        assert code == 3
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
        assert f"pid {holder.pid} on {socket.gethostname()}" in err
        assert "python -c" in err and "since 20" in err and "being written" in err
        # nothing was done by the refused run
        assert rows(study, "SELECT COUNT(*) FROM runs") == [(0,)]
        assert rows(study, "SELECT COUNT(*) FROM representations") == [(0,)]
        # readers neither wait for the lock nor for the open write transaction
        started = time.monotonic()
        code, out, _ = cli(capsys, "status", str(study))
        assert code == 0 and "represent: jpeg" in out
        code, out, _ = cli(capsys, "report", str(study), "--out", str(tmp_path / "report"))
        assert code == 0 and (tmp_path / "report" / "rd.csv").exists()
        assert time.monotonic() - started < 20  # busy_timeout would be 30 s per read
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert not (study / WRITER_NAME).exists()  # the holder's name leaves with it
    code, out, _ = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 0 and "run 1: finished" in out


RUN_THAT_WAITS_IN_ENCODE = """
    import sys, time
    from pathlib import Path
    import semcomp.stages.encode
    from semcomp.cli import main

    encode, go = semcomp.stages.encode.run, Path(sys.argv[2])

    def waits(context):
        while not go.exists():
            time.sleep(0.05)
        encode(context)

    semcomp.stages.encode.run = waits
    main(["run", sys.argv[1], "--no-progress", "--stage", "ingest", "--stage", "encode"])
"""


def ingested(root: Path) -> bool:
    try:
        return rows(root, "SELECT COUNT(*) FROM originals") == [(6,)]
    except sqlite3.OperationalError:  # no database or no tables yet
        return False


@pytest.mark.slow
def test_a_run_while_another_runs_does_nothing_and_says_who(study, tmp_path):
    go = tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RUN_THAT_WAITS_IN_ENCODE), str(study), str(go)],
        env=os.environ | {"PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ingested(study):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        # the first run is inside its encode stage: a second `semcomp run` starts now
        second = semcomp("run", str(study), "--no-progress", *PIXEL_STAGES)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 3 and err.count("\n") == 1, err
        assert f"being written by pid {first.pid} on {socket.gethostname()}" in err
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and "run 1: finished" in out, err
    assert rows(study, "SELECT id, status FROM runs") == [(1, "finished")]
    # every representation written once, by the first run
    assert rows(study, "SELECT COUNT(*), MIN(run_id), MAX(run_id) FROM representations") == [
        (12, 1, 1)
    ]


def test_writers_in_one_process_share_the_lock(study):
    with Study.open(study) as first:
        run_id = first.store.start_run(
            command="test", semcomp_version="0", packages={}, config={}, seed=0
        )
        with Store(study) as second:  # e.g. a ratings import from the same program
            second.set_info("x", 1)
        # the second store did not take this process's own run for a stale one
        status = first.store.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,))
        assert status.fetchone()[0] == "running"
        assert (study / WRITER_NAME).exists()  # still held by `first`
    assert not (study / WRITER_NAME).exists()
    probe = python(
        f"""
        from semcomp.store import Store
        Store({str(study)!r}).close()
        print("took it")
        """
    )
    assert probe.communicate(timeout=60)[0].strip() == "took it"


# ---- item 9: a killed run is marked interrupted ------------------------------------------------

KILLED_IN_ENCODE = """
    import os, signal, sys
    import semcomp.stages.encode
    from semcomp.study import Study

    def killed(context):
        os.kill(os.getpid(), signal.SIGKILL)

    semcomp.stages.encode.run = killed
    with Study.open(sys.argv[1]) as study:
        study.run(progress=False, stages=["ingest", "encode"])
"""


def test_a_killed_run_is_marked_interrupted_by_the_next_writer(study, capsys):
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_IN_ENCODE), str(study)],
        env=os.environ | {"PYTHONPATH": SRC},
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL
    assert rows(study, "SELECT id, status FROM runs") == [(1, "running")]
    # a reader changes nothing, but tells the run is not running any more
    code, out, _ = cli(capsys, "status", str(study))
    assert code == 0 and "run 1 stopped without finishing" in out
    assert rows(study, "SELECT status FROM runs") == [("running",)]
    # the killed process left no lock behind: the next writer opens at once and decides
    with Study.open(study):
        pass
    assert rows(study, "SELECT id, status, finished_at FROM runs") == [(1, "interrupted", None)]
    code, out, _ = cli(capsys, "status", str(study))
    assert code == 0 and "run 1 interrupted (`semcomp run`, started 20" in out
    code, out, _ = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 0 and "run 2: finished" in out
    assert rows(study, "SELECT id, status FROM runs") == [(1, "interrupted"), (2, "finished")]


def test_status_names_the_writer_of_a_running_run(study, capsys):
    with Study.open(study) as writing:
        writing.store.start_run(
            command="semcomp run s", semcomp_version="0", packages={}, config={}, seed=0
        )
        code, out, _ = cli(capsys, "status", str(study))
    assert code == 0
    assert "run 1 running (`semcomp run s`, started 20" in out
    assert f"pid {os.getpid()} on {socket.gethostname()}" in out


# ---- item 10: a read-only study folder ----------------------------------------------------------


def bind_read_only_available(folder: Path) -> bool:
    mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder}"
    try:
        probe = subprocess.run(
            ["unshare", "-Urm", "sh", "-c", f"{mount} && ! touch {folder}/probe 2>/dev/null"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and not (folder / "probe").exists()


#: after the commands: what the app reads of the study (its path formatted in)
APP_READ = """
from pathlib import Path
from semcomp.app.data import _read_study, read_consistently, signature
root = Path({study!r})
data = read_consistently(root, signature(root), _read_study)
print("app rows", len(data.points), "originals", len(data.originals))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["bind-mount", "chmod"])
def test_a_read_only_study_reads_and_run_says_so(how, study, tmp_path, capsys):
    code, _, _ = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 0
    before = sorted(p.relative_to(study) for p in study.rglob("*"))
    out = tmp_path / "elsewhere"
    commands = [
        ["status", str(study)],
        ["report", str(study), "--out", str(out)],
        ["report", str(study)],  # in place
        ["run", str(study), "--no-progress"],
    ]
    # the commands in one process (one each cost seconds of imports), then the app's read
    script = semcomp_in_one_process(commands, after=APP_READ.format(study=str(study)))
    env = os.environ | {"PYTHONPATH": SRC, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    if how == "bind-mount":  # a read-only mount: even root cannot write there
        if not bind_read_only_available(study):
            pytest.skip("needs `unshare -Urm` (user and mount namespaces)")
        mount = f"mount --bind {study} {study} && mount -o remount,bind,ro {study} {study}"
        command = ["unshare", "-Urm", "sh", "-c", f"{mount} && {shlex.join(script)}"]
    else:  # permission bits: root ignores them
        if os.geteuid() == 0:
            pytest.skip("root ignores permission bits (the bind-mount case covers root)")
        for path in [study, *study.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        command = script
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    finally:
        for path in [study, *study.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    results, app = command_outputs(done.stdout)
    err = done.stderr
    assert [status for _, status in results] == [0, 0, 3, 3], done
    status = results[0][0]
    assert "represent: jpeg" in status and (out / "rd.csv").exists(), done
    assert "cannot write the report to" in err and "--out" in err
    assert "Traceback" not in err and "unable to open database file" not in err, err
    run_errors = [line for line in err.splitlines() if line.startswith("error: the study folder")]
    assert len(run_errors) == 1 and "is read-only: `run`" in run_errors[0], err
    assert done.returncode == 0 and "app rows 12 originals 6" in app, done
    # reading created nothing in the study folder
    assert sorted(p.relative_to(study) for p in study.rglob("*")) == before


def test_run_in_an_unwritable_folder_is_one_line(study, capsys, monkeypatch):
    code, _, _ = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 0
    monkeypatch.setattr("semcomp.store.is_writable", lambda path: False)
    code, _, err = cli(capsys, "run", str(study), "--no-progress")
    assert code == 3 and err.count("\n") == 1
    assert err.startswith(f"error: the study folder {study} is read-only: `run`")
    assert rows(study, "SELECT COUNT(*) FROM runs") == [(1,)]
    code, out, _ = cli(capsys, "status", str(study))  # readers do not need to write
    assert code == 0 and "represent: jpeg" in out


# ---- item 11: a full disk ------------------------------------------------------------------------


class FullDisk:
    """New files as the store creates them: after ``room`` artifact files, every new artifact
    (written in place, ``_open_new``) or temporary file (``tempfile``) is backed by
    ``/dev/full``, so writing it fails with the kernel's own ENOSPC."""

    def __init__(self, room: int):
        self.room = room

    def backed(self, fd: int, artifact: bool) -> int:
        if not artifact or self.room > 0:
            self.room -= artifact
            return fd
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY)

    def mkstemp(self, dir: str, prefix: str, suffix: str) -> tuple[int, str]:
        import tempfile

        fd, path = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
        return self.backed(fd, suffix != WRITER_NAME), path

    def open_new(self, path: str) -> int:
        return self.backed(_open_new(path), True)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("semcomp.store.tempfile", self)
        monkeypatch.setattr("semcomp.store._open_new", self.open_new)


def stored(root: Path) -> dict[str, set]:
    conn = sqlite3.connect(root / "study.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        return {
            "originals": set(conn.execute("SELECT id, artifact_hash FROM originals")),
            "representations": set(
                conn.execute("SELECT id, payload_hash, rate_bits FROM representations")
            ),
            "candidates": set(conn.execute("SELECT id, artifact_hash FROM candidates")),
        }
    finally:
        conn.close()


def artifacts_are_whole(root: Path) -> None:
    for relpath, size in rows(root, "SELECT relpath, bytes FROM artifacts"):
        assert (root / "artifacts" / relpath).stat().st_size == size
    assert not list(root.rglob(".tmp-*"))


def reference_rows(tmp_path: Path, images: Path) -> dict[str, set]:
    clean = write_study(tmp_path / "clean", images, "unused-clip-model")
    with Study.open(clean) as opened:
        assert opened.run(progress=False, stages=["ingest", "encode", "decode"]).failures == []
    return stored(clean)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_the_store_stays_intact(study, tmp_path, capsys, monkeypatch):
    FullDisk(room=3).install(monkeypatch)
    code, _, err = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: no space left on the disk holding {study / 'artifacts'}")
    needed = int(err.split(" (")[1].split(" bytes needed")[0].replace(",", ""))
    path = Path(err.split("holding ")[1].split(" (")[0])
    assert needed == len(photo_bytes(study, path.stem)) and " free)" in err
    assert rows(study, "SELECT status FROM runs") == [("failed",)]
    artifacts_are_whole(study)
    assert len(stored(study)["originals"]) == 3
    monkeypatch.undo()  # space freed: the next run finishes the work, nothing twice
    code, out, _ = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 0 and "run 2: finished" in out
    artifacts_are_whole(study)
    assert stored(study) == reference_rows(tmp_path, study.parent / "images")


def photo_bytes(study: Path, digest: str) -> bytes:
    """The source file whose content hash is ``digest``."""
    import hashlib

    for path in (study.parent / "images").rglob("*.png"):
        if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return path.read_bytes()
    raise AssertionError(f"no source file hashes to {digest}")


def test_a_full_database_disk_is_one_line_and_rolls_back(tmp_path, capsys, monkeypatch):
    images = tmp_path / "many"
    images.mkdir()
    for index in range(40):
        photo(24, 16, index).save(images / f"{index:02d}.png")
    study = write_study(tmp_path / "study", images, "unused-clip-model")
    migrate = Store._migrate

    def small_disk(self) -> None:  # SQLite's own SQLITE_FULL, as on a full disk
        migrate(self)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    monkeypatch.setattr(Store, "_migrate", small_disk)
    code, _, err = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: no space left on the disk holding {study / 'study.db'}")
    monkeypatch.undo()
    artifacts_are_whole(study)
    stored(study)  # integrity and foreign keys hold
    code, out, _ = cli(capsys, "run", str(study), "--no-progress", *PIXEL_STAGES)
    assert code == 0 and "finished" in out
    assert stored(study) == reference_rows(tmp_path, images)


@pytest.mark.slow
def test_a_really_full_disk_on_a_small_tmpfs(tmp_path, capsys):
    """The kernel's own ENOSPC: the study on a 1.2 MB tmpfs (in a private mount namespace)
    that holds the store and a few of six 280 KB originals."""
    images = tmp_path / "images"
    images.mkdir()
    for index in range(6):
        photo(400, 300, index).save(images / f"{index}.png")
    study = write_study(tmp_path / "study", images, "unused-clip-model")
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    if not bind_read_only_available(disk):
        pytest.skip("needs `unshare -Urm` (user and mount namespaces)")
    run = f"{shlex.quote(sys.executable)} -m semcomp run {disk / 'study'} --no-progress"
    script = (
        f"mount -t tmpfs -o size=1200k tmpfs {disk} && cp -a {study} {disk}/ && "
        f"{run} {' '.join(PIXEL_STAGES)}; echo rc=$?; cp -a {disk / 'study'} {kept}"
    )
    done = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script],
        env=os.environ | {"PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "rc=3" in done.stdout, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: no space left on the disk holding {disk / 'study'}")
    assert " bytes needed, " in done.stderr or "more space needed" in done.stderr
    # the store as the full disk left it: intact, and the next run (with space) finishes
    assert rows(kept, "SELECT status FROM runs") == [("failed",)]
    artifacts_are_whole(kept)
    assert 0 < len(stored(kept)["originals"]) < 6
    code, out, _ = cli(capsys, "run", str(kept), "--no-progress", *PIXEL_STAGES)
    assert code == 0 and "run 2: finished" in out
    assert stored(kept) == reference_rows(tmp_path, images)
