"""Static figures for papers (matplotlib, PNG and PDF)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from semcomp.analysis.agreement import ALL
from semcomp.analysis.rd import (
    RATE_COLUMNS,
    SUMMARY_RATE_COLUMNS,
    group_label,
    summary_columns,
)
from semcomp.analysis.scores import Scores, default_figure_keys, describe, file_stem

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
PAPER_WIDTHS = {"single": 3.5, "double": 7.0}
#: the width every figure is drawn at (:func:`paper_width` sets it)
_WIDTH: ContextVar[str] = ContextVar("semcomp_figure_width", default="double")
#: the Okabe–Ito colour-blind-safe palette (yellow last: faint on white)
PALETTE = [
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
]
#: matplotlib settings of every figure: the palette, fonts embedded in PDF as TrueType
#: (pdf.fonttype 42, as journals ask), small fonts that stay legible at 3.5 in
STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
}


@contextmanager
def paper_width(width: str) -> Iterator[None]:
    """Draw the figures made inside at one paper width: ``single`` (3.5 in, one column)
    or ``double`` (7 in, across two columns)."""
    if width not in PAPER_WIDTHS:
        raise ValueError(f"unknown figure width {width!r}: choose one of {', '.join(PAPER_WIDTHS)}")
    token = _WIDTH.set(width)
    try:
        yield
    finally:
        _WIDTH.reset(token)


def figure_width() -> float:
    """The width (inches) figures are drawn at now (see :func:`paper_width`)."""
    return PAPER_WIDTHS[_WIDTH.get()]


def _single() -> bool:
    return _WIDTH.get() == "single"


def panel_grid(panels: int, most_columns: int, row_height: float):
    """A figure of ``panels`` panels (at least one), at most ``most_columns`` a row (one
    at single-column width), each row ``row_height`` × the width tall (0.8 at one column):
    ``(figure, axes)`` with ``axes`` 2-D."""
    plt = _pyplot()
    panels = max(1, panels)
    columns = min(1 if _single() else most_columns, panels)
    rows = -(-panels // columns)
    width = figure_width()
    return plt.subplots(
        rows,
        columns,
        figsize=(width, (0.8 if _single() else row_height) * width * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )


def place_legend(figure: Figure) -> None:
    """One legend for the whole figure, outside the data: right of the panels at two
    columns, under them at one column (where the width is needed for the data). Entries
    of the panels' legends are merged (a label once); the panels' own legends go."""
    handles, labels = [], []
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    if not handles:
        return
    if _single():
        figure.legend(handles, labels, loc="outside lower center", ncols=2)
    else:
        figure.legend(handles, labels, loc="outside right upper")


#: panels per row of ``rd.png``
RD_COLUMNS = 3


def rd_figure(
    points: pd.DataFrame,
    summary: pd.DataFrame,
    out_stem: Path,
    *,
    rate: str = "bpp",
    title: str = "",
    random_weights: bool = False,
    scores: Scores | None = None,
    metrics: list[str] | None = None,
    iso_levels: dict[str, float] | None = None,
) -> list[Path]:
    """Each chosen metric against rate (log x), one curve per method with 95 % CI bands.

    ``metrics`` (keys; default :func:`~semcomp.analysis.scores.default_figure_keys`:
    every model and set metric and the satisfaction index) get one panel each in
    ``out_stem`` (``rd.png``/``.pdf``, up to :data:`RD_COLUMNS` a row) and one figure
    each in the folder ``out_stem`` named by the key (``rd/lpips_alex.png``), each drawn
    as :func:`rd_chart` draws it; faint dots are single candidates, a set metric's value
    has its CI as error bars. ``iso_levels`` (key: level, as ``iso_satisfaction.csv``
    states them) draw each metric's iso-satisfaction line in its own figure.
    """
    scores = describe(points, scores)
    iso_levels = iso_levels or {}
    keys = list(metrics) if metrics is not None else default_figure_keys(scores, points)
    written = save_drawn(
        out_stem,
        rd_panels,
        points,
        summary,
        keys,
        rate=rate,
        title=title,
        random_weights=random_weights,
        scores=scores,
        tight=False,
    )
    if keys:
        out_stem.mkdir(parents=True, exist_ok=True)
    for metric in keys:
        written += save_drawn(
            out_stem / file_stem(metric),
            rd_chart,
            points,
            summary,
            metric,
            rate=rate,
            iso_level=iso_levels.get(metric),
            title=title,
            random_weights=random_weights,
            scores=scores,
        )
    return written


def rd_panels(
    points: pd.DataFrame,
    summary: pd.DataFrame,
    keys: list[str],
    *,
    rate: str,
    title: str,
    random_weights: bool,
    scores: Scores,
) -> Figure:
    """``rd.png``: one panel per metric of ``keys`` (see :func:`rd_figure`)."""
    figure, axes = panel_grid(len(keys), RD_COLUMNS - 1, 0.42)
    for axis, metric in zip(axes.flat, keys or [None], strict=False):
        if metric is None:
            axis.text(0.5, 0.5, "no similarity scores yet", ha="center", va="center")
            axis.set_axis_off()
            continue
        draw_rd(axis, points, summary, metric, rate=rate, scores=scores)
    for axis in list(axes.flat)[len(keys or [None]) :]:
        axis.set_axis_off()
    gap = "\n" if _single() else " "  # at one column the note on a line of its own
    heading = title + (f"{gap}({RANDOM_WEIGHTS_NOTE})" if random_weights else "")
    if heading:
        figure.suptitle(heading, fontsize="medium")
    place_legend(figure)
    return figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams.update({**STYLE, "axes.prop_cycle": cycler(color=PALETTE)})
    return plt


def label_panel(figure: Figure, label: str, axis: int = 0) -> None:
    """Add ``label`` (e.g. "simulated ratings") in capitals under a panel's title."""
    if label and figure.axes:
        panel = figure.axes[min(axis, len(figure.axes) - 1)]
        title = panel.get_title()
        panel.set_title((title + "\n" if title else "") + label.upper(), fontsize="small")


