"""CSV files as people save them: UTF-8, UTF-8 with a BOM, Windows-1252."""

import pytest

from semcomp.captioners.human import read_caption_rows
from semcomp.csvtext import csv_encoding
from semcomp.errors import ConfigError
from semcomp.images import SourceImage, read_manifest


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("path,id\na.png,Café\n".encode(), "utf-8-sig"),
        (b"\xef\xbb\xbf" + "path,id\na.png,Café\n".encode(), "utf-8-sig"),
        ("path,id\na.png,Café – 2\n".encode("cp1252"), "cp1252"),
    ],
)
def test_encoding_is_detected(tmp_path, data, encoding):
    path = tmp_path / "file.csv"
    path.write_bytes(data)
    assert csv_encoding(path) == encoding
    (image,) = read_manifest(path)
    assert isinstance(image, SourceImage) and image.name.startswith("Café")


def test_strict_mode_and_unreadable_files(tmp_path):
    path = tmp_path / "file.csv"
    path.write_bytes("x\né\n".encode("cp1252"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        csv_encoding(path, fallback=None)
    with pytest.raises(ConfigError, match="cannot read"):
        csv_encoding(tmp_path / "missing.csv")


def test_excel_captions_csv_keeps_its_accents(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_bytes("image,caption\ncafe.jpg,A café – at noon\n".encode("cp1252"))
    by_image, problems = read_caption_rows(path)
    assert problems == [] and by_image["cafe.jpg"][0].text == "A café – at noon"
