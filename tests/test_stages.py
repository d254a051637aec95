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
