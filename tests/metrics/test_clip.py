"""CLIP embedder: loads through the production path, batches, and fails clearly offline."""

import time

import numpy as np
import pytest

from helpers import photo
from semcomp.config import EmbedderConfig
from semcomp.errors import ConfigError, ModelUnavailableError
from semcomp.metrics.clip import OpenClipEmbedder, fetch_open_clip_weights
from semcomp.models import batches_with_backoff


def test_tiny_clip_embeddings_are_normalised_and_deterministic(tiny_clip):
    config = EmbedderConfig(model=tiny_clip, name="tiny")
    images = [photo(40, 30, seed) for seed in range(5)]
    embedder = OpenClipEmbedder(config, device="cpu", batch_size=2)
    try:
        first = embedder.embed(images)
        second = embedder.embed(images[::-1])[::-1]
        identity = embedder.identity()
    finally:
        embedder.close()
    assert first.shape == (5, 32) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.allclose(first, second, atol=1e-5)
    assert identity["preprocess"]["resize_mode"] == "shortest"


def test_missing_default_weights_fail_fast_with_one_clear_message():
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as raised:
        fetch_open_clip_weights(EmbedderConfig())
    message = str(raised.value)
    assert time.perf_counter() - started < 10
    assert "ViT-L-14-336/openai" in message and "semcomp models fetch" in message


def test_embedder_reports_missing_weights_without_a_library_traceback():
    with pytest.raises(ModelUnavailableError, match="hub is unreachable"):
        OpenClipEmbedder(EmbedderConfig(model="ViT-B-32", pretrained="openai"), device="cpu")


def test_unknown_model_and_tag_are_config_errors():
    with pytest.raises(ConfigError, match="no model 'ViT-Q-99'"):
        OpenClipEmbedder(EmbedderConfig(model="ViT-Q-99"), device="cpu")
    with pytest.raises(ConfigError, match="no weights tag 'nonsense'"):
        fetch_open_clip_weights(EmbedderConfig(model="ViT-B-32", pretrained="nonsense"))


def test_batches_halve_on_out_of_memory():
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return sum(batch)

    results = [result for _, result in batches_with_backoff(list(range(10)), 8, run)]
    assert sum(results) == sum(range(10))
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2


def test_other_errors_are_not_swallowed():
    def run(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(batches_with_backoff([1, 2], 2, run))


def test_preprocessing_overrides_change_the_identity(tiny_clip):
    default = EmbedderConfig(model=tiny_clip)
    squashed = EmbedderConfig(model=tiny_clip, resize_mode="squash")
    assert default.embedder_id != squashed.embedder_id
    embedder = OpenClipEmbedder(squashed, device="cpu")
    try:
        identity = embedder.identity()
        wide = embedder.embed([photo(120, 30)])
    finally:
        embedder.close()
    assert identity["preprocess"]["resize_mode"] == "squash"
    assert identity["weights"] == tiny_clip
    assert wide.shape == (1, 32)


def test_a_halved_batch_size_is_kept_for_the_next_engine_batch(tiny_clip, monkeypatch):
    """Two engine batches: only the first one runs out of memory at the full size."""
    embedder = OpenClipEmbedder(EmbedderConfig(model=tiny_clip), device="cpu", batch_size=8)
    embed_pixels = embedder.embed_pixels
    sizes = []

    def small_memory(pixels):
        sizes.append(len(pixels))
        if len(pixels) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return embed_pixels(pixels)

    monkeypatch.setattr(embedder, "embed_pixels", small_memory)
    images = [photo(40, 30, seed) for seed in range(5)]
    try:
        first, second = embedder.embed(images), embedder.embed(images)
    finally:
        embedder.close()
    first_call, second_call = sizes[:5], sizes[5:]
    assert first_call == [5, 4, 2, 2, 1] and second_call == [2, 2, 1]
    assert embedder.batch_size == 2
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_closing_a_clip_model_frees_it_without_a_full_collection(tiny_clip, monkeypatch):
    """A model freed by reference counting needs no ``gc.collect`` (a quarter of a second
    of CPU and more per stage step in a process holding torch); one that survives, or a
    call without weak references, still gets it."""
    import gc
    import weakref

    from semcomp import models

    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
    embedder = OpenClipEmbedder(EmbedderConfig(model=tiny_clip, random_weights=True), device="cpu")
    model = weakref.ref(embedder.model)
    embedder.close()
    assert model() is None and embedder.model is None and collections == []

    class Cyclic:
        def __init__(self):
            self.me = self

    kept = Cyclic()
    models.release(weakref.ref(kept))  # still referenced: collected
    models.release()  # no weak references: collected, as before
    assert len(collections) == 2
