"""Aggregates over the same images, and no method disappearing silently (issue 11, items 4–5)."""

import json

import numpy as np
import pandas as pd
import pytest

from semcomp.analysis.coverage import (
    common_images,
    curve_coverage,
    curve_images,
    methods_without_rate,
    missing_points,
)
from semcomp.analysis.rd import COMMON, PAIRED, UNPAIRED, summarise
from semcomp.analysis.table1 import NO_SIZE, table1

CLIP = "clip_(cos+1)/2[m]"


def uneven_points() -> pd.DataFrame:
    """Four originals. ``jpeg``'s small target failed for c and d (large images): its mean
    at that point covers a and b only, which score low, so per point its curve would run
    backwards. ``webp`` has both points for a, b, c; ``dalle`` has no rate."""
    rows = []
    scores = {"a": 0.5, "b": 0.55, "c": 0.9, "d": 0.95}
    for image, score in scores.items():
        if image in "ab":
            rows.append((image, "jpeg", "bytes=900", 900.0, score))
        rows.append((image, "jpeg", "bytes=20000", 5000.0, score + 0.02))
        if image != "d":
            rows.append((image, "webp", "q10", 400.0, score - 0.1))
            rows.append((image, "webp", "q90", 4000.0, score))
        rows.append((image, "dalle", "dalle", np.nan, 0.7))
    frame = pd.DataFrame(
        rows, columns=["original", "method", "operating_point", "rate_bytes", CLIP]
    )
    frame["original_id"] = "id-" + frame["original"]
    frame["category"] = "landscape"
    frame["codec"] = frame["method"]
    frame["replicate"] = 0
    frame["rate_bits"] = (frame["rate_bytes"] * 8).astype("Int64")
    frame["bpp"] = frame["rate_bits"].astype(float) / 10_000
    return frame


def test_a_curve_uses_the_originals_with_a_candidate_at_every_point():
    points = uneven_points()
    unpaired = summarise(points).set_index(["method", "operating_point"])
    # per point, the small target's mean covers the two low-scoring images only
    assert unpaired.loc[("jpeg", "bytes=900"), "n"] == 2
    assert unpaired.loc[("jpeg", "bytes=20000"), "n"] == 4
    assert (unpaired["image_set"] == UNPAIRED).all()
    kept, left_out = curve_images(points)
    paired = summarise(kept, image_set=PAIRED).set_index(["method", "operating_point"])
    assert paired.loc[("jpeg", "bytes=900"), "n"] == paired.loc[("jpeg", "bytes=20000"), "n"] == 2
    assert paired.loc[("jpeg", "bytes=20000"), f"{CLIP} mean"] == pytest.approx(0.545)
    assert (paired["image_set"] == PAIRED).all()
    assert set(paired.index.get_level_values("method")) == {"jpeg", "webp", "dalle"}
    jpeg_out = left_out[left_out["method"] == "jpeg"]
    assert sorted(jpeg_out["original"]) == ["c", "d"]
    assert jpeg_out["reason"].str.contains("bytes=900").all()
    assert left_out[left_out["method"] == "webp"].empty  # d has no webp at all: not a gap
    coverage = curve_coverage(points)
    assert "jpeg: 2 of 4 originals" in coverage.note
    assert coverage.dropped.empty


def test_comparisons_use_the_originals_common_to_the_methods_and_name_the_limit():
    points = uneven_points()
    coverage = common_images(points, "table1")
    assert coverage.image_set == COMMON and coverage.n == 2
    assert set(coverage.points["original"]) == {"a", "b"}
    assert coverage.methods == ["dalle", "jpeg", "webp"]
    assert "n = 2 originals" in coverage.note and "limited by jpeg (2)" in coverage.note
    table = table1(coverage.points).table.set_index(["method", "operating_point"])
    assert (table["images"] == 2).all()
    # the method without a rate keeps its row and similarity; its size is "—"
    dalle = table.loc[("dalle", "dalle")]
    assert np.isnan(dalle["size_bytes_mean"]) and dalle["size"] == NO_SIZE
    assert dalle[f"{CLIP} mean"] == pytest.approx(0.7)
    assert "no rate (size —): dalle" in table1(coverage.points).note
    left = coverage.left_out
    assert set(left.loc[left["method"] == "webp", "original"]) == {"c"}
    assert left.loc[left["method"] == "webp", "reason"].str.contains("jpeg").all()
    unpaired = common_images(points, "table1", unpaired=True)
    assert unpaired.image_set == UNPAIRED and len(unpaired.points) == len(points)


def test_a_method_sharing_no_original_is_dropped_with_its_reason_not_the_comparison():
    points = uneven_points()
    lonely = points[(points["method"] == "webp") & (points["original"] == "a")].assign(
        method="lonely", original_id="id-e", original="e"
    )
    coverage = common_images(pd.concat([points, lonely]), "pareto", dropped=[("x", "no rate")])
    assert coverage.n == 2 and "lonely" not in coverage.methods
    reasons = coverage.dropped.set_index("method")["reason"]
    assert "share none" in reasons["lonely"] and reasons["x"] == "no rate"
    assert "lonely" in coverage.note


