"""Every metric downstream: direction, display names, set metrics, in the analysis and report."""

import json

import numpy as np
import pandas as pd
import pytest

from metric_store import CLIP, CLIP_COS, FID, LPIPS, PSNR, SAT
from semcomp.analysis.agreement import ALL, metric_agreement
from semcomp.analysis.coverage import RATE_COMPARISONS
from semcomp.analysis.curves import (
    IMAGE_COLUMNS,
    bd_metric,
    bd_rate,
    curve_crossings,
    iso_satisfaction,
    metric_iso_satisfaction,
    pareto_front,
)
from semcomp.analysis.rd import compressai_results, metric_columns, summarise, summary_columns
from semcomp.analysis.scores import ScoreInfo, Scores, default_figure_keys, file_stem
from semcomp.analysis.table1 import table1
from semcomp.errors import AnalysisError

SCORES = Scores(
    [
        ScoreInfo(PSNR, "PSNR", True, 0.0, None, unit="dB", kind="pairwise"),
        ScoreInfo(LPIPS, "LPIPS (AlexNet)", False, 0.0, None, kind="pairwise"),
        ScoreInfo(FID, "FID", False, 0.0, None, kind="set"),
    ]
)


def test_scores_read_from_the_metrics_table():
    rows = pd.DataFrame(
        [
            # a CLIP row as migration 3 leaves it: display = key
            {
                "name": "clip_(cos+1)/2[ViT-L-14-336/openai]",
                "kind": "embedding",
                "display": "clip_(cos+1)/2[ViT-L-14-336/openai]",
                "higher_is_better": 1,
                "low": 0.0,
                "high": 1.0,
                "formula": "(cos+1)/2",
                "identity": None,
            },
            # written after the migration by the score stage: no display, no range
            {
                "name": "clip_cos[ViT-B-32/laion2b_s34b_b79k]",
                "kind": "embedding",
                "display": None,
                "higher_is_better": 1,
                "low": None,
                "high": None,
                "formula": "cos",
                "identity": None,
            },
            {
                "name": "psnr",
                "kind": "pairwise",
                "display": "PSNR",
                "higher_is_better": 1,
                "low": 0.0,
                "high": None,
                "formula": "psnr",
                "identity": json.dumps({"metric": "psnr", "unit": "dB"}),
            },
            {
                "name": "lpips[alex]",
                "kind": "pairwise",
                "display": "LPIPS (AlexNet)",
                "higher_is_better": 0,
                "low": 0.0,
                "high": None,
                "formula": "",
                "identity": "{}",
            },
            {
                "name": "fid",
                "kind": "set",
                "display": "FID",
                "higher_is_better": 0,
                "low": 0.0,
                "high": None,
                "formula": "",
                "identity": "{}",
            },
            # the survey import's row: default kind, and the migration's 0–1 range
            {
                "name": SAT,
                "kind": "embedding",
                "display": SAT,
                "higher_is_better": 1,
                "low": 0.0,
                "high": 1.0,
                "formula": "median(ratings of survey A question similarity, 1–10)",
                "identity": None,
            },
        ]
    )
    scores = Scores.from_frame(rows)
    clip = scores["clip_(cos+1)/2[ViT-L-14-336/openai]"]
    assert clip.display == "CLIP ViT-L/14@336 similarity (cos+1)/2"
    assert clip.axis_label == clip.display and (clip.low, clip.high) == (0.0, 1.0)
    cosine = scores["clip_cos[ViT-B-32/laion2b_s34b_b79k]"]
    assert cosine.display == "CLIP ViT-B/32 (laion2b_s34b_b79k) cosine"
    assert (cosine.low, cosine.high) == (-1.0, 1.0)
    assert scores["psnr"].axis_label == "PSNR (dB)" and scores["psnr"].higher_is_better
    assert scores["lpips[alex]"].axis_label == "LPIPS (AlexNet), lower is better"
    assert scores["fid"].is_set and scores.set_keys() == ["fid"]
    human = scores[SAT]
    assert human.is_human and (human.low, human.high) == (1.0, 10.0)
    assert scores.human() == [SAT] and "fid" not in scores.per_candidate()
    assert scores.model() == [k for k in scores.keys if k not in ("fid", SAT)]
    # a key the table does not list is described by its form
    assert scores["something"].display == "something" and scores["something"].higher_is_better
    assert file_stem("lpips[alex]") == "lpips_alex"
    assert file_stem(SAT) == "human_A_median_similarity"  # no dots: a suffix can follow
    points = pd.DataFrame(columns=["method", "psnr", "lpips[alex]", SAT, "caption"])
    assert metric_columns(points, scores) == ["psnr", "lpips[alex]", SAT]
    assert metric_columns(points) == ["lpips[alex]", SAT]  # without the table: bracketed only


