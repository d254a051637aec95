"""Rate–distortion: every codec on one rate axis against any metric (CLIP, PSNR, LPIPS,
FID, human ratings), in the metric's direction.

Hovering a point shows its image name, method, caption and numbers; clicking one
(or a curve's operating point) shows the images behind it under the chart.
Plotly cannot draw images inside a hover box, so the images follow the selection.
A set metric (FID, KID) has one value per method and operating point: it is drawn
there with its CI as error bars and ``n`` in the legend and hover.
"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from semcomp.analysis.curves import bd_rate, default_iso_level, iso_markers, pareto_front
from semcomp.analysis.figures import (
    RATE_AXES,
    colour_map,
    n_label,
    no_rate_bands,
    rd_chart,
    score_format,
)
from semcomp.analysis.rd import rate_text, summary_columns
from semcomp.app.filters import context, download_csv, download_table_and_chart
from semcomp.app.widgets import (
    CANDIDATE,
    OPERATING_POINT,
    candidate_grid,
    candidates_behind,
    chart_frame,
    chart_text,
    display_sample,
    left_out,
    mark_note,
    mark_random_weights,
    mark_sample,
    plain,
)
from semcomp.errors import AnalysisError

#: line styles of the bands of methods without a rate, as the report's figure draws them
BAND_DASHES = ["dash", "dashdot", "dot"]


def bd_rate_expander(common_summary: pd.DataFrame, metric: str, rate: str, note: str) -> None:
    """BD-rate between two chosen methods on ``metric``, in its direction."""
    info = study.scores[metric]
    with st.expander("BD-rate between two methods"):
        methods = sorted(common_summary["method"].unique())
        st.caption(plain(note))
        if len(methods) < 2:
            st.write("needs two methods with a rate")
            return
        pick = st.columns(2)
        anchor = pick[0].selectbox("anchor", methods, key="bd_anchor")
        test = pick[1].selectbox("test", methods, index=1, key="bd_test")
        statistic = summary_columns(metric, study.scores)[0].removeprefix(f"{metric} ")
        try:
            value = bd_rate(
                common_summary,
                anchor,
                test,
                metric,
                rate,
                statistic=statistic,
                higher_is_better=info.higher_is_better,
            )
            label = f"BD-rate of {test} against {anchor} on {info.display}"
            st.metric(plain(label), f"{value:+.1f} %")
            st.caption(
                "negative: the test method needs fewer bits for the same score"
                + ("" if info.higher_is_better else f" ({info.display}: lower is better)")
            )
        except AnalysisError as exc:
            st.info(plain(exc))


def shown_point(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """An operating point's method and label as its hover box shows them (:func:`chart_text`);
    its ``customdata`` keeps them as they are too, for the selection to find its images."""
    return [chart_text(m) for m in rows["method"]], [chart_text(p) for p in rows["operating_point"]]


def set_metric_page(metric: str) -> None:
    """A set metric against rate: one value per method × operating point, CI error bars."""
    info = study.scores[metric]
    rate = st.radio("Rate", list(RATE_AXES), index=0, horizontal=True, key="rd_rate")
    show_pareto = st.checkbox("Pareto front", key="rd_pareto")
    _, mean_rate, rate_label = RATE_AXES[rate]
    value, low, high, n = summary_columns(metric, study.scores)
    summary = filters.set_summary(study)  # every category: as the value, so its rate
    rows = summary.dropna(subset=[value]) if value in summary else summary.iloc[:0]
    rated = rows[rows[mean_rate] > 0]
    scope = filters.set_metric_scope(info.display)  # empty without a category filter
    st.caption(
        plain(
            f"{info.display}: one value per method and operating point, over the originals "
            "the score stage used (n; a category filter cannot narrow it); error bars are "
            "its 95 % CI"
        )
    )
    if scope:
        st.warning(plain(f"{scope}; the rates beside it are over all originals too"))
    if rated.empty:
        st.info(plain(f"no method with a rate has a {info.display} value (with these filters)"))
        return
    colours = colour_map(rated["method"].unique())
    digits = score_format(rated[value])
    figure = go.Figure()
    for method, curve in rated.groupby("method"):
        curve = curve.sort_values(mean_rate)
        figure.add_trace(
            go.Scatter(
                x=curve[mean_rate],
                y=curve[value],
                mode="lines+markers",
                name=chart_text(f"{method} ({n_label(curve[n])})"),
                line={"color": colours[str(method)]},
                error_y={
                    "type": "data",
                    "array": (curve[high] - curve[value]).clip(lower=0).fillna(0),
                    "arrayminus": (curve[value] - curve[low]).clip(lower=0).fillna(0),
                    "width": 4,
                },
                customdata=list(
                    zip(
                        [OPERATING_POINT] * len(curve),
                        curve["method"],
                        curve["operating_point"],
                        curve[n],
                        curve[low],
                        curve[high],
                        *shown_point(curve),
                        strict=True,
                    )
                ),
                hovertemplate="<b>%{customdata[6]}</b> · %{customdata[7]}<br>"
                "n = %{customdata[3]} originals<br>"
                f"x %{{x:.4g}} · value %{{y:{digits}}} [%{{customdata[4]:{digits}}}, "
                f"%{{customdata[5]:{digits}}}]<extra></extra>",
            )
        )
    if show_pareto:
        front = pareto_front(rated, mean_rate, value, higher_is_better=info.higher_is_better)
        figure.add_trace(
            go.Scatter(
                x=front[mean_rate],
                y=front[value],
                mode="lines",
                name="Pareto front",
                line={"color": "black", "dash": "dot", "shape": "hv"},
                hoverinfo="skip",
            )
        )
    figure.update_layout(
        xaxis={"type": "log", "title": rate_label},
        yaxis={"title": chart_text(info.axis_label)},
        height=560,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"font": {"size": 11}},
    )
    mark_random_weights(figure, study)
    if scope:  # on the chart itself, so a screenshot keeps it
        mark_note(figure, chart_text(scope))
    st.plotly_chart(figure, key="rd_chart")
    columns = ["method", "operating_point", mean_rate, value, low, high, n]
    table = rated[columns].assign(originals="all (category filter not applied)" if scope else "all")
    download_table_and_chart(
        table,
        lambda: rd_chart(
            filters.points(study),
            summary,
            metric,
            rate=rate,
            pareto=show_pareto,
            title=study.name + (f" ({scope})" if scope else ""),
            random_weights=study.random_weights,
            scores=study.scores,
        ),
        f"rd_{rate}",
        "rd",
    )
    st.dataframe(table, hide_index=True)
    bd_rate_expander(
        rated,
        metric,
        rate,
        "over each operating point's own originals (n), as the score stage computed it",
    )


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
info = study.scores[metric]
if info.is_set:
    set_metric_page(metric)
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
curve_summary = filters.summary(study)  # each method's curve over one set of originals
# methods without a rate keep their similarity: horizontal bands, "no rate" in the legend
bands = no_rate_bands(points, curve_summary, metric)
no_rate = f"; without a rate: {', '.join(bands['method'].unique())}" if not bands.empty else ""
if usable.empty:
    st.info(
        plain(
            f"no candidate has both a rate and a {info.display} score (with these filters){no_rate}"
        )
    )
    st.stop()
curves = filters.analysis(study, "curves")
compared, common_summary = filters.analysis(study, "compared", metric=metric)
st.caption(
    plain(
        f"{curves.note}. {compared.note}"
        + (
            f". Methods without a rate are drawn as horizontal bands ({no_rate[2:]})"
            if no_rate
            else ""
        )
    )
)
level = None
if show_iso:
    level = st.number_input(
        f"level of {info.display}" + ("" if info.higher_is_better else " (reached at or below)"),
        value=float(default_iso_level(usable, metric)),
        format="%.4g",
        key=f"rd_level_{metric}",
    )

summary = curve_summary[curve_summary["method"].isin(usable["method"].unique())]
summary = summary[summary[mean_rate] > 0]  # a log axis: no zero-rate operating points
common_summary = common_summary[common_summary[mean_rate] > 0]
if colour_by == "method":
    colours = colour_map({*usable["method"].unique(), *bands["method"]})
else:
    colours = colour_map(usable[colour_by].unique())
digits = score_format(usable[metric])  # enough to tell these candidates apart
figure = go.Figure()
drawn = display_sample(usable, colour_by)  # curves, tables and downloads use every row
for key, rows in drawn.groupby(colour_by):
    captions = rows["caption"].fillna("").str.slice(0, 80) if "caption" in rows else ""
    hover = rows[["candidate_id", "original", "method", "operating_point"]].assign(
        caption=captions, rate=[rate_text(bits) for bits in rows["rate_bits"]]
    )
    hover = chart_frame(hover, ["original", "method", "operating_point", "caption"])
    hover.insert(0, "kind", CANDIDATE)  # the candidate id (selection) is kept as it is
    figure.add_trace(
        go.Scattergl(
            x=rows[point_rate],
            y=rows[metric],
            mode="markers",
            name=chart_text(key),
            legendgroup=str(key),
            showlegend=not aggregated,
            marker={"color": colours[str(key)], "size": 6, "opacity": 0.25 if aggregated else 0.75},
            customdata=hover.to_numpy(),
            hovertemplate="<b>%{customdata[2]}</b> · %{customdata[3]} · %{customdata[4]}<br>"
            f"%{{customdata[5]}}<br>%{{customdata[6]}} · x %{{x:.4g}} · y %{{y:{digits}}}"
            "<extra></extra>",
        )
    )
mean, low, high = f"{metric} mean", f"{metric} mean_ci_low", f"{metric} mean_ci_high"


def ci_band(x: list, y: list, colour: str, opacity: float, group: str) -> go.Scatter:
    """A shaded confidence band (a closed outline), grouped with its line in the legend."""
    return go.Scatter(
        x=x,
        y=y,
        fill="toself",
        fillcolor=colour,
        opacity=opacity,
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=group,
    )


if aggregated:
    for method, rows in summary.dropna(subset=[mean_rate, mean]).groupby("method"):
        rows = rows.sort_values(mean_rate)
        colour = colours.get(str(method), "#444")
        band_x = list(rows[mean_rate]) + list(rows[mean_rate])[::-1]
        band_y = list(rows[high].fillna(rows[mean])) + list(rows[low].fillna(rows[mean]))[::-1]
        figure.add_trace(ci_band(band_x, band_y, colour, 0.15, str(method)))
        figure.add_trace(
            go.Scatter(
                x=rows[mean_rate],
                y=rows[mean],
                mode="lines+markers",
                name=chart_text(method),
                legendgroup=str(method),
                line={"color": colour},
                error_y={  # one operating point (a captioning method): its band is invisible
                    "type": "data",
                    "array": (rows[high] - rows[mean]).clip(lower=0).fillna(0),
                    "arrayminus": (rows[mean] - rows[low]).clip(lower=0).fillna(0),
                    "visible": len(rows) == 1,
                    "width": 4,
                },
                customdata=list(
                    zip(
                        [OPERATING_POINT] * len(rows),
                        rows["method"],
                        rows["operating_point"],
                        rows["n"],
                        rows[f"{metric} n"],
                        rows[low],
                        rows[high],
                        *shown_point(rows),
                        strict=True,
                    )
                ),
                hovertemplate="<b>%{customdata[7]}</b> · %{customdata[8]}<br>"
                "%{customdata[3]} images, %{customdata[4]} with this metric<br>"
                f"x %{{x:.4g}} · mean %{{y:{digits}}} [%{{customdata[5]:{digits}}}, "
                f"%{{customdata[6]:{digits}}}]<extra></extra>",
            )
        )
span = [usable[point_rate].min(), usable[point_rate].max()]
for index, band in enumerate(bands.itertuples(index=False)):
    colour = colours.get(str(band.method), "#555") if colour_by == "method" else "#555"
    if pd.notna(band.low) and pd.notna(band.high) and band.high > band.low:
        band_y = [band.high, band.high, band.low, band.low]
        figure.add_trace(ci_band(span + span[::-1], band_y, colour, 0.1, band.label))
    figure.add_trace(
        go.Scatter(
            x=span,
            y=[band.mean, band.mean],
            mode="lines",
            name=chart_text(band.label),
            legendgroup=band.label,
            line={"color": colour, "dash": BAND_DASHES[index % len(BAND_DASHES)]},
            hovertemplate=f"<b>%{{fullData.name}}</b><br>mean {band.mean:{digits}}<extra></extra>",
        )
    )
if show_pareto:
    # across methods: over the originals they share
    compared_usable = compared.points.dropna(subset=[point_rate])
    source, x_col, y_col = (
        (common_summary, mean_rate, mean)
        if aggregated
        else (compared_usable[compared_usable[point_rate] > 0], point_rate, metric)
    )
    front = pareto_front(source, x_col, y_col, higher_is_better=info.higher_is_better)
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
iso_images = iso_table = None
if level is not None:
    iso_images, iso_table = filters.analysis(study, "iso", metric=metric, level=level, rate=rate)
    figure.add_hline(
        y=level,
        line={"color": "magenta", "width": 1},
        annotation_text=f"iso-satisfaction {level:g}",
    )
    marks = iso_markers(
        iso_table,
        summary,
        metric,
        level,
        rate,
        aggregated=aggregated,
        higher_is_better=info.higher_is_better,
    )
    figure.add_trace(
        go.Scatter(
            x=marks["rate"],
            y=[level] * len(marks),
            mode="markers",
            name="mean curve reaches level" if aggregated else "median image reaches level",
            marker={"symbol": "diamond", "color": "magenta", "size": 10},
            text=[chart_text(label) for label in marks["label"]],
            hovertemplate="%{text}<extra></extra>",
        )
    )
figure.update_layout(
    xaxis={"type": "log", "title": rate_label},
    yaxis={"title": chart_text(info.axis_label)},
    height=560,
    margin={"l": 10, "r": 10, "t": 30, "b": 10},
    legend={"font": {"size": 11}},
)
mark_random_weights(figure, study)
mark_sample(figure, len(drawn), len(usable))
event = st.plotly_chart(figure, key="rd_chart", on_select="rerun", selection_mode="points")
left_out(curves, compared)

table = summary if aggregated else usable.drop(columns=["candidate_id"], errors="ignore")
download_table_and_chart(
    table,
    lambda: rd_chart(
        curves.points,  # with the methods without a rate: their bands
        curve_summary,
        metric,
        rate=rate,
        colour_by=colour_by,
        aggregated=aggregated,
        iso_level=level,
        pareto=show_pareto,
        title=study.name,
        random_weights=study.random_weights,
        scores=study.scores,
    ),
    f"rd_{rate}",
    "rd",
)

selected = event.selection.points if event and event.selection else []
if selected:
    chosen = candidates_behind(usable, selected[0].get("customdata"))
    if not chosen.empty:
        st.subheader("Images behind the selection")
        candidate_grid(study, chosen.head(12), metric, with_original=True)
else:
    st.caption("click a point to see the images behind it")

if iso_table is not None:
    sign = "≥" if info.higher_is_better else "≤"
    st.subheader(f"Iso-satisfaction at {plain(info.display)} {sign} {level:g}")
    st.caption(
        "per method: images reaching the level, the median and smallest of each image's "
        "smallest rate reaching it, and the cheapest operating point whose mean reaches it"
    )
    st.dataframe(iso_table, hide_index=True)
    with st.expander(f"per image: the smallest rate of each method reaching {level:g}"):
        st.dataframe(iso_images, hide_index=True)
        download_csv(iso_images, f"iso_satisfaction_images_{rate}.csv", "rd_iso_images_csv")

bd_rate_expander(common_summary, metric, rate, compared.note)
