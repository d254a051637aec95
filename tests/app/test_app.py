"""The Streamlit app on a study with every kind of method, a partial study and an empty one."""

import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import write_study
from semcomp.app import MAIN_SCRIPT, PAGES, PQVAE_RESULTS_ENV, STUDY_ENV
from semcomp.study import Study

TIMEOUT = 120


def app_on(study: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(STUDY_ENV, str(study))
    return AppTest.from_file(str(MAIN_SCRIPT), default_timeout=TIMEOUT)


def open_page(app: AppTest, script: str) -> AppTest:
    app.switch_page(f"views/{script}")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app: AppTest, kind: str) -> str:
    """The text of every element of a kind as a reader sees it (markdown escapes undone)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(element.value) for element in app.get(kind)))


def fingerprint(root: Path) -> dict[str, str]:
    """Every file of the study except SQLite's WAL index, by content hash."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith("-shm")
    }


def test_every_page_on_a_study_with_every_kind_of_method(all_methods_study, monkeypatch):
    before = fingerprint(all_methods_study)
    app = app_on(all_methods_study, monkeypatch)
    open_page(app, "overview.py")
    assert "no human ratings" not in texts(app, "info")
    tables = [element.value for element in app.dataframe]
    table1 = next(t for t in tables if "satisfaction_mean" in t.columns)
    assert {"jpeg", "blip", "human-captions", "external-gr", "pqvae-demo"} <= set(table1.method)
    assert [b.proto.label for b in app.get("download_button")] == ["Download table (CSV)"]

    open_page(app, "rate_distortion.py")
    assert len(app.get("plotly_chart")) == 1
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels == ["Download table (CSV)", "Download chart (PNG)"]
    app.checkbox(key="rd_iso").check()
    app.checkbox(key="rd_pareto").check()
    app.radio(key="rd_view").set_value("per-image points")
    app.radio(key="rd_rate").set_value("bpp").run()
    assert not app.exception
    assert any("Iso-satisfaction" in s.value for s in app.subheader)

    open_page(app, "explorer.py")
    assert app.get("image"), "the explorer shows the original and its candidates"
    markdown = texts(app, "markdown")
    assert "decoded embedding" in markdown and "bytes" in markdown

    open_page(app, "agreement.py")
    agreement = app.dataframe[0].value
    assert "all methods" in set(agreement.method) and agreement.spearman.notna().any()
    assert len(app.get("plotly_chart")) == 1

    open_page(app, "embedding_codecs.py")  # the demo's own evaluation file
    assert len(app.get("plotly_chart")) == 1 and len(app.dataframe[0].value) == 2

    open_page(app, "surveys.py")  # human scores here were not imported from survey answers
    assert "No human ratings imported yet" in texts(app, "info")
    assert fingerprint(all_methods_study) == before, "the app wrote to the study"


def test_filters_are_shared_and_pages_do_not_query_again(all_methods_study, monkeypatch):
    import streamlit as st

    from semcomp import store

    opened = []
    original_init = store.Store.__init__

    def counting_init(self, *args, **kwargs):
        opened.append(kwargs.get("read_only"))
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(store.Store, "__init__", counting_init)
    st.cache_data.clear()
    app = app_on(all_methods_study, monkeypatch)
    app.run()
    assert opened == [True], "the first visit reads the study once, read-only"
    app.multiselect(key="filter_methods").select("jpeg").run()
    for script, *_ in PAGES:
        open_page(app, script)
        assert app.multiselect(key="filter_methods").value == ["jpeg"]
    assert opened == [True, True], "the study once, and the ratings once (Surveys page)"
    for script, *_ in PAGES:
        open_page(app, script)
    assert opened == [True, True], "switching pages or filters re-read the study"


def test_embedding_codec_results_from_pqvae_files(all_methods_study, monkeypatch, tmp_path):
    results = tmp_path / "results.csv"
    pd.DataFrame(
        {
            "method": ["pqvae-shared (d_sub=16, K=4)", "pqvae-shared (d_sub=16, K=8)"],
            "bpd": [0.52, 0.78],
            "top1": [0.8, 0.83],
            "raw_top1": [0.9, 0.9],
        }
    ).to_csv(results, index=False)
    monkeypatch.setenv(PQVAE_RESULTS_ENV, str(results))
    app = open_page(app_on(all_methods_study, monkeypatch), "embedding_codecs.py")
    assert len(app.get("plotly_chart")) == 1
    assert len(app.dataframe[0].value) == 2 + 2  # and the demo's own evaluation


