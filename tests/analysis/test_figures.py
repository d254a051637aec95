"""Report figures: PNG and PDF from one layout, dense scatters rasterised in the PDF."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semcomp.analysis import figures


@pytest.fixture(autouse=True)
def figure_worker(monkeypatch):
    """The figure worker as outside the suite: conftest.py turns it off (SEMCOMP_FIGURE_WORKER)
    where every core has a test worker."""
    monkeypatch.delenv(figures.FIGURE_WORKER_ENV, raising=False)


def scatter_figure(points: int):
    plt = figures._pyplot()
    rng = np.random.default_rng(0)
    figure, axis = plt.subplots(figsize=(4, 3))
    axis.scatter(rng.uniform(size=points), rng.uniform(size=points), s=4, label="candidates")
    axis.plot([0, 1], [0.2, 0.9], "o-", label="mean")
    axis.set_title("a title\nin two lines")
    axis.legend(loc="best")
    return figure


def test_png_and_pdf_share_one_layout_and_equal_savefig_tight(tmp_path, monkeypatch):
    from matplotlib.legend import Legend

    reference = scatter_figure(6000)
    reference.savefig(tmp_path / "reference.png", dpi=150, bbox_inches="tight")
    searches = []
    search = Legend._find_best_position

    def counted(self, *args, **kwargs):
        searches.append(1)
        return search(self, *args, **kwargs)

    monkeypatch.setattr(Legend, "_find_best_position", counted)
    written = figures.save_figure(scatter_figure(6000), tmp_path / "figure")
    assert [p.name for p in written] == ["figure.png", "figure.pdf"]
    assert len(searches) == 1  # savefig(bbox_inches="tight") twice searched four times
    expected = np.asarray(Image.open(tmp_path / "reference.png"))
    assert np.array_equal(np.asarray(Image.open(written[0])), expected)
    pdf = written[1].read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Subtype /Image" in pdf  # 6,000 dots: one image
    small = figures.save_figure(scatter_figure(50), tmp_path / "small")[1].read_bytes()
    assert b"/Subtype /Image" not in small  # a few dots stay vector


def test_a_constrained_layout_runs_once_for_both_files(tmp_path, monkeypatch):
    """savefig lays a constrained figure out again for each file; here the layout found
    at the PNG's dpi is kept, so the PNG is that of ``savefig`` and the PDF shares it."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    def constrained(points: int):
        plt = figures._pyplot()
        figure, axes = plt.subplots(1, 2, figsize=(4, 3), layout="constrained")
        rng = np.random.default_rng(0)
        for axis in axes:
            axis.scatter(rng.uniform(size=points), rng.uniform(size=points), s=4)
            axis.set_ylabel("a label")
        return figure

    reference = constrained(40)
    reference.savefig(tmp_path / "reference.png", dpi=150, bbox_inches="tight")
    runs = []
    execute = ConstrainedLayoutEngine.execute

    def counted(self, figure):
        runs.append(1)
        return execute(self, figure)

    monkeypatch.setattr(ConstrainedLayoutEngine, "execute", counted)
    png, pdf = figures.save_figure(constrained(40), tmp_path / "figure")
    assert len(runs) == 1  # savefig: once per file and per draw of the tight crop
    assert np.array_equal(
        np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / "reference.png"))
    )
    assert pdf.read_bytes().startswith(b"%PDF")
    runs.clear()
    figures.save_figure(constrained(40), tmp_path / "plain", tight=False)
    assert len(runs) == 1


def test_dense_panels_rasterise_their_scatters_and_keep_summary_markers_vector(tmp_path):
    plt = figures._pyplot()
    figure, (dense, sparse) = plt.subplots(1, 2, figsize=(4, 3))
    rng = np.random.default_rng(0)
    for size in (3000, 3000):  # each under RASTER_POINTS, together over it
        dense.scatter(rng.uniform(size=size), rng.uniform(size=size), s=4)
    marker = dense.scatter([0.5], [0.5], s=30)
    few = sparse.scatter(rng.uniform(size=200), rng.uniform(size=200), s=4)
    collections = list(dense.collections)
    figures.save_figure(figure, tmp_path / "figure")
    assert [c.get_rasterized() for c in collections] == [True, True, False]
    assert not marker.get_rasterized() and not few.get_rasterized()


def test_figures_without_a_tight_crop_keep_their_size_and_look(tmp_path):
    reference = scatter_figure(3000)
    reference.savefig(tmp_path / "reference.png", dpi=150)
    png = figures.save_figure(scatter_figure(3000), tmp_path / "plain", tight=False)[0]
    assert Image.open(png).size == (600, 450)  # 4 × 3 in at 150 dpi
    expected = np.asarray(Image.open(tmp_path / "reference.png"))
    assert np.array_equal(np.asarray(Image.open(png)), expected)


