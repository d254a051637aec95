"""The explorer shows the side information a textual method sent (its decoded sketch or
thumbnail) beside the reconstruction made from it."""

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from semcomp.app import MAIN_SCRIPT, STUDY_ENV
from semcomp.app.data import load_study, signature
from semcomp.app.widgets import side_caption, side_image
from semcomp.codecs.side import decode_side
from semcomp.study import Study


def test_the_explorer_shows_the_sketch_sent_beside_the_reconstruction(
    all_methods_study, monkeypatch
):
    with Study.open(all_methods_study, read_only=True) as study:
        sent = study.store.frame(
            "SELECT c.id, o.id AS original_id, json_extract(r.meta, '$.side_artifact') AS side "
            "FROM candidates c JOIN representations r ON r.id = c.representation_id "
            "JOIN originals o ON o.id = r.original_id JOIN methods m ON m.id = r.method_id "
            "WHERE m.name = 'human-captions+edges'"
        )
        candidate_id, original_id, side_hash = sent.iloc[0]
        side_bytes = study.store.read_artifact(side_hash)
    # the app's data: each such candidate's side payload file, decoded as it was sent
    data = load_study(str(all_methods_study), signature(all_methods_study))
    assert set(data.side_files) == set(sent.id)
    shown = side_image(data.side_files[candidate_id])
    assert np.array_equal(np.asarray(shown), np.asarray(decode_side(side_bytes)))

    monkeypatch.setenv(STUDY_ENV, str(all_methods_study))
    app = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120)
    app.switch_page("views/explorer.py")
    app.run()
    app.selectbox(key="explorer_original").set_value(original_id).run()
    assert not app.exception, [e.value for e in app.exception]
    images = app.get("image")
    pairs = [image for image in images if len(image.value) == 2]
    assert len(pairs) == 1, "one candidate of this original was sent with side information"
    (pair,) = pairs
    assert pair.captions == ["reconstruction", f"edges sent (96 px, {len(side_bytes):,} B)"]
    assert pair.value[0] != pair.value[1]
    # candidates without side information show their image alone
    assert any(len(image.value) == 1 for image in images)


def test_a_side_caption_says_what_was_sent():
    row = pd.Series({"side": "thumbnail", "side_size": 64.0, "side_bytes": 1234.0})
    assert side_caption(row) == "thumbnail sent (64 px, 1,234 B)"
    assert side_caption(pd.Series({"side": None, "side_size": None})) == "side information sent"
