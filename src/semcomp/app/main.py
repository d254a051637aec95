"""The Streamlit script of ``semcomp app STUDY``: navigation, shared filters, the chosen page.

The pages are :data:`semcomp.app.PAGES` (adding one is one line there plus its script).
"""

from __future__ import annotations

import streamlit as st

from semcomp.app import PAGES
from semcomp.app.data import current_study
from semcomp.app.filters import sidebar
from semcomp.app.widgets import plain

st.set_page_config(page_title="semcomp", page_icon=":material/compress:", layout="wide")
page = st.navigation(
    [st.Page(f"views/{script}", title=title, icon=icon) for script, title, icon in PAGES]
)
study = current_study()
if study is None:
    st.stop()
st.session_state["filters"] = sidebar(study)
st.session_state["study"] = study
for note in study.notes:
    st.warning(plain(note))
page.run()