#: the scatters of a panel of more points than this together are images inside a PDF:
#: thousands of vector dots make files of megabytes that take seconds to write and to show
RASTER_POINTS = 5000
#: ... each scatter of that panel with more points than this (a handful of summary
#: markers stays vector)
RASTER_MIN_POINTS = 100
#: resolution of the PNG files
DPI = 150
#: the margin around a figure cropped to its content, as ``savefig``'s ``pad_inches``
PAD_INCHES = 0.1


def save_figure(figure: Figure, out_stem: Path, *, tight: bool = True) -> list[Path]:
    """Write ``figure`` as PNG and PDF (:func:`write_figure`), or, inside
    :func:`saved_in_background`, hand it to the worker process that writes them and
    return at once; either way ``figure`` is closed and the two paths returned."""
    saver = _BACKGROUND.get()
    if saver is not None:
        return saver.submit(figure, out_stem, tight)
    return write_figure(figure, out_stem, tight=tight)


def save_drawn(
    out_stem: Path,
    draw: Callable[..., Figure],
    /,
    *args: Any,
    panel_label: str = "",
    label_axis: int = 0,
    tight: bool = True,
    **kwargs: Any,
) -> list[Path]:
    """Draw ``draw(*args, **kwargs)`` (a module-level function returning a figure) at the
    width in effect, with ``panel_label`` under the title of panel ``label_axis``
    (:func:`label_panel`), and write it as :func:`save_figure` does.

    Inside :func:`saved_in_background` the worker draws it too: it is handed the function
    and its arguments, so this process spends no time drawing it (nor pickling a figure).
    The files are those :func:`save_figure` writes of the figure drawn here. The arguments
    are not to be changed afterwards: this process draws from them if it takes the figure
    over from the worker (:func:`wait_for_figures`)."""
    drawing = _Drawing(draw, args, kwargs, panel_label, label_axis, _WIDTH.get())
    saver = _BACKGROUND.get()
    if saver is not None:
        return saver.submit_drawing(drawing, out_stem, tight)
    return write_figure(drawing(), out_stem, tight=tight)


@dataclass(frozen=True)
class _Drawing:
    """A figure to draw: ``draw(*args, **kwargs)`` at paper width ``width``, labelled."""

    draw: Callable[..., Figure]
    args: tuple
    kwargs: dict[str, Any]
    panel_label: str
    label_axis: int
    width: str

    def __call__(self) -> Figure:
        with paper_width(self.width):
            figure = self.draw(*self.args, **self.kwargs)
        label_panel(figure, self.panel_label, axis=self.label_axis)
        return figure


@dataclass(frozen=True)
class _Pickled:
    """A figure drawn here, pickled for the worker."""

    data: bytes

    def __call__(self) -> Figure:
        import pickle

        return pickle.loads(self.data)


#: the file types every figure is written as
FIGURE_SUFFIXES = (".png", ".pdf")
#: ``0`` in this environment variable: :func:`saved_in_background` starts no worker process
FIGURE_WORKER_ENV = "SEMCOMP_FIGURE_WORKER"
#: the figure saver of :func:`saved_in_background` in effect (None: save in this process)
_BACKGROUND: ContextVar[_BackgroundSaver | None] = ContextVar("semcomp_figure_saver", default=None)


@contextmanager
def saved_in_background(enabled: bool = True) -> Iterator[None]:
    """Inside, :func:`save_figure` hands each figure to one worker process that writes its
    PNG and PDF (the slow part: laying out, rendering, embedding fonts) while this process
    goes on computing; on leaving, every file has been written (a worker's error is
    raised there). The worker is forked on entry, before the caller reads its data, so it
    shares little memory; the figures travel pickled (matplotlib figures pickle whole)
    and the files are the same as those written here.

    Without a second core, where processes cannot be forked (not Linux) or none can be
    started, with ``enabled`` False, or with :data:`FIGURE_WORKER_ENV` set to ``0`` (every
    core already busy, as under parallel test workers: the worker would cost CPU, the
    figures' pickling and its fork, and gain no core), figures are written in this process
    as they come.
    """
    import os
    import sys

    saver = None
    wanted = enabled and os.environ.get(FIGURE_WORKER_ENV, "1") != "0"
    if wanted and sys.platform == "linux" and (os.cpu_count() or 1) >= 2:
        try:
            saver = _BackgroundSaver()
        except OSError:  # no process could be started (a limit on processes, memory)
            saver = None
    if saver is None:
        yield
        return
    token = _BACKGROUND.set(saver)
    try:
        yield
    except BaseException:
        saver.close(cancel=True)
        raise
    else:
        saver.close()
    finally:
        _BACKGROUND.reset(token)


