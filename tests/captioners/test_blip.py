"""BLIP and BLIP-2 through the production captioner, with tiny random weights."""

import time

import pytest

from helpers import photo
from semcomp.captioners.base import OriginalRef
from semcomp.captioners.blip import BlipCaptioner, BlipParams
from semcomp.errors import ConfigError, ModelUnavailableError

IMAGES = [photo(64, 48, 1), photo(100, 100, 2), photo(37, 80, 3), photo(320, 240, 4)]
REFS = [OriginalRef(id=str(i), name=str(i), category="c", source_path=f"{i}.png") for i in range(4)]


def captions(model, batch_size=4, **params):
    captioner = BlipCaptioner(
        BlipParams(model=str(model), max_new_tokens=12, min_new_tokens=2, **params),
        device="cpu",
        batch_size=batch_size,
    )
    try:
        return [c[0].text for c in captioner.caption(REFS, IMAGES)], captioner.identity()
    finally:
        captioner.close()


@pytest.mark.parametrize("model_fixture", ["tiny_blip", "tiny_blip2"])
def test_batched_captions_equal_one_at_a_time(model_fixture, request):
    model = request.getfixturevalue(model_fixture)
    batched, identity = captions(model, batch_size=4)
    single, _ = captions(model, batch_size=1)
    assert batched == single
    assert len(set(batched)) > 1, "different images should get different captions"
    assert identity["model_type"] in ("blip", "blip-2")


def test_captions_are_deterministic_and_keep_the_prefix(tiny_blip):
    first, _ = captions(tiny_blip, prefix="a picture of")
    second, _ = captions(tiny_blip, prefix="a picture of")
    assert first == second
    assert all(text.startswith("a picture of") for text in first)


def test_a_model_that_is_not_blip_is_refused(tiny_sd):
    with pytest.raises((ConfigError, ModelUnavailableError)):
        captions(tiny_sd / "text_encoder")


def test_missing_hub_model_fails_fast_with_one_message():
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="semcomp models fetch --hf Salesforce"):
        captions("Salesforce/blip-image-captioning-large")
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    ("model_fixture", "prefix"),
    [("tiny_blip", ""), ("tiny_blip", "a picture of"), ("tiny_blip2", "")],
)
def test_pixels_preprocessed_by_the_loader_give_the_same_captions(model_fixture, prefix, request):
    """What DataLoader workers hand the captioner (pixel tensors) captions like the images."""
    model = request.getfixturevalue(model_fixture)
    params = BlipParams(model=str(model), max_new_tokens=12, min_new_tokens=2, prefix=prefix)
    captioner = BlipCaptioner(params, device="cpu", batch_size=4)
    try:
        preprocess = captioner.loader_preprocess()
        without_model = BlipCaptioner.loader_preprocess_for(params)  # as in Ray CPU tasks
        assert without_model(IMAGES[3]).equal(preprocess(IMAGES[3]))
        from_images = [c[0].text for c in captioner.caption(REFS, IMAGES)]
        from_pixels = [c[0].text for c in captioner.caption(REFS, [preprocess(i) for i in IMAGES])]
    finally:
        captioner.close()
    assert from_pixels == from_images


def test_blip2_with_a_prefix_preprocesses_beside_the_model(tiny_blip2):
    params = BlipParams(model=str(tiny_blip2), prefix="a photo of")
    captioner = BlipCaptioner(params, device="cpu")
    try:
        assert captioner.loader_preprocess() is None  # its processor builds text around images
        assert BlipCaptioner.loader_preprocess_for(params) is None
    finally:
        captioner.close()