@pytest.fixture
def partial_study(tmp_path, image_folder, tiny_clip):
    """JPEGs encoded and decoded, nothing scored, no human ratings."""
    root = write_study(tmp_path / "partial", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])
    return root


@pytest.mark.parametrize("script", [script for script, *_ in PAGES])
def test_pages_of_a_partial_study_say_what_is_missing(partial_study, monkeypatch, script):
    app = open_page(app_on(partial_study, monkeypatch), script)
    messages = texts(app, "info")
    if script == "overview.py":
        assert "no similarity scores yet" in messages and "no human ratings" in messages
    elif script == "rate_distortion.py":
        assert "no similarity scores to plot yet" in messages
    elif script == "explorer.py":
        assert app.get("image")
    elif script in ("agreement.py", "surveys.py"):
        assert "no human ratings" in messages.lower()
    elif script == "zero_shot.py":
        assert "no zero-shot scores" in messages
    else:
        assert "no PQVAE evaluation files" in messages


@pytest.mark.parametrize("script", [script for script, *_ in PAGES])
def test_pages_of_an_empty_study_say_so(tmp_path, image_folder, tiny_clip, monkeypatch, script):
    root = write_study(tmp_path / "empty", image_folder, tiny_clip)
    app = open_page(app_on(root, monkeypatch), script)
    assert "no results yet" in texts(app, "info")  # no study.db at all
    Study.open(root).close()  # an empty store
    app = open_page(app_on(root, monkeypatch), script)
    assert texts(app, "info"), "an empty study gets a message"


def test_a_study_being_written_is_read_consistently_and_freshly(partial_study):
    from semcomp.app.data import SnapshotStore, load_study, signature
    from semcomp.store import Store

    quiet = SnapshotStore(partial_study)
    assert "immutable=1" in quiet._read_only_uri()  # nothing writing: no side files
    quiet.close()
    assert not (partial_study / "study.db-wal").exists()
    with Store(partial_study) as writer:  # a run in progress holds the WAL open
        reader = SnapshotStore(partial_study)
        assert "immutable" not in reader._read_only_uri()
        with pytest.raises(Exception, match="readonly"):
            reader.conn.execute("DELETE FROM failures")
        reader.close()
        first = load_study(str(partial_study), signature(partial_study))
        with writer.transaction():
            writer.record_failure("score", "x", "a new failure", retryable=False, run_id=None)
        second = load_study(str(partial_study), signature(partial_study))
    assert second.counts["failures"] == first.counts["failures"] + 1


def test_reading_a_study_joins_no_path_per_candidate(partial_study, monkeypatch):
    """The cold read builds artifact paths by string joins (a ``Path`` per candidate costs
    25-41 times as much at 500,000 score rows); the paths are the same."""
    import pathlib

    from semcomp.app.data import SnapshotStore, _read_study

    joined: list[str] = []
    real = pathlib.PurePath.__truediv__
    monkeypatch.setattr(
        pathlib.PurePath,
        "__truediv__",
        lambda self, key: joined.append(str(key)) or real(self, key),
    )
    data = _read_study(partial_study, SnapshotStore(partial_study))
    monkeypatch.undo()
    with SnapshotStore(partial_study) as store:
        relpaths = dict(store.conn.execute("SELECT hash, relpath FROM artifacts").fetchall())
        expected = {str(store.artifacts_dir / relpath) for relpath in relpaths.values()}
    assert len(data.artifacts) == 8 and not set(relpaths.values()) & set(joined)
    assert set(data.artifacts["path"]) | set(data.originals["path"]) == expected
    assert all(Path(path).is_file() for path in data.artifacts["path"])


def test_semcomp_app_refuses_a_folder_that_is_not_a_study(tmp_path, capsys):
    from semcomp.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["app", str(tmp_path), "--no-browser"])
    assert stopped.value.code == 2  # a wrong argument
    assert "is not a study folder" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="Windows waits for Streamlit as a child")