def test_operating_points_and_methods_without_any_candidate_are_named():
    configured = {
        "jpeg": ["bytes=10", "bytes=900", "bytes=20000"],
        "webp": ["q10", "q90"],
        "ghost": ["ghost"],
    }
    dropped = missing_points(uneven_points(), configured)
    assert list(zip(dropped["method"], dropped["reason"], strict=True)) == [
        ("jpeg", "operating point bytes=10 has no candidate (see failures.csv)"),
        ("ghost", "no candidate at any operating point (see failures.csv)"),
    ]
    assert (dropped["output"] == "curves").all()


def test_methods_without_rate_are_named():
    assert methods_without_rate(uneven_points()) == ["dalle"]
    assert methods_without_rate(uneven_points().dropna(subset=["rate_bits"])) == []


def test_a_method_without_a_rate_is_a_labelled_band_in_the_figure():
    from semcomp.analysis.figures import NO_RATE_LABEL, no_rate_bands, rd_chart, table1_figure

    points, _ = curve_images(uneven_points())
    summary = summarise(points)
    bands = no_rate_bands(points, summary, CLIP)
    assert list(bands["method"]) == ["dalle"]
    assert bands["mean"].iloc[0] == pytest.approx(0.7)
    figure = rd_chart(points, summary, CLIP, rate="bytes", pareto=True)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert f"dalle ({NO_RATE_LABEL})" in labels and {"jpeg", "webp"} <= set(labels)
    only_bands = rd_chart(points[points["method"] == "dalle"], summary, CLIP)
    assert f"dalle ({NO_RATE_LABEL})" in only_bands.axes[0].get_legend_handles_labels()[1]
    table = table1(points).table
    texts = [t.get_text() for t in table1_figure(table, None).axes[0].texts]
    assert f"— ({NO_RATE_LABEL})" in texts


@pytest.fixture(scope="module")
def uneven_study(tmp_path_factory, tiny_clip):
    from helpers import write_uneven_study

    return write_uneven_study(tmp_path_factory.mktemp("uneven"), tiny_clip)


def test_report_of_a_study_whose_target_fails_for_some_images(uneven_study, tmp_path):
    from semcomp.report import write_report
    from semcomp.study import Study

    with Study.open(uneven_study, read_only=True) as study:
        files = write_report(study, tmp_path / "report", rate="bytes")
    folder = files.folder
    rd = pd.read_csv(folder / "rd.csv")
    dalle = rd[rd["method"] == "dalle-gr"]
    assert len(dalle) == 4 and dalle["rate_bytes"].isna().all()  # in rd.csv, rate empty
    summary = pd.read_csv(folder / "summary.csv").set_index(["method", "operating_point"])
    jpeg = summary.loc["jpeg-bytes"]
    assert list(jpeg["n"]) == [2, 2] and (summary["image_set"] == PAIRED).all()
    assert summary.loc["dalle-gr", "n"].iloc[0] == 4
    left_out = pd.read_csv(folder / "left_out.csv")
    curves = left_out[(left_out["output"] == "curves")]
    assert sorted(curves["original"]) == ["landscape_2", "person_2"]
    assert set(curves["method"]) == {"jpeg-bytes"}
    table = pd.read_csv(folder / "table1.csv", keep_default_na=False)
    assert (table["images"] == 2).all() and (table["image_set"] == COMMON).all()
    assert (table["n"] == 2).all()
    assert table.loc[table["method"] == "dalle-gr", "size"].tolist() == [NO_SIZE]
    assert table.loc[table["method"] == "dalle-gr", "size_bytes_mean"].tolist() == [""]
    dropped = pd.read_csv(folder / "dropped.csv")
    no_rate = dropped[dropped["method"] == "dalle-gr"]
    assert no_rate["output"].str.contains("BD-rate").any()
    assert no_rate["reason"].str.contains("no rate").all()
    for name in ("pareto.csv", "bd_rate.csv", "iso_satisfaction.csv"):
        frame = pd.read_csv(folder / name)
        assert (frame["n"] == 2).all() and (frame["image_set"] == COMMON).all(), name
    assert "dalle-gr" not in set(pd.read_csv(folder / "bd_rate.csv")["test"])
    result = json.loads((folder / "methods" / "dalle-gr.json").read_text())["results"]
    assert result["rate_bytes"] == [None] and result["n"] == [4]  # valid JSON, null rate
    readme = (folder / "README.txt").read_text()
    rate_less = readme.split("## Methods without a rate")[1].split("##")[0]
    assert "dalle-gr" in rate_less
    assert "limited by jpeg-bytes (2)" in readme
    assert "jpeg-bytes: 2 of 4 originals" in readme
    assert "- left_out.csv:" in readme and "- table1.csv:" in readme
    assert any("n = 2 originals" in note for note in files.notes)


def test_report_unpaired_keeps_each_point_over_its_own_originals(uneven_study, tmp_path):
    from semcomp.cli import main

    out = tmp_path / "unpaired"
    with pytest.raises(SystemExit) as exit_code:
        main(["report", str(uneven_study), "--out", str(out), "--rate", "bytes", "--unpaired"])
    assert exit_code.value.code in (0, None)
    summary = pd.read_csv(out / "summary.csv").set_index(["method", "operating_point"])
    assert sorted(summary.loc["jpeg-bytes", "n"]) == [2, 4]
    assert (summary["image_set"] == UNPAIRED).all()
    table = pd.read_csv(out / "table1.csv")
    assert sorted(table["images"]) == [2, 4, 4, 4, 4] and (table["image_set"] == UNPAIRED).all()
    assert pd.read_csv(out / "left_out.csv").empty
