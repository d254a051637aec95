"""Rate–distortion comparisons: iso-satisfaction, Pareto front, BD-rate, Table 1, agreement."""

import numpy as np
import pandas as pd
import pytest

from semcomp.analysis.agreement import ALL, agreement
from semcomp.analysis.curves import bd_rate, iso_satisfaction, pareto_front
from semcomp.analysis.embedding_results import embedding_results
from semcomp.analysis.rd import human_metrics, rd_points, summarise
from semcomp.analysis.table1 import MISSING_HUMAN, table1
from semcomp.errors import AnalysisError
from semcomp.store import Store

SAT = "human.A.median[similarity]"
CLIP = "clip_(cos+1)/2[m]"


def synthetic_points() -> pd.DataFrame:
    """Two images; a 4-point pixel codec and a 1-point caption codec with two replicates."""
    rows = []
    for image in ("a", "b"):
        for point, (rate, score) in enumerate(((1000, 6.0), (2000, 7.5), (4000, 9.0), (8000, 10))):
            rows.append((image, "jpeg", f"q{point}", 0, rate + (image == "b") * 100, score))
        rows.append((image, "caption", "caption", 0, 50, 8.0 if image == "a" else 6.0))
        rows.append((image, "caption", "caption", 1, 50, 9.0 if image == "a" else 7.0))
    frame = pd.DataFrame(
        rows, columns=["original", "method", "operating_point", "replicate", "rate_bytes", SAT]
    )
    frame["original_id"] = frame["original"]
    frame["category"] = "landscape"
    frame["codec"] = frame["method"]
    frame["rate_bits"] = frame["rate_bytes"] * 8
    frame["bpp"] = frame["rate_bits"] / 10_000
    frame[CLIP] = frame[SAT] / 10 + np.linspace(0, 0.01, len(frame))
    return frame


def test_iso_satisfaction_finds_the_cheapest_point_reaching_the_level():
    per_image, per_method = iso_satisfaction(synthetic_points(), SAT, 8.5, "bytes")
    jpeg = per_image[per_image.method == "jpeg"].set_index("original")
    assert jpeg.loc["a", "min_rate_bytes"] == 4000 and jpeg.loc["b", "min_rate_bytes"] == 4100
    caption = per_image[per_image.method == "caption"].set_index("original")
    assert caption.loc["a", "min_rate_bytes"] == 50  # replicates averaged: 8.5
    assert np.isnan(caption.loc["b", "min_rate_bytes"])  # 6.5 never reaches 8.5
    summary = per_method.set_index("method")
    assert summary.loc["caption", "images_reaching"] == 1
    assert summary.loc["jpeg", "curve_rate_bytes"] == 4050
    assert summary.loc["jpeg", "curve_operating_point"] == "q2"
    assert np.isnan(summary.loc["caption", "curve_rate_bytes"])  # mean 7.5 < 8.5


def test_pareto_front_keeps_only_undominated_points():
    summary = summarise(synthetic_points())
    front = pareto_front(summary, "rate_bytes_mean", f"{SAT} mean")
    assert list(zip(front.method, front.operating_point, strict=True)) == [
        ("caption", "caption"),
        ("jpeg", "q2"),
        ("jpeg", "q3"),
    ]


def test_bd_rate_of_a_curve_against_itself_shifted():
    summary = summarise(synthetic_points())
    cheaper = summary[summary.method == "jpeg"].assign(method="half")
    cheaper[["rate_bytes_mean", "bpp_mean"]] /= 2
    both = pd.concat([summary, cheaper])
    assert bd_rate(both, "jpeg", "half", SAT, "bytes") == pytest.approx(-50, abs=0.5)
    wasteful = cheaper.iloc[[0]].assign(rate_bytes_mean=10_000, operating_point="waste")
    with_waste = pd.concat([both, wasteful])  # costs most, scores least: never chosen
    assert bd_rate(with_waste, "jpeg", "half", SAT, "bytes") == pytest.approx(-50, abs=0.5)
    with pytest.raises(AnalysisError, match=r"4 efficient operating points.*'caption' has 1"):
        bd_rate(both, "jpeg", "caption", SAT, "bytes")
    apart = cheaper.assign(**{f"{SAT} mean": cheaper[f"{SAT} mean"] + 20})
    with pytest.raises(AnalysisError, match="do not overlap"):
        bd_rate(pd.concat([summary, apart]), "jpeg", "half", SAT, "bytes")


