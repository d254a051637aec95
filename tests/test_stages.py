"""Batch stages: a file that cannot be read is retried, one that does not decode is settled."""

from helpers import photo, write_study
from semcomp.captioners.base import OriginalRef
from semcomp.stages.caption import CaptionOriginals
from semcomp.study import Study


def test_embed_retries_an_unreadable_artifact_and_settles_a_corrupt_one(
    tmp_path, image_folder, tiny_clip
):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode"])
        store = study.store
        originals = store.conn.execute(
            "SELECT a.hash, a.relpath FROM originals o "
            "JOIN artifacts a ON a.hash = o.artifact_hash ORDER BY o.id"
        ).fetchall()
        (missing, missing_path), (corrupt, corrupt_path) = originals[:2]
        missing_file = store.artifact_path(missing_path)
        hidden = missing_file.with_name("elsewhere")
        missing_file.rename(hidden)  # as if the study folder were not mounted on this node
        store.artifact_path(corrupt_path).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        study.run(progress=False, stages=["embed"])
        failed = {
            row["item"].split("|")[0]: row["retryable"]
            for row in store.conn.execute(
                "SELECT item, retryable FROM failures WHERE stage = 'embed'"
            )
        }
    assert failed == {missing: 1, corrupt: 0}
    hidden.rename(missing_file)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["embed"])
        embedded = {r[0] for r in study.store.conn.execute("SELECT artifact_hash FROM embeddings")}
        items = [r[0] for r in study.store.conn.execute("SELECT item FROM failures")]
    embed = next(s for s in summary.stages if s.stage == "embed")
    assert embed.done == 1 and missing in embedded and corrupt not in embedded
    assert [item.split("|")[0] for item in items] == [corrupt]


def test_caption_loading_tells_read_errors_from_undecodable_images(tmp_path):
    good, corrupt = tmp_path / "good.png", tmp_path / "corrupt.png"
    photo(32, 32, 1).save(good)
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    refs = [OriginalRef(id=name, name=name, category="", source_path="") for name in "abc"]
    task = CaptionOriginals(needs_images=True, max_pixels=10**6)
    loaded = task.load(list(zip(refs, [tmp_path / "gone.png", corrupt, good], strict=True)), None)
    assert loaded[2][1].size == (32, 32)
    failures = task.infer(None, loaded[:2], None)
    assert [f.retryable for f in failures] == [True, False]
    assert "gone.png" in str(failures[0])


def test_a_file_that_does_not_decode_in_the_prefetch_thread_is_a_settled_failure(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    """The local engine decodes ahead of the model in its prefetch thread: a corrupt
    artifact decoded there is recorded with its reason and the other batches go on."""
    import threading

    import semcomp.stages.embed as embed

    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])  # 12 images, 3 batches
        relpath = study.store.conn.execute(
            "SELECT a.relpath FROM originals o JOIN artifacts a ON a.hash = o.artifact_hash "
            "ORDER BY o.id"
        ).fetchone()[0]
        study.store.artifact_path(relpath).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    decode, raised = embed.decode_image, []

    def recording(*args, **kwargs):
        try:
            return decode(*args, **kwargs)
        except Exception:
            raised.append(threading.current_thread().name)
            raise

    monkeypatch.setattr(embed, "decode_image", recording)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["embed"])
        failures = study.store.conn.execute(
            "SELECT reason, retryable FROM failures WHERE stage = 'embed'"
        ).fetchall()
        embedded = study.store.count("embeddings")
    assert raised == ["semcomp-prefetch"]
    embed_report = next(s for s in summary.stages if s.stage == "embed")
    assert (embed_report.done, embed_report.failed) == (11, 1) and embedded == 11
    assert len(failures) == 1 and failures[0]["retryable"] == 0 and failures[0]["reason"]


