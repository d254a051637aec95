"""Comparing rate–distortion curves: iso-satisfaction, the Pareto front, BD-rate.

All three work on the tables of :mod:`semcomp.analysis.rd` — per-candidate
points (``rd_points``) or per-operating-point summaries (``summarise``) — for
any metric (CLIP, PSNR, LPIPS, FID, human ratings) and any rate unit (bytes,
bits, bpp), in the metric's direction: ``higher_is_better=False`` (LPIPS, DISTS,
FID) makes the front minimise the score, "reaching a level" mean scoring at or
below it, and BD-rate compare rates at equal quality all the same.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from semcomp.analysis.rd import SATISFACTION_PREFIX, rate_column
from semcomp.errors import AnalysisError

#: what identifies an image (``original_id``) and what names it for people
IMAGE_COLUMNS = ["original_id", "original", "category"]
#: operating points per curve that BD-rate's piecewise-cubic fit needs (the classic four)
BD_MIN_POINTS = 4
#: the least share of the two curves' combined similarity range that both must cover for
#: BD-rate to mean something (the ``bjontegaard`` package's ``min_overlap`` default)
BD_MIN_OVERLAP = 0.75


#: the textual-transform paper's iso-satisfaction level (median Survey A rating, 1–10)
PAPER_ISO_LEVEL = 8.5


def default_iso_level(points: pd.DataFrame, metric: str) -> float:
    """8.5 for the Survey A satisfaction index (the paper's Fig. 3), else the metric's median.

    The median of all candidates' scores is a level that some methods reach
    and others do not, whatever the metric's scale.
    """
    if metric.startswith(SATISFACTION_PREFIX):
        return PAPER_ISO_LEVEL
    values = points[metric].dropna() if metric in points else pd.Series(dtype=float)
    return float(values.median()) if not values.empty else float("nan")


def per_image_points(points: pd.DataFrame, metric: str, rate: str = "bytes") -> pd.DataFrame:
    """One row per original × method × operating point: mean rate and ``metric``.

    Replicates (diffusion seeds) and caption variants of one operating point are
    averaged, so an image "reaches" a level when its candidates do on average.
    Originals are told apart by ``original_id``: two files may share a name
    (``landscape/1.jpg`` and ``person/1.jpg``).
    """
    column = rate_column(rate)
    usable = points.dropna(subset=[column, metric])
    if usable.empty:
        return pd.DataFrame(columns=[*IMAGE_COLUMNS, "method", "operating_point", column, metric])
    return (
        usable.groupby([*IMAGE_COLUMNS, "method", "operating_point"], as_index=False)
        .agg({column: "mean", metric: "mean"})
        .sort_values(["original", "original_id", "method", column])
        .reset_index(drop=True)
    )


def reaches(values, level: float, higher_is_better: bool = True):
    """Whether ``values`` reach ``level``: at or above it, or at or below it for a
    lower-is-better metric."""
    return values >= level if higher_is_better else values <= level


def iso_satisfaction(
    points: pd.DataFrame,
    metric: str,
    level: float,
    rate: str = "bytes",
    *,
    higher_is_better: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The smallest rate at which each method reaches ``metric ≥ level`` (``≤`` for a
    lower-is-better metric).

    As the magenta iso-satisfaction curve of the textual-transform paper's
    Fig. 3: per image, the cheapest operating point of each method whose
    (replicate-averaged) score reaches the level; per method, how many images
    reach it, the median and smallest of those per-image rates, and the
    smallest mean rate of an operating point whose mean score reaches it.

    Returns ``(per_image, per_method)``; rates are NaN where the level is never reached.
    """
    column = rate_column(rate)
    images = per_image_points(points, metric, rate)
    reached = images[reaches(images[metric], level, higher_is_better)]
    cheapest = (
        reached.sort_values(column)
        .groupby(["original_id", "method"], as_index=False)
        .first()
        .rename(columns={column: f"min_{column}"})
    )
    every = images[[*IMAGE_COLUMNS, "method"]].drop_duplicates()
    per_image = every.merge(
        cheapest[["original_id", "method", "operating_point", f"min_{column}", metric]],
        on=["original_id", "method"],
        how="left",
    ).sort_values(["method", "original", "original_id"])
    rows = []
    for method, group in images.groupby("method"):
        per_point = group.groupby("operating_point").agg({column: "mean", metric: "mean"})
        passing = per_point[reaches(per_point[metric], level, higher_is_better)]
        mins = per_image.loc[per_image["method"] == method, f"min_{column}"]
        rows.append(
            {
                "method": method,
                "level": level,
                "images": int(group["original_id"].nunique()),
                "images_reaching": int(mins.notna().sum()),
                "share_reaching": float(mins.notna().mean()) if len(mins) else np.nan,
                f"median_min_{column}": float(mins.median()) if mins.notna().any() else np.nan,
                f"smallest_min_{column}": float(mins.min()) if mins.notna().any() else np.nan,
                f"curve_{column}": float(passing[column].min()) if not passing.empty else np.nan,
                "curve_operating_point": passing[column].idxmin() if not passing.empty else None,
            }
        )
    per_method = pd.DataFrame(rows)
    return per_image.reset_index(drop=True), per_method


def metric_iso_satisfaction(
    points: pd.DataFrame,
    metric: str,
    rate: str = "bytes",
    *,
    higher_is_better: bool = True,
    display: str | None = None,
) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    """:func:`iso_satisfaction` of ``metric`` at its :func:`default_iso_level`, labelled as
    one metric's block of a table that holds several: columns ``metric``, ``display``,
    ``higher_is_better`` and ``reaching`` ("at or above" the level, or "at or below" it for
    a lower-is-better metric).

    Returns ``(level, per_image, per_method)``; the level is NaN (and both tables empty)
    where ``points`` hold no ``metric`` score.
    """
    level = default_iso_level(points, metric)
    if not np.isfinite(level):
        return level, pd.DataFrame(), pd.DataFrame()
    per_image, per_method = iso_satisfaction(
        points, metric, level, rate, higher_is_better=higher_is_better
    )
    per_method = per_method.assign(
        display=display or metric,
        higher_is_better=higher_is_better,
        reaching="at or above" if higher_is_better else "at or below",
    )
    return level, per_image.assign(metric=metric), per_method.assign(metric=metric)


def curve_crossings(
    summary: pd.DataFrame,
    level: float,
    score_col: str,
    rate_col: str,
    *,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """Where each method's drawn curve first reaches ``level``, in increasing rate
    (reaching: at or above it, or at or below it for a lower-is-better metric).

    The curve is the method's operating points (``summary`` rows) by mean rate, joined
    by straight segments on a log rate axis as the charts draw them; the crossing is
    interpolated on the segment into the first point at or above ``level`` (that point
    itself when the curve starts above). Columns: method, rate, operating_point (the
    first point reaching it). Methods that never reach ``level`` are left out.
    """
    rows = []
    usable = summary.dropna(subset=[rate_col, score_col])
    for method, curve in usable[usable[rate_col] > 0].groupby("method"):
        curve = curve.sort_values(rate_col)
        rates = np.log(curve[rate_col].to_numpy(dtype=float))
        scores = curve[score_col].to_numpy(dtype=float)
        reached = np.flatnonzero(reaches(scores, level, higher_is_better))
        if not reached.size:
            continue
        first = reached[0]
        rate = float(curve[rate_col].iloc[first])
        if first > 0:  # scores[first - 1] < level <= scores[first]
            share = (level - scores[first - 1]) / (scores[first] - scores[first - 1])
            rate = float(np.exp(rates[first - 1] + share * (rates[first] - rates[first - 1])))
        rows.append(
            {
                "method": method,
                "rate": rate,
                "operating_point": curve["operating_point"].iloc[first],
            }
        )
    return pd.DataFrame(rows, columns=["method", "rate", "operating_point"])


def iso_markers(
    per_method: pd.DataFrame,
    summary: pd.DataFrame,
    metric: str,
    level: float,
    rate: str,
    *,
    aggregated: bool,
    higher_is_better: bool = True,
    score_col: str | None = None,
) -> pd.DataFrame:
    """Where a chart marks each method on the iso-satisfaction line: ``method``, ``rate``,
    ``label``.

    Over aggregated curves, where the drawn mean curve crosses the level
    (:func:`curve_crossings`); over per-image points, the median over images of the
    smallest rate at which each image reaches it (``per_method`` from
    :func:`iso_satisfaction`). ``score_col`` is the summary's column of the curve
    (default ``{metric} mean``; a set metric's is ``{metric} value``).
    """
    if aggregated:
        crossings = curve_crossings(
            summary,
            level,
            score_col or f"{metric} mean",
            rate_column(rate, summary=True),
            higher_is_better=higher_is_better,
        )
        labels = [
            f"{m}: mean curve reaches {level:g} at {r:.4g} (first point: {p})"
            for m, r, p in crossings.itertuples(index=False)
        ]
        return crossings[["method", "rate"]].assign(label=labels)
    column = f"median_min_{rate_column(rate)}"
    reached = per_method.dropna(subset=[column])
    labels = [
        f"{row.method}: median over the {row.images_reaching} of {row.images} images reaching "
        f"{level:g} of their smallest rate, {getattr(row, column):.4g}"
        for row in reached.itertuples(index=False)
    ]
    return pd.DataFrame({"method": reached["method"], "rate": reached[column], "label": labels})


def pareto_front(
    frame: pd.DataFrame, rate_col: str, metric: str, *, higher_is_better: bool = True
) -> pd.DataFrame:
    """Rows no other row beats: none has a lower-or-equal rate with a better score
    (higher, or lower for a lower-is-better metric: the front then minimises it).

    Works on points or summaries across methods; returned in increasing rate.
    """
    usable = frame.dropna(subset=[rate_col, metric]).sort_values(
        [rate_col, metric], ascending=[True, not higher_is_better]
    )
    sign = 1.0 if higher_is_better else -1.0
    keep, best = [], -np.inf
    for position, score in enumerate(usable[metric]):
        score = sign * score
        if score > best:
            keep.append(position)
            best = score
    return usable.iloc[keep]


def _bd_curves(
    summary: pd.DataFrame,
    anchor: str,
    test: str,
    metric: str,
    rate: str,
    statistic: str,
    higher_is_better: bool,
    fronts: dict | None = None,
) -> tuple[str, str, dict[str, pd.DataFrame]]:
    """Each method's efficient operating points (its own Pareto front, with at least
    :data:`BD_MIN_POINTS`), or :class:`AnalysisError` saying why BD-rate is undefined.
    ``fronts`` keeps each method's front for later calls on the same ``summary``."""
    rate_col = rate_column(rate, summary=True)
    score_col = f"{metric} {statistic}"
    if score_col not in summary.columns:
        raise AnalysisError(f"no {statistic} of {metric} in the summary")
    fronts = {} if fronts is None else fronts
    curves = {}
    for method in (anchor, test):
        key = (method, rate_col, score_col, higher_is_better)
        if key not in fronts:
            rows = summary[summary["method"] == method].dropna(subset=[rate_col, score_col])
            fronts[key] = pareto_front(
                rows[rows[rate_col] > 0], rate_col, score_col, higher_is_better=higher_is_better
            )
        rows = fronts[key]
        if len(rows) < BD_MIN_POINTS:
            better = "rising" if higher_is_better else "falling"
            raise AnalysisError(
                f"BD-rate needs at least {BD_MIN_POINTS} efficient operating points per method "
                f"({metric} {better} with rate); {method!r} has {len(rows)} with a rate and a "
                f"{metric} score"
            )
        curves[method] = rows
    return rate_col, score_col, curves


def bd_rate(
    summary: pd.DataFrame,
    anchor: str,
    test: str,
    metric: str,
    rate: str = "bpp",
    *,
    statistic: str = "mean",
    interpolation: str = "pchip",
    higher_is_better: bool = True,
    fronts: dict | None = None,
) -> float:
    """Bjøntegaard-delta rate (%) of method ``test`` against ``anchor`` on ``metric``.

    Uses the ``bjontegaard`` package on each method's efficient operating points
    (``summary`` from :func:`semcomp.analysis.rd.summarise`): the method's own
    Pareto front, since a setting that costs more for a worse score is one
    nobody would choose and BD-rate's interpolation needs the score strictly
    improving with rate. The sign convention is the same for every metric:
    negative means ``test`` needs fewer bits for the same score. A lower-is-better
    metric (``higher_is_better=False``: LPIPS, FID) is negated before the fit, so
    "the same score" and "efficient" follow its direction. ``statistic`` is the
    summary column's suffix (``mean``, ``median``; ``value`` for a set metric).
    Raises :class:`AnalysisError` when a curve has too few points, is not monotone
    enough to invert, or the curves' score ranges overlap over less than
    :data:`BD_MIN_OVERLAP` of their combined range. ``fronts`` (a dict, empty at first)
    keeps each method's efficient points between calls on the same ``summary``, as for
    every pair of methods of a table.
    """
    import bjontegaard

    rate_col, score_col, curves = _bd_curves(
        summary, anchor, test, metric, rate, statistic, higher_is_better, fronts
    )
    sign = 1.0 if higher_is_better else -1.0
    oriented = {m: sign * curves[m][score_col].to_numpy(dtype=float) for m in curves}
    low = max(oriented[m].min() for m in curves)
    high = min(oriented[m].max() for m in curves)
    if high <= low:
        raise AnalysisError(
            f"the {metric} ranges of {anchor!r} and {test!r} do not overlap; BD-rate compares "
            "rates at equal scores, so it is undefined here"
        )
    lowest = min(oriented[m].min() for m in curves)
    highest = max(oriented[m].max() for m in curves)
    overlap = (high - low) / (highest - lowest)
    if overlap < BD_MIN_OVERLAP:
        shown = sorted((sign * low, sign * high)), sorted((sign * lowest, sign * highest))
        raise AnalysisError(
            f"the {metric} ranges of {anchor!r} and {test!r} overlap over only {overlap:.0%} "
            f"of their combined range ({shown[0][0]:.4g} to {shown[0][1]:.4g} of "
            f"{shown[1][0]:.4g} to {shown[1][1]:.4g}); BD-rate needs {BD_MIN_OVERLAP:.0%}, "
            "or it averages over a sliver of the curves"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap checked above; the rest become errors below
        try:
            value = bjontegaard.bd_rate(
                curves[anchor][rate_col].to_numpy(),
                oriented[anchor],
                curves[test][rate_col].to_numpy(),
                oriented[test],
                method=interpolation,
                require_matching_points=False,
                min_overlap=BD_MIN_OVERLAP,
            )
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            raise AnalysisError(
                f"BD-rate of {test!r} against {anchor!r} failed: {exc} (BD-rate needs each "
                "curve's score to improve strictly with rate)"
            ) from exc
    if not np.isfinite(value):
        raise AnalysisError(
            f"BD-rate of {test!r} against {anchor!r} on {metric} is not finite "
            "(a curve's score is not monotone in rate)"
        )
    return float(value)


def bd_metric(
    summary: pd.DataFrame,
    anchor: str,
    test: str,
    metric: str,
    rate: str = "bpp",
    *,
    statistic: str = "mean",
    interpolation: str = "pchip",
    higher_is_better: bool = True,
    fronts: dict | None = None,
) -> float:
    """Bjøntegaard-delta of the score (BD-PSNR generalised): the mean of ``test``'s score
    minus ``anchor``'s over the rates both cover, in the metric's own units.

    Sign convention: positive means ``test`` scores higher at the same rate, which is
    better for a higher-is-better metric and worse for a lower-is-better one (a negative
    BD-LPIPS is an improvement). Same curves and errors as :func:`bd_rate`, except that
    the rate ranges (log) must overlap over :data:`BD_MIN_OVERLAP` of their span.
    ``fronts`` as for :func:`bd_rate` (the same dict serves both).
    """
    import bjontegaard

    rate_col, score_col, curves = _bd_curves(
        summary, anchor, test, metric, rate, statistic, higher_is_better, fronts
    )
    logs = {m: np.log(curves[m][rate_col].to_numpy(dtype=float)) for m in curves}
    low, high = max(v.min() for v in logs.values()), min(v.max() for v in logs.values())
    span = max(v.max() for v in logs.values()) - min(v.min() for v in logs.values())
    if high <= low or span <= 0 or (high - low) / span < BD_MIN_OVERLAP:
        raise AnalysisError(
            f"the rates of {anchor!r} and {test!r} overlap too little for a BD-{metric} "
            f"(it needs {BD_MIN_OVERLAP:.0%} of their combined log-rate range)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = bjontegaard.bd_psnr(
                curves[anchor][rate_col].to_numpy(),
                curves[anchor][score_col].to_numpy(dtype=float),
                curves[test][rate_col].to_numpy(),
                curves[test][score_col].to_numpy(dtype=float),
                method=interpolation,
                require_matching_points=False,
                min_overlap=BD_MIN_OVERLAP,
            )
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            raise AnalysisError(
                f"BD-{metric} of {test!r} against {anchor!r} failed: {exc}"
            ) from exc
    if not np.isfinite(value):
        raise AnalysisError(f"BD-{metric} of {test!r} against {anchor!r} is not finite")
    return float(value)