def _write_made(data: bytes, out_stem: Path, tight: bool) -> None:
    """In the worker: :func:`write_figure` of the figure a pickled :class:`_Drawing` or
    :class:`_Pickled` makes."""
    import pickle

    _pyplot()  # the report's style (pdf.fonttype among them) before the figure is drawn
    write_figure(pickle.loads(data)(), out_stem, tight=tight)


def _ready() -> None:
    """The worker's first task: it has started."""


def _import_pdf_backend() -> None:
    """The worker's second task: matplotlib's PDF backend (with fontTools) imported while
    the caller reads and computes, before the first figure comes."""
    import matplotlib.backends.backend_pdf  # noqa: F401 - imported now, used by savefig


@dataclass
class _Handed:
    """A figure handed to :class:`_BackgroundSaver`: given to its worker (``future``) or
    taken over by the caller's process (``here``), or neither yet."""

    made: _Drawing | _Pickled
    data: bytes
    out_stem: Path
    tight: bool
    future: Any = None
    here: bool = False


class _BackgroundSaver:
    """One forked worker process writing figures, in the order they come.

    The worker is given one figure at a time (the next when it has written the last):
    the pool would otherwise take two more into its call queue, out of reach, and the
    caller's process, when it waits (:meth:`wait`), could not take them over."""

    def __init__(self) -> None:
        import multiprocessing
        import threading
        from concurrent.futures import ProcessPoolExecutor

        # imported and styled once, before the fork, for both processes: the report's
        # process needs pyplot too (bjontegaard, of the BD-rates, imports it)
        _pyplot()
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
        self.pool.submit(_ready).result()  # forked now, while this process is small
        self.pool.submit(_import_pdf_backend)
        self.pending: list[_Handed] = []
        # held by the caller and by the pool's thread that reports a figure written (a
        # done callback can run at once, in the thread that adds it: reentrant)
        self.lock = threading.RLock()
        self.stopped = False  # the pool was shut down or broke: nothing more is given

    def submit(self, figure: Figure, out_stem: Path, tight: bool) -> list[Path]:
        import pickle

        try:
            made = _Pickled(pickle.dumps(figure))
        except Exception:  # an artist that does not pickle: written here instead
            return write_figure(figure, out_stem, tight=tight)
        _pyplot().close(figure)
        return self._hand_over(made, pickle.dumps(made), out_stem, tight)

    def submit_drawing(self, drawing: _Drawing, out_stem: Path, tight: bool) -> list[Path]:
        """Hand ``drawing`` to the worker to draw and write (drawn here and handed over as
        a figure if its arguments do not pickle)."""
        import pickle

        try:
            data = pickle.dumps(drawing)
        except Exception:
            return self.submit(drawing(), out_stem, tight)
        return self._hand_over(drawing, data, out_stem, tight)

    def _hand_over(
        self, made: _Drawing | _Pickled, data: bytes, out_stem: Path, tight: bool
    ) -> list[Path]:
        with self.lock:
            self.pending.append(_Handed(made, data, out_stem, tight))
            self._give_next()
        return [out_stem.with_suffix(suffix) for suffix in FIGURE_SUFFIXES]

    def _give_next(self, _written: Any = None) -> None:
        """Give the worker the first figure nobody has, unless it is writing one."""
        with self.lock:
            if self.stopped or any(
                h.future is not None and not h.future.done() for h in self.pending
            ):
                return
            waiting = next((h for h in self.pending if h.future is None and not h.here), None)
            if waiting is None:
                return
            try:
                waiting.future = self.pool.submit(
                    _write_made, waiting.data, waiting.out_stem, waiting.tight
                )
            except Exception:  # the pool is shut down or broken: written here instead
                self.stopped = True
                return
            waiting.future.add_done_callback(self._give_next)

    def wait(self) -> None:
        """Until every figure handed over is written (here, if the worker died).

        Rather than sit idle, this process writes the figures the worker has not been
        given, the last first, while the worker writes the others in order (the files
        are the same either way)."""
        from concurrent.futures.process import BrokenProcessPool

        while True:
            with self.lock:
                left = [h for h in self.pending if h.future is None and not h.here]
                if not left:
                    handed, self.pending = self.pending, []
                    break
                left[-1].here = True
            write_figure(left[-1].made(), left[-1].out_stem, tight=left[-1].tight)
        for h in handed:
            if h.here:  # written here above
                continue
            try:
                h.future.result()
            except BrokenProcessPool:  # the worker died (killed, out of memory)
                write_figure(h.made(), h.out_stem, tight=h.tight)

    def close(self, *, cancel: bool = False) -> None:
        """:meth:`wait`, and end the worker (``cancel``: once the figure under way is done)."""
        try:
            if not cancel:
                self.wait()
        finally:
            with self.lock:
                self.stopped = True
            self.pool.shutdown(wait=True, cancel_futures=cancel)


def wait_for_figures() -> None:
    """Inside :func:`saved_in_background`: until every figure saved so far is written."""
    saver = _BACKGROUND.get()
    if saver is not None:
        saver.wait()


