"""Statistics with honest uncertainty: percentile bootstrap confidence intervals.

One draw per ``(n, seed)``: :func:`resample_index_chunks` draws the same
``(N_RESAMPLES, n)`` indices ``scipy.stats.bootstrap`` would
(``default_rng(seed).integers(0, n, (N_RESAMPLES, n))``), and
:func:`resample_counts` turns them, once, into how often each of the ``n``
units is drawn in each resample. Every metric and statistic over ``n`` units
with one seed (means and medians of a summary, Table 1, the correlations of
an agreement table) reads that one draw, so their intervals come from the same
resamples and the draw is paid once.

The statistics are computed from the counts with numpy, all resamples at once:
a mean is one matrix product, a median an order statistic found from
cumulative counts, and Spearman's ρ and Kendall's τ-b over candidates grouped
by image (:func:`rank_correlation_cis`) are computed from weighted ranks, the
weight of a candidate being how often its image was drawn. Each equals the
statistic of the resample written out (candidates of a drawn image repeated
as often as it was drawn); tests compare them with that straightforward
computation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
#: resampled values a paired bootstrap holds at once (bounds memory for large samples)
PAIRED_CHUNK = 2_000_000
#: resample × candidate elements the rank correlations hold at once per array
RANK_CHUNK = 500_000
#: threads computing resampled rank correlations (numpy releases the GIL)
MAX_THREADS = 4
#: above this many candidates in a resample, Spearman's cross sum is added in floating point
EXACT_SPEARMAN_MAX = 1_000_000
#: a resampled median is searched first among the sorted values this many standard
#: deviations (√n / 2) either side of the middle; a resample whose median lies outside
#: (practically never) is counted in full
MEDIAN_WINDOW_SD = 6


def resample_index_chunks(n: int, seed: int, rows: int) -> Iterator[np.ndarray]:
    """The ``(N_RESAMPLES, n)`` resample indices of ``(n, seed)``, ``rows`` resamples at a
    time (the same numbers as one draw of all of them, and as ``scipy.stats.bootstrap``)."""
    rng = np.random.default_rng(seed)
    for start in range(0, N_RESAMPLES, rows):
        yield rng.integers(0, n, size=(min(rows, N_RESAMPLES - start), n))


@lru_cache(maxsize=4)
def resample_counts(n: int, seed: int) -> np.ndarray:
    """``(N_RESAMPLES, n)``: how often each of ``n`` units is drawn in each resample.

    Drawn once per ``(n, seed)`` and shared (read-only) by every statistic over ``n``
    units with that seed. Whole numbers held as float64, so that means are one BLAS
    product with no conversion per statistic.
    """
    counts = np.empty((N_RESAMPLES, n), dtype=np.float64)
    row = 0
    for chunk in resample_index_chunks(n, seed, max(1, PAIRED_CHUNK // max(n, 1))):
        size = len(chunk)
        flat = (chunk + (np.arange(size) * n)[:, None]).ravel()
        counts[row : row + size] = np.bincount(flat, minlength=size * n).reshape(size, n)
        row += size
    counts.flags.writeable = False
    return counts


def percentile_interval(
    statistics: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The percentile interval of resampled statistics; resamples on which the statistic is
    undefined (NaN: a correlation of constant ratings) are left out. NaN if none is left."""
    values = np.asarray(statistics, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def _observed(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[..., np.ndarray],
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over ``values`` (NaN with fewer than 2 values).

    ``statistic(resamples, axis=-1)`` is vectorised over rows of resampled values.
    Percentile rather than BCa: BCa is undefined for the constant samples that
    small studies produce (e.g. every JPEG of an image rated 10).
    """
    values = _observed(values)
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    rows = max(1, PAIRED_CHUNK // values.size)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        resampled = [
            np.asarray(statistic(values[indices], axis=-1), dtype=float)
            for indices in resample_index_chunks(values.size, seed, rows)
        ]
    return percentile_interval(np.concatenate(resampled), confidence)


def _weighted_sums(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``counts @ weights`` (weights: one column or several) in float64."""
    return counts @ np.asarray(weights, dtype=np.float64)


def _window(n: int) -> tuple[int, int]:
    """The sorted positions a resampled median is searched in first."""
    half = int(MEDIAN_WINDOW_SD * np.sqrt(n) / 2) + 2
    return max(0, n // 2 - half), min(n, n // 2 + half + 1)


def _medians(counts: np.ndarray, values: np.ndarray, order: np.ndarray, before: np.ndarray):
    """Each resample's median (as ``np.median`` of the resample written out: the middle
    value, or the mean of the two), given how many draws fall before the window."""
    n = len(values)
    low, high = _window(n)
    window = np.cumsum(np.take(counts, order[low:high], axis=1), axis=1, dtype=np.int64)
    window += before.astype(np.int64)[:, None]
    found = []
    for rank in [(n + 1) // 2] if n % 2 else [n // 2, n // 2 + 1]:  # 1-based, in a resample
        position = low + (window < rank).sum(axis=1)
        outside = np.flatnonzero((before >= rank) | (window[:, -1] < rank))
        for row in outside:  # the median lies outside the window: count this resample in full
            position[row] = np.searchsorted(np.cumsum(counts[row, order], dtype=np.int64), rank)
        found.append(values[order[position]])
    return found[0] if len(found) == 1 else (found[0] + found[1]) / 2


def resampled_means_and_medians(
    samples: list[np.ndarray], seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sample (no NaN), the mean and the median of each of its ``N_RESAMPLES`` resamples.

    Samples of one size share the draw of that size and are computed together: one
    product of the counts with every sample's values (means) and with where each
    sample's middle values begin (medians).
    """
    samples = [np.asarray(values, dtype=float) for values in samples]
    results: list[tuple[np.ndarray, np.ndarray]] = [None] * len(samples)  # type: ignore[list-item]
    by_size: dict[int, list[int]] = {}
    for index, values in enumerate(samples):
        by_size.setdefault(values.size, []).append(index)
    for n, indices in by_size.items():
        counts = resample_counts(n, seed)
        low, _ = _window(n)
        orders = [np.argsort(samples[i], kind="stable") for i in indices]
        columns = np.zeros((n, 2 * len(indices)))
        for column, (i, order) in enumerate(zip(indices, orders, strict=True)):
            columns[:, 2 * column] = samples[i]
            columns[order[:low], 2 * column + 1] = 1  # the values sorted before the window
        sums = _weighted_sums(counts, columns)
        for column, (i, order) in enumerate(zip(indices, orders, strict=True)):
            before = np.rint(sums[:, 2 * column + 1])
            results[i] = (
                sums[:, 2 * column] / n,
                _medians(counts, samples[i], order, before),
            )
    return results


def resampled_means(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """The mean of each of the ``N_RESAMPLES`` resamples of ``values`` (no NaN)."""
    values = np.asarray(values, dtype=float)
    return _weighted_sums(resample_counts(values.size, seed), values) / values.size


def resampled_medians(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """The median of each of the ``N_RESAMPLES`` resamples of ``values`` (no NaN)."""
    return resampled_means_and_medians([values], seed)[0][1]


def mean_and_median_cis(
    samples: list[np.ndarray], seed: int = 0, confidence: float = CONFIDENCE
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Per sample: the percentile bootstrap CIs of its mean and of its median (NaN values
    left out; NaN with fewer than 2 values; a constant sample's own value), all samples of
    one size from one draw (:func:`resampled_means_and_medians`)."""
    observed = [_observed(values) for values in samples]
    varied = [
        i for i, values in enumerate(observed) if values.size >= 2 and np.any(values != values[0])
    ]
    computed = resampled_means_and_medians([observed[i] for i in varied], seed)
    resampled = dict(zip(varied, computed, strict=True))
    out = []
    for index, values in enumerate(observed):
        if index in resampled:
            means, medians = resampled[index]
            out.append(
                (percentile_interval(means, confidence), percentile_interval(medians, confidence))
            )
        elif values.size >= 2:  # constant
            out.append(((values[0], values[0]), (values[0], values[0])))
        else:
            out.append(((np.nan, np.nan), (np.nan, np.nan)))
    return [
        (tuple(map(float, mean)), tuple(map(float, median)))  # type: ignore[misc]
        for mean, median in out
    ]


def mean_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (NaN values left out; the images are the units)."""
    values = _observed(values)
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    return percentile_interval(resampled_means(values, seed))


def median_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the median (NaN values left out; the images are the units)."""
    return mean_and_median_cis([values], seed)[0][1]


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
    returns one value per row. Resamples on which the statistic is undefined
    (constant ratings) are dropped, not turned into a NaN interval. NaN with fewer
    than 3 pairs. Each pair is a unit here; :func:`rank_correlation_cis` resamples
    images (units of several pairs) instead.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3:
        return float("nan"), float("nan")
    rows = max(1, PAIRED_CHUNK // x.size)  # resamples drawn and evaluated at once
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        values = [
            np.asarray(statistic(x[indices], y[indices]), dtype=float)
            for indices in resample_index_chunks(x.size, seed, rows)
        ]
    return percentile_interval(np.concatenate(values), confidence)


# ---- rank correlations over candidates, resampling their images --------------------------


def _tie_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` sorted (stable) and, per sorted position, the index of its tie group."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    group = np.concatenate([[0], np.cumsum(ordered[1:] != ordered[:-1])])
    return order, group


def _membership(units: np.ndarray, groups: np.ndarray, n_units: int, n_groups: int):
    """Sparse ``(units × groups)`` matrix: how many candidates of each unit fall in each group."""
    from scipy.sparse import csr_matrix

    ones = np.ones(len(units), dtype=np.float64)
    return csr_matrix((ones, (units, groups)), shape=(n_units, n_groups))


class _TieSums:
    """Per resample, Σ over tie groups of f(W) where W is the group's weight (how many times
    its candidates occur in the resample), for f(W) = W² − W and W³ − W: single candidates
    summed per unit (a dense product), shared values through a sparse membership matrix."""

    def __init__(self, units: np.ndarray, groups: np.ndarray, n_units: int):
        sizes = np.bincount(groups)
        single = sizes[groups] == 1
        self.single = np.bincount(units[single], minlength=n_units).astype(np.float64)
        shared = ~single
        kept, groups = np.unique(groups[shared], return_inverse=True)
        self.shared = _membership(units[shared], groups, n_units, len(kept)) if len(kept) else None

    def __call__(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = counts.astype(np.float64)
        squares = np.einsum("ij,j->i", c * c - c, self.single)
        cubes = np.einsum("ij,j->i", c * c * c - c, self.single)
        if self.shared is not None:
            w = np.asarray(self.shared.T.dot(c.T)).T  # (resamples, shared groups)
            squares += ((w - 1) * w).sum(axis=1)
            cubes += ((w * w - 1) * w).sum(axis=1)
        return squares.astype(np.int64), cubes.astype(np.int64)


class _RankCorrelations:
    """Spearman's ρ and Kendall's τ-b of resamples of images, from weighted ranks.

    A resample draws images (units) with replacement; the candidates of an image drawn k
    times occur k times. Ranks in such a resample are average ranks over weights: a value's
    rank is the weight of smaller values plus (its tie group's weight + 1) / 2. Sorting is
    done once; each resample only changes the weights.

    ρ = 3 (Σ w·2rx·2ry − N (N+1)²) / √((N³ − N − Tx)(N³ − N − Ty)) with Tx = Σ (W³ − W) over
    tie groups of x. τ-b = (2 C − pairs untied in both) / √(n0 − n1) / √(n0 − n2), as
    scipy's ``kendalltau``, where C, the weight of concordant pairs, is counted by
    dividing the levels of the variable with fewer distinct values in halves (log₂ of
    their number passes) and, within each half-pair, taking cumulative weights of the
    lower half along the other variable.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, units: np.ndarray, n_units: int):
        self.n_units = n_units
        x_order, x_group = _tie_groups(x)
        y_order, y_group = _tie_groups(y)
        x_groups, y_groups = np.empty_like(x_group), np.empty_like(y_group)
        x_groups[x_order], y_groups[y_order] = x_group, y_group
        self.x_ties = _TieSums(units, x_groups, n_units)
        self.y_ties = _TieSums(units, y_groups, n_units)
        joint = np.unique(np.stack([x_groups, y_groups]), axis=1, return_inverse=True)[1]
        self.joint_ties = _TieSums(units, joint.ravel(), n_units)
        # the variable with fewer distinct values gives the levels; the other the order
        if y_group[-1] <= x_group[-1]:
            levels, order_groups, order = y_groups, x_groups, x_order
        else:
            levels, order_groups, order = x_groups, y_groups, y_order
        n_levels = int(levels.max()) + 1
        # Spearman: the ranks of the order variable by cumulative weights along it; those of
        # the levels from level weights
        self.order_units = units[order]
        self.order_groups = order_groups[order]
        starts = np.flatnonzero(np.diff(self.order_groups, prepend=-1))
        self.untied = len(starts) == len(order)
        self.order_ends = np.append(starts[1:] - 1, len(order) - 1)  # each tie group's last
        self.order_levels = levels[order]
        self.level_units = _membership(units, levels, n_units, n_levels)
        # Kendall: per halving pass, candidates sorted by (block, order variable, upper
        # half first among equal values); lower-half weights summed cumulatively
        self.passes = []
        blocks = [(0, n_levels)]
        while blocks:
            block_of = np.full(n_levels, -1)
            middle_of = np.zeros(n_levels, dtype=np.int64)
            for index, (low, high) in enumerate(blocks):
                block_of[low:high] = index
                middle_of[low:high] = (low + high) // 2
            block = block_of[levels]
            inside = np.flatnonzero(block >= 0)
            upper = levels[inside] >= middle_of[levels[inside]]
            sort = np.lexsort((~upper, order_groups[inside], block[inside]))
            members, upper = inside[sort], upper[sort]
            lower_units = np.where(upper, n_units, units[members])
            upper_units = np.where(upper, units[members], n_units)
            member_blocks = block[members]
            starts = np.flatnonzero(np.diff(member_blocks, prepend=-1))
            upper_by_block = _membership(
                units[members[upper]], member_blocks[upper], n_units, len(blocks)
            )
            self.passes.append((lower_units, upper_units, starts, upper_by_block))
            blocks = [
                half
                for low, high in blocks
                for half in ((low, (low + high) // 2), ((low + high) // 2, high))
                if half[1] - half[0] >= 2
            ]

    def __call__(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ρ and τ-b of each resample given its ``(resamples, units)`` counts."""
        counts = np.ascontiguousarray(counts, dtype=np.int64)
        rows = len(counts)
        padded = np.concatenate([counts, np.zeros((rows, 1), dtype=np.int64)], axis=1)
        n = np.einsum("ij,j->i", counts, np.bincount(self.order_units, minlength=self.n_units))
        # ranks (doubled, so they are integers) along the order variable, per candidate
        weights = np.take(counts, self.order_units, axis=1)
        if self.untied:
            tied, ranks = weights, np.cumsum(weights, axis=1)
        else:  # a tie group's weight: the cumulative weight at its end less the last's
            ranks = np.take(np.cumsum(weights, axis=1), self.order_ends, axis=1)
            tied = np.diff(ranks, axis=1, prepend=0)
        ranks *= 2
        ranks -= tied - 1
        if not self.untied:
            ranks = np.take(ranks, self.order_groups, axis=1)
        # ... and of the levels
        level_weights = np.rint(self.level_units.T.dot(counts.T).T).astype(np.int64)
        level_ranks = 2 * np.cumsum(level_weights, axis=1) - level_weights + 1
        ranks *= weights
        if n.max() > EXACT_SPEARMAN_MAX:  # Σ w·2rx·2ry ≤ 4 N³ would overflow int64
            ranks = ranks.astype(np.float64)
            level_ranks = level_ranks.astype(np.float64)
        cross = np.einsum("ij,ij->i", ranks, np.take(level_ranks, self.order_levels, axis=1))
        x_squares, x_cubes = self.x_ties(counts)
        y_squares, y_cubes = self.y_ties(counts)
        n_f = n.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            spearman = (
                3
                * (cross - n_f * (n_f + 1) ** 2)
                / np.sqrt((n_f**3 - n_f - x_cubes) * (n_f**3 - n_f - y_cubes))
            )
        concordant = np.zeros(rows, dtype=np.int64)
        for lower_units, upper_units, starts, upper_by_block in self.passes:
            cumulative = np.cumsum(np.take(padded, lower_units, axis=1), axis=1)
            concordant += np.einsum("ij,ij->i", np.take(padded, upper_units, axis=1), cumulative)
            before = np.concatenate(
                [np.zeros((rows, 1), dtype=np.int64), cumulative[:, starts[1:] - 1]], axis=1
            )
            upper_weights = np.rint(upper_by_block.T.dot(counts.T).T).astype(np.int64)
            concordant -= (before * upper_weights).sum(axis=1)
        pairs = n * (n - 1) // 2
        x_pairs, y_pairs = x_squares // 2, y_squares // 2
        both = self.joint_ties(counts)[0] // 2
        difference = 2 * concordant - (pairs - x_pairs - y_pairs + both)
        with np.errstate(invalid="ignore", divide="ignore"):
            kendall = difference / np.sqrt(pairs - x_pairs) / np.sqrt(pairs - y_pairs)
        kendall = np.minimum(1.0, np.maximum(-1.0, kendall))
        return spearman, kendall


def resampled_rank_correlations(
    x: np.ndarray, y: np.ndarray, units: np.ndarray | None = None, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's ρ and Kendall's τ-b of each of the ``N_RESAMPLES`` resamples of the units.

    ``units`` names the unit (the image) of each (x, y) pair; a resample draws units with
    replacement (the draw of :func:`resample_counts` for the number of units and ``seed``)
    and keeps every pair of each drawn unit, as often as it was drawn. ``None``: each
    pair is its own unit. NaN where a resample's ranks are constant.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    codes, names = (
        (np.arange(len(x)), np.arange(len(x))) if units is None else _codes(np.asarray(units))
    )
    correlations = _RankCorrelations(x, y, codes, len(names))
    counts = resample_counts(len(names), seed)
    rows = max(1, RANK_CHUNK // max(len(x), 1))
    chunks = [counts[start : start + rows] for start in range(0, len(counts), rows)]
    workers = min(len(chunks), os.cpu_count() or 1, MAX_THREADS)
    if workers > 1:  # numpy releases the GIL in take, cumsum and einsum
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(correlations, chunks))
    else:
        parts = [correlations(chunk) for chunk in chunks]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
    )


def _codes(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    codes, names = pd.factorize(units, sort=True)
    return codes.astype(np.int64), np.asarray(names)


def rank_correlation_cis(
    x: np.ndarray,
    y: np.ndarray,
    units: np.ndarray | None = None,
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of Spearman's ρ and Kendall's τ-b (``{"spearman": (low,
    high), "kendall": ...}``) over one draw of the units (see
    :func:`resampled_rank_correlations`); NaN with fewer than 3 pairs or 2 units."""
    x = np.asarray(x, dtype=float)
    n_units = len(np.unique(units)) if units is not None else len(x)
    if x.size < 3 or n_units < 2:
        return {"spearman": (np.nan, np.nan), "kendall": (np.nan, np.nan)}
    spearman, kendall = resampled_rank_correlations(x, y, units, seed=seed)
    return {
        "spearman": percentile_interval(spearman, confidence),
        "kendall": percentile_interval(kendall, confidence),
    }
