"""Strings from the study (its name, method names, captions) are shown as text, never
rendered as markdown: a markdown image in a caption must not make the page fetch it."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import write_study
from semcomp.app import MAIN_SCRIPT, STUDY_ENV
from semcomp.app.widgets import chart_frame, chart_text, plain

MARKDOWN_KINDS = ("title", "header", "subheader", "caption", "markdown", "info", "warning")


def rendered(app: AppTest) -> list[str]:
    """Every string the page hands Streamlit's markdown renderer."""
    values = [str(e.value) for kind in MARKDOWN_KINDS for e in app.get(kind)]
    values += [str(e.label) for e in app.get("metric")]
    values += [caption for e in app.get("image") for caption in e.captions if caption]
    return values


def test_plain_escapes_every_markdown_character():
    text = "![x](http://h/b.png) *a* _b_ `c` :red[d] $e$ <img src=f> # g\nh"
    shown = plain(text)
    assert shown == (
        r"\!\[x\]\(http\:\/\/h\/b\.png\) \*a\* \_b\_ \`c\` \:red\[d\] \$e\$ \<img src\=f\> \# g h"
    )
    assert plain("a photo of 2 cats · “quoted”") == "a photo of 2 cats · “quoted”"


@pytest.mark.parametrize("script", ["overview.py", "explorer.py", "rate_distortion.py"])
def test_study_strings_are_shown_escaped(crafted_study, monkeypatch, script):
    root, strings = crafted_study
    monkeypatch.setenv(STUDY_ENV, str(root))
    app = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120)
    app.run()
    app.switch_page(f"views/{script}")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    values = rendered(app)
    page = "\n".join(values)
    assert "](" not in page.replace("\\](", "")  # no markdown link or image anywhere
    assert "<img" not in page.replace("\\<img", "")
    assert f"study: **{plain(strings['study'])}**" in page  # the sidebar
    if script == "overview.py":
        assert app.title[0].value == plain(strings["study"])
    if script == "explorer.py":
        assert any(value.startswith("original: img") for value in values)  # image captions
        assert f"**{plain(strings['method'])}**" in page
        assert f"“{plain(strings['caption'])}”" in page


#: a method name plotly would render as HTML: bold text and an image fetched from elsewhere
HTML_METHOD = "<b>x</b><img src=http://127.0.0.1:1/x>"
HTML_CAPTION = "<a href=http://127.0.0.1:1/y>a photo</a>"


def test_chart_text_escapes_what_plotly_renders():
    assert chart_text(HTML_METHOD) == "&lt;b&gt;x&lt;/b&gt;&lt;img src=http://127.0.0.1:1/x&gt;"
    assert chart_text("a & b\nc") == "a &amp; b c"
    frame = chart_frame(
        pd.DataFrame({"method": [HTML_METHOD, None], "bpp": [1.0, 2.0]}), ["method", "codec"]
    )
    assert frame["method"].iloc[0] == chart_text(HTML_METHOD) and frame["method"].isna().iloc[1]


def shown_in_chart(spec: dict) -> list[str]:
    """Every string a plotly chart shows as text: trace names, texts, the ``customdata``
    fields its hover templates show, axis titles and annotations."""
    shown = []
    for trace in spec["data"]:
        shown += [str(trace.get("name", "")), *map(str, np.ravel(trace.get("text", [])))]
        template = str(trace.get("hovertemplate", ""))
        fields = {int(i) for i in re.findall(r"%\{customdata\[(\d+)\]", template)}
        shown += [str(row[i]) for row in trace.get("customdata", []) for i in fields]
    layout = spec["layout"]
    shown += [
        str(layout.get(axis, {}).get("title", {}).get("text", "")) for axis in ("xaxis", "yaxis")
    ]
    shown += [str(note.get("text", "")) for note in layout.get("annotations", [])]
    return shown


def test_plotly_hover_and_legend_show_study_strings_escaped(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    from semcomp.study import Study

    methods = (
        f'[[methods]]\nname = {json.dumps(HTML_METHOD)}\ncodec = "jpeg"\nquality = [30, 70]\n\n'
        f'[[methods]]\nname = "captions"\ncaptioner = "fixed"\n'
        f"captioner_params = {{ text = {json.dumps(HTML_CAPTION)} }}\n"
        'reconstructor = "solid-colour"\n'
    )
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        assert study.run(progress=False).status == "finished"
    monkeypatch.setenv(STUDY_ENV, str(root))
    app = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120)
    app.run()
    app.switch_page("views/rate_distortion.py")
    app.run()
    app.checkbox(key="rd_iso").check().run()
    assert not app.exception, [e.value for e in app.exception]
    for view in ("aggregated curves", "per-image points"):
        app.radio(key="rd_view").set_value(view).run()
        assert not app.exception, [e.value for e in app.exception]
        shown = shown_in_chart(json.loads(app.get("plotly_chart")[0].proto.spec))
        joined = "\n".join(shown)
        assert "<b>x" not in joined and "<img" not in joined and "<a href" not in joined
        assert chart_text(HTML_METHOD) in shown  # the legend: the name, as text
        assert any(chart_text(HTML_CAPTION) in text for text in shown)  # a candidate's hover
        if view == "aggregated curves":  # an operating point's hover and an iso marker
            assert sum(chart_text(HTML_METHOD) == text for text in shown) >= 3
            assert any(text.startswith(chart_text(HTML_METHOD) + ": mean curve") for text in shown)