def test_a_run_killed_while_batches_load_ahead_resumes_with_the_same_rows(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    import threading

    import pytest

    from semcomp.engines import LocalEngine
    from semcomp.store import Store

    roots = [write_study(tmp_path / name, image_folder, tiny_clip) for name in ("whole", "killed")]
    with Study.open(roots[0]) as study:
        study.run(progress=False, engine=LocalEngine(prefetch=0))
    put, calls = Store.put_embeddings, []

    def killed(self, *args, **kwargs):
        if len(calls) == 1:  # the second batch: the third is loading ahead by now
            raise KeyboardInterrupt
        calls.append(1)
        return put(self, *args, **kwargs)

    monkeypatch.setattr(Store, "put_embeddings", killed)
    with pytest.raises(KeyboardInterrupt), Study.open(roots[1]) as study:
        study.run(progress=False)
    assert not any(t.name == "semcomp-prefetch" for t in threading.enumerate())
    monkeypatch.setattr(Store, "put_embeddings", put)
    with Study.open(roots[1]) as study:
        assert study.store.count("embeddings") == 4  # the first batch of 4
        study.run(progress=False)

    def rows(root):
        with Study.open(root, read_only=True) as study:
            conn = study.store.conn
            return [
                sorted(tuple(r) for r in conn.execute(sql))
                for sql in (
                    "SELECT artifact_hash, embedder_id, vector FROM embeddings",
                    "SELECT candidate_id, metric, value FROM scores",
                    "SELECT stage, item FROM failures",
                )
            ]

    assert rows(roots[1]) == rows(roots[0])


def test_pixel_stages_decode_ahead_in_a_thread_and_settle_what_does_not_decode(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    """The encode stage decodes the next original, the decode stage the next chunk of
    payloads, in the prefetch thread while this one codes and writes; a corrupt original or payload
    decoded there is a settled failure with its reason and the others go on."""
    import threading

    import semcomp.stages
    import semcomp.stages.decode
    from semcomp.codecs.pixel import PillowCodec

    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest"])  # 4 originals
        relpath = study.store.conn.execute(
            "SELECT a.relpath FROM originals o JOIN artifacts a ON a.hash = o.artifact_hash "
            "ORDER BY o.id"
        ).fetchone()[0]
        study.store.artifact_path(relpath).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    threads: dict[str, list[str]] = {"original": [], "payload": []}
    decode_image, decode = semcomp.stages.decode_image, PillowCodec.decode

    def decoding_original(*args, **kwargs):
        threads["original"].append(threading.current_thread().name)
        return decode_image(*args, **kwargs)

    def decoding_payload(self, payload):
        threads["payload"].append(threading.current_thread().name)
        return decode(self, payload)

    monkeypatch.setattr(semcomp.stages.decode, "CHUNK", 2)  # 3 chunks: 2 decode ahead
    monkeypatch.setattr(semcomp.stages, "decode_image", decoding_original)
    monkeypatch.setattr(PillowCodec, "decode", decoding_payload)
    with Study.open(root) as study:
        study.run(progress=False, stages=["encode"])
        payload = study.store.conn.execute(
            "SELECT a.relpath FROM representations r JOIN artifacts a ON a.hash = r.payload_hash "
            "ORDER BY r.id"
        ).fetchone()[0]
        study.store.artifact_path(payload).write_bytes(b"\xff\xd8\xff not a JPEG")
        summary = study.run(progress=False, stages=["decode"])
        failures = study.store.conn.execute(
            "SELECT stage, reason, retryable FROM failures ORDER BY stage"
        ).fetchall()
        counts = study.store.count("representations"), study.store.count("candidates")
    assert threads == {"original": ["semcomp-prefetch"] * 4, "payload": ["semcomp-prefetch"] * 6}
    assert counts == (6, 5)
    assert [(f["stage"], f["retryable"]) for f in failures] == [("decode", 0), *[("encode", 0)] * 2]
    assert failures[0]["reason"].startswith("cannot decode: ")
    assert all("Truncated File Read" in f["reason"] for f in failures[1:])
    decode_report = next(s for s in summary.stages if s.stage == "decode")
    assert (decode_report.done, decode_report.failed) == (5, 1)


def test_a_pixel_stage_stopped_mid_chunk_resumes_with_the_same_rows(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    """The encode stage commits a chunk of originals at a time: stopped in the middle of a
    chunk, it keeps the chunks before, stops its decoding thread, and the next run ends with
    the rows and files of an uninterrupted run."""
    import threading

    import pytest

    import semcomp.stages.encode as encode
    from semcomp.store import Store

    roots = [write_study(tmp_path / name, image_folder, tiny_clip) for name in ("whole", "cut")]
    with Study.open(roots[0]) as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])
    with Study.open(roots[1]) as study:
        study.run(progress=False, stages=["ingest"])
    put, calls = Store.put_artifact, []

    def stopped(self, *args, **kwargs):
        if len(calls) == 5:  # the third original's first payload: its chunk rolls back
            raise KeyboardInterrupt
        calls.append(1)
        return put(self, *args, **kwargs)

    monkeypatch.setattr(encode, "CHUNK", 2)
    monkeypatch.setattr(Store, "put_artifact", stopped)
    with pytest.raises(KeyboardInterrupt), Study.open(roots[1]) as study:
        study.run(progress=False, stages=["encode"])
    assert not any(t.name == "semcomp-prefetch" for t in threading.enumerate())
    monkeypatch.setattr(Store, "put_artifact", put)
    with Study.open(roots[1]) as study:
        assert study.store.count("representations") == 4  # the first chunk: 2 originals
        study.run(progress=False, stages=["encode", "decode"])

    def stored(root):
        with Study.open(root, read_only=True) as study:
            conn = study.store.conn
            for relpath, size in conn.execute("SELECT relpath, bytes FROM artifacts"):
                assert study.store.artifact_path(relpath).stat().st_size == size
            return [
                sorted(tuple(r) for r in conn.execute(sql))
                for sql in (
                    "SELECT hash, relpath, bytes, media_type FROM artifacts",
                    "SELECT id, payload_hash, rate_bits, meta FROM representations",
                    "SELECT id, representation_id, artifact_hash, meta FROM candidates",
                    "SELECT stage, item FROM failures",
                )
            ]

    assert stored(roots[1]) == stored(roots[0])
