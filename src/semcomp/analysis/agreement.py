"""Agreement between metrics (CLIP, PSNR, LPIPS, ...) and human ratings.

Rank correlations — Spearman's ρ and Kendall's τ-b, because ratings are
ordinal and metrics are not on the rating scale — between one model metric
and one human metric over the candidates that have both, overall and per
method, with percentile-bootstrap 95 % CIs that resample images: the candidates
of one original are not independent, so a resample draws originals and keeps all
their candidates (:func:`semcomp.analysis.stats.rank_correlation_cis`).
:func:`metric_agreement` does it for every per-candidate metric, so a table
shows which metric tracks Survey A best: a lower-is-better metric (LPIPS,
DISTS) is negated first (``oriented``), so a positive correlation always
means the metric agrees with people. Set metrics (FID, KID) have one value per
operating point, not per candidate, and are not correlated here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from semcomp.analysis.rd import SATISFACTION_PREFIX, clip_metrics, human_metrics
from semcomp.analysis.scores import Scores, describe
from semcomp.analysis.stats import rank_correlation_cis

MISSING_HUMAN = "no human ratings in this study yet: agreement needs `human.*` scores"
MISSING_CLIP = "no metric scores per candidate in this study yet: run `semcomp run STUDY`"
ALL = "all methods"
#: what ``oriented`` means in an agreement table
ORIENTED_NOTE = (
    "oriented: a lower-is-better metric is negated before correlating, so a positive "
    "Spearman ρ or Kendall τ always means the metric agrees with the human ratings"
)


def spearman_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair: Pearson's r of average ranks (as scipy defines it)."""
    from scipy.stats import rankdata

    rx = rankdata(xs, axis=-1)
    ry = rankdata(ys, axis=-1)
    rx -= rx.mean(axis=-1, keepdims=True)
    ry -= ry.mean(axis=-1, keepdims=True)
    return (rx * ry).sum(-1) / np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))


#: pair-comparison elements per chunk of the vectorised Kendall τ (bounds memory)
KENDALL_CHUNK = 8_000_000
#: above this many pairs, τ is computed row by row with scipy's O(n log n) ``kendalltau``
#: instead of comparing all n² pairs at once
KENDALL_VECTORISED_MAX = 500


