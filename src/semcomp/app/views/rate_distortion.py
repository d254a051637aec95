"""Rate–distortion: every codec on one rate axis against any CLIP or human metric.

Hovering a point shows its image name, method, caption and numbers; clicking one
(or a curve's operating point) shows the images behind it under the chart.
Plotly cannot draw images inside a hover box, so the images follow the selection.
"""

import plotly.graph_objects as go
import streamlit as st

from semcomp.analysis.curves import bd_rate, default_iso_level, pareto_front
from semcomp.analysis.figures import RATE_AXES, rd_chart
from semcomp.app.filters import context, download_csv, download_png
from semcomp.app.widgets import candidate_grid
from semcomp.errors import AnalysisError

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]

study, filters = context()
st.title("Rate–distortion")
points = filters.points(study)
metric = filters.metric
if metric is None or points.empty:
    st.info(
        "no similarity scores to plot yet: run `semcomp run STUDY` (CLIP) or import human ratings"
        if not points.empty
        else "no candidates match the filters (or none exist yet)"
    )
    st.stop()

controls = st.columns([1, 1, 1.4, 1, 1])
rate = controls[0].radio("Rate", list(RATE_AXES), index=0, horizontal=True, key="rd_rate")
colour_by = controls[1].radio("Colour by", ["method", "category"], horizontal=True, key="rd_colour")
view = controls[2].radio(
    "Show", ["aggregated curves", "per-image points"], horizontal=True, key="rd_view"
)
show_iso = controls[3].checkbox("Iso-satisfaction", key="rd_iso")
show_pareto = controls[4].checkbox("Pareto front", key="rd_pareto")
aggregated = view == "aggregated curves"
if aggregated and colour_by == "category":
    st.caption("curves are per method; colour by category shows per-image points")
    aggregated = False
point_rate, mean_rate, rate_label = RATE_AXES[rate]
usable = points.dropna(subset=[point_rate, metric])
usable = usable[usable[point_rate] > 0]
if usable.empty:
    st.info(f"no candidate has both a rate and a {metric} score (with these filters)")
    st.stop()
level = None
if show_iso:
    level = st.number_input(
        f"level of {metric}",
        value=float(default_iso_level(usable, metric)),
        format="%.4g",
        key=f"rd_level_{metric}",
    )

summary = filters.summary(study)
summary = summary[summary["method"].isin(usable["method"].unique())]
colours = {
    key: PALETTE[i % len(PALETTE)] for i, key in enumerate(sorted(usable[colour_by].unique()))
}
figure = go.Figure()
for key, rows in usable.groupby(colour_by):
    hover = rows[["candidate_id", "original", "method", "operating_point", "rate_bytes"]].copy()
    hover.insert(
        4, "caption", rows["caption"].fillna("").str.slice(0, 80) if "caption" in rows else ""
    )
    figure.add_trace(
        go.Scattergl(
            x=rows[point_rate],
            y=rows[metric],
            mode="markers",
            name=str(key),
            legendgroup=str(key),
            showlegend=not aggregated,
            marker={"color": colours[key], "size": 6, "opacity": 0.25 if aggregated else 0.75},
            customdata=hover.to_numpy(),
            hovertemplate="<b>%{customdata[1]}</b> · %{customdata[2]} · %{customdata[3]}<br>"
            "%{customdata[4]}<br>%{customdata[5]:,.0f} bytes · x %{x:.4g} · y %{y:.4f}"
            "<extra></extra>",
        )
    )
mean, low, high = f"{metric} mean", f"{metric} mean_ci_low", f"{metric} mean_ci_high"
if aggregated:
    for method, rows in summary.dropna(subset=[mean_rate, mean]).groupby("method"):
        rows = rows.sort_values(mean_rate)
        colour = colours.get(method, "#444")
        band_x = list(rows[mean_rate]) + list(rows[mean_rate])[::-1]
        band_y = list(rows[high].fillna(rows[mean])) + list(rows[low].fillna(rows[mean]))[::-1]
        figure.add_trace(
            go.Scatter(
                x=band_x,
                y=band_y,
                fill="toself",
                fillcolor=colour,
                opacity=0.15,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=str(method),
            )
        )
        figure.add_trace(
            go.Scatter(
                x=rows[mean_rate],
                y=rows[mean],
                mode="lines+markers",
                name=str(method),
                legendgroup=str(method),
                line={"color": colour},
                customdata=list(
                    zip(
                        rows["method"],
                        rows["operating_point"],
                        rows["n"],
                        rows[low],
                        rows[high],
                        strict=True,
                    )
                ),
                hovertemplate="<b>%{customdata[0]}</b> · %{customdata[1]} (n=%{customdata[2]})"
                "<br>x %{x:.4g} · mean %{y:.4f} [%{customdata[3]:.4f}, %{customdata[4]:.4f}]"
                "<extra></extra>",
            )
        )
