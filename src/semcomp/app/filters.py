"""The filters every page shares (category, method, metric), drawn once in the sidebar.

They live in ``st.session_state`` under fixed keys, so a choice made on one page
holds on the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from semcomp.report import headline_metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from semcomp.surveys.tables import SurveyTables

from .data import (
    StudyData,
    cached_analysis,
    cached_summary,
    cached_survey_tables,
    select,
    signature,
)
from .widgets import plain

CATEGORIES, METHODS, METRIC = "filter_categories", "filter_methods", "filter_metric"
IMAGES = "filter_images"
#: the "Images" choice: the same originals (as ``semcomp report``) or ``--unpaired``
SAME_IMAGES, PER_POINT = "same images", "each point its own (unpaired)"


@dataclass
class Filters:
    categories: tuple[str, ...]
    methods: tuple[str, ...]
    metric: str | None
    #: each operating point over its own originals (``semcomp report --unpaired``)
    unpaired: bool = False

    def points(self, study: StudyData) -> pd.DataFrame:
        return select(study.points, self.categories, self.methods)

    def summary(self, study: StudyData) -> pd.DataFrame:
        return cached_summary(
            str(study.root), signature(study.root), self.categories, self.methods, self.unpaired
        )

    def set_summary(self, study: StudyData) -> pd.DataFrame:
        """:meth:`summary` over every category, for a set metric (FID, KID): its value is
        over all of its operating point's originals, which a category filter cannot narrow
        without recomputing it, so the rate beside it is over all of them too."""
        return cached_summary(
            str(study.root), signature(study.root), (), self.methods, self.unpaired
        )

    def set_metric_scope(self, display: str) -> str:
        """What a set metric's values are over, naming the category filter it ignores
        (empty when no category is chosen)."""
        if not self.categories:
            return ""
        return (
            f"{display} over all originals: the category filter ({', '.join(self.categories)}) "
            "cannot narrow a set metric without recomputing it"
        )

    def survey_tables(self, study: StudyData, survey: str) -> SurveyTables:
        """The tables of one survey's kept answers in the chosen categories and methods."""
        return cached_survey_tables(
            str(study.root), signature(study.root), survey, self.categories, self.methods
        )

    def analysis(self, study: StudyData, name: str, **options):
        """A cached analysis (``data.ANALYSES``) of the filtered rows, over the image set
        chosen in the sidebar."""
        return cached_analysis(
            name,
            str(study.root),
            signature(study.root),
            self.categories,
            self.methods,
            unpaired=self.unpaired,
            **options,
        )


def sidebar(study: StudyData) -> Filters:
    """Draw the shared filters; empty category/method choices mean "all"."""
    points = study.points
    with st.sidebar:
        st.caption(f"study: **{plain(study.name)}**")
        categories = sorted(points["category"].dropna().unique()) if not points.empty else []
        methods = sorted(points["method"].dropna().unique()) if not points.empty else []
        chosen_categories = st.multiselect(
            "Categories", categories, key=CATEGORIES, placeholder="all categories"
        )
        chosen_methods = st.multiselect("Methods", methods, key=METHODS, placeholder="all methods")
        metrics = study.metrics
        metric = None
        if metrics:
            default = headline_metric(points, study.scores)
            if st.session_state.get(METRIC) not in metrics:
                st.session_state[METRIC] = default
            metric = st.selectbox(
                "Metric",
                metrics,
                key=METRIC,
                format_func=lambda key: metric_label(study, key),
                help="every metric of the study by its name: CLIP, PSNR, LPIPS, ... (one value "
                "per image), FID/KID (one value per operating point) and human ratings",
            )
        images = st.radio(
            "Images",
            [SAME_IMAGES, PER_POINT],
            key=IMAGES,
            help="same images: a method's curve over the originals with a candidate at all its "
            "operating points, comparisons over the originals the methods share (as `semcomp "
            "report`); each point its own: as `semcomp report --unpaired`",
        )
        if study.random_weights:
            st.warning("random weights — numbers are not meaningful")
        if study.simulated_ratings:
            surveys = ", ".join(study.simulated_ratings)
            st.warning(
                plain(f"simulated ratings — Survey {surveys}: drawn at random, not people's")
            )
    return Filters(
        tuple(chosen_categories), tuple(chosen_methods), metric, unpaired=images == PER_POINT
    )


def metric_label(study: StudyData, key: str) -> str:
    """A metric as a selector lists it: its display name, its direction when lower is
    better, and "per operating point" for a set metric."""
    info = study.scores[key]
    notes = [
        note
        for note, show in (
            ("lower is better", not info.higher_is_better),
            ("per operating point", info.is_set),
        )
        if show
    ]
    return info.display + (f" ({', '.join(notes)})" if notes else "")


def context() -> tuple[StudyData, Filters]:
    """The study and the filters chosen in the sidebar (main.py sets both before a page runs)."""
    return st.session_state["study"], st.session_state["filters"]


def download_csv(frame: pd.DataFrame, file_name: str, key: str) -> None:
    """A download button for the table on screen, written when clicked (not on every
    rerun: a 100,000-row table takes seconds)."""
    st.download_button(
        "Download table (CSV)",
        lambda: frame.to_csv(index=False).encode("utf-8"),
        file_name=file_name,
        mime="text/csv",
        key=key,
        icon=":material/download:",
    )


def download_png(draw: Callable[[], Figure], file_name: str, key: str) -> None:
    """A download button for a chart, drawn by the report's matplotlib code when clicked."""
    from semcomp.analysis.figures import png_bytes

    st.download_button(
        "Download chart (PNG)",
        lambda: png_bytes(draw()),
        file_name=file_name,
        mime="image/png",
        key=key,
        icon=":material/image:",
    )


def download_table_and_chart(
    frame: pd.DataFrame, draw: Callable[[], Figure], stem: str, key: str
) -> None:
    """The table's CSV and the chart's PNG download buttons side by side: ``stem.csv`` and
    ``stem.png``, widget keys ``key_csv`` and ``key_png``."""
    buttons = st.columns(2)
    with buttons[0]:
        download_csv(frame, f"{stem}.csv", f"{key}_csv")
    with buttons[1]:
        download_png(draw, f"{stem}.png", f"{key}_png")
