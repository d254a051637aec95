"""Table 1 of the textual-transform paper, for any study.

One row per method and operating point (the paper's JPEG-low and JPEG-high are
one method's two points): mean size in bytes and the mean over images of the
median Survey A rating (the *semantic satisfaction index*), each with a
bootstrap 95 % CI. The paper reports BLIP 48.7 B / 6.2, GPT-4 143.2 B / 7.7,
human 191.2 B / 7.7, JPEG-low 81,156 B / 9.0, JPEG-high 168,497 B / 9.7.
Every other metric's columns are added beside it — the mean over images with
its CI (``{key} mean``, ``{key} ci_low``, ``{key} ci_high``) of each score per
candidate (CLIP first, then PSNR, LPIPS, ... in the metrics table's order; a raw
CLIP cosine is left out beside its scaled twin), and each set metric's value at
the operating point (``{key} value``, ``ci_low``, ``ci_high``, ``{key} n``).
Without human ratings the table holds size and those metrics only, and says so.
A method without a rate (imported reconstructions without captions) keeps its
row and scores, with size "—".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from semcomp.analysis.rd import RATE_SPLIT_COLUMNS, SATISFACTION_PREFIX, metric_columns, set_columns
from semcomp.analysis.scores import Scores, default_figure_keys, describe
from semcomp.analysis.stats import mean_ci

#: Table 1's size of a method without a rate
NO_SIZE = "—"
MISSING_HUMAN = (
    "no human ratings in this study yet: Table 1 shows mean size and the metrics only "
    "(import Survey A ratings to add the mean of median ratings)"
)


@dataclass
class Table1:
    table: pd.DataFrame
    #: the human metric the satisfaction column comes from, or None without ratings
    satisfaction_metric: str | None
    note: str


def _mean_with_ci(values: pd.Series, seed: int) -> tuple[float, float, float]:
    array = values.to_numpy(dtype=float)
    mean = float(np.nanmean(array)) if np.isfinite(array).any() else np.nan
    low, high = mean_ci(array, seed)
    return mean, low, high


def table1(
    points: pd.DataFrame,
    *,
    seed: int = 0,
    scores: Scores | None = None,
    set_scores: pd.DataFrame | None = None,
) -> Table1:
    """Mean size (bytes) and mean of median human ratings per method and operating point,
    and every metric beside them (``scores``: the study's; ``set_scores``: set metrics'
    values from :func:`semcomp.analysis.rd.set_points`)."""
    satisfaction = [m for m in metric_columns(points, scores) if m.startswith(SATISFACTION_PREFIX)]
    metric = satisfaction[0] if satisfaction else None
    described = describe(points, scores)
    clip = [k for k in default_figure_keys(described, points) if k in points.columns]
    clip = [k for k in clip if not described[k].is_human]
    rows = []
    for (method, operating_point), group in points.groupby(["method", "operating_point"]):
        row: dict[str, object] = {
            "method": method,
            "operating_point": operating_point,
            "codec": group["codec"].iloc[0],
            "images": int(group["original_id"].nunique()),
        }
        # one value per image: replicates and caption variants averaged first
        per_image = group.groupby("original_id")[
            ["rate_bytes", *([metric] if metric else []), *clip]
        ].mean()
        row["size_bytes_mean"], row["size_ci_low"], row["size_ci_high"] = _mean_with_ci(
            per_image["rate_bytes"], seed
        )
        size = row["size_bytes_mean"]
        row["size"] = NO_SIZE if pd.isna(size) else f"{size:,.1f} B"
        split = list(RATE_SPLIT_COLUMNS)
        if set(split) <= set(group.columns) and group[split].notna().all(axis=None):
            caption, side, header = group.groupby("original_id")[split].mean().mean()
            row["size_split"] = (
                f"caption {caption:,.1f} + side {side:,.1f} + header {header:,.1f} B"
            )
        if metric:
            rated = per_image[metric].dropna()
            row["rated_images"] = len(rated)
            (
                row["satisfaction_mean"],
                row["satisfaction_ci_low"],
                row["satisfaction_ci_high"],
            ) = _mean_with_ci(rated, seed)
        for name in clip:
            mean, low, high = _mean_with_ci(per_image[name], seed)
            row[f"{name} mean"], row[f"{name} ci_low"], row[f"{name} ci_high"] = mean, low, high
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty and set_scores is not None and not set_scores.empty:
        table = table.merge(set_columns(set_scores), on=["method", "operating_point"], how="left")
    if not table.empty:
        table = table.sort_values("size_bytes_mean").reset_index(drop=True)
    if metric is None:
        note = MISSING_HUMAN
    else:
        unrated = table.loc[table["rated_images"] == 0, "method"].unique().tolist()
        note = f"satisfaction: mean over images of {metric}" + (
            f"; no ratings for {', '.join(map(str, unrated))}" if unrated else ""
        )
    if not table.empty and table["size_bytes_mean"].isna().any():
        no_rate = table.loc[table["size_bytes_mean"].isna(), "method"].unique().tolist()
        note += f"; no rate (size {NO_SIZE}): {', '.join(map(str, no_rate))}"
    return Table1(table=table, satisfaction_metric=metric, note=note)