if show_pareto:
    source, x_col, y_col = (
        (summary, mean_rate, mean) if aggregated else (usable, point_rate, metric)
    )
    front = pareto_front(source, x_col, y_col)
    figure.add_trace(
        go.Scatter(
            x=front[x_col],
            y=front[y_col],
            mode="lines",
            name="Pareto front",
            line={"color": "black", "dash": "dot", "shape": "hv"},
            hoverinfo="skip",
        )
    )
iso_table = None
if level is not None:
    _, iso_table = filters.analysis(study, "iso", metric=metric, level=level, rate=rate)
    figure.add_hline(
        y=level,
        line={"color": "magenta", "width": 1},
        annotation_text=f"iso-satisfaction {level:g}",
    )
    reached = iso_table.dropna(subset=[f"smallest_min_{point_rate}"])
    figure.add_trace(
        go.Scatter(
            x=reached[f"smallest_min_{point_rate}"],
            y=[level] * len(reached),
            mode="markers",
            name="first reaches level",
            marker={"symbol": "diamond", "color": "magenta", "size": 10},
            text=reached["method"],
            hovertemplate="%{text}: %{x:.4g}<extra></extra>",
        )
    )
figure.update_layout(
    xaxis={"type": "log", "title": rate_label},
    yaxis={"title": metric},
    height=560,
    margin={"l": 10, "r": 10, "t": 30, "b": 10},
    legend={"font": {"size": 11}},
)
event = st.plotly_chart(figure, key="rd_chart", on_select="rerun", selection_mode="points")

table = summary if aggregated else usable.drop(columns=["candidate_id"], errors="ignore")
buttons = st.columns(2)
with buttons[0]:
    download_csv(table, f"rd_{rate}.csv", "rd_csv")
with buttons[1]:
    download_png(
        lambda: rd_chart(
            usable,
            summary,
            metric,
            rate=rate,
            colour_by=colour_by,
            aggregated=aggregated,
            iso_level=level,
            pareto=show_pareto,
            title=study.name,
            random_weights=study.random_weights,
        ),
        f"rd_{rate}.png",
        "rd_png",
    )

selected = event.selection.points if event and event.selection else []
if selected:
    data = selected[0].get("customdata") or []
    if len(data) == 6:  # one candidate
        chosen = usable[usable["candidate_id"] == data[0]]
    elif len(data) == 5:  # an operating point of a curve
        chosen = usable[(usable["method"] == data[0]) & (usable["operating_point"] == data[1])]
    else:
        chosen = usable.iloc[:0]
    if not chosen.empty:
        st.subheader("Images behind the selection")
        candidate_grid(study, chosen.head(12), metric, with_original=True)
else:
    st.caption("click a point to see the images behind it")

if iso_table is not None:
    st.subheader(f"Iso-satisfaction at {metric} ≥ {level:g}")
    st.dataframe(iso_table, hide_index=True)

with st.expander("BD-rate between two methods"):
    methods = sorted(summary["method"].unique())
    if len(methods) < 2:
        st.write("needs two methods")
    else:
        pick = st.columns(2)
        anchor = pick[0].selectbox("anchor", methods, key="bd_anchor")
        test = pick[1].selectbox("test", methods, index=1, key="bd_test")
        try:
            value = bd_rate(summary, anchor, test, metric, rate)
            st.metric(f"BD-rate of {test} against {anchor} on {metric}", f"{value:+.1f} %")
        except AnalysisError as exc:
            st.info(str(exc))
