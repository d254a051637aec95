"""Agreement: CLIP similarity against human ratings, with rank correlations."""

import plotly.express as px
import streamlit as st

from semcomp.analysis.agreement import MISSING_CLIP, MISSING_HUMAN
from semcomp.analysis.figures import agreement_figure
from semcomp.analysis.rd import SATISFACTION_PREFIX
from semcomp.app.filters import context, download_csv, download_png
from semcomp.app.widgets import plain
from semcomp.surveys.simulated import SIMULATED, survey_of

study, filters = context()
st.title("Agreement of CLIP and human ratings")
points = filters.points(study)
if not study.human_metrics:
    st.info(MISSING_HUMAN + " (Survey A/B aggregates are imported as `human.*` scores)")
    st.stop()
if not study.clip_metrics:
    st.info(MISSING_CLIP)
    st.stop()
pick = st.columns(2)
models, humans = study.clip_metrics, study.human_metrics
# the shared Metric filter chooses on its side (CLIP or human) until changed here
for key, choices in (("agree_model", models), ("agree_human", humans)):
    follows = st.session_state.get(f"{key}_from") == filters.metric and key in st.session_state
    if filters.metric in choices and not follows:
        st.session_state[key] = st.session_state[f"{key}_from"] = filters.metric
if st.session_state.get("agree_human") not in humans:
    st.session_state["agree_human"] = next(
        (m for m in humans if m.startswith(SATISFACTION_PREFIX)), humans[0]
    )
model_metric = pick[0].selectbox("Model metric", models, key="agree_model")
human_metric = pick[1].selectbox("Human metric", humans, key="agree_human")
if survey_of(human_metric) in study.simulated_ratings:
    st.warning(plain(f"{SIMULATED}: {study.simulated_ratings[survey_of(human_metric)]}"))
if points.dropna(subset=[model_metric, human_metric]).empty:
    st.info("no candidate has both scores (with these filters)")
    st.stop()
# over the originals common to the methods compared (the sidebar's "Images" choice)
table, compared = filters.analysis(
    study, "agreement", model_metric=model_metric, human_metric=human_metric
)
both = compared.points
st.caption(plain(compared.note))
figure = px.scatter(
    both,
    x=model_metric,
    y=human_metric,
    color="method",
    hover_data=["original", "operating_point", "rate_bytes"],
    height=480,
)
st.plotly_chart(figure, key="agreement_chart")
st.subheader("Rank correlations (95 % bootstrap CIs)")
st.dataframe(table, hide_index=True)
buttons = st.columns(2)
with buttons[0]:
    download_csv(table, "agreement.csv", "agreement_csv")
with buttons[1]:
    download_png(
        lambda: agreement_figure(both, model_metric, human_metric, table),
        "agreement.png",
        "agreement_png",
    )
