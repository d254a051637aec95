"""Embedding codecs: zero-shot accuracy against bpd from PQVAE evaluation files.

Files are ``results.csv`` of ``semcomp pqvae sweep`` and JSON of ``semcomp pqvae
eval --out`` under ``STUDY/pqvae/``, plus the files and folders given with
``semcomp app --pqvae-results``. The in-study PQVAE methods are on the Rate–distortion page
(CLIP similarity of the decoded embedding against the exact rate).
"""

import plotly.express as px
import streamlit as st

from semcomp.analysis.embedding_results import PQVAE_FOLDER, embedding_results
from semcomp.analysis.figures import PALETTE
from semcomp.app.data import pqvae_result_paths
from semcomp.app.filters import context, download_csv
from semcomp.app.widgets import chart_frame, plain

study, filters = context()
st.title("Embedding codecs: accuracy against rate")
results = embedding_results(study.root, pqvae_result_paths())
for path, reason in results.problems:
    st.warning(plain(f"{path}: {reason}"))
embedding_methods = study.points[study.points["kind"] == "embedding"]["method"].unique()
if len(embedding_methods):
    st.caption(
        f"in this study: {', '.join(map(str, embedding_methods))} — see Rate–distortion for "
        "their decoded-embedding CLIP scores"
    )
if results.table.empty:
    st.info(
        f"no PQVAE evaluation files found: put the output of `semcomp pqvae sweep --out` or "
        f"`semcomp pqvae eval --out FILE.json` under {study.root / PQVAE_FOLDER}, or start the "
        "app with --pqvae-results PATH"
    )
    st.stop()
table = results.table
value = "top1" if "top1" in table and table["top1"].notna().any() else "cosine"
figure = px.line(
    chart_frame(table.sort_values("bpd"), ["method", "coder", "source"]),
    x="bpd",
    y=value,
    color="method",
    color_discrete_sequence=PALETTE,
    markers=True,
    hover_data=[c for c in ("coder", "raw_top1", "source") if c in table],
    height=420,
)
figure.update_layout(
    xaxis_title="bits per feature dimension (bpd)",
    yaxis_title="zero-shot top-1" if value == "top1" else "mean cosine",
)
st.plotly_chart(figure, key="embedding_chart")
st.dataframe(table, hide_index=True)
download_csv(table, "embedding_codecs.csv", "embedding_csv")
