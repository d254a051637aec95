"""DISTS through piq: random VGG16 and DISTS weights offline, through piq's own constructor."""

import numpy as np
import pytest
from PIL import ImageFilter

from helpers import photo
from semcomp.errors import ModelUnavailableError
from semcomp.metrics import METRICS
from semcomp.metrics.dists import DISTS_WEIGHTS_URL, Dists, DistsParams


@pytest.fixture(scope="module")
def dists():
    metric = Dists(DistsParams(weights="random"), device="cpu", batch_size=2)
    yield metric
    metric.close()


def test_registered_with_its_scores_and_identity():
    assert METRICS.get("dists") is Dists
    [spec] = Dists.scores(DistsParams())
    assert (spec.key, spec.display, spec.higher_is_better, spec.low, spec.high) == (
        "dists",
        "DISTS",
        False,
        0.0,
        1.0,
    )
    assert Dists.scores(DistsParams(weights="random"))[0].key == "dists[random]"
    identity = Dists.identity_of(DistsParams())
    assert identity["implementation"] == "piq.DISTS"
    assert "resized to the original's size" in identity["preprocess"]


def test_identical_pair_is_zero_and_a_degraded_one_is_not(dists):
    original = photo(96, 64, 1)
    blurred = original.filter(ImageFilter.GaussianBlur(3))
    [same, degraded] = dists.compare([original, original], [original, blurred])
    assert same["dists[random]"] == pytest.approx(0, abs=1e-5)
    assert 1e-3 < degraded["dists[random]"] <= 1
    assert dists.identity()["random_weights"] is True


def test_batch_equals_one_by_one(dists):
    originals = [photo(64, 48, s) for s in range(3)]
    candidates = [o.point(lambda v: v // 2) for o in originals]
    candidates[2] = candidates[2].resize((32, 24))
    batched = dists.compare(originals, candidates)
    single = [dists.compare([o], [c])[0] for o, c in zip(originals, candidates, strict=True)]
    assert np.allclose(
        [b["dists[random]"] for b in batched], [s["dists[random]"] for s in single], atol=1e-5
    )


def test_random_weights_are_the_same_each_build(dists):
    again = Dists(DistsParams(weights="random"), device="cpu")
    try:
        a, b = photo(48, 48, 1), photo(48, 48, 2)
        [first], [second] = again.compare([a], [b]), dists.compare([a], [b])
        assert first["dists[random]"] == pytest.approx(second["dists[random]"], abs=1e-6)
    finally:
        again.close()


def test_missing_weights_name_both_files(tmp_path, monkeypatch):
    import piq

    assert piq.DISTS._weights_url == DISTS_WEIGHTS_URL
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as raised:
        Dists(DistsParams(), device="cpu")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("DISTS: ")
    assert "vgg16-397923af.pth" in message and DISTS_WEIGHTS_URL in message
    assert Dists.weights_problem(DistsParams(weights="random"), None) is None
