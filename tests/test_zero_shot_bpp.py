"""The PQVAE paper's Fig. 6 on a labelled study: zero-shot accuracy of a pixel codec, a
learned CompressAI codec, a textual transform's reconstruction and PQVAE's decoded
embeddings against bits per pixel, in the report (CSV + figure) and the app."""

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import dataset_layouts as layouts
from helpers import train_pqvae
from semcomp.app import MAIN_SCRIPT, STUDY_ENV
from semcomp.report import write_report
from semcomp.study import Study

pytest.importorskip("compressai")


def methods(checkpoint) -> str:
    return (
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [10, 60]\n\n'
        '[[methods]]\nname = "factorized"\ncodec = "compressai"\nquality = [1]\n'
        'random_weights = true\nparams = { model = "bmshj2018-factorized", weights = "random" }\n\n'
        '[[methods]]\nname = "caption"\ncaptioner = "fixed"\n'
        'captioner_params = { text = "a photo of a pet" }\nreconstructor = "solid-colour"\n\n'
        f'[[methods]]\nname = "pq"\ncheckpoint = "{checkpoint}"\n'
    )


@pytest.fixture
def labelled_study(tmp_path, tiny_clip):
    layouts.oxford_pets(tmp_path / "pets")
    checkpoint = train_pqvae(tmp_path / "codec", tiny_clip)
    root = tmp_path / "study"
    root.mkdir()
    (root / "study.toml").write_text(
        'name = "fig6"\nseed = 0\n\n[images]\n'
        'source = { dataset = "oxford-pets", root = "../pets", per_class = 2 }\n\n'
        f"{methods(checkpoint)}\n"
        f"[similarity]\nbatch_size = 4\n\n[[similarity.models]]\nmodel = '{tiny_clip}'\n"
        "pretrained = 'openai'\nname = 'tiny'\nrandom_weights = true\n\n"
        f'[[metrics]]\nmetric = "zero-shot"\nmodel = "{tiny_clip}"\nname = "zs"\n'
    )
    with Study.open(root) as study:
        summary = study.run(progress=False)
    assert summary.status == "finished", summary.failures
    return root


def test_zero_shot_accuracy_against_bpp_in_the_report_and_the_app(labelled_study, monkeypatch):
    with Study.open(labelled_study, read_only=True) as study:
        files = write_report(study)
    table = pd.read_csv(files.folder / "zero_shot_bpp.csv")
    assert (files.folder / "zero_shot_bpp.png").exists()
    assert (files.folder / "zero_shot_bpp.pdf").exists()
    assert set(table["metric"]) == {"zero-shot top-1[zs]"}
    # every kind of candidate, each operating point at its bpp
    points = set(zip(table["method"], table["kind"], table["operating_point"], strict=True))
    assert {(m, k) for m, k, _ in points} == {
        ("jpeg", "pixel"),
        ("factorized", "pixel"),
        ("caption", "textual"),
        ("pq", "embedding"),
    }
    assert sorted(op for m, _, op in points if m == "jpeg") == ["quality=10", "quality=60"]
    # six originals (two per breed of the test split), shared by every method
    assert set(table["n"]) == {6} and set(table["image_set"]) == {"common"}
    assert table["accuracy"].between(0, 1).all()
    assert (table["accuracy_ci_low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["accuracy_ci_high"]).all()
    # the accuracy is the mean of the per-image 0/1 scores in rd.csv
    rd = pd.read_csv(files.folder / "rd.csv")
    jpeg10 = rd[(rd["method"] == "jpeg") & (rd["operating_point"] == "quality=10")]
    row = table[(table["method"] == "jpeg") & (table["operating_point"] == "quality=10")].iloc[0]
    assert row["accuracy"] == pytest.approx(jpeg10["zero-shot top-1[zs]"].mean())
    assert row["bpp_mean"] == pytest.approx(jpeg10["bpp"].mean())
    # the paper's bpp: mean bits over the mean pixel count (all pets images are 40 x 32)
    assert row["bpp_of_mean_pixels"] == pytest.approx(jpeg10["rate_bits"].mean() / (40 * 32))
    assert "zero_shot_bpp.csv" in (files.folder / "README.txt").read_text()

    monkeypatch.setenv(STUDY_ENV, str(labelled_study))
    app = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120)
    app.switch_page("views/zero_shot.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.get("plotly_chart")) == 1
    shown = app.dataframe[0].value
    assert set(shown["method"]) == {"jpeg", "factorized", "caption", "pq"}
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels == ["Download table (CSV)", "Download chart (PNG)"]