def kendall_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row pair (ties handled as scipy's ``kendalltau``).

    Short rows compare every pair at once (vectorised, O(n²) memory per row);
    rows longer than :data:`KENDALL_VECTORISED_MAX` go through scipy one at a
    time (O(n log n)), so a bootstrap of thousands of candidates stays fast and small.
    """
    xs, ys = np.atleast_2d(xs), np.atleast_2d(ys)
    n = xs.shape[1]
    out = np.empty(len(xs))
    if n > KENDALL_VECTORISED_MAX:
        from scipy.stats import kendalltau

        for row, (x, y) in enumerate(zip(xs, ys, strict=True)):
            out[row] = kendalltau(x, y).statistic
        return out
    upper = np.triu_indices(n, k=1)
    rows = max(1, KENDALL_CHUNK // max(1, len(upper[0])))
    for start in range(0, len(xs), rows):
        x, y = xs[start : start + rows], ys[start : start + rows]
        dx = np.sign(x[:, upper[0]] - x[:, upper[1]])
        dy = np.sign(y[:, upper[0]] - y[:, upper[1]])
        concordance = (dx * dy).sum(-1)
        untied_x, untied_y = (dx != 0).sum(-1), (dy != 0).sum(-1)
        out[start : start + rows] = concordance / np.sqrt(untied_x * untied_y)
    return out


#: rows of :func:`_correlations` already computed, by :func:`_rank_key`
_COMPUTED: dict[bytes, dict[str, float]] = {}
#: how many such rows are kept (the oldest go first)
COMPUTED_MAX = 64


def _rank_key(x: np.ndarray, y: np.ndarray, seed: int, units: np.ndarray | None) -> bytes:
    """What ρ, τ-b, their p-values and their CIs depend on: the order of ``x`` and of ``y``
    with their ties (dense ranks), which pairs share a unit, and the seed — not the values
    themselves. A metric and an increasing transform of it (CLIP's cosine and its
    (cos + 1) / 2) have the same key and the same correlations, to the last bit."""
    import hashlib

    digest = hashlib.blake2b(f"{len(x)}|{seed}|{units is None}|".encode(), digest_size=32)
    columns = [x, y] if units is None else [x, y, pd.factorize(units, sort=True)[0]]
    for values in columns:
        digest.update(np.unique(values, return_inverse=True)[1].astype(np.int64).tobytes())
    return digest.digest()


def _correlations(
    x: np.ndarray, y: np.ndarray, seed: int, units: np.ndarray | None = None
) -> dict[str, float]:
    """ρ and τ-b with their p-values and CIs; the CIs resample ``units`` (the original of
    each candidate; ``None``: each candidate on its own), one draw for both.

    Computed once per :func:`_rank_key`: the bootstrap of a second metric that orders
    the candidates as a first one did (a rescaled CLIP score) is not run again."""
    key = _rank_key(x, y, seed, units)
    if key not in _COMPUTED:
        if len(_COMPUTED) >= COMPUTED_MAX:
            del _COMPUTED[next(iter(_COMPUTED))]
        _COMPUTED[key] = _computed_correlations(x, y, seed, units)
    return dict(_COMPUTED[key])


def _computed_correlations(
    x: np.ndarray, y: np.ndarray, seed: int, units: np.ndarray | None
) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    row: dict[str, float] = {"n": len(x)}
    constant = len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0])
    intervals = {} if constant else rank_correlation_cis(x, y, units, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, test in (("spearman", spearmanr), ("kendall", kendalltau)):
            if constant:
                row[name] = row[f"{name}_p"] = np.nan
                row[f"{name}_ci_low"] = row[f"{name}_ci_high"] = np.nan
                continue
            result = test(x, y)
            row[name], row[f"{name}_p"] = float(result.statistic), float(result.pvalue)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = intervals[name]
    return row


def agreement(
    points: pd.DataFrame,
    model_metric: str | None = None,
    human_metric: str | None = None,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman and Kendall correlations (with CIs) between a model and a human metric.

    Defaults: the first CLIP metric and the first human metric of the table.
    One row overall (``method == "all methods"``) and one per method; ``n`` is
    the number of candidates with both scores, ``originals`` the images they show.
    The CIs resample those images (each candidate on its own without an
    ``original_id`` column). Empty when either is missing.
    """
    model_metric = model_metric or next(iter(clip_metrics(points)), None)
    human_metric = human_metric or next(iter(human_metrics(points)), None)
    if model_metric is None or human_metric is None:
        return pd.DataFrame()
    both = points.dropna(subset=[model_metric, human_metric])
    groups = [(ALL, both), *both.groupby("method")]
    rows = []
    for method, group in groups:
        x = group[model_metric].to_numpy(dtype=float)
        y = group[human_metric].to_numpy(dtype=float)
        rows.append(
            {
                "method": method,
                "model_metric": model_metric,
                "human_metric": human_metric,
                **(
                    {"originals": int(group["original_id"].nunique())}
                    if "original_id" in group
                    else {}
                ),
                **_correlations(
                    x,
                    y,
                    seed,
                    group["original_id"].to_numpy() if "original_id" in group else None,
                ),
            }
        )
    return pd.DataFrame(rows)


def default_human_metric(points: pd.DataFrame, scores: Scores | None = None) -> str | None:
    """The human metric agreement is measured against: Survey A satisfaction (median
    rating) when imported, else the first human metric."""
    humans = human_metrics(points, scores)
    return next((m for m in humans if m.startswith(SATISFACTION_PREFIX)), None) or next(
        iter(humans), None
    )


def oriented_agreement(
    points: pd.DataFrame,
    metric: str,
    human_metric: str,
    *,
    scores: Scores | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`agreement` of one metric, turned to its direction (see :data:`ORIENTED_NOTE`)
    and labelled: ``display``, ``higher_is_better`` and ``oriented`` columns after
    ``model_metric``. Empty for a set metric or a metric without scores."""
    info = describe(points, scores)[metric]
    if info.is_set or metric not in points or human_metric not in points:
        return pd.DataFrame()
    values = points if info.higher_is_better else points.assign(**{metric: -points[metric]})
    table = agreement(values, metric, human_metric, seed=seed)
    if table.empty:
        return table
    at = table.columns.get_loc("model_metric") + 1
    for offset, (name, value) in enumerate(
        (
            ("display", info.display),
            ("higher_is_better", info.higher_is_better),
            ("oriented", not info.higher_is_better),
        )
    ):
        table.insert(at + offset, name, value)
    return table


def metric_agreement(
    points: pd.DataFrame,
    human_metric: str | None = None,
    metrics: list[str] | None = None,
    *,
    scores: Scores | None = None,
    seed: int = 0,
    per_method: bool = False,
) -> pd.DataFrame:
    """Every per-candidate metric's agreement with ``human_metric`` (default
    :func:`default_human_metric`): one row per metric (over all methods; and per method
    with ``per_method``), ordered by how well the metric agrees (oriented Spearman ρ).

    ``metrics`` defaults to every model metric of ``scores``; each uses the candidates
    that have both its score and the rating (``n`` per row). Empty without a human metric.
    """
    scores = describe(points, scores)
    human_metric = human_metric or default_human_metric(points, scores)
    if human_metric is None:
        return pd.DataFrame()
    tables = [
        oriented_agreement(points, metric, human_metric, scores=scores, seed=seed)
        for metric in (metrics if metrics is not None else scores.model(points))
    ]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    if not per_method:
        table = table[table["method"] == ALL]
    rank = table[table["method"] == ALL].set_index("model_metric")["spearman"]
    order = {
        m: i for i, m in enumerate(rank.sort_values(ascending=False, na_position="last").index)
    }
    table = table.assign(_order=table["model_metric"].map(order), _all=table["method"] != ALL)
    return (
        table.sort_values(["_order", "_all"], kind="stable")
        .drop(columns=["_order", "_all"])
        .reset_index(drop=True)
    )
