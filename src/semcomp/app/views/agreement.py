"""Agreement: any metric (CLIP, PSNR, LPIPS, ...) against human ratings, with rank
correlations, and a table of which metric tracks the ratings best."""

import plotly.express as px
import streamlit as st

from semcomp.analysis.agreement import MISSING_CLIP, MISSING_HUMAN, ORIENTED_NOTE
from semcomp.analysis.figures import agreement_figure, agreement_metrics_figure, colour_map
from semcomp.analysis.rd import SATISFACTION_PREFIX
from semcomp.app.filters import (
    context,
    download_table_and_chart,
    metric_label,
)
from semcomp.app.widgets import chart_frame, chart_text, mark_random_weights, plain
from semcomp.surveys.simulated import SIMULATED, survey_of

study, filters = context()
st.title("Agreement of metrics and human ratings")
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


def label(key: str) -> str:
    return metric_label(study, key)


model_metric = pick[0].selectbox("Model metric", models, key="agree_model", format_func=label)
human_metric = pick[1].selectbox("Human metric", humans, key="agree_human", format_func=label)
model_info = study.scores[model_metric]
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
colours = colour_map(points["method"].unique())  # as on the other charts
figure = px.scatter(
    chart_frame(both, ["method", "original", "operating_point"]),
    x=model_metric,
    y=human_metric,
    color="method",
    color_discrete_map={chart_text(m): colour for m, colour in colours.items()},
    hover_data=["original", "operating_point", "rate_bytes"],
    labels={
        model_metric: chart_text(model_info.axis_label),
        human_metric: chart_text(study.scores[human_metric].axis_label),
    },
    height=480,
)
mark_random_weights(figure, study)
st.plotly_chart(figure, key="agreement_chart")
st.subheader("Rank correlations (95 % bootstrap CIs)")
if not model_info.higher_is_better:
    st.caption(plain(f"{model_info.display} is lower-is-better: {ORIENTED_NOTE}"))
st.dataframe(table, hide_index=True)
download_table_and_chart(
    table,
    lambda: agreement_figure(both, model_metric, human_metric, table, study.scores),
    "agreement",
    "agreement",
)

human_name = study.scores[human_metric].display
st.subheader(plain(f"Which metric tracks {human_name} best"))
st.caption(
    plain(
        f"every metric with a value per image, over all methods, best first; {ORIENTED_NOTE}. "
        "Set metrics (FID, KID) have one value per operating point and are not correlated "
        "per image"
    )
)
ranking = filters.analysis(study, "metric_agreement", human_metric=human_metric)
if ranking.empty:
    st.info("no metric has scores for the rated candidates (with these filters)")
else:
    st.dataframe(ranking, hide_index=True)
    download_table_and_chart(
        ranking,
        lambda: agreement_metrics_figure(ranking, human_name),
        "agreement_metrics",
        "agreement_metrics",
    )
