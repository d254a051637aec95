"""Image explorer: one original beside every candidate made from it."""

import streamlit as st

from semcomp.app.filters import context, download_csv
from semcomp.app.widgets import candidate_grid, show_original

study, filters = context()
st.title("Image explorer")
originals = study.originals
if filters.categories:
    originals = originals[originals["category"].isin(filters.categories)]
if originals.empty:
    st.info("no originals (with these filters) yet: run `semcomp run STUDY`")
    st.stop()
labels = {row.id: f"{row.name} ({row.category})" for row in originals.itertuples()}
original_id = st.selectbox(
    "Original", list(labels), format_func=labels.get, key="explorer_original"
)
points = filters.points(study)
candidates = points[points["original_id"] == original_id]
sort = st.radio("Order", ["rate", "method"], horizontal=True, key="explorer_sort")
candidates = candidates.sort_values(
    ["rate_bytes", "method"] if sort == "rate" else ["method", "rate_bytes"]
)
left, right = st.columns([1, 3])
with left:
    show_original(study, original_id)
with right:
    st.write(
        f"{len(candidates)} candidates from {candidates['method'].nunique()} methods"
        if not candidates.empty
        else "no candidates for this original (with these filters) yet"
    )
    if not candidates.empty:
        download_csv(
            candidates.drop(columns=["candidate_id"], errors="ignore"),
            "candidates.csv",
            "explorer_csv",
        )
if not candidates.empty:
    candidate_grid(study, candidates, filters.metric, with_original=False)
