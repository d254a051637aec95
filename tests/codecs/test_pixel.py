"""JPEG/WebP: exact rates, round trips, and the rate-target search."""

import io

import pytest
from PIL import Image

from helpers import photo
from semcomp.codecs import CODECS, OperatingPoint, OriginalFacts
from semcomp.errors import TargetUnreachableError


def codec(name: str, **params):
    codec_class = CODECS.get(name)
    return codec_class(codec_class.Params(**params))


def facts_of(image: Image.Image) -> OriginalFacts:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return OriginalFacts(file_bytes=len(buffer.getvalue()), pixels=image.width * image.height)


SIZES = [(64, 48), (320, 240), (1024, 683)]


@pytest.mark.parametrize("name", ["jpeg", "webp"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "point",
    [
        OperatingPoint("reduction", 0.8),
        OperatingPoint("reduction", 0.9),
        OperatingPoint("bpp", 2.0),
    ],
    ids=lambda p: p.label,
)
def test_search_finds_the_highest_quality_that_meets_the_target(name, size, point):
    image = photo(*size, seed=size[0] % 7)
    subject, original = codec(name), facts_of(image)
    (result,) = subject.encode(image, [point], original)
    max_bytes = point.max_bytes(original)
    assert not isinstance(result, Exception), result
    quality = result.meta["quality"]
    assert len(result.payload) <= max_bytes
    assert result.rate_bits == 8 * len(result.payload)
    assert result.meta["encodes"] <= 8
    # Highest: one step up no longer fits (the search tested it).
    if quality < subject.quality_range[1]:
        assert len(subject.encode_at_quality(image, quality + 1)) > max_bytes
    assert result.meta["achieved"] == pytest.approx(point.achieved(len(result.payload), original))


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_encode_decode_round_trip(name):
    image = photo(96, 64)
    subject = codec(name)
    (result,) = subject.encode(image, [OperatingPoint("quality", 80)], facts_of(image))
    decoded = subject.decode(result.payload)
    assert decoded.size == image.size and decoded.mode == "RGB"
    assert Image.open(io.BytesIO(result.payload)).format == subject.pillow_format


def test_targets_on_one_image_share_encodes():
    image = photo(320, 240)
    points = [OperatingPoint("reduction", 0.8), OperatingPoint("reduction", 0.8001)]
    first, second = codec("jpeg").encode(image, points, facts_of(image))
    assert first.meta["encodes"] >= 1 and second.meta["encodes"] <= first.meta["encodes"]


def test_unreachable_target_reports_the_closest_value():
    image = photo(320, 240)
    (result,) = codec("jpeg").encode(image, [OperatingPoint("bytes", 50)], facts_of(image))
    assert isinstance(result, TargetUnreachableError)
    assert result.closest["quality"] == 1 and result.closest["bytes"] > 50
    assert "no quality meets bytes=50" in str(result)


def test_jpeg_params_change_the_bytes():
    image = photo(200, 150)
    point, original = [OperatingPoint("quality", 75)], facts_of(image)
    (plain,) = codec("jpeg").encode(image, point, original)
    (optimised,) = codec("jpeg", optimize=True).encode(image, point, original)
    (full_chroma,) = codec("jpeg", subsampling="4:4:4").encode(image, point, original)
    assert len(optimised.payload) < len(plain.payload) < len(full_chroma.payload)


def test_operating_point_arithmetic():
    original = OriginalFacts(file_bytes=10_000, pixels=800)
    assert OperatingPoint("reduction", 0.9).max_bytes(original) == 1000
    assert OperatingPoint("bpp", 0.5).max_bytes(original) == 50
    assert OperatingPoint("bytes", 123).max_bytes(original) == 123
    assert OperatingPoint("quality", 50).max_bytes(original) is None
    assert OperatingPoint("reduction", 0.9).achieved(1000, original) == pytest.approx(0.9)
    assert OperatingPoint("bpp", 0.5).label == "bpp=0.5"
    assert OperatingPoint("quality", 50.0).label == "quality=50"