def write_figure(figure: Figure, out_stem: Path, *, tight: bool = True) -> list[Path]:
    """Write ``figure`` as PNG (150 dpi) and PDF next to each other and close it.

    The layout is worked out once for both files: a layout engine (constrained layout)
    runs once, at the PNG's dpi, and its positions are kept for both files; legends placed
    at ``loc="best"`` are placed once and pinned there, and the crop to the content
    (``tight``, as ``bbox_inches="tight"``) is measured once, so each file is one draw
    (``savefig`` lays a constrained figure out again for each file, and with
    ``bbox_inches="tight"`` draws each file twice and searches each "best" legend's place
    five times per file, over every point drawn). Dense scatters are rasterised in the
    PDF (:data:`RASTER_POINTS`).
    """
    for axis in figure.axes:
        sizes = [len(collection.get_offsets()) for collection in axis.collections]
        if sum(sizes) > RASTER_POINTS:
            for collection, size in zip(axis.collections, sizes, strict=True):
                if size > RASTER_MIN_POINTS:
                    collection.set_rasterized(True)
    bbox = None
    laid_out = figure.get_layout_engine() is not None
    dpi, figure.dpi = figure.dpi, DPI  # text extents depend on the dpi drawn at
    try:
        _keep_legend_places(figure)
        if tight or laid_out:
            figure.draw_without_rendering()
        if tight:
            bbox = figure.get_tightbbox(figure.canvas.get_renderer()).padded(PAD_INCHES)
        if laid_out:
            figure.set_layout_engine("none")  # the positions found stay as they are
    finally:
        figure.dpi = dpi
    written = []
    for suffix in FIGURE_SUFFIXES:
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
    """One colour per key (as text, sorted) from the colour-blind-safe :data:`PALETTE`,
    so the app's plotly charts and the report's figures colour methods and categories
    alike."""
    return {key: PALETTE[index % len(PALETTE)] for index, key in enumerate(sorted(map(str, keys)))}


def score_format(values, *, least: int = 4, most: int = 10) -> str:
    """The format spec (``.5g``) with the fewest significant digits, at least ``least``,
    that keeps every distinct value of ``values`` distinct when printed: scores near each
    other (CLIP similarities of 0.99981 and 0.99987) are told apart, not rounded alike."""
    finite = np.unique(np.asarray(pd.Series(values).dropna(), dtype=float))
    finite = finite[np.isfinite(finite)]
    for digits in range(least, most):
        if len({f"{value:.{digits}g}" for value in finite}) == len(finite):
            return f".{digits}g"
    return f".{most}g"


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
    scores: Scores | None = None,
) -> Figure:
    """One rate–score panel: every codec, log rate axis, as the app draws it.

    ``colour_by`` is ``method`` or ``category`` (the textual-transform paper's
    Fig. 5); ``aggregated`` draws per-operating-point means with 95 % CI bands
    over faint per-candidate dots (colour by method only), otherwise only the
    candidates. ``iso_level`` draws the iso-satisfaction line and marks where
    each method first reaches it; ``pareto`` draws the front across methods. Both
    follow the metric's direction (``scores``; inferred from the key when None),
    and the y axis is its display name, with "lower is better" where it is. A set
    metric (FID, KID) is drawn from ``summary``: its value at each operating point
    with its CI as error bars and ``n`` in the legend.
    """
    width = figure_width()
    figure, axis = _pyplot().subplots(
        figsize=(width, width * (0.9 if _single() else 0.45)), layout="constrained"
    )
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
        scores=scores,
    )
    heading = title + (f" ({RANDOM_WEIGHTS_NOTE})" if random_weights else "")
    if drawn and heading:
        axis.set_title(heading)
    place_legend(figure)
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
    scores: Scores | None = None,
) -> bool:
    """Draw :func:`rd_chart`'s panel on ``axis``; False (and a note) when nothing to draw."""
    from semcomp.analysis.curves import iso_markers, iso_satisfaction, pareto_front

    scores = describe(points, scores)
    info = scores[metric]
    if info.is_set:
        return draw_set_rd(axis, summary, metric, rate=rate, pareto=pareto, scores=scores)
    point_rate, mean_rate, rate_label = RATE_AXES[rate]
    usable = points.dropna(subset=[point_rate, metric]) if metric in points else points.iloc[:0]
    usable = usable[usable[point_rate] > 0]
    bands = no_rate_bands(points, summary, metric)
    if usable.empty and bands.empty:
        axis.text(
            0.5, 0.5, f"no {info.display} scores with a rate", ha="center", va="center", wrap=True
        )
        axis.set_axis_off()
        return False
    if colour_by == "method":  # every method of the study: one colour in every panel
        colours = colour_map({*points["method"].unique(), *bands["method"]})
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
        x_col = mean_rate if by_method else point_rate
        y_col = f"{metric} mean" if by_method else metric
        draw_front(axis, pareto_front(source, x_col, y_col, **direction(info)), x_col, y_col)
    if iso_level is not None:
        axis.axhline(iso_level, color="magenta", lw=1, label=f"iso-satisfaction {iso_level:g}")
        _, per_method = iso_satisfaction(usable, metric, iso_level, rate, **direction(info))
        reached = iso_markers(
            per_method, summary, metric, iso_level, rate, aggregated=by_method, **direction(info)
        )
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
    finish_rd_axis(axis, rate_label, info.axis_label)
    return True


def direction(info) -> dict[str, bool]:
    """The ``higher_is_better`` keyword of the curve functions, from a score's info."""
    return {"higher_is_better": info.higher_is_better}


