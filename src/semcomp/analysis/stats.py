"""Statistics with honest uncertainty: bootstrap confidence intervals (scipy)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
#: resampled values a paired bootstrap holds at once (bounds memory for large samples)
PAIRED_CHUNK = 2_000_000


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[..., np.ndarray],
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over ``values`` (NaN with fewer than 2 values).

    Percentile rather than BCa: BCa is undefined for the constant samples that
    small studies produce (e.g. every JPEG of an image rated 10).
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(
            (values,),
            statistic,
            confidence_level=confidence,
            n_resamples=N_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(seed),
            vectorized=True,
        )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def mean_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    return bootstrap_ci(values, lambda x, axis=-1: np.mean(x, axis=axis), seed=seed)


def median_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    return bootstrap_ci(values, lambda x, axis=-1: np.median(x, axis=axis), seed=seed)


def paired_bootstrap_ci(
    x: np.ndarray,
    y: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap CI of a paired statistic, resampling (x, y) pairs together.

    ``statistic(xs, ys)`` is vectorised: it takes ``(resamples, n)`` arrays and
    returns one value per row. Written out rather than ``scipy.stats.bootstrap``
    because resamples on which a correlation is undefined (constant ratings) must
    be dropped, not turn the whole interval into NaN. NaN with fewer than 3 pairs.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rows = max(1, PAIRED_CHUNK // x.size)  # resamples drawn and evaluated at once
    chunks = []
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in range(0, N_RESAMPLES, rows):
            indices = rng.integers(0, x.size, size=(min(rows, N_RESAMPLES - start), x.size))
            chunks.append(np.asarray(statistic(x[indices], y[indices]), dtype=float))
    values = np.concatenate(chunks)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)
