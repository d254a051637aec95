"""Report figures: PNG and PDF from one layout, dense scatters rasterised in the PDF."""

from __future__ import annotations

import numpy as np
from PIL import Image

from semcomp.analysis import figures


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


def test_a_figure_the_worker_cannot_write_raises_on_leaving(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError), figures.saved_in_background():
        figures.save_figure(scatter_figure(10), tmp_path / "no such folder" / "scatter")
    with figures.saved_in_background(enabled=False):  # written here, at once
        assert figures._BACKGROUND.get() is None
        figures.save_figure(scatter_figure(10), tmp_path / "scatter")
        assert (tmp_path / "scatter.png").exists()
