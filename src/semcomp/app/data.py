"""Reading a study for the app: cached, read-only, and honest about what is missing.

Every read opens ``Store(root, read_only=True)`` (SQLite ``mode=ro``), reads
into DataFrames and closes it, inside a ``st.cache_data`` function keyed by the
study folder and its signature (size and mtime of ``study.db``, its WAL and
``study.toml``), so switching pages or filters does not query again, while results a
running ``semcomp run`` commits appear on the next rerun. Connections are never
shared between Streamlit's script threads.

Side files: a ``mode=ro`` connection to a WAL database creates empty ``-wal``
and ``-shm`` files when they are absent, and ``immutable=1`` alone would give
torn reads of a study that a run is writing. So :class:`SnapshotStore` opens
``immutable`` only while no ``-wal`` exists (no writer has the database open:
a writer creates it on opening), and :func:`load_study` checks the database's
signature after reading; if it changed during the read, it reads again through
plain ``mode=ro``, whose locking makes a running study's reads consistent.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd
import streamlit as st

from semcomp.analysis.coverage import (
    Coverage,
    agreement_comparison,
    common_images,
    curve_coverage,
    rate_comparison,
    with_rate_less,
)
from semcomp.analysis.rd import SET_COLUMNS, rd_points, set_points, study_scores, summarise
from semcomp.analysis.scores import Scores
from semcomp.config import STUDY_FILE
from semcomp.errors import SemcompError
from semcomp.store import DB_NAME, Store

from . import PQVAE_RESULTS_ENV, STUDY_ENV

if TYPE_CHECKING:
    from semcomp.surveys.definitions import SurveyDefinition
    from semcomp.surveys.tables import SurveyTables

T = TypeVar("T")


@dataclass
class StudyData:
    """Everything the pages show, read once per database state."""

    root: Path
    name: str
    random_weights: bool
    points: pd.DataFrame
    originals: pd.DataFrame
    methods: pd.DataFrame
    failures: pd.DataFrame
    #: candidate id → (artifact file path, media type)
    artifacts: pd.DataFrame
    counts: dict[str, int]
    #: problems that do not stop the app (study.toml unreadable, ...)
    notes: list[str] = field(default_factory=list)
    #: the study's seed (bootstrap resampling), as ``semcomp report`` uses it
    seed: int = 0
    #: survey id → the random model of its simulated ratings (``semcomp demo``)
    simulated_ratings: dict[str, str] = field(default_factory=dict)
    #: what each score is (display name, direction, range, kind), from the metrics table
    scores: Scores = field(default_factory=Scores)
    #: set metrics' values per method × operating point (FID, KID: ``set_points``)
    set_scores: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SET_COLUMNS))
    #: candidate id → the file of the side payload its caption was sent with (a textual
    #: method's sketch or thumbnail, ``semcomp.codecs.side``)
    side_files: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        """Every metric the selector offers: per-candidate scores, then set metrics."""
        return [*self.scores.per_candidate(self.points), *self.scores.set_keys(self.set_scores)]

    @property
    def clip_metrics(self) -> list[str]:
        """Per-candidate scores computed by a model or formula (CLIP, PSNR, LPIPS, ...)."""
        return self.scores.model(self.points)

    #: the name that says what it holds now
    model_metrics = clip_metrics

    @property
    def human_metrics(self) -> list[str]:
        return self.scores.human(self.points)

    def display(self, metric: str | None) -> str:
        """How a metric is named on screen (its display name), for selectors' labels."""
        return "" if metric is None else self.scores.display(metric)


def study_root() -> Path | None:
    """The study folder the app was started on (``semcomp app STUDY``)."""
    value = os.environ.get(STUDY_ENV)
    return Path(value).resolve() if value else None


def pqvae_result_paths() -> list[Path]:
    value = os.environ.get(PQVAE_RESULTS_ENV, "")
    return [Path(p) for p in value.split(os.pathsep) if p]


def signature(root: Path) -> tuple:
    """Changes whenever what the app reads does: the database (a commit touches the WAL or
    the file) or ``study.toml`` (its scope, seed and name shape every table)."""
    parts = []
    for name in (DB_NAME, DB_NAME + "-wal", STUDY_FILE):
        path = root / name
        stat = path.stat() if path.exists() else None
        parts.append((stat.st_size, stat.st_mtime_ns) if stat else None)
    return tuple(parts)


