"""Strings from the study (its name, method names, captions) are shown as text, never
rendered as markdown: a markdown image in a caption must not make the page fetch it."""

import pytest
from streamlit.testing.v1 import AppTest

from semcomp.app import MAIN_SCRIPT, STUDY_ENV
from semcomp.app.widgets import plain

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
