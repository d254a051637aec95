"""Static figures for papers (matplotlib, PNG and PDF)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from semcomp.analysis.agreement import ALL
from semcomp.analysis.rd import (
    RATE_COLUMNS,
    SCALED_CLIP,
    SUMMARY_RATE_COLUMNS,
    metric_columns,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from semcomp.surveys.definitions import SurveyDefinition

RATE_LABELS = {
    "bytes": "rate (bytes)",
    "bits": "rate (bits)",
    "bpp": "rate (bits per pixel)",
}
RATE_AXES = {
    unit: (RATE_COLUMNS[unit], SUMMARY_RATE_COLUMNS[unit], label)
    for unit, label in RATE_LABELS.items()
}
RANDOM_WEIGHTS_NOTE = "random weights — numbers are not meaningful"
#: a single-column paper figure is about 3.5 in wide; two columns about 7 in
PAPER_WIDTH = 7.0


def rd_figure(
    points: pd.DataFrame,
    summary: pd.DataFrame,
    out_stem: Path,
    *,
    rate: str = "bpp",
    title: str = "",
    random_weights: bool = False,
) -> list[Path]:
    """Similarity against rate (log x), one curve per method with 95 % CI bands.

    One panel per ``(cos+1)/2`` metric (the scaled CLIP similarity of the
    textual-transform paper; any metric when there is none), each drawn as
    :func:`rd_chart` draws it; faint dots are single candidates.
    """
    plt = _pyplot()
    metrics = [m for m in metric_columns(points) if m.startswith(SCALED_CLIP)]
    metrics = metrics or metric_columns(points)
    panels = max(1, len(metrics))
    figure, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics or [None], strict=True):
        if metric is None:
            axis.text(0.5, 0.5, "no similarity scores yet", ha="center", va="center")
            axis.set_axis_off()
            continue
        draw_rd(axis, points, summary, metric, rate=rate)
    heading = title + (f" ({RANDOM_WEIGHTS_NOTE})" if random_weights else "")
    if heading:
        figure.suptitle(heading, fontsize="medium")
    figure.tight_layout()
    return save_figure(figure, out_stem, tight=False)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_panel(figure: Figure, label: str, axis: int = 0) -> None:
    """Add ``label`` (e.g. "simulated ratings") in capitals under a panel's title."""
    if label and figure.axes:
        panel = figure.axes[min(axis, len(figure.axes) - 1)]
        title = panel.get_title()
        panel.set_title((title + "\n" if title else "") + label.upper(), fontsize="small")


#: a scatter of more points than this is an image inside a PDF: thousands of vector dots
#: make files of megabytes that take seconds to write and to show
RASTER_POINTS = 5000
#: resolution of the PNG files
DPI = 150
#: the margin around a figure cropped to its content, as ``savefig``'s ``pad_inches``
PAD_INCHES = 0.1


def save_figure(figure: Figure, out_stem: Path, *, tight: bool = True) -> list[Path]:
    """Write ``figure`` as PNG (150 dpi) and PDF next to each other and close it.

    The layout is worked out once for both files: legends placed at ``loc="best"`` are
    placed once and pinned there, and the crop to the content (``tight``, as
    ``bbox_inches="tight"``) is measured once, so each file is one draw (``savefig`` with
    ``bbox_inches="tight"`` draws each file twice and searches each "best" legend's place
    five times per file, over every point drawn). Dense scatters are rasterised in the
    PDF (:data:`RASTER_POINTS`).
    """
    for axis in figure.axes:
        for collection in axis.collections:
            if len(collection.get_offsets()) > RASTER_POINTS:
                collection.set_rasterized(True)
    bbox = None
    dpi, figure.dpi = figure.dpi, DPI  # text extents depend on the dpi drawn at
    try:
        _keep_legend_places(figure)
        if tight:
            figure.draw_without_rendering()
            bbox = figure.get_tightbbox(figure.canvas.get_renderer()).padded(PAD_INCHES)
    finally:
        figure.dpi = dpi
    written = []
    for suffix in (".png", ".pdf"):
        path = out_stem.with_suffix(suffix)
        figure.savefig(path, dpi=DPI, bbox_inches=bbox)
        written.append(path)
    _pyplot().close(figure)
    return written


