"""Pieces several pages draw: a grid of candidates with their images and numbers, and
:func:`plain`, through which every string that comes from the study reaches the page
(:func:`chart_text` in a plotly chart)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from semcomp.analysis.coverage import Coverage
from semcomp.analysis.figures import RANDOM_WEIGHTS_NOTE, score_format
from semcomp.analysis.rd import rate_text

from .data import StudyData

COLUMNS = 4
#: every ASCII punctuation character: CommonMark lets a backslash escape each of them
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
#: first element of a rate–distortion chart point's ``customdata``: what the point stands for
CANDIDATE, OPERATING_POINT = "candidate", "operating point"


def plain(value: object) -> str:
    """``value`` shown as the text it is wherever Streamlit renders markdown (titles,
    captions, messages, labels, image captions): every markdown character is escaped and
    lines are joined, so a study name, method name, caption or path can never become an
    image fetched from elsewhere, a link, a heading or a directive."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).splitlines()))


def chart_text(value: object) -> str:
    """``value`` as the text it is in a plotly chart (hover box, legend, annotation, axis
    title): plotly renders a few HTML tags there (``<b>``, ``<a href>``, ``<br>``), so
    ``&``, ``<`` and ``>`` become entities, which plotly shows as the characters, and
    lines are joined. Pass it to plotly as data (``customdata``, ``text``, ``name``), not
    inside a hovertemplate, where ``%{...}`` in it would be read as a placeholder."""
    return html.escape(" ".join(str(value).splitlines()), quote=False)