class SnapshotStore(Store):
    """A read-only store that creates no ``-wal``/``-shm`` files when nothing is writing
    (``Store(snapshot=True)``)."""

    def __init__(self, root: Path):
        super().__init__(root, read_only=True, snapshot=True)


def read_consistently(folder: Path, db_signature: tuple, read: Callable[[Path, Store], T]) -> T:
    """``read(folder, store)`` through a :class:`SnapshotStore`, again through a locking
    read-only store if the database changed while it read.

    An ``immutable`` read of a database that a writer opens and checkpoints meanwhile can
    also fail outright (``database disk image is malformed``); that too reads again with
    locking.
    """
    try:
        data = read(folder, SnapshotStore(folder))
    except sqlite3.DatabaseError:  # changed under the immutable snapshot
        return read(folder, Store(folder, read_only=True))
    if signature(folder) != db_signature:  # written while we read: read again, with locking
        data = read(folder, Store(folder, read_only=True))
    return data


@st.cache_data(show_spinner="reading the study…", max_entries=4)
def load_study(root: str, db_signature: tuple) -> StudyData:
    """Read the study at ``root`` (read-only); ``db_signature`` is :func:`signature`."""
    return read_consistently(Path(root), db_signature, _read_study)


def _read_study(folder: Path, store: Store) -> StudyData:
    from semcomp.config import load_config
    from semcomp.study import Study, identity_root
    from semcomp.surveys.simulated import simulated_surveys

    notes: list[str] = []
    try:
        study = Study(folder, load_config(folder, identity_root(store)), store)
        name, scope, random_weights = study.config.name, study.scope(), study.random_weights
        seed = study.config.seed
    except SemcompError as exc:
        notes.append(f"study.toml could not be read ({exc}); showing every row in the store")
        name, scope, random_weights, seed = folder.name, None, False, 0
    with store:
        points = rd_points(store, scope)
        originals = store.originals()
        methods = store.frame("SELECT id, name, kind, codec, params FROM methods ORDER BY name")
        failures = store.failures()
        artifacts = store.frame(
            "SELECT c.id AS candidate_id, a.relpath, a.media_type, a.bytes FROM candidates c "
            "JOIN artifacts a ON a.hash = c.artifact_hash"
        )
        side_files = store.frame(
            "SELECT c.id AS candidate_id, a.relpath FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN artifacts a ON a.hash = json_extract(r.meta, '$.side_artifact') "
            "WHERE json_extract(r.meta, '$.side_artifact') IS NOT NULL"
        )
        original_files = store.frame(
            "SELECT o.id AS original_id, a.relpath FROM originals o "
            "JOIN artifacts a ON a.hash = o.artifact_hash"
        )
        counts = {
            table: store.count(table)
            for table in ("originals", "representations", "candidates", "scores", "failures")
        }
        random_weights = random_weights or bool(store.get_info("random_weights", False))
        simulated = simulated_surveys(store)
        scores = study_scores(store).with_columns(points.columns)
        set_scores = set_points(store, scope)
    # string joins: a Path per candidate costs 25-41 times as much
    stored = os.path.join(store.artifacts_dir, "")
    artifacts["path"] = [stored + p for p in artifacts.pop("relpath")]
    originals = originals.merge(original_files, left_on="id", right_on="original_id", how="left")
    originals["path"] = [stored + p for p in originals.pop("relpath")]
    return StudyData(
        root=folder,
        name=name,
        random_weights=random_weights,
        points=points,
        originals=originals,
        methods=methods,
        failures=failures,
        artifacts=artifacts,
        counts=counts,
        notes=notes,
        seed=seed,
        simulated_ratings=simulated,
        scores=scores,
        set_scores=set_scores,
        side_files={row.candidate_id: stored + row.relpath for row in side_files.itertuples()},
    )


def current_study() -> StudyData | None:
    """The study's data, or ``None`` after telling the user why there is none."""
    root = study_root()
    if root is None:
        st.error("no study given: start the app with `semcomp app STUDY`")
        return None
    if not (root / DB_NAME).exists():
        st.info(
            f"{root} has no results yet (no {DB_NAME}). Run `semcomp run {root}` and reload "
            "this page."
        )
        return None
    try:
        return load_study(str(root), signature(root))
    except SemcompError as exc:
        st.error(str(exc))
        return None


