"""The app for papers: the random-weights warning on the chart itself, a crop loupe that
shows the same region of the original and a candidate, and the image grid download."""

import json

from PIL import Image
from test_app import app_on, open_page

from semcomp.analysis.figures import RANDOM_WEIGHTS_NOTE
from semcomp.app.widgets import loupe_crops


def test_random_weights_warning_is_on_the_chart_and_the_explorer_has_a_loupe(
    all_methods_study, monkeypatch
):
    app = open_page(app_on(all_methods_study, monkeypatch), "rate_distortion.py")
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    notes = [a["text"] for a in spec["layout"].get("annotations", [])]
    assert any(RANDOM_WEIGHTS_NOTE in note for note in notes)

    open_page(app, "explorer.py")
    images = len(app.get("image"))
    assert app.slider(key="loupe_size").value == 25
    app.slider(key="loupe_size").set_value(10)
    app.slider(key="loupe_x").set_value(0).run()
    assert not app.exception
    captions = [str(c) for image in app.get("image") for c in image.proto.imgs]
    assert len(app.get("image")) == images
    assert any("×" in c and "px" in c for c in captions), captions
    labels = [b.proto.label for b in app.get("download_button")]
    assert "Download chart (PNG)" in labels, "the image grid for a paper"


def test_loupe_crops_the_same_region_of_both_at_the_original_resolution(tmp_path):
    original = Image.new("RGB", (100, 60), "white")
    original.paste((255, 0, 0), (0, 0, 10, 10))  # a red corner
    original.save(tmp_path / "original.png")
    original.resize((50, 30)).save(tmp_path / "candidate.png")  # half the size
    first, second = loupe_crops(
        str(tmp_path / "original.png"), str(tmp_path / "candidate.png"), 0.0, 0.0, 0.5
    )
    assert first.size == second.size == (30, 30)  # half the shorter side, clamped inside
    assert first.getpixel((2, 2)) == (255, 0, 0) and second.getpixel((2, 2))[0] > 200
    assert first.getpixel((25, 25)) == (255, 255, 255)
