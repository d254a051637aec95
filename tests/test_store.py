"""The study store: migrations, idempotent upserts, atomic artifacts, transactions."""

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from semcomp import store as store_module
from semcomp.errors import DiskFullError, StoreError
from semcomp.store import MIGRATIONS, SCHEMA_VERSION, Store


def test_new_store_is_at_the_latest_schema_in_wal_mode(tmp_path: Path):
    with Store(tmp_path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_writer_holds_a_large_page_cache_a_reader_sqlites_default(tmp_path: Path):
    """A stage's or an import's transaction of many rows keeps its pages in memory."""
    with Store(tmp_path) as store:
        cache = store.conn.execute("PRAGMA cache_size").fetchone()[0]
        assert cache == -store_module.WRITER_CACHE_KIB
    with Store(tmp_path, read_only=True) as reader:
        assert reader.conn.execute("PRAGMA cache_size").fetchone()[0] == -2000


def test_forward_migration_keeps_rows(tmp_path: Path):
    with Store(tmp_path) as store:
        store.set_info("name", "before")
    upgraded = [*MIGRATIONS, "ALTER TABLE study_info ADD COLUMN note TEXT DEFAULT 'added';"]
    with Store(tmp_path, migrations=upgraded) as store:
        assert store.schema_version == SCHEMA_VERSION + 1
        assert store.get_info("name") == "before"
        note = store.conn.execute("SELECT note FROM study_info WHERE key = 'name'").fetchone()[0]
        assert note == "added"


def test_failed_migration_rolls_back_and_says_so(tmp_path: Path):
    Store(tmp_path).close()
    broken = [*MIGRATIONS, "CREATE TABLE fine (x INTEGER); THIS IS NOT SQL;"]
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} failed"):
        Store(tmp_path, migrations=broken)
    with Store(tmp_path) as store:
        assert store.schema_version == SCHEMA_VERSION
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        assert "fine" not in tables


def _candidate_rows(store: Store, method_ids: list[str]) -> None:
    """One method row, representation and candidate per id in ``method_ids`` (written the
    way the stages write them: the candidate row names its representation only)."""
    with store.transaction():
        digest = store.put_artifact(b"pixels", suffix=".png", media_type="image/png")
        store.upsert(
            "originals",
            {
                "id": "o1",
                "name": "a",
                "category": "c",
                "source_path": "a.png",
                "width": 1,
                "height": 1,
                "pixels": 1,
                "file_bytes": 1,
                "format": "PNG",
                "source_mode": "RGB",
                "frames": 1,
                "artifact_hash": digest,
                "created_at": "t",
            },
            key=("id",),
        )
        for method_id in method_ids:
            store.upsert(
                "methods",
                {
                    "id": method_id,
                    "name": method_id,
                    "kind": "pixel",
                    "codec": "jpeg",
                    "params": "{}",
                    "created_at": "t",
                },
                key=("id",),
            )
            store.upsert(
                "representations",
                {
                    "id": f"r-{method_id}",
                    "original_id": "o1",
                    "method_id": method_id,
                    "operating_point": "q1",
                    "variant": 0,
                    "payload_hash": digest,
                    "rate_bits": 8,
                    "meta": "{}",
                    "created_at": "t",
                },
                key=("id",),
            )
            store.upsert(
                "candidates",
                {
                    "id": f"c-{method_id}",
                    "representation_id": f"r-{method_id}",
                    "replicate": 0,
                    "artifact_hash": digest,
                    "meta": "{}",
                    "created_at": "t",
                },
                key=("id",),
            )