def draw_front(axis: Axes, front: pd.DataFrame, x_col: str, y_col: str) -> None:
    axis.step(
        front[x_col],
        front[y_col],
        where="post",
        color="black",
        ls=":",
        lw=1.2,
        label="Pareto front",
    )


def finish_rd_axis(axis: Axes, rate_label: str, score_label: str) -> None:
    from semcomp.analysis.log_ticks import log_scale

    log_scale(axis, "x")
    axis.set_xlabel(rate_label)
    axis.set_ylabel(score_label)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="best")


def n_label(values: pd.Series) -> str:
    """``n = 15`` or ``n = 12–15``: how many originals a set metric's values are over."""
    known = values.dropna().astype(int)
    if known.empty:
        return "n unknown"
    low, high = int(known.min()), int(known.max())
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def draw_set_rd(
    axis: Axes,
    summary: pd.DataFrame,
    metric: str,
    *,
    rate: str = "bytes",
    pareto: bool = False,
    scores: Scores | None = None,
) -> bool:
    """A set metric (FID, KID) against rate: its value at each operating point of each
    method, its CI as error bars, ``n`` in the legend; methods without a rate are
    horizontal bands as elsewhere."""
    from semcomp.analysis.curves import pareto_front

    info = (scores or Scores())[metric]
    _, mean_rate, rate_label = RATE_AXES[rate]
    value, low, high, n = summary_columns(metric, scores)
    rows = summary.dropna(subset=[value]) if value in summary else summary.iloc[:0]
    rated = rows[rows[mean_rate] > 0] if mean_rate in rows else rows.iloc[:0]
    rate_less = rows[rows[mean_rate].isna()] if mean_rate in rows else rows
    if rated.empty and rate_less.empty:
        axis.text(0.5, 0.5, f"no {info.display} values yet", ha="center", va="center", wrap=True)
        axis.set_axis_off()
        return False
    methods = summary["method"] if "method" in summary else rows["method"]
    colours = colour_map(methods.unique())  # every method: one colour in every panel
    for method, curve in rated.groupby("method"):
        curve = curve.sort_values(mean_rate)
        centre = curve[value]
        colour = colours[str(method)]
        axis.plot(
            curve[mean_rate],
            centre,
            "o-",
            ms=4,
            color=colour,
            label=f"{method} ({n_label(curve[n])})",
        )
        bottom, top = curve[low].fillna(centre), curve[high].fillna(centre)
        if len(curve) > 1:  # a curve: its CI as a shaded band, as the mean curves
            axis.fill_between(curve[mean_rate], bottom, top, color=colour, alpha=0.15, lw=0)
        else:  # one operating point: a band would be invisible
            error = [(centre - bottom).clip(lower=0), (top - centre).clip(lower=0)]
            axis.errorbar(curve[mean_rate], centre, yerr=error, color=colour, capsize=2, lw=1)
    if pareto and not rated.empty:
        draw_front(axis, pareto_front(rated, mean_rate, value, **direction(info)), mean_rate, value)
    for index, (_, band) in enumerate(rate_less.iterrows()):
        label = (
            f"{band['method']} · {band['operating_point']} "
            f"({NO_RATE_LABEL}, {n_label(pd.Series([band[n]]))})"
        )
        axis.axhline(
            band[value],
            color=colours.get(str(band["method"]), "0.35"),
            ls=BAND_STYLES[index % len(BAND_STYLES)],
            lw=1.3,
            label=label,
        )
    if rated.empty:
        axis.text(0.5, 0.05, "no method has a rate", transform=axis.transAxes, ha="center")
        axis.set_xlim(1, 10)
    finish_rd_axis(axis, rate_label, f"{info.axis_label}\n(one value per operating point)")
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


def table1_figure(
    table: pd.DataFrame, satisfaction_metric: str | None, scores: Scores | None = None
) -> Figure:
    """Table 1 as two bar panels: mean size (log) and mean satisfaction (or the first
    metric, CLIP when there is one), 95 % CIs."""
    plt = _pyplot()
    width = figure_width()
    figure, (size_axis, score_axis) = plt.subplots(
        *((2, 1) if _single() else (1, 2)),
        figsize=(width, 6.0 if _single() else 3.2),
        layout="constrained",
    )
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
        axis.bar(positions, mean, yerr=np.nan_to_num(error), capsize=2, color=PALETTE[0])
        axis.set_xticks(
            positions, labels, rotation=60, ha="right", rotation_mode="anchor", fontsize="x-small"
        )
        axis.set_ylabel(label)
        axis.grid(True, axis="y", alpha=0.3)

    bars(
        size_axis,
        table["size_bytes_mean"],
        table["size_ci_low"],
        table["size_ci_high"],
        "mean size (bytes)",
    )
    if (table["size_bytes_mean"] > 0).any():
        from semcomp.analysis.log_ticks import log_scale

        log_scale(size_axis, "y")
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
            f"mean of {(scores or Scores())[satisfaction_metric].display}",
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
                f"mean {(scores or Scores())[name].axis_label}\n(no human ratings yet)",
            )
    return figure


