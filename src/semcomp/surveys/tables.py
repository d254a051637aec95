"""Every table of one survey at once, for ``semcomp report`` and the app's Surveys page.

:func:`survey_tables` computes them from a :func:`~semcomp.surveys.aggregate.kept_ratings`
table (the app passes the rows its filters keep); :func:`write_survey_files` writes them,
and the Survey B dimension figure, for every survey a study has ratings of.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from semcomp.store import Store
from semcomp.surveys import aggregate
from semcomp.surveys.definitions import SurveyDefinition


@dataclass
class SurveyTables:
    """The statistics of one survey's kept ratings (tables are empty where they do not apply)."""

    survey: SurveyDefinition
    #: kept answers the tables are computed from
    answers: int
    #: per (question, method, operating point): mean of the pair medians with a 95 % CI
    methods: pd.DataFrame
    #: mean and std of every scale question per method and operating point (Survey B)
    dimensions: pd.DataFrame
    #: the same per method, operating point and category
    dimensions_by_category: pd.DataFrame
    #: the three most frequent normalised answers per method, operating point and
    #: text/choice question
    top_answers: pd.DataFrame
    #: overlap of distinct normalised answers between methods at their operating points,
    #: per text/choice question
    overlap: pd.DataFrame
    #: Krippendorff's alpha per question
    reliability: pd.DataFrame

    @property
    def scale_questions(self) -> list[str]:
        return [q.id for q in self.survey.questions if q.kind == "scale"]

    @property
    def free_questions(self) -> list[str]:
        return [q.id for q in self.survey.questions if q.kind != "scale"]

    def files(self) -> dict[str, pd.DataFrame]:
        """The non-empty tables by file name stem (``survey_B_dimensions``, ...)."""
        tables = {
            "methods": self.methods,
            "dimensions": self.dimensions,
            "dimensions_by_category": self.dimensions_by_category,
            "top_answers": self.top_answers,
            "overlap": self.overlap,
            "reliability": self.reliability,
        }
        return {
            f"survey_{self.survey.id}_{name}": table
            for name, table in tables.items()
            if not table.empty
        }


def survey_tables(
    ratings: pd.DataFrame,
    survey: SurveyDefinition,
    *,
    synonyms: dict[str, str] | None = None,
    seed: int = 0,
) -> SurveyTables:
    """The tables of ``survey`` from its kept ratings (``kept_ratings(store, survey.id)``,
    perhaps filtered by category or method)."""
    ratings = ratings[ratings["survey"] == survey.id]
    order = [q.id for q in survey.questions if q.kind == "scale"]
    limits = {q.id: q.max_items for q in survey.questions}
    items = aggregate.answer_items_of(ratings, limits, synonyms)
    numeric = ratings[ratings["value"].notna()]
    return SurveyTables(
        survey=survey,
        answers=len(ratings),
        methods=aggregate.method_summary_of(aggregate.pair_summary_of(numeric), seed=seed),
        dimensions=aggregate.dimension_summary_of(numeric, order, aggregate.METHOD_POINT),
        dimensions_by_category=aggregate.dimension_summary_of(
            numeric, order, aggregate.BY_CATEGORY
        ),
        top_answers=aggregate.top_answers_of(items),
        overlap=aggregate.answer_overlap_of(items),
        reliability=aggregate.reliability_of(ratings, {survey.id: survey}, synonyms),
    )


def write_survey_files(
    store: Store, folder: Path, *, seed: int = 0, synonyms: dict[str, str] | None = None
) -> tuple[list[Path], list[str]]:
    """``survey_<id>_<table>.csv`` for every survey with kept ratings, and for surveys with
    several scale questions (Survey B) the dimension bars ``survey_<id>_dimensions.png/pdf``.
    Returns the files written and notes (surveys without ratings)."""
    from semcomp.analysis.figures import save_drawn, survey_dimensions_figure
    from semcomp.surveys.simulated import SIMULATED, simulated_surveys

    written: list[Path] = []
    simulated = simulated_surveys(store)
    definitions = aggregate.survey_definitions(store)
    if not definitions:
        return written, ["surveys: no human ratings imported (semcomp ratings import)"]
    ratings = aggregate.kept_ratings(store)
    notes = []
    for survey in definitions.values():
        tables = survey_tables(ratings, survey, synonyms=synonyms, seed=seed)
        if not tables.answers:
            notes.append(f"survey {survey.id}: no kept ratings")
            continue
        label = SIMULATED if survey.id in simulated else ""
        if label:
            notes.append(f"survey {survey.id}: {label}")
        for stem, table in tables.files().items():
            path = folder / f"{stem}.csv"
            (table.assign(rating_source=label) if label else table).to_csv(path, index=False)
            written.append(path)
        if len(tables.scale_questions) > 1 and not tables.dimensions.empty:
            written += save_drawn(
                folder / f"survey_{survey.id}_dimensions",
                survey_dimensions_figure,
                tables.dimensions,
                survey,
                panel_label=label,
            )
    return written, notes