def test_migration_4_gives_each_candidate_its_method(tmp_path: Path):
    """A store of schema 3 (candidates without their method) migrates: the rows it had get
    their representation's method, and rows written afterwards get it too."""
    with Store(tmp_path, migrations=MIGRATIONS[:3]) as store:
        assert store.schema_version == 3
        _candidate_rows(store, ["m-old"])
    with Store(tmp_path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 4
        _candidate_rows(store, ["m-new"])
        rows = dict(store.conn.execute("SELECT id, method_id FROM candidates"))
        assert rows == {"c-m-old": "m-old", "c-m-new": "m-new"}
        plan = " ".join(
            r[-1]
            for r in store.conn.execute(
                "EXPLAIN QUERY PLAN SELECT method_id, COUNT(*) FROM candidates GROUP BY method_id"
            )
        )
        assert "candidates_by_method" in plan


def test_migration_6_indexes_what_status_counts(tmp_path: Path):
    """A store of schema 5 migrates to indexes that let `semcomp status` count the scores
    of a metric and find the files that are not images without reading every row."""
    from semcomp.stages.embed import NOT_IMAGES

    with Store(tmp_path, migrations=MIGRATIONS[:5]) as store:
        _candidate_rows(store, ["m1"])
        text = store.put_artifact(b"a caption", suffix=".txt", media_type="text/plain")
    with Store(tmp_path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 6

        def plan(sql: str) -> str:
            return " ".join(r[-1] for r in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))

        assert "USING INDEX artifacts_not_images" in plan(NOT_IMAGES)
        assert "USING COVERING INDEX scores_by_metric" in plan(
            "SELECT metric, COUNT(*) FROM scores WHERE metric IN ('a', 'b') GROUP BY metric"
        )
        assert store_module.hex_hashes(store.hash_keys(NOT_IMAGES)) == [text]


def test_hash_keys_count_sets_of_hashes_exactly_whole_or_in_parts(tmp_path: Path):
    """Hashes read as sorted distinct 32-byte keys: duplicates counted once, a digest
    ending in zero bytes kept whole, membership and the hashes back exact; a selection
    whose joined text passes SQLite's length limit is read in parts, alike."""
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(300)]
    digests += [bytes(31) + b"\x01", bytes(30) + b"\x00\x00", bytes(32)]  # trailing zeros
    hashes = [d.hex() for d in digests]
    with Store(tmp_path) as store:
        store.conn.execute("CREATE TABLE picked (hash TEXT)")
        store.conn.executemany("INSERT INTO picked VALUES (?)", [(h,) for h in hashes * 2])
        whole = store.hash_keys("SELECT hash FROM picked")
        assert store_module.hex_hashes(whole) == sorted(set(hashes))
        some = store.hash_keys("SELECT hash FROM picked WHERE rowid % 3 = 0")
        among = store_module.keys_among(whole, some)
        assert set(np.array(store_module.hex_hashes(whole))[among]) == {
            h for i, h in enumerate(hashes * 2, start=1) if i % 3 == 0
        }
        assert not store_module.keys_among(whole, whole[:0]).any()
        assert len(store.hash_keys("SELECT hash FROM picked WHERE 0")) == 0
        store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 64 * 100)  # group_concat too big
        assert store_module.hex_hashes(store.hash_keys("SELECT hash FROM picked")) == sorted(
            set(hashes)
        )
        store.conn.execute("INSERT INTO picked VALUES ('not a hash')")
        with pytest.raises(StoreError, match="SHA-256 hex hash"):
            store.hash_keys("SELECT hash FROM picked")


def test_newer_database_is_refused(tmp_path: Path):
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "study.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this semcomp"):
        Store(tmp_path)


def test_read_only_store_cannot_write(tmp_path: Path):
    Store(tmp_path).close()
    with Store(tmp_path, read_only=True) as store, pytest.raises(sqlite3.OperationalError):
        store.set_info("x", 1)
    with pytest.raises(StoreError, match="no study database"):
        Store(tmp_path / "missing", read_only=True)


def test_upsert_is_idempotent_and_keeps_created_at(tmp_path: Path):
    with Store(tmp_path) as store:
        row = {
            "id": "m1",
            "name": "jpeg",
            "kind": "pixel",
            "codec": "jpeg",
            "params": "{}",
            "created_at": "t0",
        }
        store.upsert("methods", row, key=("id",))
        store.upsert("methods", row | {"name": "renamed", "created_at": "t1"}, key=("id",))
        rows = store.frame("SELECT * FROM methods")
        assert len(rows) == 1
        assert rows.loc[0, "name"] == "renamed" and rows.loc[0, "created_at"] == "t0"


def test_artifacts_are_content_addressed_and_leave_no_temporary_files(tmp_path: Path):
    with Store(tmp_path) as store:
        with store.transaction():
            first = store.put_artifact(b"payload", suffix=".bin", media_type="x/y")
            second = store.put_artifact(b"payload", suffix=".bin", media_type="x/y")
        assert first == second and store.count("artifacts") == 1
        assert store.read_artifact(first) == b"payload"
        assert not list(store.artifacts_dir.rglob(".tmp-*"))


