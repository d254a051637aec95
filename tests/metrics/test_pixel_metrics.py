"""``psnr`` and ``ms-ssim`` against independent computations in numpy."""

import math

import numpy as np
import pytest
from PIL import Image

from helpers import photo
from semcomp.errors import ImageError
from semcomp.metrics.msssim import MsSsimMetric, MsSsimParams, min_side
from semcomp.metrics.psnr import PsnrMetric, PsnrParams

try:  # scikit-image, where installed, is a second independent reference
    from skimage.metrics import peak_signal_noise_ratio
except ImportError:  # pragma: no cover - depends on the environment
    peak_signal_noise_ratio = None


def noisy(image: Image.Image, scale: float, seed: int = 0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + np.random.default_rng(seed).normal(scale=scale, size=pixels.shape)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def reference_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(float) - b.astype(float)) ** 2).sum() / a.size
    return 20 * math.log10(255) - 10 * math.log10(mse)


def test_psnr_matches_the_formula():
    metric = PsnrMetric(PsnrParams())
    originals = [photo(64, 48, seed) for seed in range(3)]
    candidates = [noisy(image, scale) for image, scale in zip(originals, (2, 8, 30), strict=True)]
    values = [v["psnr"] for v in metric.compare(originals, candidates)]
    expected = [
        reference_psnr(np.asarray(a), np.asarray(b))
        for a, b in zip(originals, candidates, strict=True)
    ]
    assert values == pytest.approx(expected, abs=1e-9)
    assert values[0] > values[1] > values[2] > 10
    if peak_signal_noise_ratio is not None:
        skimage = [
            peak_signal_noise_ratio(np.asarray(a), np.asarray(b), data_range=255)
            for a, b in zip(originals, candidates, strict=True)
        ]
        assert values == pytest.approx(skimage, abs=1e-9)


def test_psnr_resizes_the_candidate_to_the_original_and_caps_identical_images():
    original = photo(64, 48, 1)
    smaller = original.resize((32, 24), Image.Resampling.BICUBIC)
    back = np.asarray(smaller.resize((64, 48), Image.Resampling.BICUBIC))
    metric = PsnrMetric(PsnrParams())
    value = metric.compare([original], [smaller])[0]["psnr"]
    assert value == pytest.approx(reference_psnr(np.asarray(original), back), abs=1e-9)
    nearest = PsnrMetric(PsnrParams(resize="nearest")).compare([original], [smaller])[0]["psnr"]
    assert nearest != pytest.approx(value)
    assert metric.compare([original], [original.copy()])[0]["psnr"] == 100.0
    assert PsnrMetric(PsnrParams(max_db=60)).compare([original], [original])[0]["psnr"] == 60.0


