"""Static figures for papers (matplotlib, PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from semcomp.analysis.rd import metric_columns

RATE_AXES = {
    "bytes": ("rate_bytes", "rate_bytes_mean", "rate (bytes)"),
    "bits": ("rate_bits", "rate_bits_mean", "rate (bits)"),
    "bpp": ("bpp", "bpp_mean", "rate (bits per pixel)"),
}
RANDOM_WEIGHTS_NOTE = "random weights — numbers are not meaningful"
SCALED_CLIP = "clip_(cos+1)/2["


def rd_figure(
    points: pd.DataFrame,
    summary: pd.DataFrame,
    out_stem: Path,
    *,
    rate: str = "bpp",
    title: str = "",
    random_weights: bool = False,
) -> list[Path]:
    """Similarity against rate (log x), one curve per method with 95 % CI bars.

    One panel per ``(cos+1)/2`` metric (the scaled CLIP similarity of the
    textual-transform paper); faint dots are single candidates.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metric_columns(points) if m.startswith(SCALED_CLIP)]
    metrics = metrics or metric_columns(points)
    point_rate, mean_rate, rate_label = RATE_AXES[rate]
    panels = max(1, len(metrics))
    figure, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics or [None], strict=True):
        if metric is None:
            axis.text(0.5, 0.5, "no similarity scores yet", ha="center", va="center")
            axis.set_axis_off()
            continue
        for index, (method, rows) in enumerate(summary.groupby("method", sort=True)):
            colour = f"C{index % 10}"
            rows = rows.sort_values(mean_rate)
            dots = points[points["method"] == method]
            axis.scatter(dots[point_rate], dots[metric], s=8, alpha=0.25, color=colour, lw=0)
            low = rows[f"{metric} mean"] - rows[f"{metric} mean_ci_low"]
            high = rows[f"{metric} mean_ci_high"] - rows[f"{metric} mean"]
            axis.errorbar(
                rows[mean_rate],
                rows[f"{metric} mean"],
                yerr=[low.fillna(0).clip(lower=0), high.fillna(0).clip(lower=0)],
                marker="o",
                ms=4,
                capsize=2,
                color=colour,
                label=method,
            )
        axis.set_xscale("log")
        axis.set_xlabel(rate_label)
        axis.set_ylabel(metric)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
    heading = title + (f" ({RANDOM_WEIGHTS_NOTE})" if random_weights else "")
    if heading:
        figure.suptitle(heading, fontsize="medium")
    figure.tight_layout()
    written = []
    for suffix in (".png", ".pdf"):
        path = out_stem.with_suffix(suffix)
        figure.savefig(path, dpi=150)
        written.append(path)
    plt.close(figure)
    return written