def test_default_figures_draw_each_metric_once():
    scores = Scores.infer([CLIP_COS, CLIP, SAT, "human.A.mean[similarity]"])
    scores = Scores([*scores, *SCORES])
    points = pd.DataFrame(columns=[CLIP_COS, CLIP, SAT, "human.A.mean[similarity]", PSNR, LPIPS])
    # the satisfaction index, scaled CLIP first, no raw-cosine twin, then the set metric
    assert default_figure_keys(scores, points) == [SAT, CLIP, PSNR, LPIPS, FID]


def curve(method: str, rates, scores, metric=LPIPS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": method,
            "operating_point": [f"q{i}" for i in range(len(rates))],
            "rate_bytes_mean": rates,
            "bpp_mean": rates,
            f"{metric} mean": scores,
        }
    )


def test_pareto_front_minimises_a_lower_is_better_metric():
    frame = pd.concat(
        [
            curve("a", [100, 200, 400], [0.5, 0.3, 0.35]),  # q2 costs more and is worse
            curve("b", [150, 300], [0.45, 0.1]),
        ]
    )
    front = pareto_front(frame, "rate_bytes_mean", f"{LPIPS} mean", higher_is_better=False)
    assert list(zip(front.method, front.operating_point, strict=True)) == [
        ("a", "q0"),
        ("b", "q0"),
        ("a", "q1"),
        ("b", "q1"),
    ]
    # read as higher-is-better, the worst point would lead the front
    wrong = pareto_front(frame, "rate_bytes_mean", f"{LPIPS} mean")
    assert list(wrong.operating_point) == ["q0"]


def test_iso_level_of_a_lower_is_better_metric_is_reached_from_above():
    points = pd.DataFrame(
        {
            "original_id": ["x", "x", "x", "y", "y", "y"],
            "original": ["x", "x", "x", "y", "y", "y"],
            "category": "c",
            "method": "m",
            "operating_point": ["q0", "q1", "q2"] * 2,
            "rate_bytes": [100, 200, 400, 100, 200, 400],
            LPIPS: [0.5, 0.25, 0.1, 0.5, 0.4, 0.15],
        }
    )
    per_image, per_method = iso_satisfaction(points, LPIPS, 0.3, "bytes", higher_is_better=False)
    assert dict(zip(per_image.original, per_image.min_rate_bytes, strict=True)) == {
        "x": 200,
        "y": 400,
    }
    assert per_method.loc[0, "images_reaching"] == 2
    summary = curve("m", [100, 200, 400], [0.5, 0.3, 0.1])
    crossing = curve_crossings(
        summary, 0.4, f"{LPIPS} mean", "rate_bytes_mean", higher_is_better=False
    )
    assert crossing.loc[0, "rate"] == pytest.approx(np.sqrt(100 * 200))  # halfway, log rate
    assert curve_crossings(summary, 0.4, f"{LPIPS} mean", "rate_bytes_mean").loc[0, "rate"] == 100