def test_table1_means_of_medians_with_cis():
    result = table1(synthetic_points())
    rows = result.table.set_index(["method", "operating_point"])
    assert result.satisfaction_metric == SAT
    caption = rows.loc[("caption", "caption")]
    assert caption["size_bytes_mean"] == 50
    assert caption["satisfaction_mean"] == pytest.approx(7.5)  # images 8.5 and 6.5
    assert caption["satisfaction_ci_low"] <= 7.5 <= caption["satisfaction_ci_high"]
    assert rows.loc[("jpeg", "q3"), "size_bytes_mean"] == 8050
    no_humans = table1(synthetic_points().drop(columns=[SAT]))
    assert no_humans.satisfaction_metric is None and no_humans.note == MISSING_HUMAN
    assert f"{CLIP} mean" in no_humans.table.columns


def test_agreement_reports_rank_correlations_with_cis():
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 1, 60)
    points = pd.DataFrame(
        {
            "method": np.repeat(["x", "y"], 30),
            "clip_cos[m]": clip,
            "human.A.mean[similarity]": clip * 9 + 1 + rng.normal(0, 0.5, 60),
        }
    )
    table = agreement(points).set_index("method")
    overall = table.loc[ALL]
    assert overall["n"] == 60 and 0.8 < overall["spearman"] <= 1
    assert overall["spearman_ci_low"] < overall["spearman"] < overall["spearman_ci_high"]
    assert 0.6 < overall["kendall"] < overall["spearman"]
    assert overall["spearman_p"] < 1e-6
    assert set(table.index) == {ALL, "x", "y"}
    assert agreement(points.drop(columns=["human.A.mean[similarity]"])).empty


def test_embedding_results_from_sweep_and_eval_files(tmp_path):
    folder = tmp_path / "pqvae" / "sweep"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "method": ["pqvae-shared (d_sub=16, K=4)", "scalar (1 bit)"],
            "bpd": [0.52, 1.0],
            "top1": [0.8, 0.7],
            "raw_top1": [0.9, 0.9],
            "cosine": [0.9, 0.8],
        }
    ).to_csv(folder / "results.csv", index=False)
    (tmp_path / "pqvae" / "eval.json").write_text('{"method": "float16", "bpd": 16, "top1": 0.9}')
    (tmp_path / "pqvae" / "notes.json").write_text('{"hello": 1}')
    (tmp_path / "other.json").write_text('{"hello": 1}')
    results = embedding_results(
        tmp_path, [tmp_path / "missing.csv", tmp_path / "other.json", tmp_path / "pqvae"]
    )
    assert sorted(results.table["method"]) == [
        "float16",
        "pqvae-shared (d_sub=16, K=4)",
        "scalar (1 bit)",
    ]
    problems = {path.name: reason for path, reason in results.problems}
    assert "no column method" in problems["other.json"] and problems["missing.csv"]
    assert "notes.json" not in problems  # found by searching, not named: passed over
    (tmp_path / "pqvae" / "broken.json").write_text('{"method": ')
    problems = {path.name for path, _ in embedding_results(tmp_path).problems}
    assert problems == {"broken.json"}  # unreadable is reported wherever it is


