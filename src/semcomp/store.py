"""The study store: ``study.db`` (SQLite, WAL) and content-addressed ``artifacts/``.

Every result a figure shows is a row here. Writes are idempotent upserts keyed
by content hashes and method parameters, each inside a transaction, so a run
killed at any point and started again neither duplicates nor loses rows.
An artifact file is written whole before the row that names it is committed, and
only rows lead readers to files; an artifact without a row is harmless and is
simply reused by the next run (a file cut short by a killed run is told by its
size and rewritten, see :meth:`Store.put_artifact`).

The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` holds
one script per version and only ever grows.

One study, one writer: a writing store holds the study's writer lock (an exclusive
``flock`` on ``study.lock``, through ``filelock``) from opening to closing, and
says who it is in ``study.lock.json`` beside it. The operating system drops the
lock when its process ends, however it ends, so a killed run never leaves a stale
lock, and a ``running`` row found by the next writer is known to be stale. Readers
never take the lock and never wait for it; in a folder they cannot write they read
the database as an immutable file (see :meth:`Store._connect_read_only`).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shlex
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcomp.errors import DiskFullError, ReadOnlyStudyError, StoreError, StudyBusyError
from semcomp.images import sha256_hex

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DB_NAME = "study.db"
ARTIFACTS_DIR = "artifacts"
#: the writer lock, and who holds it (JSON: pid, host, command, since; removed on release)
LOCK_NAME = "study.lock"
WRITER_NAME = "study.lock.json"
#: errors that mean "no space left" (a full disk, or the user's quota)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

MIGRATIONS: list[str] = [
    # version 1: the foundation schema
    """
    CREATE TABLE study_info (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE runs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at      TEXT NOT NULL,
        finished_at     TEXT,
        status          TEXT NOT NULL,
        command         TEXT NOT NULL,
        semcomp_version TEXT NOT NULL,
        packages        TEXT NOT NULL,
        config          TEXT NOT NULL,
        seed            INTEGER,
        summary         TEXT
    );
    CREATE TABLE artifacts (
        hash       TEXT PRIMARY KEY,
        relpath    TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        media_type TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE originals (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        category      TEXT NOT NULL,
        source_path   TEXT NOT NULL,
        width         INTEGER NOT NULL,
        height        INTEGER NOT NULL,
        pixels        INTEGER NOT NULL,
        file_bytes    INTEGER NOT NULL,
        format        TEXT NOT NULL,
        source_mode   TEXT NOT NULL,
        frames        INTEGER NOT NULL,
        artifact_hash TEXT NOT NULL REFERENCES artifacts(hash),
        run_id        INTEGER REFERENCES runs(id),
        created_at    TEXT NOT NULL
    );
    CREATE TABLE sources (
        path        TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        category    TEXT NOT NULL,
        name        TEXT NOT NULL,
        original_id TEXT REFERENCES originals(id)
    );
    CREATE TABLE methods (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        kind       TEXT NOT NULL,
        codec      TEXT NOT NULL,
        params     TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE captions (
        id            TEXT PRIMARY KEY,
        original_id   TEXT NOT NULL REFERENCES originals(id),
        captioner_key TEXT NOT NULL,
        captioner     TEXT NOT NULL,
        params        TEXT NOT NULL,
        variant       INTEGER NOT NULL,
        text          TEXT NOT NULL,
        author        TEXT,
        meta          TEXT NOT NULL,
        run_id        INTEGER REFERENCES runs(id),
        created_at    TEXT NOT NULL,
        UNIQUE (original_id, captioner_key, variant)
    );
    CREATE TABLE representations (
        id              TEXT PRIMARY KEY,
        original_id     TEXT NOT NULL REFERENCES originals(id),
        method_id       TEXT NOT NULL REFERENCES methods(id),
        operating_point TEXT NOT NULL,
        variant         INTEGER NOT NULL,
        payload_hash    TEXT NOT NULL REFERENCES artifacts(hash),
        rate_bits       INTEGER,
        meta            TEXT NOT NULL,
        run_id          INTEGER REFERENCES runs(id),
        created_at      TEXT NOT NULL,
        UNIQUE (original_id, method_id, operating_point, variant)
    );
    CREATE TABLE reconstructions (
        key               TEXT PRIMARY KEY,
        reconstructor_key TEXT NOT NULL,
        prompt            TEXT NOT NULL,
        seed              INTEGER,
        replicate         INTEGER NOT NULL,
        artifact_hash     TEXT NOT NULL REFERENCES artifacts(hash),
        meta              TEXT NOT NULL,
        run_id            INTEGER REFERENCES runs(id),
        created_at        TEXT NOT NULL
    );
    CREATE TABLE candidates (
        id                TEXT PRIMARY KEY,
        representation_id TEXT NOT NULL REFERENCES representations(id),
        replicate         INTEGER NOT NULL,
        seed              INTEGER,
        artifact_hash     TEXT NOT NULL REFERENCES artifacts(hash),
        meta              TEXT NOT NULL,
        run_id            INTEGER REFERENCES runs(id),
        created_at        TEXT NOT NULL,
        UNIQUE (representation_id, replicate)
    );
    CREATE TABLE embedders (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        model       TEXT NOT NULL,
        pretrained  TEXT NOT NULL,
        preprocess  TEXT NOT NULL,
        weights     TEXT NOT NULL,
        random_weights INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE embeddings (
        artifact_hash TEXT NOT NULL REFERENCES artifacts(hash),
        embedder_id   TEXT NOT NULL REFERENCES embedders(id),
        dim           INTEGER NOT NULL,
        vector        BLOB NOT NULL,
        run_id        INTEGER REFERENCES runs(id),
        created_at    TEXT NOT NULL,
        PRIMARY KEY (artifact_hash, embedder_id)
    );
    CREATE TABLE metrics (
        name        TEXT PRIMARY KEY,
        embedder_id TEXT REFERENCES embedders(id),
        formula     TEXT NOT NULL,
        description TEXT NOT NULL
    );
    CREATE TABLE scores (
        candidate_id TEXT NOT NULL REFERENCES candidates(id),
        metric       TEXT NOT NULL REFERENCES metrics(name),
        value        REAL NOT NULL,
        run_id       INTEGER REFERENCES runs(id),
        created_at   TEXT NOT NULL,
        PRIMARY KEY (candidate_id, metric)
    );
    CREATE TABLE failures (
        stage      TEXT NOT NULL,
        item       TEXT NOT NULL,
        reason     TEXT NOT NULL,
        retryable  INTEGER NOT NULL,
        detail     TEXT NOT NULL,
        run_id     INTEGER REFERENCES runs(id),
        created_at TEXT NOT NULL,
        PRIMARY KEY (stage, item)
    );
    CREATE INDEX representations_by_method ON representations(method_id);
    CREATE INDEX candidates_by_artifact ON candidates(artifact_hash);
    """,
    # version 2: human ratings (semcomp.surveys): survey definitions, generated survey items,
    # imported files, MTurk assignments, one row per answer, answers for unknown candidates
    """
    CREATE TABLE surveys (
        id         TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE survey_items (
        id           TEXT PRIMARY KEY,
        survey       TEXT NOT NULL REFERENCES surveys(id),
        batch        TEXT NOT NULL,
        hit          INTEGER NOT NULL,
        slot         INTEGER NOT NULL,
        original_id  TEXT NOT NULL REFERENCES originals(id),
        candidate_id TEXT REFERENCES candidates(id),
        left_side    TEXT NOT NULL,
        is_check     INTEGER NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE rating_imports (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        survey      TEXT NOT NULL REFERENCES surveys(id),
        file        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        format      TEXT NOT NULL,
        options     TEXT NOT NULL,
        summary     TEXT NOT NULL,
        imported_at TEXT NOT NULL
    );
    CREATE TABLE assignments (
        assignment_id TEXT PRIMARY KEY,
        survey        TEXT NOT NULL REFERENCES surveys(id),
        hit_id        TEXT NOT NULL,
        worker_id     TEXT NOT NULL,
        status        TEXT NOT NULL,
        accept_time   TEXT,
        submit_time   TEXT,
        work_seconds  REAL,
        approval_rate TEXT,
        source_file   TEXT NOT NULL,
        source_line   INTEGER NOT NULL,
        import_id     INTEGER REFERENCES rating_imports(id),
        created_at    TEXT NOT NULL
    );
    CREATE TABLE ratings (
        assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
        item          TEXT NOT NULL,
        question      TEXT NOT NULL,
        survey        TEXT NOT NULL REFERENCES surveys(id),
        worker_id     TEXT NOT NULL,
        item_id       TEXT REFERENCES survey_items(id),
        original_id   TEXT NOT NULL REFERENCES originals(id),
        candidate_id  TEXT REFERENCES candidates(id),
        is_check      INTEGER NOT NULL,
        check_passed  INTEGER,
        value         REAL,
        text          TEXT,
        raw           TEXT NOT NULL,
        excluded      TEXT,
        source_file   TEXT NOT NULL,
        source_line   INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        PRIMARY KEY (assignment_id, item, question)
    );
    CREATE TABLE ratings_unmatched (
        assignment_id TEXT NOT NULL,
        item          TEXT NOT NULL,
        survey        TEXT NOT NULL,
        worker_id     TEXT NOT NULL,
        original_ref  TEXT,
        candidate_ref TEXT,
        reason        TEXT NOT NULL,
        answers       TEXT NOT NULL,
        source_file   TEXT NOT NULL,
        source_line   INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        -- one row per file line and item slot: a long-format file's answers share an
        -- assignment key and have no slot
        PRIMARY KEY (source_file, source_line, item)
    );
    CREATE INDEX ratings_unmatched_by_survey ON ratings_unmatched(survey);
    CREATE INDEX ratings_by_worker ON ratings(survey, worker_id, original_id);
    """,
    # 3: metrics as a plugin family: each score's kind, direction, range, display name and
    # identity; set metrics (FID, KID) give one value per method × operating point
    """
    ALTER TABLE metrics ADD COLUMN kind TEXT NOT NULL DEFAULT 'embedding';
    ALTER TABLE metrics ADD COLUMN display TEXT;
    ALTER TABLE metrics ADD COLUMN higher_is_better INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE metrics ADD COLUMN low REAL;
    ALTER TABLE metrics ADD COLUMN high REAL;
    ALTER TABLE metrics ADD COLUMN identity TEXT;
    ALTER TABLE metrics ADD COLUMN unit TEXT;
    -- rows written before: CLIP cosines (their range is known) and human ratings (their
    -- scale is in the formula, read by semcomp.analysis.scores)
    UPDATE metrics SET low = CASE formula WHEN 'cos' THEN -1 ELSE 0 END, high = 1
        WHERE formula IN ('cos', '(cos+1)/2');
    UPDATE metrics SET kind = 'human' WHERE substr(name, 1, 6) = 'human.';
    CREATE TABLE set_scores (
        metric          TEXT NOT NULL REFERENCES metrics(name),
        method_id       TEXT NOT NULL REFERENCES methods(id),
        operating_point TEXT NOT NULL,
        -- the originals whose candidates the value is over: a content key of their sorted
        -- ids (a new or removed original makes the value stale), and how many
        originals_key   TEXT NOT NULL,
        n               INTEGER NOT NULL,
        value           REAL NOT NULL,
        ci_low          REAL,
        ci_high         REAL,
        run_id          INTEGER REFERENCES runs(id),
        created_at      TEXT NOT NULL,
        PRIMARY KEY (metric, method_id, operating_point)
    );
    """,
    # 4: each candidate's method, copied from its representation (a candidate's id is made
    # from its representation's, which never changes), so `semcomp status` counts the
    # candidates of each method from one index instead of a join per candidate; the
    # trigger fills it for every row written without it
    """
    ALTER TABLE candidates ADD COLUMN method_id TEXT REFERENCES methods(id);
    UPDATE candidates SET method_id = (
        SELECT r.method_id FROM representations r WHERE r.id = candidates.representation_id
    );
    CREATE INDEX candidates_by_method
        ON candidates(method_id, artifact_hash, representation_id);
    CREATE TRIGGER candidates_method AFTER INSERT ON candidates
        WHEN NEW.method_id IS NULL
    BEGIN
        UPDATE candidates SET method_id = (
            SELECT r.method_id FROM representations r WHERE r.id = NEW.representation_id
        ) WHERE rowid = NEW.rowid;
    END;
    """,
    # 5: narrow answers. An answer row held its assignment's 64-character id, the survey,
    # the worker, the pair's ids, the results file's absolute path and the import's time
    # (about 450 bytes); `answers` holds integers for them: the assignment (a stable
    # `id` each assignment now has), the subject (item, original, candidate, check; in
    # `rating_subjects`) and the question, file and time (in `rating_names`, each string
    # once). The view `ratings` gives the old table's columns, so every reader reads as
    # before; writes go to `answers`. An answer's survey and worker are its assignment's
    # (the importer writes them together): rows that disagree would be lost, so the
    # migration refuses them (the named CHECK) rather than drop them
    """
    CREATE TABLE assignments_5 (
        assignment_id TEXT NOT NULL UNIQUE,
        survey        TEXT NOT NULL REFERENCES surveys(id),
        hit_id        TEXT NOT NULL,
        worker_id     TEXT NOT NULL,
        status        TEXT NOT NULL,
        accept_time   TEXT,
        submit_time   TEXT,
        work_seconds  REAL,
        approval_rate TEXT,
        source_file   TEXT NOT NULL,
        source_line   INTEGER NOT NULL,
        import_id     INTEGER REFERENCES rating_imports(id),
        created_at    TEXT NOT NULL,
        id            INTEGER PRIMARY KEY
    );
    INSERT INTO assignments_5 SELECT *, rowid FROM assignments ORDER BY rowid;
    CREATE TABLE rating_names (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    INSERT INTO rating_names (name)
        SELECT question FROM ratings UNION SELECT source_file FROM ratings
        UNION SELECT created_at FROM ratings;
    CREATE TABLE rating_subjects (
        id           INTEGER PRIMARY KEY,
        item_id      TEXT REFERENCES survey_items(id),
        original_id  TEXT NOT NULL REFERENCES originals(id),
        candidate_id TEXT REFERENCES candidates(id),
        is_check     INTEGER NOT NULL
    );
    INSERT INTO rating_subjects (item_id, original_id, candidate_id, is_check)
        SELECT DISTINCT item_id, original_id, candidate_id, is_check FROM ratings;
    CREATE INDEX rating_subjects_by_pair
        ON rating_subjects(original_id, candidate_id, item_id, is_check);
    CREATE TABLE answers (
        assignment   INTEGER NOT NULL REFERENCES assignments_5(id),
        item         TEXT NOT NULL,
        question     INTEGER NOT NULL REFERENCES rating_names(id),
        subject      INTEGER NOT NULL REFERENCES rating_subjects(id),
        check_passed INTEGER,
        value        REAL,
        text         TEXT,
        raw          TEXT NOT NULL,
        excluded     TEXT,
        source_file  INTEGER NOT NULL REFERENCES rating_names(id),
        source_line  INTEGER NOT NULL,
        created_at   INTEGER NOT NULL REFERENCES rating_names(id),
        PRIMARY KEY (assignment, item, question)
    ) WITHOUT ROWID;
    INSERT INTO answers
        SELECT a.id, r.item, q.id, s.id, r.check_passed, r.value, r.text, r.raw, r.excluded,
            f.id, r.source_line, t.id
        FROM ratings r
        JOIN assignments_5 a ON a.assignment_id = r.assignment_id AND a.survey = r.survey
            AND a.worker_id = r.worker_id
        JOIN rating_subjects s ON s.original_id = r.original_id
            AND s.candidate_id IS r.candidate_id AND s.item_id IS r.item_id
            AND s.is_check = r.is_check
        JOIN rating_names q ON q.name = r.question
        JOIN rating_names f ON f.name = r.source_file
        JOIN rating_names t ON t.name = r.created_at;
    CREATE TEMP TABLE migration_5 (
        lost INTEGER
            CONSTRAINT "ratings without their assignment's survey and worker cannot be migrated"
            CHECK (lost = 0)
    );
    INSERT INTO temp.migration_5
        SELECT (SELECT COUNT(*) FROM ratings) - (SELECT COUNT(*) FROM answers);
    DROP TABLE temp.migration_5;
    DROP TABLE ratings;
    DROP TABLE assignments;
    ALTER TABLE assignments_5 RENAME TO assignments;
    CREATE INDEX assignments_by_worker ON assignments(survey, worker_id);
    CREATE VIEW ratings (
        assignment_id, item, question, survey, worker_id, item_id, original_id, candidate_id,
        is_check, check_passed, value, text, raw, excluded, source_file, source_line, created_at
    ) AS SELECT a.assignment_id, r.item, q.name, a.survey, a.worker_id, s.item_id,
            s.original_id, s.candidate_id, s.is_check, r.check_passed, r.value, r.text, r.raw,
            r.excluded, f.name, r.source_line, t.name
        FROM answers r
        JOIN assignments a ON a.id = r.assignment
        JOIN rating_subjects s ON s.id = r.subject
        JOIN rating_names q ON q.id = r.question
        JOIN rating_names f ON f.id = r.source_file
        JOIN rating_names t ON t.id = r.created_at;
    """,
    # 6: indexes for `semcomp status`, which counts without reading every row: the scores
    # of each metric (a range of one index, not a scan of every score), and the few stored
    # files that are not images (a partial index: its condition is the one the stages
    # query, `stages.embed.NOT_IMAGES`)
    """
    CREATE INDEX scores_by_metric ON scores(metric);
    CREATE INDEX artifacts_not_images ON artifacts(hash) WHERE media_type NOT LIKE 'image/%';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal content has equal text and hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_key(*parts: Any) -> str:
    """A short stable key from JSON-able parts: method ids, representation ids, ..."""
    return sha256_hex(to_json(list(parts)).encode("utf-8"))[:24]


@functools.lru_cache(maxsize=256)
def _upsert_sql(
    table: str, columns: tuple[str, ...], key: tuple[str, ...], source: str | None = None
) -> str:
    """The upsert of ``columns``' values, or of the rows of the query ``source`` (a SELECT
    of ``columns`` in order); memoised: stages write many rows of one shape."""
    updates = [c for c in columns if c not in key and c != "created_at"]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates)
        if updates
        else "DO NOTHING"
    )
    # "WHERE true": SQLite reads an ON after a SELECT's last join as the join's constraint
    values = f"VALUES ({', '.join('?' for _ in columns)})" if source is None else source
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        + ("" if source is None else "SELECT * FROM (")
        + values
        + ("" if source is None else ") WHERE true")
        + f" ON CONFLICT ({', '.join(key)}) {action}"
    )


def is_writable(path: Path) -> bool:
    """Whether this process may change ``path`` (for a folder: create files in it).

    The kernel's answer (``os.access``): false on a read-only mount even for root, while
    root passes permission bits, and then can indeed write.
    """
    return os.access(path, os.W_OK)


def free_bytes(path: Path) -> int | None:
    """Bytes free on the disk holding ``path`` (its nearest existing folder), if known."""
    for folder in (path, *path.parents):
        if folder.exists():
            with suppress(OSError):
                return shutil.disk_usage(folder).free
            return None
    return None


def disk_full(path: Path, needed: int | None = None) -> DiskFullError:
    """The one-line error for a full disk: the path, the bytes needed (when known), the free."""
    free = free_bytes(path)
    free_text = "" if free is None else f", {free:,} free"
    needed_text = f"{needed:,} bytes needed" if needed is not None else "more space needed"
    return DiskFullError(
        f"no space left on the disk holding {path} ({needed_text}{free_text}); "
        "free some space and run again: everything committed so far is kept"
    )


def process_command() -> str:
    """This process's command line, as a user would recognise it in a message."""
    argv = list(sys.argv) or [""]
    if argv[0].endswith("__main__.py"):  # python -m PACKAGE
        head = ["python", "-m", Path(argv[0]).parent.name]
    elif argv[0] in ("", "-c"):
        head = ["python", *argv[:1]] if argv[0] else ["python"]
    else:
        head = [Path(argv[0]).name]
    return shlex.join([*head, *argv[1:]])


@dataclass(frozen=True)
class Writer:
    """Who holds a study's writer lock, as it wrote in ``study.lock.json``."""

    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`, since {self.since})"

    @property
    def alive(self) -> bool | None:
        """Whether that process still exists; ``None`` when it runs on another host."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        return True


def read_writer(root: Path) -> Writer | None:
    """The last writer's ``study.lock.json``, or ``None`` (none, or unreadable).

    Left behind by a writer that was killed; whether it still writes only the lock
    knows, so this is for messages, never for deciding.
    """
    try:
        data = json.loads((Path(root) / WRITER_NAME).read_text(encoding="utf-8"))
        return Writer(int(data["pid"]), str(data["host"]), str(data["command"]), data["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: writer locks this process holds: lock path → [FileLock, number of stores holding it]
_HOLDS: dict[str, list] = {}
_HOLDS_GUARD = threading.Lock()


def read_only_error(root: Path, path: Path) -> ReadOnlyStudyError:
    which = "" if path == root else f" ({path.name} cannot be written)"
    return ReadOnlyStudyError(
        f"the study folder {root} is read-only{which}: `run`, `ratings import` and "
        "`survey make` write to it; `status`, `report --out ELSEWHERE` and `app` only read"
    )


def acquire_writer_lock(root: Path) -> bool:
    """Take ``root``'s writer lock without waiting; ``True`` if this process did not
    hold it already (more writing stores of one study in one process share the hold).

    Raises :class:`StudyBusyError` naming the process that holds it, or
    :class:`ReadOnlyStudyError` when the folder cannot be written.
    """
    from filelock import FileLock, Timeout

    path = str(root / LOCK_NAME)
    with _HOLDS_GUARD:
        if path in _HOLDS:
            _HOLDS[path][1] += 1
            return False
        lock = FileLock(path, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise StudyBusyError(_busy_message(root)) from None
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise read_only_error(root, Path(path)) from None
            if exc.errno in NO_SPACE:
                raise disk_full(Path(path)) from None
            raise
        try:
            _write_writer_info(root)
        except BaseException:
            lock.release()
            raise
        _HOLDS[path] = [lock, 1]
        return True


def release_writer_lock(root: Path) -> None:
    path = str(root / LOCK_NAME)
    with _HOLDS_GUARD:
        hold = _HOLDS.get(path)
        if hold is None:
            return
        hold[1] -= 1
        if hold[1] == 0:
            del _HOLDS[path]
            with suppress(OSError):
                (root / WRITER_NAME).unlink()
            hold[0].release()


def _write_writer_info(root: Path) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": process_command(),
        "since": utc_now(),
    }
    try:
        _write_new_file(root, to_json(info).encode("utf-8"), WRITER_NAME, root / WRITER_NAME)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise disk_full(root / WRITER_NAME) from None
        raise


def _busy_message(root: Path) -> str:
    writer = None
    deadline = time.monotonic() + 1.0  # the holder writes its name just after locking
    while writer is None and time.monotonic() < deadline:
        writer = read_writer(root)
        if writer is None:
            time.sleep(0.05)
    who = writer.describe() if writer else "another process (it has not said which)"
    return (
        f"{root} is being written by {who}; one process writes a study at a time: wait for "
        "it to finish or stop it (`status`, `report` and `app` read the study meanwhile)"
    )


def _open_new(path: str) -> int:
    """A file descriptor of a new, empty file at ``path``, open for writing;
    :class:`FileExistsError` if there is one already (``O_EXCL``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return os.open(path, flags, 0o600)  # the mode tempfile.mkstemp gives


def _write_exclusive(path: str, data: bytes) -> bool:
    """Create the file ``path`` holding ``data``; False (nothing written) if a file is there.

    A failed or interrupted write removes the file it created, so a file left at ``path``
    is whole unless the process was killed mid-write; such a file is shorter than its
    content, which :meth:`Store.put_artifact` tells by its size.
    """
    try:
        fd = _open_new(path)
    except FileExistsError:
        return False
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        with suppress(OSError):
            os.unlink(path)
        raise
    return True


def _write_new_file(folder: Path, data: bytes, suffix: str, target: Path) -> None:
    """Write ``data`` to a temporary file in ``folder`` and rename it to ``target``, so a
    reader never sees a partial file; a failed write leaves no temporary file."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SchemaOutdatedError(StoreError):
    """A read-only store found an older schema (a writer migrates it on opening)."""


#: the page cache of a writer's connection, in KiB (SQLite's default is 2 MiB; pages are
#: held only as a transaction touches them). A stage's or an import's one transaction of
#: many rows keeps its indexes' pages in memory instead of spilling them to the WAL and
#: reading them back: the score stage's 500,000 CLIP scores at 10,000 originals took 9.7 s
#: against 12.7 s (system CPU 3.7 s against 6.3 s); an MTurk import of 250,000 answers a
#: third less CPU than with 64 MiB (benchmarks/RESULTS.md)
WRITER_CACHE_KIB = 262_144


class Store:
    """One study's database and artifact folder."""

    def __init__(
        self,
        root: Path,
        *,
        read_only: bool = False,
        migrations: Sequence[str] = (),
        snapshot: bool = False,
    ):
        """Open ``root``'s store: to write (taking the writer lock) or ``read_only``.

        ``snapshot`` (read-only): read the file as immutable while no writer has it open,
        creating no side files (for callers that check for concurrent writes themselves,
        like the app).
        """
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.artifacts_dir = self.root / ARTIFACTS_DIR
        self.read_only = read_only
        self._migrations = list(migrations) or MIGRATIONS
        self._locked = False
        self._snapshot = snapshot
        #: the artifact folder as text, and the hash-prefix folders known to exist in it
        self._artifacts_text = str(self.artifacts_dir)
        self._artifact_folders: set[str] = set()
        if read_only:
            if not self.db_path.exists():
                raise StoreError(
                    f"no study database at {self.db_path}; run `semcomp run {self.root}` first"
                )
            self.conn = self._connect_read_only()
            self._configure()
            self._migrate()
            return
        first_holder = self._lock()
        try:
            self.conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
                self._configure()
                self._migrate()
                if first_holder:
                    self.interrupt_stale_runs()
            except BaseException:
                self.conn.close()
                raise
        except BaseException:
            self._unlock()
            raise

    def _configure(self) -> None:
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")

    def _lock(self) -> bool:
        """Take the writer lock (see :func:`acquire_writer_lock`) after checking, in one
        line, that the folder and its files can be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise disk_full(self.root) from None
            raise read_only_error(self.root, self.root) from None
        wal = self.db_path.with_name(self.db_path.name + "-wal")
        for path in (self.root, self.db_path, wal, self.artifacts_dir):
            if path.exists() and not is_writable(path):
                raise read_only_error(self.root, path)
        first_holder = acquire_writer_lock(self.root)
        self._locked = True
        return first_holder

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            release_writer_lock(self.root)

    def _wal_exists(self) -> bool:
        """A writer's connection keeps a ``-wal`` file; it is removed when the last closes."""
        return self.db_path.with_name(self.db_path.name + "-wal").exists()

    def _read_only_uri(self) -> str:
        """The URI a read-only open starts with (``immutable`` for a snapshot while no
        writer has the database open)."""
        uri = f"file:{self.db_path.resolve()}?mode=ro"
        return uri + "&immutable=1" if self._snapshot and not self._wal_exists() else uri

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection; it writes nothing, so it works in a read-only folder.

        Plain ``mode=ro`` locks like any reader (consistent while a run writes), but
        needs the WAL side files, creating them when absent. Where they cannot be created
        (a read-only folder) and no ``-wal`` holds uncheckpointed pages, no one can be
        writing and the database file is complete: it is read as ``immutable``, which
        creates nothing. A ``snapshot`` reads that way whenever no ``-wal`` exists.
        """
        uri = self._read_only_uri()
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        if "immutable=1" in uri:
            return conn
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # opens the WAL side files
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if is_writable(self.root):
                raise StoreError(f"cannot open {self.db_path} read-only: {exc}") from None
            if self._wal_exists():
                raise StoreError(
                    f"cannot read {self.db_path}: its folder is read-only and a run that "
                    "stopped left its last writes in study.db-wal; open the study once where "
                    "it can be written (e.g. `semcomp status` on a copy)"
                ) from None
        return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)

    # ---- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self._unlock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current, latest = self.schema_version, len(self._migrations)
        if current > latest:
            raise StoreError(
                f"{self.db_path} has schema version {current}, newer than this semcomp "
                f"understands ({latest}); upgrade semcomp to open it"
            )
        if current == latest:
            return
        if self.read_only:
            raise SchemaOutdatedError(
                f"{self.db_path} has schema version {current}, older than {latest}; "
                "open it once with `semcomp status` to migrate it"
            )
        for version in range(current + 1, latest + 1):
            script = self._migrations[version - 1]
            try:
                self.conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise StoreError(
                    f"migrating {self.db_path} to schema version {version} failed: {exc}"
                ) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # SQLite rolls back by itself on some errors
                self.conn.execute("ROLLBACK")
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise disk_full(self.db_path) from exc
            raise

    # ---- generic upsert --------------------------------------------------------------

    def upsert(self, table: str, row: Mapping[str, Any], key: Sequence[str]) -> None:
        """Insert ``row``, or update its non-key columns if ``key`` already exists.

        ``created_at`` keeps the first insertion's time.
        """
        self.conn.execute(_upsert_sql(table, tuple(row), tuple(key)), list(row.values()))

    def upsert_many(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], key: Sequence[str]
    ) -> None:
        """:meth:`upsert` for many rows at once (values in ``columns`` order)."""
        self.conn.executemany(_upsert_sql(table, tuple(columns), tuple(key)), rows)

    def upsert_select(
        self,
        table: str,
        columns: Sequence[str],
        query: str,
        parameters: Sequence[Any],
        key: Sequence[str],
    ) -> None:
        """:meth:`upsert_many` of the rows ``query`` selects (``columns`` in order): the rows
        go from one table to another inside SQLite, not through Python."""
        self.conn.execute(_upsert_sql(table, tuple(columns), tuple(key), query), parameters)

    # ---- artifacts ---------------------------------------------------------------------

    def artifact_path(self, relpath: str) -> Path:
        return self.artifacts_dir / relpath

    def put_artifact(self, data: bytes, *, suffix: str, media_type: str) -> str:
        """Store bytes under their SHA-256 and return the hash.

        A new artifact is written straight to its final name, created exclusively
        (``O_EXCL``): identical bytes have identical names, and the row naming the file
        commits only after the file is whole, so no reader reaches it early. A file
        already there is kept if its size is the data's (a file is written from its
        first byte, so one cut short by a killed run is shorter); otherwise it is
        replaced through a temporary file and a rename. Call inside a transaction so
        the row commits with whatever refers to it.
        """
        digest = sha256_hex(data)
        prefix = digest[:2]
        relpath = f"{prefix}/{digest}{suffix}"
        folder = f"{self._artifacts_text}/{prefix}"
        target = f"{folder}/{digest}{suffix}"
        try:
            if prefix not in self._artifact_folders:  # a mkdir per folder, not per file
                os.makedirs(folder, exist_ok=True)
                self._artifact_folders.add(prefix)
            try:
                created = _write_exclusive(target, data)
            except FileNotFoundError:  # the folder went away while the store was open
                os.makedirs(folder, exist_ok=True)
                created = _write_exclusive(target, data)
            if not created and os.stat(target).st_size != len(data):
                _write_new_file(Path(folder), data, suffix, Path(target))  # a cut-short file
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise disk_full(Path(target), len(data)) from None
            raise
        self.upsert(
            "artifacts",
            {
                "hash": digest,
                "relpath": relpath,
                "bytes": len(data),
                "media_type": media_type,
                "created_at": utc_now(),
            },
            key=("hash",),
        )
        return digest

    def read_artifact(self, digest: str) -> bytes:
        row = self.conn.execute(
            "SELECT relpath FROM artifacts WHERE hash = ?", (digest,)
        ).fetchone()
        if row is None:
            raise StoreError(f"artifact {digest} is not in the store")
        return self.artifact_path(row["relpath"]).read_bytes()

    # ---- study info ----------------------------------------------------------------------

    def set_info(self, key: str, value: Any) -> None:
        self.upsert("study_info", {"key": key, "value": to_json(value)}, key=("key",))

    def get_info(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM study_info WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # ---- failures ------------------------------------------------------------------------

    def record_failure(
        self,
        stage: str,
        item: str,
        reason: str,
        *,
        retryable: bool,
        run_id: int | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.upsert(
            "failures",
            {
                "stage": stage,
                "item": item,
                "reason": reason,
                "retryable": int(retryable),
                "detail": to_json(dict(detail or {})),
                "run_id": run_id,
                "created_at": utc_now(),
            },
            key=("stage", "item"),
        )

    def clear_failure(self, stage: str, item: str) -> None:
        self.conn.execute("DELETE FROM failures WHERE stage = ? AND item = ?", (stage, item))

    def settled_failures(self, stage: str) -> set[str]:
        """Items of ``stage`` that failed for a reason a re-run cannot change."""
        rows = self.conn.execute(
            "SELECT item FROM failures WHERE stage = ? AND retryable = 0", (stage,)
        )
        return {r["item"] for r in rows}

    # ---- runs (provenance) ---------------------------------------------------------------

    def start_run(
        self,
        *,
        command: str,
        semcomp_version: str,
        packages: Mapping[str, str],
        config: Mapping[str, Any],
        seed: int | None,
    ) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO runs (started_at, status, command, semcomp_version, packages, "
                "config, seed) VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (utc_now(), command, semcomp_version, to_json(packages), to_json(config), seed),
            )
        return int(cursor.lastrowid)

    def interrupt_stale_runs(self) -> list[int]:
        """Mark runs left ``running`` as ``interrupted``; returns their ids.

        Only the writer-lock holder starts runs, and the lock ends with its process, so
        when this process has just taken the lock every ``running`` row belongs to a
        process that ended without finishing it (killed, out of memory, power lost).
        """
        with self.transaction():
            stale = [
                int(r[0]) for r in self.conn.execute("SELECT id FROM runs WHERE status = 'running'")
            ]
            self.conn.execute(
                "UPDATE runs SET status = 'interrupted', summary = ? WHERE status = 'running'",
                (
                    to_json(
                        {"interrupted": f"its process ended without finishing; found {utc_now()}"}
                    ),
                ),
            )
        return stale

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        summary: Mapping[str, Any],
        packages: Mapping[str, str] | None = None,
    ) -> None:
        """Close a run; ``packages`` replaces its package versions (what it learnt while
        running, such as the CUDA version of the GPU it used)."""
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                (utc_now(), status, to_json(summary), run_id),
            )
            if packages is not None:
                self.conn.execute(
                    "UPDATE runs SET packages = ? WHERE id = ?", (to_json(packages), run_id)
                )

    # ---- metrics -------------------------------------------------------------------------

    def put_metrics(
        self,
        specs: Sequence[Any],
        *,
        kind: str,
        formulas: Mapping[str, str] | str,
        identity_json: str,
        embedder_id: str | None = None,
    ) -> None:
        """One ``metrics`` row per score (a :class:`~semcomp.metrics.base.ScoreSpec`): kind,
        direction, range, display name and identity; ``formulas`` per key, or one for all
        (call inside a transaction)."""
        for spec in specs:
            self.upsert(
                "metrics",
                {
                    "name": spec.key,
                    "embedder_id": embedder_id,
                    "formula": formulas if isinstance(formulas, str) else formulas[spec.key],
                    "description": spec.description,
                    "kind": kind,
                    "display": spec.display,
                    "higher_is_better": int(spec.higher_is_better),
                    "low": spec.low,
                    "high": spec.high,
                    "unit": spec.unit or None,
                    "identity": identity_json,
                },
                key=("name",),
            )

    # ---- embeddings ----------------------------------------------------------------------

    def put_embeddings(
        self,
        embedder_id: str,
        items: Iterable[tuple[str, np.ndarray]],
        run_id: int | None,
    ) -> None:
        import numpy as np

        now = utc_now()
        for artifact_hash, vector in items:
            vector = np.ascontiguousarray(vector, dtype=np.float32)
            self.upsert(
                "embeddings",
                {
                    "artifact_hash": artifact_hash,
                    "embedder_id": embedder_id,
                    "dim": int(vector.shape[0]),
                    "vector": vector.tobytes(),
                    "run_id": run_id,
                    "created_at": now,
                },
                key=("artifact_hash", "embedder_id"),
            )

    def upsert_scores(self, rows: Iterable[tuple[str, str, float, int | None, str]]) -> None:
        """(candidate id, score key, value, run id, time) rows into ``scores``, in one
        statement (a candidate's score is replaced; call inside a transaction)."""
        self.upsert_many(
            "scores",
            ("candidate_id", "metric", "value", "run_id", "created_at"),
            rows,
            key=("candidate_id", "metric"),
        )

    def embeddings(self, embedder_id: str, artifact_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        import numpy as np

        wanted = list(dict.fromkeys(artifact_hashes))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.conn.execute(
                f"SELECT artifact_hash, vector FROM embeddings WHERE embedder_id = ? "
                f"AND artifact_hash IN ({', '.join('?' for _ in chunk)})",
                [embedder_id, *chunk],
            )
            for row in rows:
                found[row["artifact_hash"]] = np.frombuffer(row["vector"], dtype=np.float32)
        return found

    # ---- reads for analysis ----------------------------------------------------------------

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a query and return a DataFrame (the form every analysis read takes).

        A plain cursor fetches tuples, which the DataFrame takes as they are (no
        ``sqlite3.Row`` made and converted per row).
        """
        import pandas as pd  # lazily: `semcomp status` and the stages never need it

        cursor = self.tuples(sql, params)
        columns = [d[0] for d in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=columns)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run a query whose rows come as plain tuples (no ``sqlite3.Row`` made per row:
        for reads of many rows)."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params)

    def hash_keys(self, sql: str, params: Sequence[Any] = ()) -> np.ndarray:
        """The distinct hashes a one-column query selects (SHA-256, lower-case hex, as the
        store writes them), as their sorted 32-byte digests (numpy ``S32``).

        Sets of a few hundred thousand hashes are compared and counted on these arrays
        (`distinct_keys`, `keys_among`) with no Python string made per hash: SQLite joins
        the hashes into one text (``group_concat``), decoded at once; in parts through the
        cursor when that text would pass SQLite's length limit. ``hex_hashes`` turns keys
        back into hashes."""
        import numpy as np

        try:
            count, text = self.conn.execute(
                f"WITH selected(hash) AS ({sql}) "
                "SELECT COUNT(*), group_concat(hash, '') FROM selected",
                params,
            ).fetchone()
            texts = [text or ""]
        except sqlite3.DataError:  # "string or blob too big": a part at a time
            cursor, texts, count = self.tuples(sql, params), [], 0
            while rows := cursor.fetchmany(1 << 16):
                count += len(rows)
                texts.append("".join([row[0] for row in rows]))
        try:
            data = b"".join(map(bytes.fromhex, texts))
        except ValueError:
            data = b""
        if len(data) != 32 * count:
            raise StoreError(f"not every value of `{sql}` is a SHA-256 hex hash")
        return distinct_keys(np.frombuffer(data, dtype="S32"))

    def originals(self) -> pd.DataFrame:
        return self.frame("SELECT * FROM originals ORDER BY category, name")

    def failures(self) -> pd.DataFrame:
        return self.frame("SELECT * FROM failures ORDER BY stage, item")

    def runs(self) -> pd.DataFrame:
        return self.frame("SELECT * FROM runs ORDER BY id")

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def distinct_keys(keys: np.ndarray) -> np.ndarray:
    """The distinct keys of an array of fixed-size keys (`Store.hash_keys`), sorted.

    A stable sort (merge runs): keys read in index order come as sorted runs and are
    merged, not sorted again."""
    import numpy as np

    keys = np.sort(keys, kind="stable")
    first = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


def keys_among(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (distinct and sorted), as a boolean mask."""
    import numpy as np

    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def hex_hashes(keys: np.ndarray) -> list[str]:
    """The hashes (lower-case hex) of `Store.hash_keys` keys, in their order (from the
    bytes of the whole array: one numpy key drops its trailing zero bytes)."""
    text = keys.tobytes().hex()
    return [text[at : at + 64] for at in range(0, len(text), 64)]