def test_iso_satisfaction_of_a_lower_is_better_metric_at_its_own_level():
    lpips = {  # per image, at rates 100, 200, 400
        "a": [0.5, 0.3, 0.1],
        "b": [0.6, 0.4, 0.2],
        "c": [0.7, 0.6, 0.5],
        "d": [0.9, 0.8, 0.7],
    }
    points = pd.DataFrame(
        [
            (image, image, "c", "m", f"q{i}", rate, value)
            for image, values in lpips.items()
            for i, (rate, value) in enumerate(zip((100, 200, 400), values, strict=True))
        ],
        columns=[*IMAGE_COLUMNS, "method", "operating_point", "rate_bytes", LPIPS],
    )
    level, per_image, per_method = metric_iso_satisfaction(
        points, LPIPS, "bytes", higher_is_better=False, display="LPIPS (AlexNet)"
    )
    assert level == pytest.approx(0.55)  # the median of every candidate's LPIPS
    # reached at or below: a at 100 (0.5), b at 200 (0.4), c at 400 (0.5), d never
    reached = dict(zip(per_image.original, per_image.min_rate_bytes, strict=True))
    assert reached["a"] == 100 and reached["b"] == 200 and reached["c"] == 400
    assert np.isnan(reached["d"])
    row = per_method.iloc[0]
    assert (row.images, row.images_reaching, row.share_reaching) == (4, 3, 0.75)
    assert row.median_min_rate_bytes == 200 and row.smallest_min_rate_bytes == 100
    # operating-point means 0.675, 0.525, 0.375: q1 is the cheapest at or below 0.55
    assert (row.curve_rate_bytes, row.curve_operating_point) == (200, "q1")
    assert (row.metric, row.display, row.reaching) == (LPIPS, "LPIPS (AlexNet)", "at or below")
    assert not row.higher_is_better and set(per_image["metric"]) == {LPIPS}
    # read as higher-is-better, the same level is reached by b, c and d at once
    _, _, wrong = metric_iso_satisfaction(points, LPIPS, "bytes")
    assert wrong.loc[0, "median_min_rate_bytes"] == 100
    assert wrong.loc[0, "reaching"] == "at or above"
    level, per_image, per_method = metric_iso_satisfaction(points, PSNR, "bytes")
    assert np.isnan(level) and per_image.empty and per_method.empty  # no PSNR scores


def test_each_metric_figure_draws_its_iso_line(monkeypatch, tmp_path):
    import semcomp.analysis.figures as figures

    drawn = {}

    def record(figure, out_stem, **options):
        axis = figure.axes[0]
        drawn[out_stem.name] = axis.get_legend_handles_labels()[1]
        return []

    monkeypatch.setattr(figures, "write_figure", record)  # each figure, drawn, as written
    points = synthetic_points()
    summary = summarise(points, scores=SCORES, set_scores=SET_SCORES)
    figures.rd_figure(
        points,
        summary,
        tmp_path / "rd",
        rate="bytes",
        scores=SCORES,
        metrics=[PSNR, LPIPS, FID],
        iso_levels={LPIPS: 0.35, PSNR: 31.0},
    )
    assert "iso-satisfaction 0.35" in drawn[file_stem(LPIPS)]
    assert "iso-satisfaction 31" in drawn[file_stem(PSNR)]
    assert not any(label.startswith("iso") for label in drawn[file_stem(FID)])
    assert not any(label.startswith("iso") for label in drawn["rd"])  # the panels: none


def test_bd_rate_and_bd_metric_sign_conventions_for_both_directions():
    rates = 100.0 * 2.0 ** np.arange(9)  # eight octaves: shifted by one, they overlap
    lpips = 0.6 - 0.1 * np.log2(rates / 100)  # falls with rate
    summary = pd.concat([curve("anchor", rates, lpips), curve("test", rates / 2, lpips)])
    # the test needs half the rate for the same LPIPS: -50 %, as for a higher-is-better score
    value = bd_rate(summary, "anchor", "test", LPIPS, "bytes", higher_is_better=False)
    assert value == pytest.approx(-50, abs=0.5)
    # at equal rate the test's LPIPS is 0.1 lower: negative BD-metric, an improvement
    delta = bd_metric(summary, "anchor", "test", LPIPS, "bytes", higher_is_better=False)
    assert delta == pytest.approx(-0.1, abs=0.005)
    with pytest.raises(AnalysisError, match="efficient operating points"):  # read as higher
        bd_rate(summary, "anchor", "test", LPIPS, "bytes")
    psnr = curve("anchor", rates, 30 + 3 * np.log2(rates / 100), PSNR)
    both = pd.concat([psnr, psnr.assign(method="test", rate_bytes_mean=rates / 2)])
    assert bd_rate(both, "anchor", "test", PSNR, "bytes") == pytest.approx(-50, abs=0.5)
    assert bd_metric(both, "anchor", "test", PSNR, "bytes") == pytest.approx(3, abs=0.05)