def _keep_legend_places(figure: Figure) -> None:
    """Pin each legend placed at ``loc="best"`` where the last draw put it (a fraction of
    its anchor box, so the same place at any dpi), so later draws do not search again."""
    for axis in figure.axes:
        axis.viewLim  # noqa: B018 - settles pending autoscaling, as a draw would first
    legends = [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend())]
    for legend in legends:
        if legend._loc != 0:  # 0: "best"
            continue
        box = legend.get_window_extent()
        anchor = legend.get_bbox_to_anchor()
        if anchor.width > 0 and anchor.height > 0:
            legend.set_loc(
                ((box.x0 - anchor.x0) / anchor.width, (box.y0 - anchor.y0) / anchor.height)
            )


def png_bytes(figure: Figure) -> bytes:
    """``figure`` as PNG bytes (for a download button), closing it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def colour_map(keys) -> dict[str, str]:
    """One colour per key (as text, sorted): matplotlib's C0–C9 as hex, so the app's
    plotly charts and the report's figures colour methods and categories alike."""
    from matplotlib.colors import to_hex

    return {key: to_hex(f"C{index % 10}") for index, key in enumerate(sorted(map(str, keys)))}


def legend_labels(points: pd.DataFrame) -> dict[str, str]:
    """Each method's name in a legend: a method imported from files is followed by its
    codec label (``paper-gpt4 (dall-e-2)``) unless its name already says it."""
    if not {"method", "kind", "codec"} <= set(points.columns):
        return {}
    labels = {}
    for (method, kind, codec), _ in points.groupby(["method", "kind", "codec"], observed=True):
        named = str(codec).lower() in str(method).lower()
        show = kind == "external" and isinstance(codec, str) and codec and not named
        labels[str(method)] = f"{method} ({codec})" if show else str(method)
    return labels


def _colours(keys: list) -> dict:
    return colour_map(keys)


def rd_chart(
    points: pd.DataFrame,
    summary: pd.DataFrame,
    metric: str,
    *,
    rate: str = "bytes",
    colour_by: str = "method",
    aggregated: bool = True,
    iso_level: float | None = None,
    pareto: bool = False,
    title: str = "",
    random_weights: bool = False,
) -> Figure:
    """One rate–similarity panel: every codec, log rate axis, as the app draws it.

    ``colour_by`` is ``method`` or ``category`` (the textual-transform paper's
    Fig. 5); ``aggregated`` draws per-operating-point means with 95 % CI bands
    over faint per-candidate dots (colour by method only), otherwise only the
    candidates. ``iso_level`` draws the iso-satisfaction line and marks where
    each method first reaches it; ``pareto`` draws the front across methods.
    """
    figure, axis = _pyplot().subplots(figsize=(PAPER_WIDTH * 0.75, 3.6))
    drawn = draw_rd(
        axis,
        points,
        summary,
        metric,
        rate=rate,
        colour_by=colour_by,
        aggregated=aggregated,
        iso_level=iso_level,
        pareto=pareto,
    )
    heading = title + (f" ({RANDOM_WEIGHTS_NOTE})" if random_weights else "")
    if drawn and heading:
        axis.set_title(heading, fontsize="small")
    figure.tight_layout()
    return figure


