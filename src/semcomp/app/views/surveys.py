"""Surveys: rating distributions, Survey B dimensions, Survey C answers, reliability."""

import pandas as pd
import plotly.express as px
import streamlit as st

from semcomp.analysis.figures import PALETTE, survey_dimensions_figure
from semcomp.analysis.rd import group_label
from semcomp.app.data import load_surveys, select, signature
from semcomp.app.filters import context, download_csv, download_table_and_chart
from semcomp.app.widgets import chart_frame, plain
from semcomp.surveys.aggregate import METHOD_POINT
from semcomp.surveys.importer import STAGE
from semcomp.surveys.simulated import SIMULATED

NO_RATINGS = (
    "No human ratings imported yet. Make the surveys with `semcomp survey make STUDY "
    "--survey A` and import MTurk's results with `semcomp ratings import STUDY results.csv "
    "--survey A`."
)

study, filters = context()
st.title("Surveys")
surveys = load_surveys(str(study.root), signature(study.root))
rated = [s for s in surveys.definitions if not surveys.kept(s).empty]
if not rated:
    st.info(NO_RATINGS)
    st.stop()
definitions = surveys.definitions
survey_id = st.selectbox(
    "Survey", rated, format_func=lambda s: f"{s} — {definitions[s].name}", key="survey_pick"
)
survey = definitions[survey_id]
if survey_id in study.simulated_ratings:
    st.warning(f"{SIMULATED}: {plain(study.simulated_ratings[survey_id])}")

# ---- what was imported and what quality control left out ------------------------------
answers = surveys.answers[surveys.answers["survey"] == survey_id]
kept = surveys.kept(survey_id)
checks = answers[answers["is_check"] == 1]
excluded = answers[answers["excluded"].notna()]
failed = study.failures[study.failures["stage"] == STAGE] if not study.failures.empty else None
unmatched = surveys.unmatched
if not unmatched.empty and "survey" in unmatched:
    unmatched = unmatched[unmatched["survey"] == survey_id]
numbers = st.columns(5)
numbers[0].metric("kept answers", len(kept))
numbers[1].metric("workers", kept["worker_id"].nunique())
numbers[2].metric("excluded by QC", len(excluded))
numbers[3].metric("attention-check answers", len(checks))
numbers[4].metric("about unknown images", len(unmatched))
if not excluded.empty:
    st.caption(
        "excluded: "
        + ", ".join(f"{n} {rule}" for rule, n in excluded["excluded"].value_counts().items())
    )
if failed is not None and not failed.empty:
    st.warning(f"{len(failed)} answers could not be read (see the Overview's failures)")

chosen = select(kept, filters.categories, filters.methods)
if chosen.empty:
    st.info("no kept answers in the chosen categories and methods")
    st.stop()
tables = filters.survey_tables(study, survey_id)

# ---- scale questions: distributions and the mean of medians per method ----------------
scales = [q for q in survey.questions if q.kind == "scale"]
if scales:
    st.header("Rating distributions")
    question = scales[0]
    if len(scales) > 1:
        question = st.selectbox(
            "Question", scales, format_func=lambda q: f"{q.id}: {q.text}", key="survey_question"
        )
    else:
        st.caption(plain(question.text))
    values = chosen[(chosen["question"] == question.id) & chosen["value"].notna()]
    # a method's operating points are kept apart (jpeg · quality=30, jpeg · quality=70)
    values = values.assign(
        method=[group_label(*k) for k in values[list(METHOD_POINT)].itertuples(index=False)]
    )
    shares = (
        values.groupby("method")["value"].value_counts(normalize=True).rename("share").reset_index()
    )
    shares["share"] *= 100
    chart = px.bar(
        chart_frame(shares, ["method"]),
        x="value",
        y="share",
        color="method",
        color_discrete_sequence=PALETTE,
        barmode="group",
        labels={"value": f"rating ({question.low}–{question.high})", "share": "% of answers"},
        height=380,
    )
    chart.update_xaxes(dtick=1, range=[question.low - 0.5, question.high + 0.5])
    st.plotly_chart(chart, key="survey_distribution")
    st.subheader("Mean of pair medians per method (95 % bootstrap CI)")
    methods = tables.methods[tables.methods["question"] == question.id]
    st.dataframe(methods, hide_index=True)
    download_csv(tables.methods, f"survey_{survey_id}_methods.csv", "survey_methods_csv")

if len(scales) > 1 and not tables.dimensions.empty:
    st.header("Per-dimension means (± std)")
    by = st.radio("Per", ["method", "category"], horizontal=True, key="survey_by")
    table = tables.dimensions if by == "method" else tables.dimensions_by_category
    long = pd.DataFrame(
        [
            {"method": group_label(row["method"], row["operating_point"]),
             **({"category": row["category"]} if by == "category" else {}),
             "question": q.id, "mean": row[f"{q.id} mean"], "std": row[f"{q.id} std"]}
            for _, row in table.iterrows()
            for q in scales
            if f"{q.id} mean" in table
        ]
    )  # fmt: skip
    bars = px.bar(
        chart_frame(long, ["method", "category", "question"]),
        x="question",
        y="mean",
        error_y="std",
        color="method",
        color_discrete_sequence=PALETTE,
        barmode="group",
        facet_col="category" if by == "category" else None,
        facet_col_wrap=3,
        height=420,
    )
    st.plotly_chart(bars, key="survey_dimensions")
    download_table_and_chart(
        table,
        lambda: survey_dimensions_figure(tables.dimensions, survey),
        f"survey_{survey_id}_dimensions",
        "survey_dimensions",
    )

# ---- free answers (Survey C): top three and overlap between methods ---------------------
free = [q for q in survey.questions if q.kind != "scale"]
if free:
    st.header("Most frequent answers")
    st.caption(
        "Answers are normalised (case, spacing, leading article, plural to singular); "
        "`semcomp ratings summary --synonyms FILE` also merges synonyms."
    )
    for question in free:
        st.subheader(plain(question.id))
        st.caption(plain(question.text))
        top = tables.top_answers[tables.top_answers["question"] == question.id]
        overlap = tables.overlap[tables.overlap["question"] == question.id]
        columns = st.columns(2)
        columns[0].dataframe(top.drop(columns=["question"]), hide_index=True)
        if overlap.empty:
            columns[1].info("overlap needs answers from two methods or more")
        else:
            columns[1].dataframe(overlap.drop(columns=["question"]), hide_index=True)
    buttons = st.columns(2)
    with buttons[0]:
        download_csv(tables.top_answers, f"survey_{survey_id}_top_answers.csv", "survey_top_csv")
    with buttons[1]:
        download_csv(tables.overlap, f"survey_{survey_id}_overlap.csv", "survey_overlap_csv")

# ---- inter-rater reliability ------------------------------------------------------------
st.header("Inter-rater reliability (Krippendorff's α)")
st.dataframe(tables.reliability, hide_index=True)
download_csv(tables.reliability, f"survey_{survey_id}_reliability.csv", "survey_alpha_csv")