def test_bd_rate_and_bd_metric_find_each_methods_front_once_for_every_pair(monkeypatch):
    """With ``fronts`` (as ``bd_rate.csv`` passes for a metric's pairs), each method's
    efficient points are found once; the values and errors are those found without."""
    from semcomp.analysis import curves

    rates = 100.0 * 2.0 ** np.arange(9)
    lpips = 0.6 - 0.1 * np.log2(rates / 100)
    summary = pd.concat(
        [
            curve("anchor", rates, lpips),
            curve("test", rates / 2, lpips),
            curve("third", rates * 1.5, lpips - 0.01),
            curve("flat", rates[:1], lpips[:1]),  # one point: no BD-rate
        ]
    )
    pairs = [(a, t) for a in ("anchor", "test", "third", "flat") for t in ("anchor", "test")]

    def results(**fronts):
        found = []
        for anchor, test in pairs:
            for function in (bd_rate, bd_metric):
                try:
                    found.append(
                        function(
                            summary, anchor, test, LPIPS, "bytes", higher_is_better=False, **fronts
                        )
                    )
                except AnalysisError as exc:
                    found.append(str(exc))
        return found

    alone = results()
    searched = []
    front = curves.pareto_front

    def counted(frame, *args, **kwargs):
        searched.append(frame["method"].iloc[0] if len(frame) else None)
        return front(frame, *args, **kwargs)

    monkeypatch.setattr(curves, "pareto_front", counted)
    kept: dict = {}
    assert results(fronts=kept) == alone
    assert sorted(searched) == ["anchor", "flat", "test", "third"]  # once each
    assert any("efficient operating points" in str(r) for r in alone)  # flat's error kept


def synthetic_points() -> pd.DataFrame:
    rows = []
    for image in ("a", "b"):
        for point, rate in enumerate((1000, 2000, 4000)):
            score = 30 + point + (image == "b")
            rows.append((image, "jpeg", f"q{point}", rate, score, 0.5 - 0.1 * point))
    frame = pd.DataFrame(
        rows, columns=["original", "method", "operating_point", "rate_bytes", PSNR, LPIPS]
    )
    frame["original_id"] = frame["original"]
    frame["category"] = "landscape"
    frame["codec"] = "jpeg"
    frame["replicate"] = 0
    frame["rate_bits"] = frame["rate_bytes"] * 8
    frame["bpp"] = frame["rate_bits"] / 10_000
    return frame


SET_SCORES = pd.DataFrame(
    {
        "metric": FID,
        "method": "jpeg",
        "operating_point": ["q0", "q1", "q2"],
        "n": [2, 2, 2],
        "value": [40.0, 30.0, 20.0],
        "ci_low": [35.0, 26.0, 17.0],
        "ci_high": [46.0, 33.0, 24.0],
    }
)


def test_summary_json_and_table1_hold_every_metric_and_set_metrics():
    points = synthetic_points()
    summary = summarise(points, scores=SCORES, set_scores=SET_SCORES)
    rows = summary.set_index("operating_point")
    assert rows.loc["q1", f"{PSNR} mean"] == pytest.approx(31.5)  # unbracketed key counted
    assert rows.loc["q2", f"{FID} value"] == 20 and rows.loc["q2", f"{FID} n"] == 2
    assert rows.loc["q0", f"{FID} ci_low"] == 35 and rows.loc["q0", f"{FID} ci_high"] == 46
    assert summary_columns(FID, SCORES) == (
        f"{FID} value",
        f"{FID} ci_low",
        f"{FID} ci_high",
        f"{FID} n",
    )
    assert f"{PSNR} mean" not in summarise(points).columns  # without the table it is unknown
    payload = compressai_results(summary, "jpeg", "JPEG", SCORES)
    results = payload["results"]
    assert results[PSNR] == pytest.approx([30.5, 31.5, 32.5])
    assert results[FID] == [40.0, 30.0, 20.0] and results[f"{FID} n"] == [2, 2, 2]
    assert len(results[f"{LPIPS} ci_low"]) == 3
    assert payload["metrics"][LPIPS]["higher_is_better"] is False
    assert payload["metrics"][PSNR]["unit"] == "dB" and payload["metrics"][FID]["kind"] == "set"
    json.dumps(payload)  # valid JSON
    first = table1(points, scores=SCORES, set_scores=SET_SCORES).table.set_index("operating_point")
    assert first.loc["q0", f"{PSNR} mean"] == pytest.approx(30.5)
    assert first.loc["q2", f"{LPIPS} mean"] == pytest.approx(0.3)
    assert first.loc["q1", f"{FID} value"] == 30 and first.loc["q1", f"{FID} n"] == 2