#: what the pages derive from the study (summaries, coverages, Table 1, agreement) is held
#: by ``st.cache_resource``: a rerun gets the same objects back, where ``st.cache_data``
#: unpickles a copy on every hit (a 120,000-row coverage each time, the largest part of a
#: warm rerun at 500,000 score rows). They are keyed by the database's signature like
#: :func:`load_study`, and the pages only read them (never change a cached frame in place).
cache_derived = st.cache_resource


@cache_derived(show_spinner="summarising…", max_entries=32)
def cached_summary(
    root: str,
    db_signature: tuple,
    categories: tuple[str, ...],
    methods: tuple[str, ...],
    unpaired: bool = False,
) -> pd.DataFrame:
    """Per method and operating point means and medians with bootstrap CIs, of the filtered
    rows: each method's curve over the originals with a candidate at all its operating
    points (``unpaired``: each point over its own), as ``semcomp report`` writes it."""
    study = load_study(root, db_signature)
    curves = curve_coverage(select(study.points, categories, methods), unpaired=unpaired)
    return summarise(
        curves.points,
        seed=study.seed,
        image_set=curves.image_set,
        scores=study.scores,
        set_scores=select_sets(study.set_scores, methods),
    )


def select_sets(set_scores: pd.DataFrame, methods: tuple[str, ...]) -> pd.DataFrame:
    """The set metrics' values of the chosen methods (all when none is chosen). A set
    value is over all its operating point's originals: a category filter cannot narrow
    it (its ``n`` says how many)."""
    return set_scores[set_scores["method"].isin(methods)] if methods else set_scores


def select(
    points: pd.DataFrame, categories: tuple[str, ...], methods: tuple[str, ...]
) -> pd.DataFrame:
    """The rows of the chosen categories and methods (all when a choice is empty)."""
    keep = pd.Series(True, index=points.index)
    if categories:
        keep &= points["category"].isin(categories)
    if methods:
        keep &= points["method"].isin(methods)
    return points[keep]


def _table1(
    points: pd.DataFrame, study: StudyData, methods: tuple[str, ...], unpaired: bool = False
) -> tuple[pd.DataFrame, str | None, str, Coverage]:
    """Table 1 over the originals common to its methods, its note and that coverage."""
    from semcomp.analysis.table1 import table1

    compared = common_images(points, "table1", unpaired=unpaired)
    result = table1(
        compared.points,
        seed=study.seed,
        scores=study.scores,
        set_scores=select_sets(study.set_scores, methods),
    )
    table = result.table.assign(n=compared.n, image_set=compared.image_set)
    return table, result.satisfaction_metric, f"{result.note}; {compared.note}", compared


def _agreement(
    points: pd.DataFrame,
    study: StudyData,
    methods: tuple[str, ...],
    model_metric: str,
    human_metric: str,
    unpaired: bool = False,
) -> tuple[pd.DataFrame, Coverage]:
    """One metric's agreement with a human metric (per method, oriented: see
    :func:`semcomp.analysis.agreement.oriented_agreement`) and its coverage."""
    from semcomp.analysis.agreement import oriented_agreement

    compared = agreement_comparison(points, model_metric, human_metric, unpaired=unpaired)
    table = oriented_agreement(
        compared.points, model_metric, human_metric, scores=study.scores, seed=study.seed
    )
    return table.assign(image_set=compared.image_set), compared


def _metric_agreement(
    points: pd.DataFrame,
    study: StudyData,
    methods: tuple[str, ...],
    human_metric: str,
    unpaired: bool = False,
) -> pd.DataFrame:
    """Every model metric's agreement with ``human_metric`` over all methods, each over
    the originals common to the methods that have both scores, best first."""
    from semcomp.analysis.agreement import ALL, metric_agreement

    tables = []
    for metric in study.scores.model(points):
        compared = agreement_comparison(points, metric, human_metric, unpaired=unpaired)
        table = metric_agreement(
            compared.points, human_metric, [metric], scores=study.scores, seed=study.seed
        )
        tables.append(table.assign(image_set=compared.image_set))
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    return table[table["method"] == ALL].sort_values(
        "spearman", ascending=False, na_position="last", kind="stable"
    )


def _curves(
    points: pd.DataFrame, study: StudyData, methods: tuple[str, ...], unpaired: bool = False
) -> Coverage:
    return curve_coverage(points, unpaired=unpaired)


