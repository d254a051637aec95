"""Hostile images: every one either decodes to upright 8-bit RGB or fails with a reason."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import encoded, photo
from semcomp.errors import ImageError
from semcomp.images import (
    UNCATEGORISED,
    SourceImage,
    SourceProblem,
    decode_image,
    find_sources,
)


def test_plain_jpeg_is_recorded_with_its_facts():
    decoded = decode_image(encoded(photo(64, 48), "JPEG", quality=90))
    assert (decoded.width, decoded.height, decoded.pixels) == (64, 48, 64 * 48)
    assert decoded.format == "JPEG" and decoded.rgb.mode == "RGB" and decoded.frames == 1


def test_truncated_jpeg_fails_with_reason():
    data = encoded(photo(256, 192), "JPEG", quality=90)
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(encoded(cmyk, "JPEG", quality=95))
    assert decoded.source_mode == "CMYK" and decoded.rgb.mode == "RGB"
    red, green, blue = decoded.rgb.getpixel((20, 15))
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = encoded(Image.fromarray(values), "PNG")
    decoded = decode_image(data)
    assert decoded.source_mode.startswith("I")
    assert [decoded.rgb.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_palette_png_with_transparency_composites_over_white():
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((5, 5), 1)
    data = encoded(palette, "PNG", transparency=0)
    decoded = decode_image(data)
    assert decoded.rgb.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.rgb.getpixel((5, 5)) == (255, 0, 0)


def test_la_and_rgba_composite_over_white():
    la = Image.new("LA", (4, 4), (0, 0))
    assert decode_image(encoded(la, "PNG")).rgb.getpixel((1, 1)) == (255, 255, 255)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 128))
    r, g, b = decode_image(encoded(rgba, "PNG")).rgb.getpixel((1, 1))
    assert b == 255 and 120 <= r <= 135 and 120 <= g <= 135


def test_exif_orientation_is_applied():
    wide = photo(60, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    decoded = decode_image(encoded(wide, "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (20, 60)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue())
    assert decoded.frames == 2
    red, _, blue = decoded.rgb.getpixel((4, 4))
    assert red > 200 and blue < 60


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_one_pixel_images_in_every_format(fmt):
    decoded = decode_image(encoded(Image.new("RGB", (1, 1), (10, 200, 30)), fmt))
    assert decoded.pixels == 1 and decoded.rgb.mode == "RGB"


def test_not_an_image_fails():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"this is a text file, not a photo\n")


def test_decompression_bomb_is_refused_from_the_header():
    bomb = encoded(Image.new("1", (10_000, 8_000)), "PNG")  # 80 MP, a few kB on disk
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(bomb)
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(encoded(photo(100, 100), "PNG"), max_pixels=9_999)


def test_folder_scan_takes_category_from_first_level(tmp_path: Path):
    (tmp_path / "people" / "deeper").mkdir(parents=True)
    photo(8, 8).save(tmp_path / "people" / "deeper" / "a.png")
    photo(8, 8).save(tmp_path / "top.JPG")
    (tmp_path / "notes.txt").write_text("not an image suffix: skipped")
    (tmp_path / ".hidden").mkdir()
    photo(8, 8).save(tmp_path / ".hidden" / "b.png")
    found = list(find_sources(tmp_path))
    assert all(isinstance(f, SourceImage) for f in found)
    assert {(f.path.name, f.category) for f in found} == {
        ("a.png", "people"),
        ("top.JPG", UNCATEGORISED),
    }


def test_manifest_rows_and_their_problems(tmp_path: Path):
    photo(8, 8).save(tmp_path / "a.png")
    (tmp_path / "manifest.csv").write_text(
        "path,category,id\n"
        "a.png,objects,Object 1\n"
        ",objects,\n"
        "../outside.png,objects,\n"
        "a.png,objects,x,extra\n"
    )
    found = list(find_sources(tmp_path / "manifest.csv"))
    assert isinstance(found[0], SourceImage)
    assert (found[0].category, found[0].name) == ("objects", "Object 1")
    problems = [f for f in found if isinstance(f, SourceProblem)]
    lines = [p.item.rsplit(":", 1)[1] for p in problems]
    assert lines == ["3", "4", "5"] and problems[0].item.startswith(str(tmp_path / "manifest.csv"))
    assert "outside" in problems[1].reason


def test_manifest_with_unknown_columns_is_one_problem(tmp_path: Path):
    (tmp_path / "m.csv").write_text("file,cat\na.png,x\n")
    (problem,) = list(find_sources(tmp_path / "m.csv"))
    assert isinstance(problem, SourceProblem) and "path" in problem.reason