def test_metric_agreement_turns_lower_is_better_metrics_around():
    rng = np.random.default_rng(0)
    quality = rng.uniform(0, 1, 60)
    points = pd.DataFrame(
        {
            "method": np.repeat(["x", "y"], 30),
            "original_id": np.arange(60).astype(str),
            PSNR: 30 + 10 * quality,
            LPIPS: 0.5 - 0.4 * quality + rng.normal(0, 0.05, 60),
            SAT: np.clip(np.round(1 + 9 * quality + rng.normal(0, 1, 60)), 1, 10),
        }
    )
    table = metric_agreement(points, scores=SCORES)
    assert list(table.model_metric) == [PSNR, LPIPS]  # best first; all methods only
    assert set(table.method) == {ALL}
    lpips = table.set_index("model_metric").loc[LPIPS]
    assert lpips["oriented"] and not lpips["higher_is_better"]
    assert lpips["display"] == "LPIPS (AlexNet)"
    assert lpips["spearman"] > 0.5 and lpips["spearman_ci_low"] > 0  # agrees, once turned
    per_method = metric_agreement(points, SAT, [LPIPS], scores=SCORES, per_method=True)
    assert list(per_method.method) == [ALL, "x", "y"]
    assert metric_agreement(points.drop(columns=[SAT]), scores=SCORES).empty