def _compared(
    points: pd.DataFrame,
    study: StudyData,
    methods: tuple[str, ...],
    metric: str,
    unpaired: bool = False,
) -> tuple[Coverage, pd.DataFrame]:
    """The rate-axis comparison's rows (with the methods without a rate, for their bands)
    and their summary, over the originals common to the methods with a rate."""
    compared = rate_comparison(points, metric, unpaired=unpaired)
    drawn = with_rate_less(points, compared)
    summary = summarise(
        drawn,
        seed=study.seed,
        image_set=compared.image_set,
        scores=study.scores,
        set_scores=select_sets(study.set_scores, methods),
    )
    return compared, summary


def _iso(
    points: pd.DataFrame,
    study: StudyData,
    methods: tuple[str, ...],
    metric: str,
    level: float,
    rate: str,
    unpaired: bool = False,
) -> tuple:
    from semcomp.analysis.curves import iso_satisfaction

    compared = rate_comparison(points, metric, unpaired=unpaired)
    per_image, per_method = iso_satisfaction(
        compared.points,
        metric,
        level,
        rate,
        higher_is_better=study.scores.higher_is_better(metric),
    )
    return per_image, per_method.assign(n=compared.n, image_set=compared.image_set)


def _zero_shot(
    points: pd.DataFrame, study: StudyData, methods: tuple[str, ...], unpaired: bool = False
):
    """Zero-shot accuracy against bpp (the PQVAE paper's Fig. 6), as the report draws it."""
    from semcomp.analysis.zero_shot import accuracy_against_bpp

    return accuracy_against_bpp(points, study.scores, seed=study.seed, unpaired=unpaired)


#: analyses of the filtered rows the pages cache (one table of names); each takes the rows,
#: the study (its seed for bootstrap CIs, as ``semcomp report`` uses it; what each score is;
#: set metrics' values) and the chosen methods, then options
ANALYSES = {
    "table1": _table1,
    "agreement": _agreement,
    "metric_agreement": _metric_agreement,
    "curves": _curves,
    "compared": _compared,
    "iso": _iso,
    "zero_shot": _zero_shot,
}


@cache_derived(show_spinner="computing…", max_entries=64)
def cached_analysis(
    name: str,
    root: str,
    db_signature: tuple,
    categories: tuple[str, ...],
    methods: tuple[str, ...],
    **options,
):
    """``ANALYSES[name]`` of the filtered rows, cached by study state, filters and options."""
    study = load_study(root, db_signature)
    points = select(study.points, categories, methods)
    return ANALYSES[name](points, study, methods, **options)


@dataclass
class SurveyData:
    """The study's imported human ratings, read once per database state."""

    definitions: dict[str, SurveyDefinition]
    #: every answer, excluded ones too (``excluded``: the rule, None when kept; ``is_check``)
    answers: pd.DataFrame
    #: answers about images the study does not know, kept aside at import
    unmatched: pd.DataFrame
    #: one row per imported file
    imports: pd.DataFrame

    def kept(self, survey: str) -> pd.DataFrame:
        answers = self.answers[self.answers["survey"] == survey]
        return answers[answers["excluded"].isna() & (answers["is_check"] == 0)]


def _read_surveys(folder: Path, store: Store) -> SurveyData:
    from semcomp.surveys import aggregate

    with store:
        return SurveyData(
            definitions=aggregate.survey_definitions(store),
            answers=aggregate.kept_ratings(store, include_excluded=True),
            unmatched=aggregate.unmatched_answers(store),
            imports=aggregate.imports(store),
        )


@st.cache_data(show_spinner="reading the ratings…", max_entries=4)
def load_surveys(root: str, db_signature: tuple) -> SurveyData:
    """The human ratings of the study at ``root`` (read-only), like :func:`load_study`."""
    return read_consistently(Path(root), db_signature, _read_surveys)


@st.cache_data(show_spinner="summarising the ratings…", max_entries=32)
def cached_survey_tables(
    root: str,
    db_signature: tuple,
    survey: str,
    categories: tuple[str, ...],
    methods: tuple[str, ...],
) -> SurveyTables:
    """Every table of ``survey`` (:func:`semcomp.surveys.tables.survey_tables`) of the
    kept answers in the chosen categories and methods."""
    from semcomp.surveys.tables import survey_tables

    surveys = load_surveys(root, db_signature)
    kept = select(surveys.kept(survey), categories, methods)
    seed = load_study(root, db_signature).seed
    return survey_tables(kept, surveys.definitions[survey], seed=seed)
