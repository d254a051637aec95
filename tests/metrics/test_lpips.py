"""LPIPS: the real model with a random backbone, built offline through the production code."""

import time

import numpy as np
import pytest
from PIL import Image, ImageFilter
from pydantic import ValidationError

from helpers import photo
from semcomp.errors import ImageError, ModelUnavailableError
from semcomp.metrics import METRICS
from semcomp.metrics.lpips import BACKBONE_URLS, Lpips, LpipsParams


@pytest.fixture(scope="module")
def lpips_alex():
    metric = Lpips(LpipsParams(weights="random"), device="cpu", batch_size=2)
    yield metric
    metric.close()


def test_registered_with_its_scores_and_identity():
    assert METRICS.get("lpips") is Lpips
    [spec] = Lpips.scores(LpipsParams())
    assert (spec.key, spec.display, spec.higher_is_better, spec.low) == (
        "lpips[alex]",
        "LPIPS (AlexNet)",
        False,
        0.0,
    )
    assert spec.axis_label == "LPIPS (AlexNet), lower is better"
    [random] = Lpips.scores(LpipsParams(net="vgg", weights="random"))
    assert random.key == "lpips[vgg,random]" and "random weights" in random.display
    identity = Lpips.identity_of(LpipsParams())
    assert identity["net"] == "alex" and identity["version"] == "0.1"
    assert "resized to the original's size" in identity["preprocess"]
    with pytest.raises(ValidationError):
        LpipsParams(net="squeeze")


def test_identical_pair_is_zero_and_a_degraded_one_is_not(lpips_alex):
    original = photo(96, 64, 1)
    blurred = original.filter(ImageFilter.GaussianBlur(3))
    [same, degraded] = lpips_alex.compare([original, original], [original, blurred])
    assert same["lpips[alex,random]"] == pytest.approx(0, abs=1e-6)
    assert degraded["lpips[alex,random]"] > 1e-3  # far above float noise (1e-7)
    assert lpips_alex.identity()["random_weights"] is True


def test_batch_equals_one_by_one_and_sizes_mix(lpips_alex):
    originals = [photo(96, 64, s) for s in range(3)] + [photo(80, 80, 9)]
    candidates = [o.point(lambda v: v // 2) for o in originals]
    candidates[1] = candidates[1].resize((48, 32))  # another size: resized to the original's
    batched = lpips_alex.compare(originals, candidates)
    single = [lpips_alex.compare([o], [c])[0] for o, c in zip(originals, candidates, strict=True)]
    assert np.allclose(
        [b["lpips[alex,random]"] for b in batched],
        [s["lpips[alex,random]"] for s in single],
        atol=1e-5,
    )


def test_a_pair_too_small_fails_alone(lpips_alex):
    tiny = photo(12, 12, 2)
    results = lpips_alex.compare([photo(64, 64, 1), tiny], [photo(64, 64, 1), tiny])
    assert results[0]["lpips[alex,random]"] == pytest.approx(0, abs=1e-6)
    assert isinstance(results[1], ImageError) and "12×12" in str(results[1])
    with pytest.raises(ImageError):
        lpips_alex.compare([tiny], [tiny])


def test_vgg_backbone_builds_too():
    metric = Lpips(LpipsParams(net="vgg", weights="random"), device="cpu")
    try:
        a = photo(48, 48, 3)
        [same, other] = metric.compare([a, a], [a, Image.new("RGB", (48, 48), "gray")])
    finally:
        metric.close()
    assert same["lpips[vgg,random]"] == pytest.approx(0, abs=1e-6)
    assert other["lpips[vgg,random]"] > 1e-3


def test_missing_backbone_weights_give_one_line_with_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoint = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as raised:
        Lpips(LpipsParams(), device="cpu")
    message = str(raised.value)
    assert time.perf_counter() - started < 10
    assert "\n" not in message and "LPIPS (AlexNet)" in message
    assert f"curl -L --create-dirs -o {checkpoint} {BACKBONE_URLS['alex']}" in message
    assert Lpips.weights_problem(LpipsParams(), None) == message
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    assert Lpips.weights_problem(LpipsParams(), None) is None
    assert Lpips.weights_problem(LpipsParams(weights="random"), None) is None


def test_backbone_urls_are_torchvisions():
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    assert AlexNet_Weights.IMAGENET1K_V1.url == BACKBONE_URLS["alex"]
    assert VGG16_Weights.IMAGENET1K_V1.url == BACKBONE_URLS["vgg"]
