"""Overview: what the study holds, what failed, what is missing, and Table 1."""

import pandas as pd
import streamlit as st

from semcomp.analysis.coverage import methods_without_rate
from semcomp.app.filters import context, download_csv
from semcomp.app.widgets import left_out, plain
from semcomp.surveys.simulated import SIMULATED, survey_of

study, filters = context()
points = filters.points(study)
st.title(plain(study.name))
st.caption(plain(study.root))

counts = study.counts
columns = st.columns(5)
for column, (label, table) in zip(
    columns,
    [
        ("originals", "originals"),
        ("encoded", "representations"),
        ("candidates", "candidates"),
        ("scores", "scores"),
        ("failures", "failures"),
    ],
    strict=True,
):
    column.metric(label, f"{counts[table]:,}")

missing = []
if counts["originals"] == 0:
    missing.append("no originals ingested yet — run `semcomp run STUDY`")
if counts["candidates"] == 0:
    missing.append("no candidates yet (nothing encoded and decoded)")
if study.points.empty or not study.metrics:
    missing.append("no similarity scores yet — the score stage has not run")
if not study.human_metrics:
    missing.append("no human ratings (human.* scores) yet — import MTurk results")
for line in missing:
    st.info(line)

left, right = st.columns(2)
with left:
    st.subheader("Originals by category")
    if study.originals.empty:
        st.write("none")
    else:
        st.dataframe(
            study.originals.groupby("category").size().rename("originals").reset_index(),
            hide_index=True,
        )
with right:
    st.subheader("Methods")
    if study.methods.empty:
        st.write("none registered yet")
    else:
        per_method = (
            study.points.groupby("method")
            .agg(
                operating_points=("operating_point", "nunique"),
                candidates=("candidate_id", "size"),
                mean_bytes=("rate_bytes", "mean"),
            )
            .reset_index()
            if not study.points.empty
            else pd.DataFrame(columns=["method"])
        )
        methods = study.methods[["name", "kind", "codec"]].merge(
            per_method, left_on="name", right_on="method", how="left"
        )
        rate_less = methods_without_rate(study.points)
        methods["rate"] = ["no rate" if m in rate_less else "" for m in methods["name"]]
        st.dataframe(methods.drop(columns=["method"]), hide_index=True)
        if rate_less:
            st.caption(
                plain(
                    f"no rate (size — in Table 1, a band on the rate–distortion page): "
                    f"{', '.join(rate_less)}"
                )
            )

st.subheader("Table 1: mean size and semantic satisfaction")
if points.empty:
    st.info("no candidates match the filters")
else:
    table, metric, note, compared = filters.analysis(study, "table1")
    st.caption(plain(note))
    shown_sets = [study.display(k) for k in study.scores.set_keys() if f"{k} value" in table]
    if shown_sets and filters.categories:  # set values: over all originals
        st.caption(plain(filters.set_metric_scope(", ".join(shown_sets))))
    if metric and survey_of(metric) in study.simulated_ratings:
        st.warning(f"the satisfaction column holds {SIMULATED}, not people's")
    st.dataframe(table, hide_index=True)
    download_csv(table, "table1.csv", "table1_csv")
    left_out(compared)

st.subheader("Failures")
if study.failures.empty:
    st.write("none recorded")
else:
    st.dataframe(
        study.failures.groupby(["stage", "reason"]).size().rename("items").reset_index(),
        hide_index=True,
    )
    with st.expander(f"all {len(study.failures)} failures"):
        st.dataframe(study.failures[["stage", "item", "reason", "retryable"]], hide_index=True)