def test_semcomp_app_becomes_the_streamlit_server_without_prompts(all_methods_study, monkeypatch):
    """On POSIX the command execs Streamlit, so SIGTERM reaches the server, and it asks nothing."""
    from semcomp.cli import main

    started = []

    def exec_instead(path, args, env):
        started.append((path, args, env))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", exec_instead)
    with pytest.raises(SystemExit):
        main(["app", str(all_methods_study), "--port", "8765"])
    ((path, args, env),) = started
    options = dict(zip(args[5::2], args[6::2], strict=True))
    assert args[1:4] == ["-m", "streamlit", "run"] and path == args[0]
    assert options["--server.showEmailPrompt"] == "false"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.headless"] == "false"  # the default opens a browser tab
    assert env[STUDY_ENV] == str(all_methods_study.resolve())


def test_an_immutable_read_that_fails_is_read_again_with_locking(partial_study):
    """A writer that opens and checkpoints during an ``immutable`` read can make it fail."""
    import sqlite3

    from semcomp.app.data import SnapshotStore, read_consistently, signature

    used = []

    def read(folder, store):
        used.append(type(store).__name__)
        with store:
            if isinstance(store, SnapshotStore):
                raise sqlite3.DatabaseError("database disk image is malformed")
            return store.count("candidates")

    assert read_consistently(partial_study, signature(partial_study), read) > 0
    assert used == ["SnapshotStore", "Store"]


def test_editing_study_toml_is_seen_on_the_next_rerun(partial_study):
    from semcomp.app.data import load_study, signature

    before = signature(partial_study)
    assert load_study(str(partial_study), before).name != "renamed"
    config = partial_study / "study.toml"
    text = config.read_text()
    assert text.startswith('name = "test"\n')
    config.write_text(text.replace('name = "test"', 'name = "renamed"', 1))
    assert signature(partial_study) != before
    assert load_study(str(partial_study), signature(partial_study)).name == "renamed"


def chart_traces(app: AppTest) -> list[dict]:
    """The traces of the page's plotly chart, typed arrays (``bdata``) decoded to lists."""
    import base64
    import json

    import numpy as np

    def decode(value):
        if isinstance(value, dict) and "bdata" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            return array.reshape(value["shape"]) if "shape" in value else array
        return value

    traces = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
    return [{key: decode(value) for key, value in trace.items()} for trace in traces]


def test_a_click_on_a_chart_point_finds_the_images_behind_it(all_methods_study, monkeypatch):
    """The customdata the page gives each point leads back to its candidates."""
    from semcomp.app.data import load_study, signature
    from semcomp.app.widgets import CANDIDATE, OPERATING_POINT, candidates_behind

    app = open_page(app_on(all_methods_study, monkeypatch), "rate_distortion.py")
    points = load_study(str(all_methods_study), signature(all_methods_study)).points
    traces = chart_traces(app)
    curve = next(t for t in traces if t.get("customdata") and t["customdata"][0][0] != CANDIDATE)
    assert curve["customdata"][0][0] == OPERATING_POINT
    assert "images" in curve["hovertemplate"] and "with this metric" in curve["hovertemplate"]
    method, point, images, rated = curve["customdata"][0][1:5]
    behind = candidates_behind(points, curve["customdata"][0])
    assert set(behind["method"]) == {method} and set(behind["operating_point"]) == {point}
    assert behind["original_id"].nunique() == images >= rated > 0
    dots = next(t for t in traces if t.get("customdata") and t["customdata"][0][0] == CANDIDATE)
    data = dots["customdata"][-1]
    behind = candidates_behind(points, data)
    assert len(behind) == 1 and behind.iloc[0]["method"] == data[3]
    assert data[6].endswith("bytes") or "bits" in data[6]
    assert candidates_behind(points, None).empty and candidates_behind(points, [1, 2]).empty
    single = [t for t in traces if t.get("mode") == "lines+markers" and len(t["x"]) == 1]
    assert single and all(t["error_y"]["visible"] for t in single)  # CI of a lone point


