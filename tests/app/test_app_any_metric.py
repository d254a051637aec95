"""The app on a study with PSNR, LPIPS (lower is better), CLIP and FID (a set metric)."""

import json

from streamlit.testing.v1 import AppTest
from test_app import app_on, chart_traces, texts
from test_app import open_page as switch_to

from metric_store import CLIP, FID, LPIPS, PSNR, SAT


def open_page(study, monkeypatch, script: str) -> AppTest:
    return switch_to(app_on(study, monkeypatch), script)


def traces(app: AppTest) -> list[dict]:
    return [
        {k: (list(v) if hasattr(v, "tolist") else v) for k, v in trace.items()}
        for trace in chart_traces(app)
    ]


def layout(app: AppTest) -> dict:
    return json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]


def test_every_metric_by_name_in_its_direction(metric_study, monkeypatch):
    app = open_page(metric_study, monkeypatch, "rate_distortion.py")
    selector = app.selectbox(key="filter_metric")
    assert selector.value == SAT  # the satisfaction index leads
    assert {
        "PSNR",
        "LPIPS (AlexNet) (lower is better)",
        "CLIP tiny similarity (cos+1)/2",
        "FID (Inception pool3) (lower is better, per operating point)",
        "Survey A median rating (similarity)",
    } <= set(selector.options)

    selector.set_value(LPIPS).run()
    assert not app.exception
    assert layout(app)["yaxis"]["title"]["text"] == "LPIPS (AlexNet), lower is better"
    app.checkbox(key="rd_pareto").check()
    app.checkbox(key="rd_iso").check().run()
    assert not app.exception
    front = next(t for t in traces(app) if t.get("name") == "Pareto front")
    assert front["y"] == sorted(front["y"], reverse=True) and len(front["y"]) > 2  # minimised
    assert "reached at or below" in app.number_input(key=f"rd_level_{LPIPS}").label
    assert any("≤" in s.value for s in app.subheader)
    assert any(t.get("name") == "mean curve reaches level" for t in traces(app))
    bd = next(e for e in app.expander if e.label == "BD-rate between two methods")
    assert "-" in bd.get("metric")[0].value  # WebP needs less rate for the same LPIPS

    app.selectbox(key="filter_metric").set_value(FID).run()
    assert not app.exception
    names = [t.get("name") for t in traces(app)]
    assert names == ["jpeg (n = 4)", "webp (n = 4)", "Pareto front"]  # the box stays ticked
    assert all(len(t["error_y"]["array"]) for t in traces(app)[:2])
    assert layout(app)["yaxis"]["title"]["text"] == "FID (Inception pool3), lower is better"
    values = app.dataframe[0].value
    assert f"{FID} value" in values.columns and (values[f"{FID} n"] == 4).all()
    front = traces(app)[2]
    assert front["y"] == sorted(front["y"], reverse=True)  # FID minimised


def test_overview_and_agreement_show_every_metric(metric_study, monkeypatch):
    app = open_page(metric_study, monkeypatch, "overview.py")
    table1 = next(d.value for d in app.dataframe if "size_bytes_mean" in d.value.columns)
    assert {f"{PSNR} mean", f"{LPIPS} mean", f"{CLIP} mean", f"{FID} value"} <= set(table1.columns)

    app = open_page(metric_study, monkeypatch, "agreement.py")
    app.selectbox(key="agree_model").set_value(LPIPS).run()
    assert not app.exception
    correlations = app.dataframe[0].value
    assert correlations["oriented"].all() and (correlations["spearman"] > 0.5).all()
    assert "LPIPS (AlexNet) is lower-is-better: oriented" in texts(app, "caption")
    ranking = app.dataframe[1].value
    assert {PSNR, LPIPS, CLIP} <= set(ranking["model_metric"])
    assert ranking.set_index("model_metric").loc[LPIPS, "display"] == "LPIPS (AlexNet)"


def test_set_metric_under_a_category_filter_is_over_all_originals(metric_study, monkeypatch):
    app = open_page(metric_study, monkeypatch, "rate_distortion.py")
    app.selectbox(key="filter_metric").set_value(FID).run()
    unfiltered = {t["name"]: t["x"] for t in traces(app)}
    assert "over all originals" not in texts(app, "warning")
    assert (app.dataframe[0].value["originals"] == "all").all()
    app.multiselect(key="filter_categories").set_value(["landscape"]).run()
    assert not app.exception
    # the value cannot be narrowed, so its point stays whole: the same rates as unfiltered
    assert {t["name"]: t["x"] for t in traces(app)} == unfiltered
    scope = "over all originals: the category filter (landscape) cannot narrow a set metric"
    assert scope in texts(app, "warning")  # on the page,
    notes = [a["text"] for a in layout(app).get("annotations", [])]
    assert any(scope in note for note in notes)  # on the chart
    table = app.dataframe[0].value  # and in the table
    assert (table["originals"] == "all (category filter not applied)").all()
    assert (table[f"{FID} n"] == 4).all()

    app.switch_page("views/overview.py").run()
    assert not app.exception
    assert scope in texts(app, "caption")  # Table 1's FID columns
