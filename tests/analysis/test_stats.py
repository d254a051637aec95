"""Bootstrap CIs: one draw per (n, seed), the image as the unit, vectorised statistics equal
to the resample written out and computed one resample at a time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap, kendalltau, spearmanr

from semcomp.analysis import stats


def reference_indices(n: int, seed: int) -> np.ndarray:
    """The resamples, written the plain way: N_RESAMPLES rows of n indices from one rng."""
    return np.random.default_rng(seed).integers(0, n, size=(stats.N_RESAMPLES, n))


def reference_interval(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    alpha = (1 - 0.95) / 2  # as scipy.stats.bootstrap writes it (not quite 0.025)
    return tuple(np.quantile(values, [alpha, 1 - alpha]))


def test_resample_counts_are_the_one_draw_of_indices_and_are_shared():
    stats.resample_counts.cache_clear()
    counts = stats.resample_counts(37, 5)
    indices = reference_indices(37, 5)
    expected = np.stack([np.bincount(row, minlength=37) for row in indices])
    assert np.array_equal(counts, expected)
    assert stats.resample_counts(37, 5) is counts  # drawn once per (n, seed)
    assert not counts.flags.writeable
    values = np.random.default_rng(0).normal(size=37)
    stats.mean_ci(values, 5), stats.median_ci(values, 5), stats.median_ci(values + 1, 5)
    assert stats.resample_counts.cache_info().misses == 1  # every statistic read that draw


@pytest.mark.parametrize("n", [2, 7, 100, 101, 1000])
def test_means_and_medians_equal_the_resamples_written_out(n):
    values = np.round(np.random.default_rng(n).normal(5, 2, n), 1)  # ties, as ratings have
    indices = reference_indices(n, 3)
    medians = [np.median(values[row]) for row in indices]
    means = [np.mean(values[row]) for row in indices]
    assert np.array_equal(stats.resampled_medians(values, 3), medians)
    assert np.allclose(stats.resampled_means(values, 3), means, rtol=1e-13, atol=0)
    assert stats.median_ci(values, 3) == reference_interval(medians)
    assert stats.mean_ci(values, 3) == pytest.approx(reference_interval(means), rel=1e-13)


def test_a_median_outside_the_searched_window_is_counted_in_full(monkeypatch):
    monkeypatch.setattr(stats, "MEDIAN_WINDOW_SD", 0)  # window of 5 values around the middle
    values = np.random.default_rng(1).normal(size=400)
    indices = reference_indices(400, 0)
    assert np.array_equal(
        stats.resampled_medians(values, 0), [np.median(values[row]) for row in indices]
    )


def test_mean_and_median_cis_match_scipy_bootstrap_and_skip_missing_values():
    values = np.array([3.0, 5, 9, np.nan, 8, 8, 7, 1, 2, 2, 6, 10])
    observed = values[~np.isnan(values)]
    for ours, statistic in ((stats.mean_ci, np.mean), (stats.median_ci, np.median)):
        expected = bootstrap(
            (observed,),
            statistic,
            n_resamples=stats.N_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(11),
        ).confidence_interval
        assert ours(values, 11) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert stats.mean_ci(np.array([4.0, 4.0, np.nan]), 0) == (4.0, 4.0)
    assert np.isnan(stats.median_ci(np.array([4.0, np.nan]), 0)).all()


@pytest.fixture
def fewer_resamples(monkeypatch):
    """500 resamples: the reference computes each with scipy, one at a time."""
    stats.resample_counts.cache_clear()
    monkeypatch.setattr(stats, "N_RESAMPLES", 500)
    yield
    stats.resample_counts.cache_clear()


def clustered(images: int, seed: int, *, continuous: bool = False):
    """Candidates of images (1–5 per image): rounded scores against 1–10 ratings, so both
    sides have ties; ``continuous``: no ties on either side."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(images), rng.integers(1, 6, images))
    x = rng.uniform(0, 1, len(units))
    y = x * 9 + 1 + rng.normal(0, 2, len(units))
    if not continuous:
        x, y = np.round(x, 1), np.clip(np.round(y), 1, 10)
    names = np.array([f"img{u:03d}" for u in units])  # images named, in no particular order
    shuffle = rng.permutation(len(units))
    return x[shuffle], y[shuffle], names[shuffle]