def draw_rd(
    axis: Axes,
    points: pd.DataFrame,
    summary: pd.DataFrame,
    metric: str,
    *,
    rate: str = "bytes",
    colour_by: str = "method",
    aggregated: bool = True,
    iso_level: float | None = None,
    pareto: bool = False,
) -> bool:
    """Draw :func:`rd_chart`'s panel on ``axis``; False (and a note) when nothing to draw."""
    from semcomp.analysis.curves import iso_markers, iso_satisfaction, pareto_front

    point_rate, mean_rate, rate_label = RATE_AXES[rate]
    usable = points.dropna(subset=[point_rate, metric]) if metric in points else points.iloc[:0]
    usable = usable[usable[point_rate] > 0]
    bands = no_rate_bands(points, summary, metric)
    if usable.empty and bands.empty:
        axis.text(0.5, 0.5, f"no {metric} scores with a rate", ha="center", va="center")
        axis.set_axis_off()
        return False
    if colour_by == "method":
        colours = colour_map({*usable["method"].unique(), *bands["method"]})
    else:
        colours = colour_map(usable[colour_by].unique())
    by_method = aggregated and colour_by == "method" and f"{metric} mean" in summary
    summary = summary[summary[mean_rate] > 0] if mean_rate in summary else summary
    for key, dots in usable.groupby(colour_by):
        axis.scatter(
            dots[point_rate],
            dots[metric],
            s=10,
            alpha=0.3 if by_method else 0.8,
            color=colours[str(key)],
            lw=0,
            label=None if by_method else str(key),
        )
    if by_method:
        labels = legend_labels(points)
        for method, rows in summary.groupby("method"):
            if str(method) not in colours:
                continue
            rows = rows.dropna(subset=[mean_rate, f"{metric} mean"]).sort_values(mean_rate)
            colour = colours[str(method)]
            label = labels.get(str(method), str(method))
            axis.plot(
                rows[mean_rate], rows[f"{metric} mean"], "o-", ms=4, color=colour, label=label
            )
            mean = rows[f"{metric} mean"]
            low = rows[f"{metric} mean_ci_low"].fillna(mean)
            high = rows[f"{metric} mean_ci_high"].fillna(mean)
            if len(rows) > 1:
                axis.fill_between(rows[mean_rate], low, high, color=colour, alpha=0.15, lw=0)
            else:  # one operating point (a captioning method): a band would be invisible
                error = [(mean - low).clip(lower=0), (high - mean).clip(lower=0)]
                axis.errorbar(rows[mean_rate], mean, yerr=error, color=colour, capsize=2, lw=1)
    if pareto:
        source = summary if by_method else usable
        front = pareto_front(
            source,
            mean_rate if by_method else point_rate,
            f"{metric} mean" if by_method else metric,
        )
        axis.step(
            front[mean_rate if by_method else point_rate],
            front[f"{metric} mean" if by_method else metric],
            where="post",
            color="black",
            ls=":",
            lw=1.2,
            label="Pareto front",
        )
    if iso_level is not None:
        axis.axhline(iso_level, color="magenta", lw=1, label=f"iso-satisfaction {iso_level:g}")
        _, per_method = iso_satisfaction(usable, metric, iso_level, rate)
        reached = iso_markers(per_method, summary, metric, iso_level, rate, aggregated=by_method)
        axis.scatter(
            reached["rate"],
            np.full(len(reached), iso_level),
            marker="D",
            s=30,
            color="magenta",
            zorder=5,
        )
    for index, band in enumerate(bands.itertuples(index=False)):
        style = BAND_STYLES[index % len(BAND_STYLES)]
        colour = colours.get(str(band.method), "0.35")
        axis.axhline(band.mean, color=colour, ls=style, lw=1.3, label=band.label)
        if np.isfinite(band.low) and np.isfinite(band.high) and band.high > band.low:
            axis.axhspan(band.low, band.high, color=colour, alpha=0.08, lw=0)
    if usable.empty:  # only methods without a rate: their bands, on an empty rate axis
        axis.text(0.5, 0.05, "no method has a rate", transform=axis.transAxes, ha="center")
        axis.set_xlim(1, 10)
    axis.set_xscale("log")
    axis.set_xlabel(rate_label)
    axis.set_ylabel(metric)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="x-small", loc="best")
    return True


#: line styles of the horizontal bands of methods without a rate (told apart from curves)
BAND_STYLES = ["--", "-.", ":"]
#: the legend's mark of a method without a rate
NO_RATE_LABEL = "no rate"