def test_figures_saved_in_background_are_the_files_saved_here(tmp_path):
    """Inside ``saved_in_background`` a forked worker writes each figure while the caller
    goes on; the files are those written in this process, all there on leaving."""
    import os

    (tmp_path / "here").mkdir()
    (tmp_path / "worker").mkdir()
    figures.save_figure(scatter_figure(6000), tmp_path / "here" / "scatter")
    with figures.saved_in_background():
        saver = figures._BACKGROUND.get()
        assert saver is not None and saver.pool._processes  # a second core: a worker
        (worker,) = saver.pool._processes
        assert worker != os.getpid()
        written = figures.save_figure(scatter_figure(6000), tmp_path / "worker" / "scatter")
        assert [p.name for p in written] == ["scatter.png", "scatter.pdf"]
    assert figures._BACKGROUND.get() is None
    assert (tmp_path / "worker" / "scatter.png").read_bytes() == (
        tmp_path / "here" / "scatter.png"
    ).read_bytes()
    assert (tmp_path / "worker" / "scatter.pdf").stat().st_size > 0


def scatter_at_paper_width(points: int):
    """A figure as wide as the paper width in effect (module level: the worker draws it)."""
    figure = scatter_figure(points)
    figure.set_size_inches(figures.figure_width(), 2.5)
    return figure


def test_figures_drawn_by_the_worker_are_the_files_drawn_here(tmp_path):
    """``save_drawn`` hands the worker the drawing function and its arguments: it draws at
    the caller's paper width, with the panel label, the files the caller would write."""
    (tmp_path / "here").mkdir()
    (tmp_path / "worker").mkdir()
    with figures.paper_width("single"):
        reference = scatter_at_paper_width(6000)  # drawn here, labelled and written
        figures.label_panel(reference, "simulated ratings")
        figures.save_figure(reference, tmp_path / "reference", tight=False)
        with figures.saved_in_background(enabled=False):
            figures.save_drawn(
                tmp_path / "here" / "scatter",
                scatter_at_paper_width,
                6000,
                panel_label="simulated ratings",
                tight=False,
            )
        with figures.saved_in_background():
            drawn = []
            submit = figures._BACKGROUND.get().submit
            figures._BACKGROUND.get().submit = lambda *a: drawn.append(a) or submit(*a)
            written = figures.save_drawn(
                tmp_path / "worker" / "scatter",
                scatter_at_paper_width,
                6000,
                panel_label="simulated ratings",
                tight=False,
            )
            assert drawn == []  # no figure drawn and pickled here
        assert [p.name for p in written] == ["scatter.png", "scatter.pdf"]
    expected = (tmp_path / "reference.png").read_bytes()
    assert Image.open(tmp_path / "reference.png").size == (525, 375)  # 3.5 in: single
    assert (tmp_path / "here" / "scatter.png").read_bytes() == expected
    assert (tmp_path / "worker" / "scatter.png").read_bytes() == expected
    assert (tmp_path / "worker" / "scatter.pdf").stat().st_size > 0


def test_a_figure_the_worker_cannot_write_raises_on_leaving(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError), figures.saved_in_background():
        figures.save_figure(scatter_figure(10), tmp_path / "no such folder" / "scatter")
    with figures.saved_in_background(enabled=False):  # written here, at once
        assert figures._BACKGROUND.get() is None
        figures.save_figure(scatter_figure(10), tmp_path / "scatter")
        assert (tmp_path / "scatter.png").exists()


def test_no_figure_worker_when_the_environment_says_so(tmp_path, monkeypatch):
    """``SEMCOMP_FIGURE_WORKER=0``: each figure is written in this process, as it comes."""
    monkeypatch.setenv(figures.FIGURE_WORKER_ENV, "0")
    with figures.saved_in_background():
        assert figures._BACKGROUND.get() is None
        figures.save_figure(scatter_figure(10), tmp_path / "scatter")
        assert (tmp_path / "scatter.png").exists() and (tmp_path / "scatter.pdf").exists()
    monkeypatch.setenv(figures.FIGURE_WORKER_ENV, "1")
    with figures.saved_in_background():
        assert figures._BACKGROUND.get() is not None


REPORT_IMPORTS_THREAD = """
import sys, threading
from semcomp import report

seen = []
start = threading.Thread.start

def recorded(thread):
    seen.append((thread.name, "matplotlib.pyplot" in sys.modules))
    start(thread)

threading.Thread.start = recorded
report._import_ahead().join()
print(seen)
"""