def chart_frame(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """``frame`` with the study's strings in ``columns`` (those it has) as
    :func:`chart_text`, for a plotly express chart that shows them in its legend, hover
    or facet titles; missing values stay missing."""
    shown = [c for c in columns if c in frame.columns]
    return frame.assign(
        **{c: frame[c].map(lambda v: v if pd.isna(v) else chart_text(v)) for c in shown}
    )


def candidates_behind(points: pd.DataFrame, customdata: list | None) -> pd.DataFrame:
    """The candidates a clicked chart point stands for: ``[CANDIDATE, candidate_id, ...]``
    is one candidate, ``[OPERATING_POINT, method, operating_point, ...]`` every candidate
    of that point of a method's curve; anything else, none."""
    kind, *rest = customdata or [None]
    if kind == CANDIDATE and rest:
        return points[points["candidate_id"] == rest[0]]
    if kind == OPERATING_POINT and len(rest) >= 2:
        return points[(points["method"] == rest[0]) & (points["operating_point"] == rest[1])]
    return points.iloc[:0]


def show_original(study: StudyData, original_id: str) -> None:
    row = study.originals[study.originals["id"] == original_id]
    if row.empty:
        st.write("original not found")
        return
    row = row.iloc[0]
    caption = (
        f"original: {plain(row['name'])} ({plain(row['category'])}, {row['file_bytes']:,} bytes)"
    )
    if not isinstance(row["path"], str) or not Path(row["path"]).is_file():
        st.markdown(f":material/broken_image: *original file missing*  \n{caption}")
        return
    st.image(row["path"], caption=caption)


#: the most per-candidate points a chart draws: a browser slows down and a rerun spends
#: seconds serialising 100,000 points, which no one can tell apart on screen anyway
MAX_POINTS = 5_000


def display_sample(
    rows: pd.DataFrame, by: str, limit: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """At most about ``limit`` (:data:`MAX_POINTS`) of ``rows`` for drawing (all of them
    when there are no more): the same share of every ``by`` group, at least one row of
    each, drawn at random with a fixed seed (the same points on every rerun), in their
    original order."""
    limit = MAX_POINTS if limit is None else limit
    if len(rows) <= limit:
        return rows
    groups = pd.factorize(rows[by], use_na_sentinel=False)[0]
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = groups[order]
    sizes = np.bincount(shuffled)
    quota = np.ceil(sizes * (limit / len(rows)))
    # each row's rank within its group, in the shuffled order
    by_group = np.argsort(shuffled, kind="stable")
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[by_group] = np.arange(len(rows)) - starts[shuffled[by_group]]
    return rows.iloc[np.sort(order[rank < quota[shuffled]])]


def _note_on_chart(figure, text: str, *, top: bool, colour: str, size: int) -> None:
    """A line of text on a plotly chart: centred above its plot area, or at its lower right."""
    figure.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0.5 if top else 1.0,
        y=1.0 if top else 0.0,
        xanchor="center" if top else "right",
        yanchor="bottom",
        showarrow=False,
        font={"color": colour, "size": size},
    )


def mark_sample(figure, shown: int, total: int) -> None:
    """Say on the chart that it draws a sample of the points (``shown`` of ``total``)."""
    if shown < total:
        mark_note(
            figure, f"showing a random {shown:,} of {total:,} candidates (curves and tables: all)"
        )


def mark_note(figure, text: str) -> None:
    """A note at the lower right of a plotly chart (``text`` already :func:`chart_text`)."""
    _note_on_chart(figure, text, top=False, colour="#555", size=11)


def mark_random_weights(figure, study: StudyData) -> None:
    """Write the random-weights warning on a plotly chart itself (above its plot area),
    so a screenshot or a downloaded image cannot lose it."""
    if study.random_weights:
        _note_on_chart(figure, f"⚠ {RANDOM_WEIGHTS_NOTE}", top=True, colour="#D55E00", size=13)


def _describe(
    candidate: pd.Series,
    metrics: list[str],
    names: dict[str, str] | None = None,
    formats: dict[str, str] | None = None,
) -> str:
    lines = [f"**{plain(candidate['method'])}** · {plain(candidate['operating_point'])}"]
    if pd.notna(candidate.get("rate_bits")):
        lines.append(f"{rate_text(candidate['rate_bits'])} · {candidate['bpp']:.4g} bpp")
    else:
        lines.append("rate unknown")
    caption = candidate.get("caption")
    if isinstance(caption, str) and caption:
        lines.append(f"“{plain(caption)}”")
    side = candidate.get("side")
    if isinstance(side, str) and side:  # the rate split of caption + side information
        lines.append(
            f"{candidate['caption_bytes']:,.0f} B caption + {candidate['side_bytes']:,.0f} B "
            f"{plain(side)} ({candidate['side_size']:.0f} px) + {candidate['header_bytes']:.0f} B "
            "header"
        )
    for metric in metrics:
        value = candidate.get(metric)
        if pd.notna(value):
            spec = (formats or {}).get(metric, ".4g")
            lines.append(f"{plain((names or {}).get(metric, metric))}: {value:{spec}}")
    return "  \n".join(lines)


def side_image(path: str) -> Any:
    """A side payload file as it was decoded for the reconstructor (an RGB image)."""
    from semcomp.codecs.side import decode_side

    return decode_side(Path(path).read_bytes())


def side_caption(candidate: pd.Series) -> str:
    """What a side payload's image is: ``edges sent (96 px, 304 B)`` (an image caption is
    plain text, never markdown; the kind is one of semcomp's own words)."""
    side, size = candidate.get("side"), candidate.get("side_size")
    what = side if isinstance(side, str) and side else "side information"
    details = [f"{size:.0f} px" if pd.notna(size) else "", ""]
    if pd.notna(candidate.get("side_bytes")):
        details[1] = f"{candidate['side_bytes']:,.0f} B"
    shown = ", ".join(d for d in details if d)
    return f"{what} sent ({shown})" if shown else f"{what} sent"


def candidate_grid(
    study: StudyData, candidates: pd.DataFrame, metric: str | None, *, with_original: bool
) -> None:
    """Images (or a note for decoded embeddings) with method, rate, caption and scores."""
    files = study.artifacts.set_index("candidate_id")
    metrics = [metric] if metric else []
    metrics += [m for m in study.metrics if m not in metrics]
    names = {m: study.scores[m].axis_label for m in metrics}
    # digits enough to tell this study's candidates apart on each metric
    formats = {m: score_format(study.points[m]) for m in metrics if m in study.points}
    cells = []
    if with_original:
        cells += [("original", original) for original in candidates["original_id"].unique()]
    cells += [("candidate", row) for _, row in candidates.iterrows()]
    for start in range(0, len(cells), COLUMNS):
        for column, (kind, item) in zip(
            st.columns(COLUMNS), cells[start : start + COLUMNS], strict=False
        ):
            with column:
                if kind == "original":
                    show_original(study, item)
                    continue
                artifact = (
                    files.loc[item["candidate_id"]] if item["candidate_id"] in files.index else None
                )
                if (
                    artifact is not None
                    and str(artifact["media_type"]).startswith("image/")
                    and Path(artifact["path"]).exists()
                ):
                    side = study.side_files.get(item["candidate_id"])
                    if side is not None and Path(side).exists():  # what was sent with it
                        st.image(
                            [artifact["path"], side_image(side)],
                            caption=["reconstruction", side_caption(item)],
                        )
                    else:
                        st.image(artifact["path"])
                elif artifact is not None and "embedding" in str(artifact["media_type"]):
                    st.markdown(
                        ":material/memory: *decoded embedding — no image; scores compare "
                        "it with the original's embedding*"
                    )
                else:
                    st.markdown(":material/broken_image: *image file missing*")
                st.markdown(_describe(item, metrics, names, formats))


def loupe_crops(original: str, candidate: str, x: float, y: float, size: float) -> tuple:
    """The same region of an original and a candidate, at the original's full resolution:
    a square ``size`` (a fraction of the shorter side) centred at ``x``, ``y`` (fractions
    of the width and height). A candidate of another size is scaled to the original's
    first, so the crops show the same part of the picture pixel for pixel."""
    from PIL import Image

    with Image.open(original) as first, Image.open(candidate) as second:
        first, second = first.convert("RGB"), second.convert("RGB")
    if second.size != first.size:
        second = second.resize(first.size, Image.Resampling.LANCZOS)
    width, height = first.size
    side = max(1, round(size * min(width, height)))
    left = min(max(0, round(x * width - side / 2)), width - side)
    top = min(max(0, round(y * height - side / 2)), height - side)
    box = (left, top, left + side, top + side)
    return first.crop(box), second.crop(box)


def loupe(study: StudyData, original_id: str, candidates: pd.DataFrame) -> None:
    """The original and one candidate side by side, the same region of both enlarged
    (nearest-neighbour, so artefacts are the pixels they are): a crop loupe with sliders
    for the crop's centre and size."""
    from PIL import Image

    original = study.originals[study.originals["id"] == original_id]
    files = study.artifacts.set_index("candidate_id")
    images = candidates[candidates["candidate_id"].isin(files.index)]
    images = images[
        [
            str(files.loc[c, "media_type"]).startswith("image/")
            and Path(files.loc[c, "path"]).exists()
            for c in images["candidate_id"]
        ]
    ]
    if original.empty or images.empty or not Path(str(original["path"].iloc[0])).is_file():
        st.caption("no original and candidate image to compare here")
        return
    labels = {
        row.candidate_id: plain(f"{row.method} · {row.operating_point}")
        for row in images.itertuples()
    }
    chosen = st.selectbox("Candidate", list(labels), format_func=labels.get, key="loupe_candidate")
    controls = st.columns(3)
    size = controls[0].slider("Crop size (% of the image)", 5, 100, 25, key="loupe_size") / 100
    x = controls[1].slider("Centre x (%)", 0, 100, 50, key="loupe_x") / 100
    y = controls[2].slider("Centre y (%)", 0, 100, 50, key="loupe_y") / 100
    crops = loupe_crops(str(original["path"].iloc[0]), files.loc[chosen, "path"], x, y, size)
    zoom = max(1, 512 // crops[0].width)
    for column, crop, caption in zip(
        st.columns(2), crops, ["original", labels[chosen]], strict=True
    ):
        enlarged = crop.resize((crop.width * zoom, crop.height * zoom), Image.Resampling.NEAREST)
        column.image(enlarged, caption=f"{caption} ({crop.width} × {crop.height} px, ×{zoom})")


def left_out(*coverages: Coverage) -> None:
    """What these aggregates left out: the methods dropped and the originals not covered,
    each with its reason, under one expander (nothing is left out silently)."""
    dropped = pd.concat([c.dropped for c in coverages], ignore_index=True)
    originals = pd.concat([c.left_out for c in coverages], ignore_index=True)
    if dropped.empty and originals.empty:
        return
    label = f"left out: {len(dropped)} method(s), {len(originals)} original(s) — why"
    with st.expander(label):
        if not dropped.empty:
            st.dataframe(dropped, hide_index=True)
        if not originals.empty:
            st.dataframe(originals.drop(columns=["original_id"]), hide_index=True)