def agreement_figure(
    points: pd.DataFrame,
    model_metric: str,
    human_metric: str,
    correlations: pd.DataFrame,
    scores: Scores | None = None,
) -> Figure:
    """Human rating against a metric (CLIP similarity), one colour per method, ρ and τ
    in the title (oriented: negated for a lower-is-better metric, as in the table)."""
    plt = _pyplot()
    width = figure_width()
    figure, axis = plt.subplots(
        figsize=(width, width * (0.95 if _single() else 0.45)), layout="constrained"
    )
    both = points.dropna(subset=[model_metric, human_metric])
    colours = colour_map(points["method"].unique())  # as in the other figures
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
    if "model_metric" in overall:
        overall = overall[overall["model_metric"] == model_metric]
    if not overall.empty:
        row = overall.iloc[0]
        axis.set_title(
            f"Spearman ρ = {row['spearman']:.2f} [{row['spearman_ci_low']:.2f}, "
            f"{row['spearman_ci_high']:.2f}]\nKendall τ = {row['kendall']:.2f} "
            f"[{row['kendall_ci_low']:.2f}, {row['kendall_ci_high']:.2f}]  (n = {int(row['n'])})",
            fontsize="x-small",
        )
    scores = describe(points, scores)
    axis.set_xlabel(scores[model_metric].axis_label)
    axis.set_ylabel(scores[human_metric].axis_label)
    axis.grid(True, alpha=0.3)
    place_legend(figure)
    return figure


def agreement_metrics_figure(table: pd.DataFrame, human_metric: str) -> Figure:
    """Which metric tracks the human ratings best: each metric's Spearman ρ and Kendall τ
    over all methods (rows of :func:`~semcomp.analysis.agreement.metric_agreement`) with
    95 % CIs, best first; a lower-is-better metric is marked "negated" (oriented)."""
    plt = _pyplot()
    rows = table[table["method"] == ALL].reset_index(drop=True)
    figure, axis = plt.subplots(
        figsize=(figure_width(), 1.0 + 0.45 * max(len(rows), 1)), layout="constrained"
    )
    if rows.empty:
        axis.text(0.5, 0.5, "no metric to correlate", ha="center", va="center")
        axis.set_axis_off()
        return figure
    positions = np.arange(len(rows))[::-1]
    for offset, name, colour in ((0.15, "spearman", PALETTE[0]), (-0.15, "kendall", PALETTE[1])):
        centre = rows[name].to_numpy(dtype=float)
        low = rows[f"{name}_ci_low"].to_numpy(dtype=float)
        high = rows[f"{name}_ci_high"].to_numpy(dtype=float)
        error = np.nan_to_num(np.vstack([centre - low, high - centre]).clip(min=0))
        label = "Spearman ρ" if name == "spearman" else "Kendall τ"
        axis.errorbar(
            centre,
            positions + offset,
            xerr=error,
            fmt="o",
            ms=4,
            capsize=2,
            color=colour,
            label=label,
        )
    labels = [
        f"{row.display} (negated)" if row.oriented else str(row.display)
        for row in rows.itertuples(index=False)
    ]
    labels = [f"{label}\nn = {int(n)}" for label, n in zip(labels, rows["n"], strict=True)]
    axis.set_yticks(positions, labels)
    axis.axvline(0, color="0.5", lw=0.8)
    axis.set_xlim(-1.05, 1.05)
    axis.set_xlabel(f"rank correlation with {human_metric} (95 % CI)")
    axis.grid(True, axis="x", alpha=0.3)
    place_legend(figure)
    return figure


def embedding_figure(results: pd.DataFrame) -> Figure:
    """Zero-shot top-1 accuracy (or cosine) of decoded embeddings against bpd, per family."""
    plt = _pyplot()
    width = figure_width()
    figure, axis = plt.subplots(
        figsize=(width, width * (0.85 if _single() else 0.45)), layout="constrained"
    )
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
    place_legend(figure)
    return figure


def zero_shot_figure(
    table: pd.DataFrame, scores: Scores | None = None, *, random_weights: bool = False
) -> Figure:
    """Zero-shot top-1 accuracy (%) against bits per pixel on a log axis, one curve per
    method and 95 % CIs as error bars, one panel per zero-shot metric: the PQVAE paper's
    Fig. 6 (``table`` from :func:`semcomp.analysis.zero_shot.accuracy_against_bpp`)."""
    plt = _pyplot()
    keys = list(dict.fromkeys(table["metric"]))
    width = figure_width()
    figure, axes = plt.subplots(
        1,
        max(len(keys), 1),
        figsize=(width, width * (0.85 if _single() else 0.45)),
        layout="constrained",
        squeeze=False,
    )
    colours = colour_map(table["method"].unique())
    for axis, key in zip(axes[0], keys, strict=False):
        rows = table[(table["metric"] == key) & (table["bpp_mean"] > 0)]
        for method, curve in rows.groupby("method", observed=True, sort=True):
            curve = curve.sort_values("bpp_mean")
            accuracy = 100 * curve["accuracy"]
            spread = 100 * np.vstack(
                [
                    curve["accuracy"] - curve["accuracy_ci_low"],
                    curve["accuracy_ci_high"] - curve["accuracy"],
                ]
            )
            axis.errorbar(
                curve["bpp_mean"],
                accuracy,
                yerr=np.nan_to_num(np.clip(spread, 0, None)),
                fmt="o-",
                ms=4,
                capsize=2,
                color=colours[str(method)],
                label=f"{method} (n = {int(curve['n'].max())})",
            )
        display = scores[key].display if scores is not None else key
        axis.set_title(display + (f" ({RANDOM_WEIGHTS_NOTE})" if random_weights else ""))
        from semcomp.analysis.log_ticks import log_scale

        log_scale(axis, "x")
        axis.set_xlabel("rate (bits per pixel)")
        axis.set_ylabel("zero-shot top-1 accuracy (%)")
        axis.set_ylim(-2, 102)
        axis.grid(True, which="both", alpha=0.3)
    place_legend(figure)
    return figure