def no_rate_bands(points: pd.DataFrame, summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Methods (and operating points) whose candidates have no rate but have ``metric``
    scores: where a rate–similarity chart draws them as horizontal bands.

    Columns: method, operating_point, label (``"dalle-gr (no rate)"``), mean (the mean
    over originals, as the curves), low and high (its 95 % CI from ``summary``, when
    there). Such a method has no x-coordinate, but its similarity is still comparable.
    """
    columns = ["method", "operating_point", "label", "mean", "low", "high"]
    if metric not in points or "rate_bits" not in points or points.empty:
        return pd.DataFrame(columns=columns)
    rate_less = points[points["rate_bits"].isna() & points[metric].notna()]
    if rate_less.empty:
        return pd.DataFrame(columns=columns)
    keys = ["method", "operating_point"]
    has_rate = points.dropna(subset=["rate_bits"]).set_index(keys).index
    per_image = rate_less.groupby([*keys, "original_id"], observed=True)[metric].mean()
    means = per_image.groupby(level=keys, observed=True).mean()
    means = means[~means.index.isin(has_rate)]  # a point with some rates is on the axis
    ci = {}
    if f"{metric} mean_ci_low" in summary:
        bounds = summary.set_index(keys)[[f"{metric} mean_ci_low", f"{metric} mean_ci_high"]]
        ci = {
            key: tuple(values) for key, values in zip(bounds.index, bounds.to_numpy(), strict=True)
        }
    points_per_method = means.groupby(level="method", observed=True).size()
    rows = []
    for (method, operating_point), mean in means.items():
        label = str(method) if points_per_method[method] == 1 else f"{method} · {operating_point}"
        low, high = ci.get((method, operating_point), (np.nan, np.nan))
        rows.append(
            {
                "method": method,
                "operating_point": operating_point,
                "label": f"{label} ({NO_RATE_LABEL})",
                "mean": float(mean),
                "low": float(low),
                "high": float(high),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def table1_figure(table: pd.DataFrame, satisfaction_metric: str | None) -> Figure:
    """Table 1 as two bar panels: mean size (log) and mean satisfaction (or CLIP), 95 % CIs."""
    plt = _pyplot()
    figure, (size_axis, score_axis) = plt.subplots(1, 2, figsize=(PAPER_WIDTH, 3.2))
    if table.empty:
        for axis in (size_axis, score_axis):
            axis.text(0.5, 0.5, "no candidates yet", ha="center", va="center")
            axis.set_axis_off()
        return figure
    labels = [
        f"{m} · {p}" if (table["method"] == m).sum() > 1 else str(m)
        for m, p in zip(table["method"], table["operating_point"], strict=True)
    ]
    positions = np.arange(len(table))

    def bars(axis, mean, low, high, label):
        error = np.vstack([(mean - low).clip(lower=0), (high - mean).clip(lower=0)])
        axis.bar(positions, mean, yerr=np.nan_to_num(error), capsize=2, color="C0")
        axis.set_xticks(
            positions, labels, rotation=60, ha="right", rotation_mode="anchor", fontsize="x-small"
        )
        axis.set_ylabel(label, fontsize="small")
        axis.grid(True, axis="y", alpha=0.3)

    bars(
        size_axis,
        table["size_bytes_mean"],
        table["size_ci_low"],
        table["size_ci_high"],
        "mean size (bytes)",
    )
    if (table["size_bytes_mean"] > 0).any():
        size_axis.set_yscale("log")
    size_axis.set_xlim(-0.6, len(table) - 0.4)  # keep the places of bars without a size
    for position in positions[table["size_bytes_mean"].isna().to_numpy()]:
        # a method without a rate (imported without captions) keeps its place: size "—"
        size_axis.text(
            position,
            0.02,
            f"— ({NO_RATE_LABEL})",
            transform=size_axis.get_xaxis_transform(),
            rotation=90,
            ha="center",
            va="bottom",
            fontsize="x-small",
        )
    if satisfaction_metric:
        bars(
            score_axis,
            table["satisfaction_mean"],
            table["satisfaction_ci_low"],
            table["satisfaction_ci_high"],
            f"mean of {satisfaction_metric}",
        )
    else:
        clip = [c.removesuffix(" mean") for c in table.columns if c.endswith(" mean")]
        if clip:
            name = clip[0]
            bars(
                score_axis,
                table[f"{name} mean"],
                table[f"{name} ci_low"],
                table[f"{name} ci_high"],
                f"mean {name}\n(no human ratings yet)",
            )
    figure.tight_layout()
    return figure


def agreement_figure(
    points: pd.DataFrame, model_metric: str, human_metric: str, correlations: pd.DataFrame
) -> Figure:
    """Human rating against CLIP similarity, one colour per method, ρ and τ in the title."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(PAPER_WIDTH / 2, 3.2))
    both = points.dropna(subset=[model_metric, human_metric])
    colours = colour_map(both["method"].unique())
    for method, rows in both.groupby("method"):
        axis.scatter(
            rows[model_metric],
            rows[human_metric],
            s=12,
            alpha=0.7,
            color=colours[str(method)],
            lw=0,
            label=str(method),
        )
    overall = correlations[correlations["method"] == ALL]
    if not overall.empty:
        row = overall.iloc[0]
        axis.set_title(
            f"Spearman ρ = {row['spearman']:.2f} [{row['spearman_ci_low']:.2f}, "
            f"{row['spearman_ci_high']:.2f}]\nKendall τ = {row['kendall']:.2f} "
            f"[{row['kendall_ci_low']:.2f}, {row['kendall_ci_high']:.2f}]  (n = {int(row['n'])})",
            fontsize="x-small",
        )
    axis.set_xlabel(model_metric, fontsize="small")
    axis.set_ylabel(human_metric, fontsize="small")
    axis.grid(True, alpha=0.3)
    if len(colours):
        axis.legend(fontsize="x-small")
    figure.tight_layout()
    return figure


def embedding_figure(results: pd.DataFrame) -> Figure:
    """Zero-shot top-1 accuracy (or cosine) of decoded embeddings against bpd, per family."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(PAPER_WIDTH / 2, 3.2))
    value = "top1" if "top1" in results and results["top1"].notna().any() else "cosine"
    family = results["method"].astype(str).str.replace(r" \(.*\)", "", regex=True)
    for name, rows in results.assign(family=family).groupby("family"):
        rows = rows.sort_values("bpd")
        axis.plot(rows["bpd"], rows[value], "o-", ms=4, label=str(name))
    if value == "top1" and "raw_top1" in results and results["raw_top1"].notna().any():
        axis.axhline(results["raw_top1"].max(), color="grey", ls="--", label="raw (32 bpd)")
    axis.set_xlabel("bits per feature dimension (bpd)")
    axis.set_ylabel("zero-shot top-1 accuracy" if value == "top1" else "mean cosine")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="x-small")
    figure.tight_layout()
    return figure


def survey_dimensions_figure(dimensions: pd.DataFrame, survey: SurveyDefinition) -> Figure:
    """Mean rating of each scale question per method and operating point (one bar each,
    ``jpeg · quality=30``), ± one standard deviation (Survey B: objects, appearance,
    position, background, colour; the paper's Figures 1G–4G)."""
    from semcomp.surveys.aggregate import group_label

    plt = _pyplot()
    questions = [q for q in survey.questions if q.kind == "scale" and f"{q.id} mean" in dimensions]
    figure, axis = plt.subplots(figsize=(PAPER_WIDTH, 3.0))
    keys = [k for k in ("method", "operating_point") if k in dimensions]
    methods = [group_label(*row) for row in dimensions[keys].itertuples(index=False)]
    colours = _colours(methods)
    width = 0.8 / max(len(methods), 1)
    positions = np.arange(len(questions))
    for index, method in enumerate(methods):
        row = dimensions.iloc[index]
        means = [row[f"{q.id} mean"] for q in questions]
        spreads = np.nan_to_num([row[f"{q.id} std"] for q in questions])
        axis.bar(
            positions + (index - (len(methods) - 1) / 2) * width,
            means,
            width,
            yerr=spreads,
            capsize=2,
            color=colours[method],
            label=method,
        )
    axis.set_xticks(positions, [q.id for q in questions])
    highs = [q.high for q in questions if q.high is not None]
    if highs:
        axis.set_ylim(0, max(highs) + 0.5)
    axis.set_ylabel(f"mean rating (Survey {survey.id})", fontsize="small")
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize="x-small", ncols=min(len(methods), 4) or 1)
    figure.tight_layout()
    return figure