def test_iso_satisfaction_per_image_table_and_markers_on_the_mean_curve(
    all_methods_study, monkeypatch
):
    from semcomp.analysis.curves import curve_crossings
    from semcomp.analysis.rd import SATISFACTION_PREFIX
    from semcomp.app.data import cached_summary, signature

    app = open_page(app_on(all_methods_study, monkeypatch), "rate_distortion.py")
    metric = app.selectbox(key="filter_metric").value
    assert metric.startswith(SATISFACTION_PREFIX)
    app.checkbox(key="rd_iso").check().run()
    assert not app.exception
    level = app.number_input(key=f"rd_level_{metric}").value
    marks = next(t for t in chart_traces(app) if t.get("name") == "mean curve reaches level")
    summary = cached_summary(str(all_methods_study), signature(all_methods_study), (), ())
    crossings = curve_crossings(
        summary[summary["rate_bytes_mean"] > 0], level, f"{metric} mean", "rate_bytes_mean"
    )
    assert len(crossings) > 0
    assert sorted(marks["x"]) == pytest.approx(sorted(crossings["rate"]))
    assert any("per image" in e.label for e in app.expander)
    per_image = next(d.value for d in app.dataframe if "min_rate_bytes" in d.value.columns)
    assert {"original_id", "original", "method"} <= set(per_image.columns)
    assert "rd_iso_images_csv" in [b.key for b in app.get("download_button")]
    app.radio(key="rd_view").set_value("per-image points").run()
    names = [t.get("name") for t in chart_traces(app)]
    assert "median image reaches level" in names


def test_a_missing_original_file_is_a_note_not_a_crash(all_methods_study, monkeypatch, tmp_path):
    import shutil

    import streamlit as st

    from semcomp.app.data import load_study, signature

    copy = tmp_path / "study"
    shutil.copytree(all_methods_study, copy)
    for path in load_study(str(copy), signature(copy)).originals["path"]:
        Path(path).unlink()
    st.cache_data.clear()
    app = open_page(app_on(copy, monkeypatch), "explorer.py")
    assert "original file missing" in texts(app, "markdown")
    assert app.get("image"), "the candidates' images are still shown"


def test_agreement_page_follows_the_shared_metric_filter(all_methods_study, monkeypatch):
    from semcomp.app.data import load_study, signature
    from semcomp.app.filters import metric_label

    app = open_page(app_on(all_methods_study, monkeypatch), "agreement.py")
    data = load_study(str(all_methods_study), signature(all_methods_study))
    humans, models = data.human_metrics, data.model_metrics
    # listed by display name, chosen by key
    assert app.selectbox(key="agree_model").options == [metric_label(data, m) for m in models]
    assert app.selectbox(key="agree_human").options == [metric_label(data, m) for m in humans]
    app.selectbox(key="filter_metric").set_value(models[-1]).run()
    assert app.selectbox(key="agree_model").value == models[-1]
    app.selectbox(key="filter_metric").set_value(humans[-1]).run()
    assert app.selectbox(key="agree_human").value == humans[-1]
    assert app.selectbox(key="agree_model").value == models[-1]
    app.selectbox(key="agree_human").set_value(humans[0]).run()  # a choice here holds
    assert app.selectbox(key="agree_human").value == humans[0]


@pytest.fixture(scope="module")
def uneven_study(tmp_path_factory, tiny_clip):
    """A bytes target that fails for two of four originals, and a method without a rate."""
    from helpers import write_uneven_study

    return write_uneven_study(tmp_path_factory.mktemp("uneven"), tiny_clip)


