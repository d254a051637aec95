"""Zero-shot accuracy against bits per pixel: the PQVAE paper's Fig. 6 for every method
of a labelled study (pixel and learned codecs, textual reconstructions, decoded
embeddings), from the ``zero-shot`` metric's scores, as ``semcomp report`` draws it in
``zero_shot_bpp.png``."""

import plotly.graph_objects as go
import streamlit as st

from semcomp.analysis.figures import colour_map, zero_shot_figure
from semcomp.analysis.zero_shot import zero_shot_keys
from semcomp.app.filters import context, download_table_and_chart
from semcomp.app.widgets import chart_text, left_out, mark_random_weights, plain

study, filters = context()
st.title("Zero-shot accuracy against bits per pixel")
keys = zero_shot_keys(study.scores, study.points)
if not keys:
    st.info(
        "no zero-shot scores: give the study labelled originals (`[images.source]` naming a "
        'dataset, or a manifest with a label column) and a `[[metrics]] metric = "zero-shot"` '
        "entry"
    )
    st.stop()
curves = filters.analysis(study, "zero_shot")
table = curves.table
key = st.selectbox("Zero-shot metric", keys, format_func=study.display, key="zs_metric")
rows = table[(table["metric"] == key) & (table["bpp_mean"] > 0)]
coverage = curves.coverages[keys.index(key)] if len(curves.coverages) == len(keys) else None
if rows.empty:
    st.info("no method with a rate has zero-shot scores (with these filters)")
    st.stop()
st.caption(
    plain(
        f"{study.display(key)}: mean over images of 1 (right class) or 0, per method and "
        "operating point, with 95 % bootstrap CIs; "
        + (coverage.note if coverage is not None else "")
    )
)
colours = colour_map(rows["method"].unique())
figure = go.Figure()
for method, curve in rows.groupby("method"):
    curve = curve.sort_values("bpp_mean")
    figure.add_trace(
        go.Scatter(
            x=curve["bpp_mean"],
            y=100 * curve["accuracy"],
            mode="lines+markers",
            name=chart_text(f"{method} (n = {int(curve['n'].max())})"),
            line={"color": colours[str(method)]},
            error_y={
                "type": "data",
                "array": 100 * (curve["accuracy_ci_high"] - curve["accuracy"]).clip(lower=0),
                "arrayminus": 100 * (curve["accuracy"] - curve["accuracy_ci_low"]).clip(lower=0),
                "width": 4,
            },
            text=[chart_text(p) for p in curve["operating_point"]],
            hovertemplate="<b>%{fullData.name}</b> · %{text}<br>bpp %{x:.4g}<br>"
            "accuracy %{y:.1f} %<extra></extra>",
        )
    )
figure.update_layout(
    xaxis={"type": "log", "title": "rate (bits per pixel)"},
    yaxis={"title": "zero-shot top-1 accuracy (%)", "range": [-2, 102]},
    height=520,
    margin={"l": 10, "r": 10, "t": 30, "b": 10},
)
mark_random_weights(figure, study)
st.plotly_chart(figure, key="zs_chart")
shown = table[table["metric"] == key]
st.dataframe(shown, hide_index=True)
download_table_and_chart(
    shown,
    lambda: zero_shot_figure(shown, study.scores, random_weights=study.random_weights),
    "zero_shot_bpp",
    "zs",
)
if coverage is not None:
    left_out(coverage)