def test_the_report_imports_pyplot_before_its_import_thread_does():
    """The report's import-ahead thread imports bjontegaard, which imports pyplot: without a
    figure worker (which imports pyplot before it forks), the report's own first figure
    and that thread imported pyplot at once, and one saw it half-initialised."""
    import os
    import subprocess
    import sys

    env = os.environ | {figures.FIGURE_WORKER_ENV: "0"}
    done = subprocess.run(
        [sys.executable, "-c", REPORT_IMPORTS_THREAD], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('semcomp-report-imports', True)]"


def test_log_axes_label_their_ticks_as_plain_text_like_matplotlib():
    """Log-axis ticks are labelled as matplotlib labels them, as plain text (no mathtext to
    parse at every draw), and the figure still travels pickled to the figure worker."""
    import pickle

    from semcomp.analysis.log_ticks import log_scale, plain_label

    assert plain_label(r"$\mathdefault{10^{-3}}$") == "10⁻³"
    assert plain_label(r"$\mathdefault{10^{2}}$") == "10²"
    assert plain_label(r"$\mathdefault{2\times10^{-1}}$") == "2×10⁻¹"
    assert plain_label(r"$\mathdefault{-10^{1}}$") == "-10¹"
    assert plain_label(r"$\mathdefault{0.5}$") == "0.5"
    assert plain_label("") == "" and plain_label("bpp") == "bpp"
    plt = figures._pyplot()
    for low, high in ((1e-4, 2.0), (0.2, 0.9)):  # decades; less than one (minor labels)
        labels = {}
        for plain in (False, True):
            figure, axis = plt.subplots(figsize=(4, 3))
            axis.plot([low, high], [1, 2])
            if plain:
                log_scale(axis, "x")
                figure = pickle.loads(pickle.dumps(figure))
                axis = figure.axes[0]
            else:
                axis.set_xscale("log")
            figure.canvas.draw()
            labels[plain] = [
                t.get_text() for which in (False, True) for t in axis.get_xticklabels(minor=which)
            ]
            plt.close(figure)
        assert any(labels[True]) and not any("$" in text for text in labels[True])
        assert labels[True] == [plain_label(text) for text in labels[False]]


def test_waiting_for_the_worker_this_process_writes_the_figures_it_has_not_started(
    tmp_path, monkeypatch
):
    """On leaving (or at ``wait_for_figures``) the caller writes the last figures the worker
    has not started while the worker writes the first; every file is written, and each is
    the file written without a worker."""
    written_here = []
    write = figures.write_figure

    def recorded(figure, out_stem, **kwargs):
        written_here.append(out_stem.name)
        return write(figure, out_stem, **kwargs)

    (tmp_path / "here").mkdir()
    (tmp_path / "both").mkdir()
    for index in range(6):
        figures.save_figure(scatter_figure(6000), tmp_path / "here" / f"scatter{index}")
    with figures.saved_in_background():
        monkeypatch.setattr(figures, "write_figure", recorded)  # here: the worker is forked
        for index in range(6):
            figures.save_figure(scatter_figure(6000), tmp_path / "both" / f"scatter{index}")
    assert written_here and "scatter5" in written_here  # the last, written here
    assert "scatter0" not in written_here  # the first, by the worker
    for index in range(6):
        png = f"scatter{index}.png"
        assert (tmp_path / "both" / png).read_bytes() == (tmp_path / "here" / png).read_bytes()
        assert (tmp_path / "both" / f"scatter{index}.pdf").stat().st_size > 0


def _figure_drawn_by(folder, name: str, seconds: float = 0.0):
    """A small figure that records which process drew it (and takes ``seconds``)."""
    import os
    import time

    time.sleep(seconds)
    (folder / f"{name}.pid").write_text(str(os.getpid()))
    return scatter_figure(10)


def test_the_worker_is_given_one_figure_at_a_time_so_the_caller_takes_over_the_rest(tmp_path):
    """While the worker writes a slow figure, the figures handed over after it are not
    queued in its pool: the caller's process, when it waits, draws and writes them (the
    last first), and every file is written once."""
    import os

    with figures.saved_in_background():
        if figures._BACKGROUND.get() is None:  # one core, or not Linux: nothing to hand over
            return
        figures.save_drawn(tmp_path / "slow", _figure_drawn_by, tmp_path, "slow", 3.0)
        for name in ("a", "b", "c"):
            figures.save_drawn(tmp_path / name, _figure_drawn_by, tmp_path, name)
        figures.wait_for_figures()
    drawn_by = {n: int((tmp_path / f"{n}.pid").read_text()) for n in ("slow", "a", "b", "c")}
    assert drawn_by["slow"] != os.getpid()
    assert {drawn_by[n] for n in ("a", "b", "c")} == {os.getpid()}
    for name in ("slow", "a", "b", "c"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
        assert (tmp_path / f"{name}.pdf").stat().st_size > 0
