"""Agreement between model similarity (CLIP) and human ratings.

Rank correlations — Spearman's ρ and Kendall's τ-b, because ratings are
ordinal and CLIP cosines are not on the rating scale — between one model metric
and one human metric over the candidates that have both, overall and per
method, with paired percentile-bootstrap 95 % CIs (resampling candidates).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from semcomp.analysis.rd import clip_metrics, human_metrics
from semcomp.analysis.stats import paired_bootstrap_ci

MISSING_HUMAN = "no human ratings in this study yet: agreement needs `human.*` scores"
MISSING_CLIP = "no CLIP similarity scores in this study yet: run `semcomp run STUDY`"
ALL = "all methods"


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ as the Pearson correlation of average ranks (what scipy computes)."""
    from scipy.stats import rankdata

    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def _correlations(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    row: dict[str, float] = {"n": len(x)}
    constant = len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, function, test in (
            ("spearman", _spearman, spearmanr),
            ("kendall", _kendall, kendalltau),
        ):
            if constant:
                row[name] = row[f"{name}_p"] = np.nan
                row[f"{name}_ci_low"] = row[f"{name}_ci_high"] = np.nan
                continue
            result = test(x, y)
            row[name], row[f"{name}_p"] = float(result.statistic), float(result.pvalue)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = paired_bootstrap_ci(
                x, y, function, seed=seed
            )
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
    the number of candidates with both scores. Empty when either is missing.
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
                **_correlations(x, y, seed),
            }
        )
    return pd.DataFrame(rows)
