"""The Surveys page on a study with imported Survey A, B and C ratings, and the report's files."""

import json
from pathlib import Path

import pandas as pd
import pytest
from test_app import app_on, fingerprint, open_page, texts

from helpers import photo, write_study
from mturk_format import import_simulated_survey
from semcomp.store import Store
from semcomp.study import Study
from semcomp.surveys import aggregate
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.tables import survey_tables, write_survey_files

POINTS = {("jpeg", "quality=30"), ("jpeg", "quality=70"), ("webp", "quality=30")}
TWO_CODECS = (
    '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [30, 70]\n\n'
    '[[methods]]\nname = "webp"\ncodec = "webp"\nquality = [30]\n'
)


@pytest.fixture(scope="session")
def rated_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEG and WebP candidates of four photos, with simulated MTurk results of A, B and C
    imported through `survey make` → results CSV → import (no CLIP model needed)."""
    base = tmp_path_factory.mktemp("rated")
    images = base / "images"
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (images / category).mkdir(parents=True)
        for seed in seeds:
            photo(96, 64, seed).save(images / category / f"img{seed}.png")
    root = write_study(base / "study", images, "unused-clip-model", methods=TWO_CODECS)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])
    with Store(root) as store:
        for survey_id, layout in (("A", "json"), ("B", "flat"), ("C", "json")):
            summary = import_simulated_survey(store, survey_id, base, layout=layout)
            assert summary.kept and not summary.failed
    return root


def test_surveys_page_shows_every_survey(rated_study, monkeypatch):
    before = fingerprint(rated_study)
    app = open_page(app_on(rated_study, monkeypatch), "surveys.py")
    assert [o.split(" — ")[0] for o in app.selectbox(key="survey_pick").options] == [
        "A",
        "B",
        "C",
    ]
    # Survey A: the distribution chart, the mean of medians per method, alpha
    assert len(app.get("plotly_chart")) == 1
    shares = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert {trace["name"] for trace in shares["data"]} == {f"{m} · {p}" for m, p in POINTS}
    methods, reliability = app.dataframe[0].value, app.dataframe[-1].value
    assert set(methods.method) == {"jpeg", "webp"} and (methods.question == "similarity").all()
    assert list(reliability.question) == ["similarity"] and reliability.level[0] == "ordinal"
    kept = {m.label: m.value for m in app.get("metric")}
    assert int(kept["kept answers"]) > 0 and int(kept["workers"]) == 3

    # Survey B: distributions and per-dimension bars, per method and per category
    app.selectbox(key="survey_pick").select_index(1).run()
    assert not app.exception
    assert len(app.get("plotly_chart")) == 2
    assert any("Per-dimension" in h.value for h in app.header)
    # JPEG's two qualities are two bars, not one merged method
    bars = json.loads(app.get("plotly_chart")[1].proto.spec)
    assert {trace["name"] for trace in bars["data"]} == {
        "jpeg · quality=30",
        "jpeg · quality=70",
        "webp · quality=30",
    }
    labels = [b.proto.label for b in app.get("download_button")]
    assert "Download chart (PNG)" in labels
    app.radio(key="survey_by").set_value("category").run()
    assert not app.exception and len(app.get("plotly_chart")) == 2
    alpha = app.dataframe[-1].value
    assert list(alpha.question) == ["objects", "appearance", "position", "background", "color"]

    # Survey C: top answers per free question and their overlap between the two codecs
    app.selectbox(key="survey_pick").select_index(2).run()
    assert not app.exception
    assert not app.get("plotly_chart")
    shown = [d.value for d in app.dataframe]
    tops = [t for t in shown if "answer" in t.columns]
    overlaps = [t for t in shown if "overlap_percent" in t.columns]
    assert len(tops) == len(overlaps) == 3  # objects, relation, adjectives
    assert all(set(t.method) == {"jpeg", "webp"} for t in tops)
    assert all(set(zip(t.method, t.operating_point, strict=True)) == POINTS for t in tops)
    assert all(
        (t.overlap_percent >= 0).all() and (t.overlap_percent <= 100).all() for t in overlaps
    )
    assert fingerprint(rated_study) == before, "the app wrote to the study"


def test_surveys_page_follows_the_shared_filters(rated_study, monkeypatch):
    app = app_on(rated_study, monkeypatch)
    open_page(app, "surveys.py")
    every = app.dataframe[0].value
    app.multiselect(key="filter_methods").select("webp").run()
    assert not app.exception
    only = app.dataframe[0].value
    assert set(only.method) == {"webp"}
    assert only.set_index("operating_point").pairs.sum() < every.pairs.sum()
    app.multiselect(key="filter_categories").select("landscape").run()
    assert (app.dataframe[0].value.pairs <= only.pairs).all()


def test_surveys_page_without_ratings_says_how_to_get_them(jpeg_study, monkeypatch):
    app = open_page(app_on(jpeg_study, monkeypatch), "surveys.py")
    assert "No human ratings imported yet" in texts(app, "info")


def test_tables_of_unfiltered_ratings_equal_the_read_api(rated_study):
    with Store(rated_study, read_only=True) as store:
        ratings = aggregate.kept_ratings(store)
        a = survey_tables(ratings, load_survey("A"))
        assert a.methods.equals(aggregate.method_summary(store, "A"))
        b = survey_tables(ratings, load_survey("B"))
        assert b.dimensions.equals(aggregate.dimension_summary(store, "B"))
        c = survey_tables(ratings, load_survey("C"))
        assert c.top_answers.equals(aggregate.top_answers(store, "C"))
        assert c.overlap.equals(aggregate.answer_overlap(store, "C"))
        assert c.reliability.equals(aggregate.reliability(store, "C"))


def test_report_writes_the_survey_tables_and_the_dimension_figure(rated_study, tmp_path):
    with Store(rated_study, read_only=True) as store:
        written, notes = write_survey_files(store, tmp_path)
    names = {p.name for p in written}
    assert {
        "survey_A_methods.csv",
        "survey_A_reliability.csv",
        "survey_B_dimensions.csv",
        "survey_B_dimensions_by_category.csv",
        "survey_B_dimensions.png",
        "survey_B_dimensions.pdf",
        "survey_C_top_answers.csv",
        "survey_C_overlap.csv",
        "survey_C_reliability.csv",
    } <= names
    assert "survey_A_dimensions.png" not in names  # one scale question: no dimension bars
    assert notes == []
    assert all(p.stat().st_size > 0 for p in written)
    dimensions = pd.read_csv(tmp_path / "survey_B_dimensions.csv")
    assert set(zip(dimensions.method, dimensions.operating_point, strict=True)) == POINTS


def test_dimension_figure_has_a_bar_group_per_operating_point(rated_study):
    from semcomp.analysis.figures import survey_dimensions_figure

    with Store(rated_study, read_only=True) as store:
        table = aggregate.dimension_summary(store, "B")
    figure = survey_dimensions_figure(table, load_survey("B"))
    _, labels = figure.axes[0].get_legend_handles_labels()
    assert sorted(labels) == sorted(f"{m} · {p}" for m, p in POINTS)


def test_report_notes_a_study_without_ratings(jpeg_study, tmp_path):
    with Store(jpeg_study, read_only=True) as store:
        written, notes = write_survey_files(store, tmp_path)
    assert written == [] and "no human ratings imported" in notes[0]