def test_report_of_a_study_with_many_metrics(metric_study, tmp_path):
    from semcomp.analysis.figures import rd_chart
    from semcomp.analysis.rd import rd_points, set_points, study_scores
    from semcomp.report import iso_levels, write_report
    from semcomp.study import Study

    with Study.open(metric_study, read_only=True) as study:
        files = write_report(study, tmp_path / "report", rate="bpp")
        points = rd_points(study.store, study.scope())
        scores = study_scores(study.store)
        sets = set_points(study.store, study.scope())
    folder = files.folder
    rd = pd.read_csv(folder / "rd.csv")
    assert {PSNR, LPIPS, CLIP, CLIP_COS, SAT} <= set(rd.columns) and FID not in rd.columns
    summary = pd.read_csv(folder / "summary.csv")
    assert {f"{PSNR} mean", f"{LPIPS} mean_ci_low", f"{FID} value", f"{FID} n"} <= set(
        summary.columns
    )
    assert summary[f"{FID} value"].notna().all() and (summary[f"{FID} n"] == 4).all()
    webp = json.loads((folder / "methods" / "webp.json").read_text())
    assert len(webp["results"][FID]) == 4 and webp["results"][f"{FID} n"] == [4] * 4
    assert webp["metrics"][LPIPS]["higher_is_better"] is False
    assert webp["metrics"][CLIP]["display"] == "CLIP tiny similarity (cos+1)/2"
    drawn = sorted(p.name for p in (folder / "rd").glob("*.png"))
    assert drawn == sorted(
        f"{file_stem(k)}.png" for k in (SAT, CLIP, PSNR, LPIPS, FID)
    )  # one figure per metric; the raw cosine is its scaled twin's curve
    readme = (folder / "README.txt").read_text()
    assert "- rd/:" in readme and "- agreement_metrics.png:" in readme
    # BD-rate: WebP needs about 13 % less rate for the same score, in every direction
    bd = pd.read_csv(folder / "bd_rate.csv").set_index(["anchor", "test", "metric"])
    for metric in (PSNR, LPIPS, FID, CLIP):
        assert bd.loc[("jpeg", "webp", metric), "bd_rate_percent"] == pytest.approx(-13, abs=2)
    assert bd.loc[("jpeg", "webp", PSNR), "bd_metric"] > 0
    assert bd.loc[("jpeg", "webp", LPIPS), "bd_metric"] < 0  # lower LPIPS: better
    assert bd.loc[("jpeg", "webp", FID), "better_bd_metric"] == "negative"
    # iso-satisfaction: a block per metric with a value per image, the headline's first
    iso = pd.read_csv(folder / "iso_satisfaction.csv")
    assert list(dict.fromkeys(iso.metric)) == [SAT, CLIP, PSNR, LPIPS]
    assert {"level", "images", "images_reaching", "median_min_bpp", "n", "image_set"} <= set(
        iso.columns
    )  # the columns a reader of the headline-only file knew, plus each block's coverage
    blocks = iso.set_index(["metric", "method"])
    assert blocks.loc[(SAT, "jpeg"), "level"] == 8.5
    lpips = iso[iso.metric == LPIPS]
    compared = rd.dropna(subset=["bpp", LPIPS])
    assert lpips["level"].unique() == pytest.approx(compared[LPIPS].median())
    assert (lpips.reaching == "at or below").all() and not lpips.higher_is_better.any()
    assert (lpips.n == compared.original_id.nunique()).all()
    assert (iso[iso.metric == PSNR].reaching == "at or above").all()
    # the rd/ figures, drawn before the comparisons, get the levels iso_satisfaction.csv has
    chosen = [k for k in (SAT, CLIP, PSNR, LPIPS, FID) if k in scores]
    written = iso.groupby("metric")["level"].first().to_dict()
    assert iso_levels(points, scores.with_columns(points.columns), chosen) == pytest.approx(written)
    images = pd.read_csv(folder / "iso_satisfaction_images.csv")
    assert list(dict.fromkeys(images.metric)) == [SAT, CLIP, PSNR, LPIPS]
    reached = images[images.metric == LPIPS].dropna(subset=["min_bpp"])
    level = lpips["level"].iloc[0]
    assert (reached[LPIPS] <= level).all() and not reached.empty  # at or below its level
    assert f"{RATE_COMPARISONS} ({LPIPS})" in "\n".join(files.notes)
    assert "at or below for a lower-is-better metric" in readme
    pareto = pd.read_csv(folder / "pareto.csv")
    front = pareto[pareto.metric == LPIPS].sort_values("bpp_mean")
    assert front[f"{LPIPS} mean"].is_monotonic_decreasing  # minimised along the rate
    assert (pareto[pareto.metric == FID]["method"] == "webp").any()
    agreement = pd.read_csv(folder / "agreement.csv")
    overall = agreement[agreement.method == ALL].set_index("model_metric")
    assert {PSNR, LPIPS, CLIP, CLIP_COS} <= set(overall.index)
    assert overall.loc[LPIPS, "oriented"] and overall.loc[LPIPS, "spearman"] > 0.5
    assert (folder / "agreement_metrics.png").exists()
    table = pd.read_csv(folder / "table1.csv")
    assert {f"{PSNR} mean", f"{LPIPS} ci_high", f"{FID} value"} <= set(table.columns)
    summary = summarise(points, scores=scores, set_scores=sets)
    figure = rd_chart(points, summary, LPIPS, pareto=True, iso_level=0.2, scores=scores)
    assert figure.axes[0].get_ylabel() == "LPIPS (AlexNet), lower is better"
    figure = rd_chart(points, summary, FID, scores=scores)
    assert figure.axes[0].get_ylabel().startswith("FID (Inception pool3), lower is better")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert labels == ["jpeg (n = 4)", "webp (n = 4)"]
    psnr = rd_chart(points, summary, PSNR, scores=scores).axes[0]
    assert psnr.get_ylabel() == "PSNR (dB)"


def test_report_metrics_option_chooses_the_figures(metric_study, tmp_path, capsys):
    from semcomp.cli import main

    out = tmp_path / "chosen"
    with pytest.raises(SystemExit) as exit_code:
        main(["report", str(metric_study), "--out", str(out), "--metrics", f"{LPIPS},{FID}"])
    assert exit_code.value.code in (0, None)
    assert sorted(p.name for p in (out / "rd").glob("*.png")) == ["fid.png", "lpips_alex.png"]
    assert set(pd.read_csv(out / "bd_rate.csv")["metric"]) == {SAT, LPIPS, FID}
    with pytest.raises(SystemExit) as exit_code:
        main(["report", str(metric_study), "--out", str(out), "--metrics", "ssim"])
    assert exit_code.value.code not in (0, None)
    assert "no metric 'ssim' in this study" in capsys.readouterr().err