def test_new_artifacts_are_created_in_place_with_a_mkdir_per_folder(tmp_path, monkeypatch):
    """Each new payload is one exclusive create of its final name (no temporary file and
    rename), and each hash-prefix folder is made once, not once per file."""
    made, renamed = [], []
    makedirs, replace = os.makedirs, os.replace
    monkeypatch.setattr(os, "makedirs", lambda *a, **k: made.append(a[0]) or makedirs(*a, **k))
    monkeypatch.setattr(os, "replace", lambda *a: renamed.append(a) or replace(*a))
    payloads = [f"payload {index}".encode() for index in range(600)]
    with Store(tmp_path) as store:
        with store.transaction():
            digests = [store.put_artifact(p, suffix=".bin", media_type="x/y") for p in payloads]
        assert [store.read_artifact(digest) for digest in digests] == payloads
    folders = {digest[:2] for digest in digests}
    prefix_folders = [Path(m).name for m in made if Path(m).parent == tmp_path / "artifacts"]
    assert len(folders) < 256 and sorted(prefix_folders) == sorted(folders)
    assert [r for r in renamed if tmp_path / "artifacts" in Path(r[1]).parents] == []


def test_an_artifact_cut_short_by_a_killed_run_is_written_again(tmp_path: Path):
    """A file at an artifact's final name that is shorter than its content (the process
    was killed mid-write, before any row named it) is replaced whole; a whole one is kept."""
    data = bytes(range(256)) * 40
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "artifacts" / digest[:2] / f"{digest}.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:1000])
    with Store(tmp_path) as store:
        with store.transaction():
            assert store.put_artifact(data, suffix=".jpg", media_type="image/jpeg") == digest
        assert path.read_bytes() == data
        before = path.stat().st_mtime_ns, path.stat().st_ino
        with store.transaction():
            store.put_artifact(data, suffix=".jpg", media_type="image/jpeg")
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_failed_artifact_write_leaves_no_file(tmp_path: Path, monkeypatch):
    open_new = store_module._open_new

    def full(path: str) -> int:
        os.close(open_new(path))  # the file is created, its write fails
        return os.open("/dev/full", os.O_WRONLY)

    with Store(tmp_path) as store:
        monkeypatch.setattr(store_module, "_open_new", full)
        with pytest.raises(DiskFullError), store.transaction():
            store.put_artifact(b"payload", suffix=".bin", media_type="x/y")
        monkeypatch.undo()
        assert store.count("artifacts") == 0
        assert [p for p in store.artifacts_dir.rglob("*") if p.is_file()] == []
        with store.transaction():  # the next write of the same bytes succeeds
            digest = store.put_artifact(b"payload", suffix=".bin", media_type="x/y")
        assert store.read_artifact(digest) == b"payload"


def test_transaction_rolls_back_on_error(tmp_path: Path):
    with Store(tmp_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.set_info("half", "written")
            raise RuntimeError("killed mid-transaction")
        assert store.get_info("half") is None


def test_embeddings_round_trip_as_float32(tmp_path: Path):
    with Store(tmp_path) as store:
        with store.transaction():
            digest = store.put_artifact(b"img", suffix=".png", media_type="image/png")
            store.upsert(
                "embedders",
                {
                    "id": "e",
                    "kind": "open_clip",
                    "model": "m",
                    "pretrained": "p",
                    "preprocess": "{}",
                    "weights": "w",
                    "random_weights": 1,
                    "created_at": "t",
                },
                key=("id",),
            )
            store.put_embeddings("e", [(digest, np.array([0.6, 0.8]))], run_id=None)
        (vector,) = store.embeddings("e", [digest]).values()
        assert vector.dtype == np.float32 and np.allclose(vector, [0.6, 0.8])


def test_failures_are_keyed_by_stage_and_item(tmp_path: Path):
    with Store(tmp_path) as store:
        store.record_failure("ingest", "a.png", "first", retryable=False, run_id=None)
        store.record_failure("ingest", "a.png", "second", retryable=False, run_id=None)
        store.record_failure("ingest", "b.png", "flaky", retryable=True, run_id=None)
        assert store.count("failures") == 2
        assert store.settled_failures("ingest") == {"a.png"}
        store.clear_failure("ingest", "a.png")
        assert store.settled_failures("ingest") == set()