def reference_correlations(x, y, names, seed):
    """Each resample written out: the candidates of every drawn image (sorted names), as often
    as it was drawn, then scipy's spearmanr and kendalltau one resample at a time."""
    images = np.unique(names)
    members = [np.flatnonzero(names == image) for image in images]
    spearman, kendall = [], []
    for row in reference_indices(len(images), seed):
        chosen = np.concatenate([members[i] for i in row])
        spearman.append(spearmanr(x[chosen], y[chosen]).statistic)
        kendall.append(kendalltau(x[chosen], y[chosen]).statistic)
    return np.array(spearman), np.array(kendall)


@pytest.mark.parametrize(
    ("images", "continuous", "swap"),
    [(40, False, False), (40, False, True), (25, True, False), (4, False, False)],
)
def test_rank_correlations_resample_images_and_equal_scipy_on_each_resample(
    images, continuous, swap, fewer_resamples
):
    """Ties on both sides (levels from the ratings, or from the scores when swapped), no ties
    at all (as many levels as candidates), and 4 images (resamples with constant ratings:
    undefined, NaN in both)."""
    x, y, names = clustered(images, images, continuous=continuous)
    if swap:
        x, y = y, x
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_spearman, expected_kendall = reference_correlations(x, y, names, seed=9)
    spearman, kendall = stats.resampled_rank_correlations(x, y, names, seed=9)
    assert np.array_equal(kendall, expected_kendall, equal_nan=True)  # identical numbers
    assert np.array_equal(np.isnan(spearman), np.isnan(expected_spearman))
    assert np.allclose(spearman, expected_spearman, rtol=0, atol=1e-12, equal_nan=True)
    intervals = stats.rank_correlation_cis(x, y, names, seed=9)
    assert intervals["kendall"] == reference_interval(expected_kendall)
    assert intervals["spearman"] == pytest.approx(reference_interval(expected_spearman), abs=1e-12)


def test_rank_correlations_in_many_chunks_and_threads_equal_one_chunk(monkeypatch, fewer_resamples):
    x, y, names = clustered(60, 2)
    whole = stats.resampled_rank_correlations(x, y, names, seed=1)
    monkeypatch.setattr(stats, "RANK_CHUNK", 1)  # one resample per chunk, in a thread pool
    monkeypatch.setattr(stats, "MAX_THREADS", 2)
    monkeypatch.setattr(stats.os, "cpu_count", lambda: 2)
    chunked = stats.resampled_rank_correlations(x, y, names, seed=1)
    assert np.array_equal(whole[1], chunked[1], equal_nan=True)
    assert np.allclose(whole[0], chunked[0], rtol=0, atol=1e-15, equal_nan=True)


def test_without_units_each_pair_is_resampled_on_its_own(fewer_resamples):
    x, y, _ = clustered(30, 4)
    indices = reference_indices(len(x), 2)
    expected = [kendalltau(x[row], y[row]).statistic for row in indices]
    assert np.array_equal(stats.resampled_rank_correlations(x, y, seed=2)[1], expected)


def test_samples_summarised_together_equal_each_on_its_own():
    """A summary's metrics and statistics over the same number of images share one draw."""
    rng = np.random.default_rng(6)
    samples = [
        rng.normal(size=50),
        np.round(rng.normal(5, 1, 50)),
        np.append(rng.normal(size=49), np.nan),  # 49 values: their own draw
        np.full(50, 7.0),  # constant: its own value
        np.array([1.0, np.nan]),  # too few: NaN
    ]
    together = stats.mean_and_median_cis(samples, 8)
    for values, (mean, median) in zip(samples[:4], together, strict=False):
        assert mean == pytest.approx(stats.mean_ci(values, 8), rel=1e-13)
        assert median == stats.median_ci(values, 8)
        indices = reference_indices(int(np.isfinite(values).sum()), 8)
        observed = values[np.isfinite(values)]
        if np.ptp(observed) > 0:
            assert median == reference_interval([np.median(observed[row]) for row in indices])
    assert together[3] == ((7.0, 7.0), (7.0, 7.0))
    assert np.isnan(together[4]).all()