def survey_dimensions_figure(dimensions: pd.DataFrame, survey: Any) -> Figure:
    """Mean rating of each scale question per method and operating point (one bar each,
    ``jpeg · quality=30``), ± one standard deviation (Survey B: objects, appearance,
    position, background, colour; the paper's Figures 1G–4G). ``survey`` is a survey
    definition: its ``id`` and ``questions`` (each with ``id``, ``kind`` and ``high``)."""

    plt = _pyplot()
    questions = [q for q in survey.questions if q.kind == "scale" and f"{q.id} mean" in dimensions]
    figure, axis = plt.subplots(
        figsize=(figure_width(), 3.0 if _single() else 3.2), layout="constrained"
    )
    keys = [k for k in ("method", "operating_point") if k in dimensions]
    methods = [group_label(*row) for row in dimensions[keys].itertuples(index=False)]
    colours = colour_map(methods)
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
    axis.set_ylabel(f"mean rating (Survey {survey.id})")
    axis.grid(True, axis="y", alpha=0.3)
    place_legend(figure)
    return figure


#: at most this many originals (rows) in an image grid
GRID_ORIGINALS = 6


def image_grid(cells: pd.DataFrame, *, title: str = "") -> Figure:
    """Originals × methods: one row per original (its image first), one column per method,
    each candidate's image captioned with its rate (for papers: ``report/grid.png/pdf``).

    ``cells`` has one row per candidate: ``original`` (its name), ``original_path``,
    ``method``, ``operating_point``, ``path`` (the candidate's image; missing or not an
    image gives a note in its place) and ``rate`` (the caption's text, e.g. ``0.31 bpp``).
    """
    from PIL import Image, UnidentifiedImageError

    plt = _pyplot()
    originals = list(dict.fromkeys(cells["original"]))
    methods = list(dict.fromkeys(cells["method"]))
    columns = 1 + len(methods)
    width = figure_width()
    aspect = 1.0  # height / width of the originals: rows as tall as their images
    for path in cells["original_path"].drop_duplicates():
        try:
            with Image.open(path) as image:
                aspect = image.height / image.width
            break
        except (OSError, UnidentifiedImageError, TypeError, ValueError, AttributeError):
            continue
    row = width / columns * aspect + 0.4  # the image and its caption (three lines)
    figure, axes = plt.subplots(
        max(1, len(originals)),
        columns,
        figsize=(width, row * max(1, len(originals)) + (0.25 if title else 0.05)),
        squeeze=False,
        layout="constrained",
    )

    def show(axis, path, caption: str, note: str) -> None:
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)
        axis.set_xlabel(caption, fontsize=6 if _single() else 7, labelpad=2)
        try:
            if not isinstance(path, str | Path):  # no file: text or a decoded embedding
                raise ValueError(path)
            with Image.open(path) as image:
                axis.imshow(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError, ValueError):
            axis.text(0.5, 0.5, note, ha="center", va="center", fontsize=6, wrap=True)

    for row, original in zip(axes, originals, strict=False):
        mine = cells[cells["original"] == original]
        show(row[0], mine["original_path"].iloc[0], f"original\n{original}", "original missing")
        for axis, method in zip(row[1:], methods, strict=True):
            candidate = mine[mine["method"] == method]
            if candidate.empty:
                show(axis, None, str(method), "no candidate")
                continue
            first = candidate.iloc[0]
            caption = f"{method}\n{first['rate']}"
            show(axis, first["path"], caption, "no image (text or embedding)")
    if title:
        figure.suptitle(title, fontsize="medium")
    return figure


