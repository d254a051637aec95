"""Text payload codecs: every caption round-trips exactly and is rated by its bytes."""

import pytest

from semcomp.codecs import TEXT_CODECS
from semcomp.codecs.text import normalise_caption
from semcomp.errors import ConfigError

CAPTIONS = [
    "",
    "a red apple on a wooden table",
    "a German Shepherd dog running directly towards the camera " * 170,  # ~10,000 chars
    "一只红苹果放在木桌上",
    "تفاحة حمراء على طاولة خشبية",
    "एक लाल सेब लकड़ी की मेज़ पर",
    "a cat 🐈 and a dog 🐕 on a sofa 🛋️",
    "cafe\u0301 au lait",  # decomposed é: NFC makes it one code point
]


def codec(name: str, **params):
    codec_class = TEXT_CODECS.get(name)
    return codec_class(codec_class.Params(**params))


@pytest.mark.parametrize("name", ["utf8", "zlib", "brotli", "zstd"])
@pytest.mark.parametrize("caption", CAPTIONS, ids=range(len(CAPTIONS)))
def test_round_trip(name, caption):
    subject = codec(name)
    payload = subject.encode(caption)
    assert isinstance(payload, bytes)
    assert subject.decode(payload) == normalise_caption(caption)


def test_utf8_rate_is_the_nfc_byte_length():
    subject = codec("utf8")
    assert subject.encode("a cat 🐈") == "a cat 🐈".encode()
    assert len(subject.encode("🐈")) == 4
    assert len(subject.encode("cafe\u0301")) == len("café".encode()) == 5
    assert subject.encode("") == b""


def test_compressors_beat_utf8_on_long_captions():
    long = CAPTIONS[2]
    raw = len(codec("utf8").encode(long))
    for name in ("zlib", "brotli", "zstd"):
        assert len(codec(name).encode(long)) < raw / 10


def test_raw_deflate_saves_the_zlib_header_and_checksum():
    text = CAPTIONS[1]
    assert len(codec("zlib", raw=False).encode(text)) - len(codec("zlib").encode(text)) == 6


def test_zstd_dictionary_is_shared_side_information(tmp_path):
    lines = [
        f"a photo of a {c} {o} on a {s} table"
        for c in ("red", "blue", "green", "small", "old")
        for o in ("apple", "mug", "ball", "cat")
        for s in ("wooden", "white", "metal")
    ]
    source = tmp_path / "captions.txt"
    source.write_text("\n".join(lines * 3))
    with_dictionary = codec("zstd", dictionary_captions=source, dictionary_size=1024)
    plain = codec("zstd")
    caption = "a photo of a red mug on a white table"
    assert len(with_dictionary.encode(caption)) < len(plain.encode(caption)) / 2
    assert with_dictionary.decode(with_dictionary.encode(caption)) == caption
    side = with_dictionary.side_information()
    assert 0 < side["dictionary_bytes"] <= 1024 and "not counted in the rate" in side["note"]
    assert plain.side_information() == {}
    assert with_dictionary.params.identity()["dictionary_captions_sha256"]
    assert "dictionary_captions" not in with_dictionary.params.identity()


def test_zstd_dictionary_needs_enough_captions(tmp_path):
    source = tmp_path / "few.txt"
    source.write_text("a cat\na dog\n")
    with pytest.raises(ConfigError, match="give more captions"):
        codec("zstd", dictionary_captions=source).encode("a cat")
