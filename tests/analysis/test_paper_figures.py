"""Figures fit a paper: one- and two-column widths, TrueType fonts in PDF, a colour-blind-safe
palette, the legend off the data, CI bands for curves, digits that tell scores apart, and
the originals × methods image grid (also through ``semcomp report --grid``)."""

import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from PIL import Image

from helpers import photo
from metric_store import FID, PSNR
from semcomp.analysis.figures import (
    PALETTE,
    colour_map,
    draw_set_rd,
    grid_cells,
    image_grid,
    paper_width,
    rd_chart,
    save_figure,
    score_format,
)
from semcomp.analysis.rd import summarise
from semcomp.analysis.scores import ScoreInfo, Scores

SCORES = Scores(
    [
        ScoreInfo(PSNR, "PSNR", True, 0.0, None, unit="dB", kind="pairwise"),
        ScoreInfo(FID, "FID", False, 0.0, None, kind="set"),
    ]
)


def two_methods() -> pd.DataFrame:
    rows = []
    for method, offset in (("jpeg", 0.0), ("webp", 1.5)):
        for image in ("a", "b", "c"):
            for point, rate in enumerate((1000, 2000, 4000)):
                score = 30 + 2 * point + offset + (image == "b")
                rows.append((f"{method}-{image}-{point}", image, method, f"q{point}", rate, score))
    frame = pd.DataFrame(
        rows,
        columns=["candidate_id", "original", "method", "operating_point", "rate_bytes", PSNR],
    )
    frame["original_id"] = frame["original"]
    frame["category"] = "landscape"
    frame["kind"] = "codec"
    frame["codec"] = frame["method"]
    frame["replicate"] = 0
    frame["rate_bits"] = frame["rate_bytes"] * 8
    frame["bpp"] = frame["rate_bits"] / 10_000
    return frame


def test_colour_map_uses_the_colour_blind_safe_palette_everywhere():
    colours = colour_map(["webp", "jpeg", "blip"])
    assert list(colours.values()) == PALETTE[:3]  # sorted keys, the palette's order
    assert colour_map(["jpeg"])["jpeg"] == PALETTE[0]


@pytest.mark.parametrize(("width", "inches"), [("single", 3.5), ("double", 7.0)])
def test_rd_chart_fits_a_paper_column_with_truetype_fonts_and_the_legend_off_the_data(
    tmp_path, width, inches
):
    points = two_methods()
    summary = summarise(points, seed=0, scores=SCORES)
    with paper_width(width):
        figure = rd_chart(points, summary, PSNR, rate="bpp", title="study", scores=SCORES)
    assert figure.get_size_inches()[0] == pytest.approx(inches)
    axis = figure.axes[0]
    assert axis.get_legend() is None and len(figure.legends) == 1
    figure.canvas.draw()
    legend = figure.legends[0].get_window_extent()
    assert not legend.overlaps(axis.get_window_extent()), "the legend hides no data"
    # curves: their CI a shaded band, no error bars
    assert len([c for c in axis.collections if isinstance(c, PolyCollection)]) == 2
    assert not axis.containers
    assert {line.get_color() for line in axis.lines} >= {PALETTE[0], PALETTE[1]}
    pdf = save_figure(figure, tmp_path / "rd")[1].read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf, "TrueType fonts embedded (fonttype 42)"


def test_unknown_width_is_refused():
    with pytest.raises(ValueError, match="single, double"), paper_width("a4"):
        pass


def test_a_set_metric_curve_has_a_band_and_a_single_point_error_bars():
    import matplotlib.pyplot as plt

    summary = pd.DataFrame(
        {
            "method": ["jpeg", "jpeg", "blip"],
            "operating_point": ["q0", "q1", "caption"],
            "bpp_mean": [0.1, 0.4, 0.01],
            f"{FID} value": [40.0, 30.0, 50.0],
            f"{FID} ci_low": [35.0, 26.0, 45.0],
            f"{FID} ci_high": [46.0, 33.0, 56.0],
            f"{FID} n": [2, 2, 2],
        }
    )
    figure, axis = plt.subplots()
    assert draw_set_rd(axis, summary, FID, rate="bpp", scores=SCORES)
    assert len([c for c in axis.collections if isinstance(c, PolyCollection)]) == 1  # jpeg
    assert len(axis.containers) == 1  # blip's one operating point: error bars
    plt.close(figure)


def test_score_format_tells_close_scores_apart():
    assert score_format([0.99981, 0.99984, 0.5]) == ".5g"
    assert score_format([31.25, 35.5]) == ".4g"
    assert f"{0.0001234:{score_format([0.0001234, 0.0001236])}}" == "0.0001234"
    assert score_format([np.nan, 1.0]) == ".4g"


def test_image_grid_has_a_row_per_original_and_a_column_per_method(tmp_path):
    points = two_methods()
    files = {}
    for index, name in enumerate([*points["original_id"].unique(), *points["candidate_id"]]):
        files[name] = tmp_path / f"{name}.png"
        photo(48, 32, index).save(files[name])
    originals = {i: str(files[i]) for i in points["original_id"].unique()}
    candidates = {c: str(files[c]) for c in points["candidate_id"]}
    cells = grid_cells(points, originals, candidates, bpp=1.6, originals=2)
    assert list(cells["original"]) == ["a", "a", "b", "b"]
    assert set(cells["operating_point"]) == {"q1"}  # 1.6 bpp per q1 of each method
    assert cells["rate"].iloc[0] == "q1\n1.6 bpp"
    # a method without images is left out of the grid
    without = {c: p for c, p in candidates.items() if not c.startswith("webp")}
    assert set(grid_cells(points, originals, without)["method"]) == {"jpeg"}
    with paper_width("single"):
        figure = image_grid(cells, title="study")
    assert figure.get_size_inches()[0] == pytest.approx(3.5)
    assert len(figure.axes) == 2 * 3 and len(figure.axes[0].images) == 1
    assert "jpeg\nq1\n1.6 bpp" in [axis.get_xlabel() for axis in figure.axes]


def test_report_writes_the_image_grid_at_one_paper_width(jpeg_study, tmp_path):
    from typer.testing import CliRunner

    from semcomp.cli import app

    study = tmp_path / "study"
    shutil.copytree(jpeg_study, study)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["report", str(study), "--out", str(out), "--grid", "--width", "single"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "grid.pdf").is_file() and "grid.png" in (out / "README.txt").read_text()
    with Image.open(out / "grid.png") as grid:
        assert grid.width <= (3.5 + 2 * 0.1) * 150  # 150 dpi, cropped, 0.1 in padding
    with Image.open(out / "rd.png") as rd:
        assert rd.width == pytest.approx(3.5 * 150, abs=2)
    refused = CliRunner().invoke(app, ["report", str(study), "--width", "a4"])
    assert refused.exit_code == 2 and "--width must be one of single, double" in refused.output