def test_embedding_results_of_a_real_pqvae_sweep_folder(tmp_path):
    """`semcomp pqvae sweep` leaves runs/<config>/train_state.json and sweep.json beside
    results.csv; only results.csv is read, in the study and in a folder named explicitly."""
    from semcomp.codecs.pqvae.data import EmbeddingSet
    from semcomp.codecs.pqvae.evaluate import sweep
    from semcomp.codecs.pqvae.model import PAPER_PRESET
    from semcomp.codecs.pqvae.train import TrainConfig

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    data = EmbeddingSet(rng.normal(size=(40, 16)) + labels[:, None], labels, list("abcd"))
    out = tmp_path / "study" / "pqvae" / "sweep"
    results = sweep(
        data,
        rng.normal(size=(4, 16)).astype("float32"),
        out,
        d_subs=[4],
        sizes=[2],
        base=PAPER_PRESET.model_copy(  # small enough for seconds on a CPU
            update={"hidden": (32, 16), "residual_hidden": 8, "channels": 8, "d_sub": 4}
        ),
        train_config=TrainConfig(epochs=1, lr=1e-3, batch_size=16),
        coder="fixed",
        log=lambda _: None,
        progress=False,
    )
    assert list(out.glob("runs/*/train_state.json")) and (out / "sweep.json").exists()
    found = embedding_results(tmp_path / "study")
    assert found.problems == [] and found.files == [out / "results.csv"]
    assert sorted(found.table["method"]) == sorted(results["method"])
    elsewhere = embedding_results(tmp_path / "empty-study", [out])
    assert elsewhere.problems == [] and elsewhere.files == [out / "results.csv"]


def test_report_writes_every_comparison_for_a_study_with_every_method(all_methods_study):
    from semcomp.report import write_report
    from semcomp.study import Study

    with Study.open(all_methods_study, read_only=True) as study:
        files = write_report(study, all_methods_study / "report-test", rate="bytes")
        points = rd_points(study.store, study.scope())
    names = {path.name for path in files.extra}
    assert {
        "table1.csv",
        "table1.png",
        "table1.pdf",
        "iso_satisfaction.csv",
        "pareto.csv",
        "bd_rate.csv",
        "rd_iso_pareto.png",
        "agreement.csv",
        "agreement.pdf",
    } <= names
    assert set(points["kind"]) == {"pixel", "textual", "external", "embedding"}
    assert SAT in human_metrics(points)
    table = pd.read_csv(files.folder / "table1.csv")
    assert table["satisfaction_mean"].notna().sum() > 0
    assert table.loc[table.method == "pqvae-demo", "rated_images"].eq(0).all()
    agree = pd.read_csv(files.folder / "agreement.csv")
    assert agree.loc[agree.method == ALL, "spearman"].iloc[0] > 0.5
    with Store(all_methods_study, read_only=True) as store:
        assert store.count("scores") > 0


@pytest.mark.parametrize(
    "options",
    [
        {"rate": "bytes", "colour_by": "method", "aggregated": True},
        {"rate": "bpp", "colour_by": "category", "aggregated": False, "pareto": True},
        {"rate": "bits", "iso_level": 8.5, "pareto": True, "random_weights": True},
    ],
)
def test_rd_chart_draws_every_option_as_png(options):
    from semcomp.analysis.figures import png_bytes, rd_chart

    points = synthetic_points()
    figure = rd_chart(points, summarise(points), SAT, **options)
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    assert axis.get_ylabel() == "Survey A median rating (similarity)"  # its display name
    labels = axis.get_legend_handles_labels()[1]
    if options.get("pareto"):
        assert "Pareto front" in labels
    if options.get("iso_level"):
        assert "iso-satisfaction 8.5" in labels
    assert png_bytes(figure).startswith(b"\x89PNG")


