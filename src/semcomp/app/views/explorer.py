"""Image explorer: one original beside every candidate made from it."""

import streamlit as st

from semcomp.analysis.figures import RANDOM_WEIGHTS_NOTE, grid_cells, image_grid
from semcomp.app.filters import context, download_csv, download_png
from semcomp.app.widgets import candidate_grid, loupe, show_original

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
    with st.expander("Compare with the original (loupe)", expanded=True):
        loupe(study, original_id, candidates)
    candidate_grid(study, candidates, filters.metric, with_original=False)

with st.expander("Image grid for a paper: originals × methods at one rate"):
    grid_bpp = st.number_input(
        "rate (bits per pixel): each method's operating point nearest it",
        min_value=0.0001,
        value=float(points["bpp"].median()) if points["bpp"].notna().any() else 0.5,
        format="%.4g",
        key="explorer_grid_bpp",
    )
    images = study.artifacts[study.artifacts["media_type"].astype(str).str.startswith("image/")]
    cells = grid_cells(
        points[points["original_id"].isin(originals["id"])],
        dict(zip(study.originals["id"], study.originals["path"], strict=True)),
        dict(zip(images["candidate_id"], images["path"], strict=True)),
        bpp=grid_bpp,
    )
    if cells.empty:
        st.caption("no candidate images (with these filters) for a grid yet")
    else:
        st.caption(
            f"{cells['original'].nunique()} originals × {cells['method'].nunique()} methods; "
            "`semcomp report --grid` writes it as PNG and PDF"
        )
        title = study.name + (f" ({RANDOM_WEIGHTS_NOTE})" if study.random_weights else "")
        download_png(lambda: image_grid(cells, title=title), "grid.png", "explorer_grid")