def test_a_method_without_a_rate_and_a_failing_target_are_shown_not_dropped(
    uneven_study, monkeypatch
):
    from semcomp.analysis.table1 import NO_SIZE

    app = open_page(app_on(uneven_study, monkeypatch), "overview.py")
    tables = [element.value for element in app.dataframe]
    table1 = next(t for t in tables if "size_bytes_mean" in t.columns)
    assert table1.loc[table1.method == "dalle-gr", "size"].tolist() == [NO_SIZE]
    assert (table1["images"] == 2).all() and (table1["image_set"] == "common").all()
    methods = next(t for t in tables if "rate" in t.columns and "kind" in t.columns)
    assert methods.set_index("name").loc["dalle-gr", "rate"] == "no rate"
    captions = texts(app, "caption")
    assert "limited by jpeg-bytes (2)" in captions and "no rate" in captions
    assert any("left out" in e.label for e in app.expander)

    open_page(app, "rate_distortion.py")
    names = [t.get("name") for t in chart_traces(app)]
    assert "dalle-gr (no rate)" in names and "jpeg-bytes" in names
    captions = texts(app, "caption")
    assert "jpeg-bytes: 2 of 4 originals" in captions and "dalle-gr" in captions
    app.checkbox(key="rd_pareto").check().run()
    assert not app.exception
    expander = next(e for e in app.expander if "left out" in e.label)
    reasons = "\n".join(str(d.value) for d in expander.dataframe)
    assert "no rate" in reasons and "bytes=1000" in reasons

    app.radio(key="filter_images").set_value("each point its own (unpaired)").run()
    assert not app.exception
    assert "unpaired" in texts(app, "caption")
    labels = [e.label for e in app.expander if "left out" in e.label]
    assert labels == ["left out: 1 method(s), 0 original(s) — why"]  # no rate, still named
    from semcomp.app.data import cached_summary, signature

    summary = cached_summary(str(uneven_study), signature(uneven_study), (), (), True)
    assert sorted(summary.loc[summary.method == "jpeg-bytes", "n"]) == [2, 4]


def test_a_display_sample_keeps_a_share_of_every_group_in_order_and_the_same_each_time():
    from semcomp.app.widgets import display_sample

    rows = pd.DataFrame(
        {"method": ["jpeg"] * 9000 + ["webp"] * 990 + ["rare"] * 10, "x": range(10_000)}
    )
    drawn = display_sample(rows, "method", limit=1000)
    counts = drawn["method"].value_counts().to_dict()
    assert counts == {"jpeg": 900, "webp": 99, "rare": 1}
    assert drawn.index.is_monotonic_increasing and drawn.equals(rows.loc[drawn.index])
    assert drawn.index.equals(display_sample(rows, "method", limit=1000).index)
    assert len(display_sample(rows.head(50), "method", limit=1000)) == 50


def test_the_chart_draws_a_sample_of_many_points_and_says_so(all_methods_study, monkeypatch):
    """Past ``MAX_POINTS`` candidates the chart draws a sample of them (a warm rerun of a
    500,000-score study spent seconds serialising every point) and says so on the chart."""
    import json

    from semcomp.analysis.figures import RATE_AXES
    from semcomp.app import widgets
    from semcomp.app.data import load_study, signature
    from semcomp.app.widgets import CANDIDATE

    monkeypatch.setattr(widgets, "MAX_POINTS", 6)
    app = open_page(app_on(all_methods_study, monkeypatch), "rate_distortion.py")
    app.radio(key="rd_view").set_value("per-image points").run()
    assert not app.exception
    metric, rate = app.selectbox(key="filter_metric").value, app.radio(key="rd_rate").value
    points = load_study(str(all_methods_study), signature(all_methods_study)).points
    column = RATE_AXES[rate][0]
    usable = points.dropna(subset=[column, metric])
    usable = usable[usable[column] > 0]
    traces = chart_traces(app)
    dots = [t for t in traces if t.get("customdata") and t["customdata"][0][0] == CANDIDATE]
    drawn = sum(len(t["x"]) for t in dots)
    assert len(dots) == usable["method"].nunique()
    assert len(dots) <= drawn <= 6 + len(dots) < len(usable)
    layout = json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]
    notes = [a["text"] for a in layout.get("annotations", [])]
    assert any(f"showing a random {drawn:,} of {len(usable):,} candidates" in n for n in notes)


def test_a_rerun_gets_the_cached_analyses_back_without_copying_them(all_methods_study):
    """Summaries and coverages are shared between reruns (a copy per rerun was most of a
    warm render at 500,000 score rows); a new database state computes them again."""
    from semcomp.app.data import cached_analysis, cached_summary, signature

    key = (str(all_methods_study), signature(all_methods_study), (), ())
    assert cached_summary(*key) is cached_summary(*key)
    assert cached_analysis("curves", *key) is cached_analysis("curves", *key)
    assert cached_analysis("curves", *key[:2], (), ("jpeg",)) is not cached_analysis("curves", *key)