def gaussian_window(size: int, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def blur(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of an H×W array."""
    rows = np.apply_along_axis(np.convolve, 1, image, window, mode="valid")
    return np.apply_along_axis(np.convolve, 0, rows, window, mode="valid")


def ssim_and_cs(x: np.ndarray, y: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x, window), blur(y, window)
    sxx = blur(x * x, window) - mx**2
    syy = blur(y * y, window) - my**2
    sxy = blur(x * y, window) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return float(np.mean((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs)), float(np.mean(cs))


def reference_ms_ssim(a: Image.Image, b: Image.Image, win_size: int) -> float:
    """MS-SSIM (Wang et al. 2003): contrast-structure at four scales, SSIM at the fifth,
    2×2 mean pooling between scales, mean over the RGB channels (sides stay even here)."""
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    window = gaussian_window(win_size)
    per_channel = []
    for channel in range(3):
        x = np.asarray(a, dtype=np.float64)[..., channel]
        y = np.asarray(b, dtype=np.float64)[..., channel]
        value = 1.0
        for level, weight in enumerate(weights):
            ssim, cs = ssim_and_cs(x, y, window)
            if level == len(weights) - 1:
                value *= max(ssim, 0.0) ** weight
            else:
                value *= max(cs, 0.0) ** weight
                assert x.shape[0] % 2 == 0 and x.shape[1] % 2 == 0
                x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
                y = y.reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2).mean(axis=(1, 3))
        per_channel.append(value)
    return float(np.mean(per_channel))


@pytest.mark.parametrize(("size", "win_size"), [((192, 176), 11), ((64, 48), 3)])
def test_ms_ssim_matches_an_independent_computation(size, win_size):
    metric = MsSsimMetric(MsSsimParams(win_size=win_size), device="cpu")
    originals = [photo(*size, seed) for seed in (1, 2)]
    candidates = [noisy(originals[0], 6), noisy(originals[1], 25, seed=1)]
    values = [v["ms-ssim"] for v in metric.compare(originals, candidates)]
    expected = [
        reference_ms_ssim(a, b, win_size) for a, b in zip(originals, candidates, strict=True)
    ]
    assert values == pytest.approx(expected, abs=2e-5)
    assert 1 > values[0] > values[1] > 0
    assert metric.compare(originals[:1], originals[:1])[0]["ms-ssim"] == pytest.approx(1, abs=1e-5)


def test_ms_ssim_refuses_images_too_small_for_five_scales_pair_by_pair():
    assert min_side(11) == 161 and min_side(3) == 33
    metric = MsSsimMetric(MsSsimParams(), device="cpu")
    big, small = photo(176, 170, 1), photo(160, 200, 2)
    results = metric.compare([small, big], [small, noisy(big, 5)])
    assert isinstance(results[0], ImageError)
    assert "at least 161 px at win_size 11" in str(results[0]) and "160×200" in str(results[0])
    assert 0 < results[1]["ms-ssim"] < 1


def test_ms_ssim_batches_pairs_by_size_with_the_values_of_each_pair_alone(monkeypatch):
    import pytorch_msssim
    import torch

    sizes = [(64, 48), (40, 64), (64, 48), (20, 20), (64, 48), (48, 36), (40, 64)]
    originals = [photo(w, h, seed) for seed, (w, h) in enumerate(sizes)]
    candidates = [noisy(image, 4 + 3 * i, seed=i) for i, image in enumerate(originals)]
    candidates[2] = candidates[2].resize((70, 50))  # resized back to 64×48 first
    candidates[5] = candidates[5].resize((30, 40))

    def alone(original, candidate):  # the library on one pair, as before batching
        if candidate.size != original.size:
            candidate = candidate.resize(original.size, Image.Resampling.BICUBIC)
        x, y = (
            torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)[None]
            for im in (original, candidate)
        )
        return float(pytorch_msssim.ms_ssim(x, y, data_range=255, size_average=False, win_size=3))

    calls = []
    library = pytorch_msssim.ms_ssim

    def counted(x, y, **kwargs):
        calls.append(tuple(x.shape))
        return library(x, y, **kwargs)

    monkeypatch.setattr(pytorch_msssim, "ms_ssim", counted)
    metric = MsSsimMetric(MsSsimParams(win_size=3), device="cpu", batch_size=2)
    results = metric.compare(originals, candidates)
    # one call per size and batch of at most 2: 64×48 ×3 → 2 calls, 40×64 ×2, 48×36 ×1
    assert sorted(calls) == sorted([(2, 3, 48, 64), (1, 3, 48, 64), (2, 3, 64, 40), (1, 3, 36, 48)])
    assert isinstance(results[3], ImageError) and "20×20" in str(results[3])
    for i, (original, candidate) in enumerate(zip(originals, candidates, strict=True)):
        if i != 3:
            assert results[i]["ms-ssim"] == pytest.approx(alone(original, candidate), abs=1e-6)
    single = [metric.compare([o], [c])[0] for o, c in zip(originals, candidates, strict=True)]
    assert str(single[3]) == str(results[3])
    for batched, one in zip(results[:3] + results[4:], single[:3] + single[4:], strict=True):
        assert batched["ms-ssim"] == pytest.approx(one["ms-ssim"], abs=1e-6)
