"""Inputs that must become failure rows (issue 12, items 1-3 and 6): the run goes on,
`semcomp status` names every bad file."""

import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import photo, write_hostile_images, write_study
from semcomp.cli import app
from semcomp.filenames import path_text, text_path
from semcomp.images import SourceImage, SourceProblem, decode_image, find_sources
from semcomp.study import Study

BAD_NAME = os.fsdecode(b"caf\xff.png")  # not valid UTF-8: a surrogate-escaped str

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file names and FIFOs")


def run(root: Path):
    with Study.open(root) as study:
        return study.run(progress=False)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` 1-bit pixels (its data is never reached)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ---- item 1: file names that are not UTF-8 ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "plain.png",
        "Café – 2.png",
        BAD_NAME,
        os.fsdecode(b"\xff\xfe\\x41\\\\.png"),  # bad bytes next to text that looks like escapes
        "a\\xff.png",  # valid UTF-8 that looks like an escape
        "a\\\\b.png",
        "back\\slash.png",
        "\udcc3\udca9",  # bytes of "é" as two escapes
    ],
)
def test_names_are_stored_as_text_that_decodes_back_exactly(name):
    stored = path_text(Path("/images") / name)
    stored.encode("utf-8")  # storable as SQLite text
    assert text_path(stored) == Path("/images") / name
    if "\\" not in name and name.isprintable():
        assert stored == f"/images/{name}"  # ordinary names are stored as they are


def test_a_bad_name_is_shown_escaped():
    assert path_text(Path(BAD_NAME)) == "caf\\xff.png"


@posix_only
def test_a_name_that_is_not_utf8_is_ingested_losslessly(tmp_path, image_folder, tiny_clip):
    bad = image_folder / "landscape" / BAD_NAME
    photo(64, 48, seed=7).save(bad, format="PNG")
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    summary = run(root)
    assert summary.status == "finished" and not summary.failures
    with Study.open(root) as study:
        row = study.store.conn.execute(
            "SELECT path, name FROM sources WHERE name LIKE 'caf%'"
        ).fetchone()
        assert row["name"] == "caf\\xff" and row["path"].endswith("caf\\xff.png")
        # a later stage opens the file by its real name
        assert text_path(row["path"]) == bad and text_path(row["path"]).read_bytes()
        assert study.store.count("originals") == 5
    again = run(root)  # unchanged: recognised, nothing new
    assert next(s for s in again.stages if s.stage == "ingest").skipped == 5


# ---- item 2: images a codec cannot encode; sources that disappear -----------------------------


def test_images_a_codec_refuses_are_failure_rows_and_the_run_goes_on(
    tmp_path, image_folder, tiny_clip
):
    Image.new("RGB", (17000, 900), (40, 90, 140)).save(image_folder / "landscape" / "pano.png")
    Image.new("RGB", (70000, 1), (40, 90, 140)).save(image_folder / "landscape" / "line.png")
    methods = (
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n\n'
        '[[methods]]\nname = "webp"\ncodec = "webp"\nquality = [50, 80]\n'
    )
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode"])
    assert summary.status == "finished"
    failed = sorted((item.split(" · ")[0:2], reason) for _, item, reason in summary.failures)
    assert [names for names, _ in failed] == [
        ["line", "jpeg"],
        ["line", "webp"],
        ["line", "webp"],
        ["pano", "webp"],
        ["pano", "webp"],
    ]
    reasons = dict((tuple(names), reason) for names, reason in failed)
    assert "65,500" in reasons[("line", "jpeg")] and "70,000×1" in reasons[("line", "jpeg")]
    assert "16,383" in reasons[("pano", "webp")]
    with Study.open(root) as study:
        status = {row.what: row for row in study.status()}
        assert (status["represent: webp"].failed, status["represent: webp"].pending) == (4, 0)
        assert study.store.count("representations") == 4 * 3 + 1  # pano's JPEG is fine


def test_any_codec_error_is_a_failure_row(tmp_path, image_folder, tiny_clip, monkeypatch):
    from semcomp.codecs.jpeg import JpegCodec

    def broken(self, image, quality):
        raise OSError("broken data stream when writing image file")

    monkeypatch.setattr(JpegCodec, "encode_at_quality", broken)
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode"])
    assert summary.status == "finished"
    assert len(summary.failures) == 4 * 2
    assert all("broken data stream" in reason for _, _, reason in summary.failures)


def test_a_source_that_disappears_is_gone_not_pending(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode"])
    removed = image_folder / "landscape" / "img1.png"
    kept = removed.read_bytes()
    removed.unlink()
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode"])
        assert summary.status == "finished"
        ((stage, item, reason),) = summary.failures
        assert (stage, item) == ("ingest", str(removed)) and reason.startswith("gone")
        status = {row.what: row for row in study.status()}
        assert status["ingest: originals"].done == 3
        assert (status["represent: jpeg"].done, status["represent: jpeg"].pending) == (8, 0)
        assert study.store.count("originals") == 4  # nothing is lost
    removed.write_bytes(kept)  # it comes back: no failure, nothing to redo
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode"])
        assert not study.failures()
        assert [s.done for s in summary.stages] == [1, 0]


def test_a_missing_images_folder_marks_nothing_gone(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest"])
    image_folder.rename(tmp_path / "elsewhere")
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest"])
        assert [reason for _, _, reason in summary.failures] == [
            "images source is neither a folder nor a .csv manifest"
        ]
        assert study.store.count("sources") == 4


# ---- item 3: things under the image folder that are not files --------------------------------


@posix_only
def test_non_files_are_problems_with_their_reason(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    photo(8, 8).save(folder / "good.png")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "folder.jpg").mkdir()
    os.mkfifo(folder / "pipe.png")
    (folder / "link.png").symlink_to(folder / "good.png")  # a link to a file is fine
    os.mkfifo(folder / "pipe.txt")  # not an image suffix: ignored like notes.txt
    found = {
        Path(f.item if isinstance(f, SourceProblem) else f.path).name: f
        for f in find_sources(folder)
    }
    assert set(found) == {
        "good.png",
        "link.png",
        "dangling.png",
        "loop.jpg",
        "folder.jpg",
        "pipe.png",
    }
    assert isinstance(found["good.png"], SourceImage) and isinstance(found["link.png"], SourceImage)
    assert "dangling symlink" in found["dangling.png"].reason
    assert "symlink loop" in found["loop.jpg"].reason
    assert "folder" in found["folder.jpg"].reason
    assert "FIFO" in found["pipe.png"].reason


@posix_only
def test_a_fifo_is_never_opened(tmp_path):
    from semcomp.errors import ImageError
    from semcomp.images import read_image_file

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match="not a regular file"):
        read_image_file(tmp_path / "pipe.png")  # would block forever if opened for reading


# ---- item 6 -----------------------------------------------------------------------------------


def test_pillow_bomb_message_quotes_the_configured_limit():
    from semcomp.errors import PixelLimitError

    huge = png_header(20_000, 10_000)  # 200 MP: over Pillow's own hard limit
    with pytest.raises(PixelLimitError) as refused:
        decode_image(huge, max_pixels=1_000_000)
    message = str(refused.value)
    assert "1,000,000" in message and "200,000,000" in message
    assert str(2 * Image.MAX_IMAGE_PIXELS) not in message.replace(",", "")


def test_empty_file_says_so():
    from semcomp.errors import ImageError

    with pytest.raises(ImageError, match="empty file"):
        decode_image(b"")


# ---- done means --------------------------------------------------------------------------------


@posix_only
def test_status_names_every_hostile_file_and_the_run_finishes(tmp_path, tiny_clip):
    folder = tmp_path / "images"
    expected = write_hostile_images(folder)
    bad = {name for name, ok in expected.items() if not ok}
    (folder / "empty.jpg").write_bytes(b"")
    photo(32, 24).save(folder / BAD_NAME, format="PNG")
    Image.new("RGB", (70000, 1), (10, 20, 30)).save(folder / "line.png")
    Image.new("RGB", (17000, 900), (10, 120, 30)).save(folder / "pano.png")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "folder.jpg").mkdir()
    os.mkfifo(folder / "fifo.png")
    bad |= {"empty.jpg", "dangling.png", "loop.png", "folder.jpg", "fifo.png"}
    methods = (  # bytes=40 is out of reach for every image: more failures than a summary shows
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\nbytes = [40]\n\n'
        '[[methods]]\nname = "webp"\ncodec = "webp"\nquality = [50]\n'
    )
    root = write_study(tmp_path / "s", folder, tiny_clip, methods=methods)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(root), "--no-progress"])
    assert result.exit_code == 1, result.output  # finished, with failures
    status = runner.invoke(app, ["status", str(root)])
    assert status.exit_code == 0, status.output
    for name in bad:
        assert f"/{name}: " in status.output, name
    assert "line · jpeg · quality=50" in status.output
    assert "line · webp · quality=50" in status.output
    assert "pano · webp · quality=50" in status.output
    failures = status.output.split("failure(s):")[1]
    assert "ingest" not in failures.split("encode", 1)[1]  # stages in pipeline order
    assert "caf\\xff · jpeg · bytes=40" in failures  # the non-UTF-8 name ingested, shown escaped
    again = runner.invoke(app, ["run", str(root), "--no-progress"])
    assert again.exit_code == 1, again.output  # the files that are not images fail again


@posix_only
def test_an_ingested_file_replaced_by_a_fifo_leaves_the_scope(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest"])
    replaced = image_folder / "landscape" / "img1.png"
    replaced.unlink()
    os.mkfifo(replaced)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode"])
        ((stage, item, reason),) = summary.failures
        assert (stage, item) == ("ingest", str(replaced)) and "FIFO" in reason
        status = {row.what: row for row in study.status()}
        assert status["ingest: originals"].done == 3
        assert status["represent: jpeg"].done == 6 and status["represent: jpeg"].pending == 0


def test_clip_preprocessing_that_would_explode_an_image_is_a_failure_row(
    tmp_path, image_folder, tiny_clip
):
    # the tiny CLIP resizes the short side to 32 px: 70000×1 would become 2,240,000×32
    # (71.7 MP; 23,520,000×336, about 24 GB, with ViT-L-14-336)
    Image.new("RGB", (70000, 1), (10, 20, 30)).save(image_folder / "landscape" / "line.png")
    methods = '[[methods]]\nname = "webp"\ncodec = "webp"\nquality = [50]\n'
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    summary = run(root)
    assert summary.status == "finished"
    embed = [reason for stage, _, reason in summary.failures if stage == "embed"]
    assert len(embed) == 1 and "2,240,000×32" in embed[0] and "max_pixels" in embed[0]
    with Study.open(root) as study:
        assert study.store.count("scores") == 4 * 2  # the four photos are scored