def test_report_of_a_study_without_scores_says_what_is_missing(tmp_path, image_folder, tiny_clip):
    from helpers import write_study
    from semcomp.report import write_report
    from semcomp.study import Study

    root = write_study(tmp_path / "partial", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    notes = "\n".join(files.notes)
    assert "no human ratings" in notes and "no similarity scores yet" in notes
    assert "agreement" in notes
    assert (files.folder / "table1.png").exists()
    assert len(pd.read_csv(files.folder / "table1.csv")) == 2  # jpeg at two qualities


def same_name_points() -> pd.DataFrame:
    """Three originals all named "1": landscape/a/1.jpg, landscape/b/1.jpg and person/1.jpg.

    Each reaches 8.5 at a different operating point of one JPEG sweep.
    """
    reach = {"land-a": 0, "land-b": 1, "person": 2}  # index of the first point ≥ 8.5
    rows = []
    for original_id, first in reach.items():
        for point, rate in enumerate((1000, 2000, 4000)):
            score = 9.0 if point >= first else 6.0
            rows.append((original_id, "jpeg", f"q{point}", rate, score))
    frame = pd.DataFrame(
        rows, columns=["original_id", "method", "operating_point", "rate_bytes", SAT]
    )
    frame["original"] = "1"
    frame["category"] = np.where(frame["original_id"] == "person", "person", "landscape")
    frame["codec"] = "jpeg"
    frame["replicate"] = 0
    frame["rate_bits"] = frame["rate_bytes"] * 8
    frame["bpp"] = frame["rate_bits"] / 10_000
    return frame


def test_iso_satisfaction_and_table1_tell_apart_originals_that_share_a_name():
    per_image, per_method = iso_satisfaction(same_name_points(), SAT, 8.5, "bytes")
    assert dict(zip(per_image.original_id, per_image.min_rate_bytes, strict=True)) == {
        "land-a": 1000,
        "land-b": 2000,
        "person": 4000,
    }
    assert (per_image.original == "1").all()
    jpeg = per_method.set_index("method").loc["jpeg"]
    assert jpeg["images"] == 3 and jpeg["images_reaching"] == 3
    assert jpeg["median_min_rate_bytes"] == 2000 and jpeg["smallest_min_rate_bytes"] == 1000
    table = table1(same_name_points()).table
    assert (table["images"] == 3).all()
    assert table.set_index("operating_point").loc["q1", "satisfaction_mean"] == pytest.approx(8)


def test_bd_rate_refuses_curves_that_barely_overlap():
    summary = summarise(synthetic_points())
    jpeg = summary[summary.method == "jpeg"]  # mean satisfaction 6, 7.5, 9, 10
    partial = jpeg.assign(method="higher", **{f"{SAT} mean": jpeg[f"{SAT} mean"] + 3})
    # overlap 9–10 of the combined 6–13: 14 %; bjontegaard only warns (min_overlap 0.75)
    with pytest.raises(AnalysisError, match=r"overlap over only 14% .*needs 75%"):
        bd_rate(pd.concat([summary, partial]), "jpeg", "higher", SAT, "bytes")
    mostly = jpeg.assign(method="mostly", **{f"{SAT} mean": jpeg[f"{SAT} mean"] + 0.5})
    # overlap 6.5–10 of 6–10.5: 78 %: defined
    assert np.isfinite(bd_rate(pd.concat([summary, mostly]), "jpeg", "mostly", SAT, "bytes"))
    from semcomp.report import bd_rate_table

    table = bd_rate_table(pd.concat([summary, partial]), SAT, "bytes").set_index(["anchor", "test"])
    assert np.isnan(table.loc[("jpeg", "higher"), "bd_rate_percent"])
    assert "overlap over only 14%" in table.loc[("jpeg", "higher"), "reason"]


def tied_pairs(rows: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rounded CLIP-like scores against 1–10 ratings: many ties on both sides."""
    rng = np.random.default_rng(seed)
    xs = np.round(rng.uniform(0, 1, (rows, n)), 1)
    ys = np.clip(np.round(xs * 9 + 1 + rng.normal(0, 2, (rows, n))), 1, 10)
    return xs, ys


@pytest.mark.parametrize("n", [40, 700])  # vectorised pairs, and scipy row by row
def test_rank_correlation_rows_equal_scipy_on_tied_data(n):
    from scipy.stats import kendalltau, spearmanr

    from semcomp.analysis.agreement import KENDALL_VECTORISED_MAX, kendall_rows, spearman_rows

    xs, ys = tied_pairs(5, n)
    xs[0] = 0.5  # a constant row: undefined, as in scipy
    with np.errstate(invalid="ignore", divide="ignore"):
        kendall, spearman = kendall_rows(xs, ys), spearman_rows(xs, ys)
    assert np.isnan(kendall[0]) and np.isnan(spearman[0])
    for row in range(1, 5):
        assert kendall[row] == pytest.approx(kendalltau(xs[row], ys[row]).statistic, abs=1e-12)
        assert spearman[row] == pytest.approx(spearmanr(xs[row], ys[row]).statistic, abs=1e-12)
    assert (n > KENDALL_VECTORISED_MAX) == (n == 700)


def test_kendall_bootstrap_of_thousands_of_candidates_stays_small():
    """All n² pairs of n = 3000 at once took ~150 MB per resample chunk (and minutes)."""
    import tracemalloc

    from semcomp.analysis.agreement import kendall_rows
    from semcomp.analysis.stats import paired_bootstrap_ci

    xs, ys = tied_pairs(3, 3000)
    tracemalloc.start()
    try:
        kendall_rows(xs, ys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB"
    x, y = tied_pairs(1, 20_000)
    tracemalloc.start()
    try:
        low, high = paired_bootstrap_ci(x[0], y[0], lambda a, b: a.mean(-1) - b.mean(-1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert low < high and peak < 100e6, f"{peak / 1e6:.0f} MB"  # 2000 × 20,000 × 2 = 640 MB


def test_summary_takes_the_image_as_its_unit_like_table1():
    """Two diffusion replicates of one image are one sample, not two."""
    from semcomp.analysis.stats import mean_ci

    points = synthetic_points()
    points.loc[(points.original == "b") & (points.method == "jpeg"), SAT] = np.nan  # unrated
    summary = summarise(points, seed=3).set_index(["method", "operating_point"])
    caption = summary.loc[("caption", "caption")]
    assert caption["n"] == 2 and caption[f"{SAT} n"] == 2  # 2 images × 2 replicates
    assert caption[f"{SAT} mean"] == pytest.approx(7.5)
    assert (caption[f"{SAT} mean_ci_low"], caption[f"{SAT} mean_ci_high"]) == mean_ci(
        np.array([8.5, 6.5]), 3
    )
    first = table1(points, seed=3).table.set_index(["method", "operating_point"])
    assert caption[f"{SAT} mean_ci_low"] == first.loc[("caption", "caption"), "satisfaction_ci_low"]
    jpeg = summary.loc[("jpeg", "q0")]
    assert jpeg["n"] == 2 and jpeg[f"{SAT} n"] == 1 and jpeg[f"{CLIP} n"] == 2
    assert jpeg["rate_bytes_mean"] == 1050


def test_curve_crossings_follow_the_drawn_curve_on_a_log_rate_axis():
    from semcomp.analysis.curves import curve_crossings

    summary = pd.DataFrame(
        {
            "method": ["m"] * 3 + ["flat"],
            "operating_point": ["a", "b", "c", "x"],
            "rate_bytes_mean": [1000.0, 100.0, 10_000.0, 50.0],
            "s mean": [8.0, 6.0, 9.0, 3.0],
        }
    )
    at = curve_crossings(summary, 7.0, "s mean", "rate_bytes_mean").set_index("method")
    assert list(at.index) == ["m"]  # "flat" never reaches 7
    assert at.loc["m", "rate"] == pytest.approx(np.sqrt(100 * 1000))  # halfway, in log rate
    assert at.loc["m", "operating_point"] == "a"
    start = curve_crossings(summary, 5.0, "s mean", "rate_bytes_mean").set_index("method")
    assert start.loc["m", "rate"] == 100  # the curve starts above the level


def test_rate_text_shows_bits_when_bytes_are_not_whole():
    from semcomp.analysis.rd import rate_text

    assert rate_text(8000) == "1,000 bytes"
    assert rate_text(8001) == "8,001 bits (1,000.1 bytes)"
    assert rate_text(pd.NA) == rate_text(None) == "rate unknown"