def grid_cells(
    points: pd.DataFrame,
    original_paths: dict[str, str],
    candidate_paths: dict[str, str],
    *,
    bpp: float | None = None,
    originals: int = GRID_ORIGINALS,
) -> pd.DataFrame:
    """The cells of :func:`image_grid`: for each method the operating point whose mean bpp
    is nearest ``bpp`` (on a log scale; default the median of every operating point's mean
    bpp), a method without a rate at its first operating point; the first ``originals``
    originals (by name) with a candidate of every method, or the first with any when none
    has all. ``original_paths`` maps original ids and ``candidate_paths`` candidate ids to
    their files. Columns as :func:`image_grid` reads them, plus ``original_id``."""
    from semcomp.analysis.rd import rate_text

    columns = ["original_id", "original", "original_path", "method", "operating_point"]
    if points.empty:
        return pd.DataFrame(columns=[*columns, "path", "rate"])
    keys = ["method", "operating_point"]
    means = points.groupby(keys, observed=True)["bpp"].mean().reset_index()
    rated = means.dropna(subset=["bpp"])
    rated = rated[rated["bpp"] > 0]
    target = bpp if bpp is not None else (rated["bpp"].median() if not rated.empty else None)
    chosen = []
    for method, rows in means.groupby("method", observed=True, sort=True):
        with_rate = rows.dropna(subset=["bpp"])
        with_rate = with_rate[with_rate["bpp"] > 0]
        if target is not None and not with_rate.empty:
            distance = (np.log(with_rate["bpp"]) - np.log(target)).abs()
            chosen.append((method, with_rate.loc[distance.idxmin(), "operating_point"]))
        else:
            chosen.append((method, rows["operating_point"].iloc[0]))
    picked = points.merge(pd.DataFrame(chosen, columns=keys), on=keys)
    # a method without images (text payloads kept as text, decoded embeddings) is left out
    imaged = picked[picked["candidate_id"].isin(list(candidate_paths))]["method"].unique()
    picked = picked[picked["method"].isin(imaged)]
    chosen = [(method, point) for method, point in chosen if method in set(imaged)]
    methods = picked.groupby("original_id", observed=True)["method"].nunique()
    complete = methods[methods == len(chosen)].index
    shown = picked[picked["original_id"].isin(complete if len(complete) else methods.index)]
    names = shown.drop_duplicates("original_id").sort_values("original")
    keep = names["original_id"].head(originals)
    shown = shown[shown["original_id"].isin(keep)].drop_duplicates(["original_id", "method"])
    shown = shown.sort_values(["original", "method"])
    cells = shown[["original_id", "original", "method", "operating_point"]].copy()
    cells["original_path"] = shown["original_id"].map(original_paths)
    cells["path"] = shown["candidate_id"].map(candidate_paths)
    cells["rate"] = [
        f"{op}\n"
        + (
            f"{value:.3g} bpp"
            if pd.notna(value)
            else rate_text(bits)
            if pd.notna(bits)
            else "no rate"
        )
        for op, bits, value in zip(
            shown["operating_point"], shown["rate_bits"], shown["bpp"], strict=True
        )
    ]
    return cells.reset_index(drop=True)


#: caption metrics drawn by :func:`caption_metrics_figure`, in panel order (those with values)
CAPTION_METRICS = ("BLEU-4", "CIDEr-D", "ROUGE-L", "METEOR", "SPICE", "CLIP-text")


def codec_family(name: str) -> str:
    """A codec's family: its name without the settings in brackets
    (``pqvae-shared (d_sub=16, K=4) [run]`` → ``pqvae-shared``)."""
    import re

    return re.sub(r"\s*[\(\[].*$", "", str(name)) or str(name)


def caption_metrics_figure(table: pd.DataFrame) -> Figure:
    """Caption metrics against bits per embedding (log x): one panel per metric with
    values, one colour per codec family, its codecs joined by a line in rate order (the
    captioning half of the PQVAE paper's §4.6). ``table``: ``codec``, ``bits_per_image``
    and one column per metric (``clipcap eval``'s ``metrics.csv``)."""
    metrics = [m for m in CAPTION_METRICS if m in table and pd.to_numeric(table[m]).notna().any()]
    figure, axes = panel_grid(len(metrics), 4, 0.3)
    families = table.assign(family=table["codec"].map(codec_family))
    colours = colour_map(families["family"].unique())
    for axis, metric in zip(axes.flat, metrics, strict=False):
        for family, group in families.groupby("family", sort=True):
            group = group.sort_values("bits_per_image")
            axis.plot(
                group["bits_per_image"],
                pd.to_numeric(group[metric]),
                "o-",
                ms=4,
                color=colours[family],
                label=str(family),
            )
        from semcomp.analysis.log_ticks import log_scale

        log_scale(axis, "x")
        axis.set_xlabel("bits per embedding")
        axis.set_ylabel(metric)
        axis.grid(True, alpha=0.3)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_axis_off()
    if not metrics:
        axes.flat[0].text(0.5, 0.5, "no caption metric", ha="center", va="center")
    place_legend(figure)
    return figure


def caption_examples_figure(examples: list[dict[str, Any]]) -> Figure:
    """Images and their captions (the PQVAE paper's Fig. 7): one row per image, the image
    on the left; on the right its reference caption and the caption from each codec's
    features. Each example: ``image`` (a path), ``title``, ``reference`` and ``captions``
    (``(label, caption)`` pairs, the original features' first)."""
    import textwrap

    from PIL import Image

    plt = _pyplot()
    width = figure_width()
    lines = [2 + len(e["captions"]) for e in examples]
    heights = [max(1.1, 0.16 * n * (1.6 if _single() else 1)) for n in lines]
    figure, axes = plt.subplots(
        len(examples),
        2,
        figsize=(width, sum(heights) + 0.1),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 3], "height_ratios": heights},
        layout="constrained",
    )
    wrap = 55 if _single() else 95
    for (picture, text), example in zip(axes, examples, strict=True):
        with Image.open(example["image"]) as image:
            picture.imshow(np.asarray(image.convert("RGB")))
        picture.set_axis_off()
        picture.set_title(str(example["title"]), fontsize=6)
        text.set_axis_off()
        rows = [("reference", example["reference"]), *example["captions"]]
        body = "\n".join(
            textwrap.shorten(f"{label}: {caption}", wrap * 2, placeholder=" …")
            for label, caption in rows
        )
        text.text(0, 1, body, va="top", ha="left", fontsize=6 if _single() else 7, wrap=True)
    return figure
