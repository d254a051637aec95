"""Stable Diffusion through the production reconstructor, with tiny random weights."""

import hashlib

import pytest

from semcomp.errors import ConfigError, ModelUnavailableError
from semcomp.reconstructors.diffusers import DiffusersParams, DiffusersReconstructor

PROMPTS = ["a red apple", "a blue mug", "mountains at night", "a dog on a beach"]


def reconstruct(model, prompts, seeds, batch_size=4, **params):
    reconstructor = DiffusersReconstructor(
        DiffusersParams(model=str(model), steps=2, width=64, height=64, **params),
        device="cpu",
        batch_size=batch_size,
    )
    try:
        return [r.png for r in reconstructor.reconstruct(prompts, seeds)], reconstructor.identity()
    finally:
        reconstructor.close()


def digest(png: bytes) -> str:
    return hashlib.sha256(png).hexdigest()


def test_same_seed_gives_identical_bytes(tiny_sd):
    first, identity = reconstruct(tiny_sd, PROMPTS, [1, 2, 3, 4])
    second, _ = reconstruct(tiny_sd, PROMPTS, [1, 2, 3, 4])
    assert [digest(p) for p in first] == [digest(p) for p in second]
    other, _ = reconstruct(tiny_sd, PROMPTS, [5, 6, 7, 8])
    assert all(a != b for a, b in zip(first, other, strict=True))
    assert identity["pipeline"] == "StableDiffusionPipeline"
    assert all(png.startswith(b"\x89PNG") for png in first)


def test_scheduler_and_negative_prompt(tiny_sd):
    images, identity = reconstruct(
        tiny_sd, PROMPTS[:2], [1, 2], scheduler="EulerDiscrete", negative_prompt="blurry"
    )
    assert identity["scheduler"] == "EulerDiscreteScheduler" and len(images) == 2
    with pytest.raises(ConfigError, match="no scheduler 'NopeScheduler'"):
        reconstruct(tiny_sd, PROMPTS[:1], [1], scheduler="Nope")


def test_prompt_reader_flags_what_the_text_encoder_never_reads(tiny_sd):
    read = DiffusersReconstructor.prompt_reader(DiffusersParams(model=str(tiny_sd)))
    short = read("a red apple")
    assert not short.truncated and short.consumed_chars == len("a red apple")
    long = read("a red apple on a wooden table " * 300)
    assert long.truncated and long.limit == 75 and long.tokens > 75
    assert 0 < long.consumed_chars < 9000
    emoji = read("🐈" * 40)  # 4 byte tokens each: the cut falls inside a character
    assert emoji.truncated and emoji.consumed_chars == 18


def test_missing_pipeline_fails_fast():
    with pytest.raises(ModelUnavailableError, match="semcomp models fetch --hf"):
        reconstruct("stable-diffusion-v1-5/stable-diffusion-v1-5", PROMPTS[:1], [1])
