"""Reading human ratings: the public read API (pandas DataFrames; nothing is written).

Every function takes a :class:`~semcomp.store.Store`, which may be opened
read-only (``Store(root, read_only=True)``), and returns a DataFrame:

- :func:`kept_ratings` — the answers kept by quality control, in long form
  (survey, question, original_id, original, category, candidate_id, method,
  operating_point, worker_id, value, text, assignment_id);
- :func:`pair_summary` — per (survey, question, original, candidate): n, median
  (Survey A's median is the paper's *semantic satisfaction index*), mean, std, IQR;
- :func:`method_summary` — per method and operating point: the mean of the pair
  medians with a bootstrap 95 % CI (the paper's Table 1 statistic);
- :func:`dimension_summary` — Survey B: mean and standard deviation of each
  question per method and operating point, or per method, operating point and category;
- :func:`top_answers` and :func:`answer_overlap` — Survey C: the most frequent
  normalised answers per method and operating point and question, and the overlap of
  distinct answers between them (the paper's comparison).

Like :func:`method_summary`, the Survey B and C tables keep a method's operating points
apart (JPEG at quality 10 and at quality 90 are two rows, as in the paper); ``by``
names other grouping columns (``("method",)`` pools a method's operating points).
- :func:`reliability` — Krippendorff's alpha per question (ordinal for scales,
  nominal for choices and normalised free text);
- :func:`unmatched_answers`, :func:`imports` — what was kept aside, what was imported.

The computations also take tables instead of a store (``pair_summary_of``,
``method_summary_of``, ``dimension_summary_of``, ``answer_items_of``,
``top_answers_of``, ``answer_overlap_of``, ``reliability_of``), so a caller that
has already read :func:`kept_ratings` and filtered it (the app's category and
method filters) gets the same statistics of the rows it shows.
"""

from __future__ import annotations

import json
import re
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from semcomp.analysis.stats import mean_ci
from semcomp.errors import ConfigError
from semcomp.store import Store
from semcomp.surveys.definitions import SurveyDefinition, read_toml

#: the columns the Survey B and C tables can be grouped by
GROUP_COLUMNS = ("method", "operating_point", "category")
#: their default grouping: one method at one operating point
METHOD_POINT = ("method", "operating_point")
BY_CATEGORY = (*METHOD_POINT, "category")

PAIR_COLUMNS = [
    "survey",
    "question",
    "original_id",
    "original",
    "category",
    "candidate_id",
    "method",
    "operating_point",
]


def survey_definitions(store: Store) -> dict[str, SurveyDefinition]:
    """The surveys the study has ratings or generated items for, by id."""
    return {
        row["id"]: SurveyDefinition(**json.loads(row["definition"]))
        for row in store.conn.execute("SELECT id, definition FROM surveys ORDER BY id")
    }


def kept_ratings(
    store: Store, survey: str | None = None, *, include_excluded: bool = False
) -> pd.DataFrame:
    """Answers in long form; attention checks and excluded answers are left out unless
    ``include_excluded`` (then the ``excluded`` column says why, NULL when kept)."""
    where = ["1 = 1"] if include_excluded else ["r.excluded IS NULL", "r.is_check = 0"]
    params: list[str] = []
    if survey is not None:
        where.append("r.survey = ?")
        params.append(survey)
    return store.frame(
        "SELECT r.survey, r.question, r.original_id, o.name AS original, o.category, "
        "r.candidate_id, m.name AS method, rep.operating_point, r.worker_id, r.value, r.text, "
        "r.assignment_id, r.item, r.is_check, r.excluded, r.source_file, r.source_line "
        "FROM ratings r JOIN originals o ON o.id = r.original_id "
        "LEFT JOIN candidates c ON c.id = r.candidate_id "
        "LEFT JOIN representations rep ON rep.id = c.representation_id "
        "LEFT JOIN methods m ON m.id = rep.method_id "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY r.survey, r.question, o.name, m.name, rep.operating_point, r.worker_id",
        params,
    )


def pair_summary(store: Store, survey: str | None = None) -> pd.DataFrame:
    """Per (survey, question, original, candidate) of numeric answers: n, median, mean, std,
    iqr (std with n − 1; NaN for one rating)."""
    return pair_summary_of(kept_ratings(store, survey))


def pair_summary_of(ratings: pd.DataFrame) -> pd.DataFrame:
    """:func:`pair_summary` of a :func:`kept_ratings` table (perhaps filtered)."""
    ratings = ratings[ratings["value"].notna()]
    columns = [*PAIR_COLUMNS, "n", "median", "mean", "std", "iqr"]
    if ratings.empty:
        return pd.DataFrame(columns=columns)
    grouped = ratings.groupby(PAIR_COLUMNS, dropna=False)["value"]
    summary = grouped.agg(n="count", median="median", mean="mean", std="std")
    # quartiles of every group at once (a Python function per group is ~50x slower)
    quartiles = grouped.quantile([0.25, 0.75]).unstack()
    summary["iqr"] = quartiles[0.75] - quartiles[0.25]
    return summary.reset_index()[columns]


def method_summary(
    store: Store, survey: str = "A", question: str | None = None, *, seed: int = 0
) -> pd.DataFrame:
    """Per (question, method, operating point): the mean of the pair medians with a bootstrap
    95 % CI over pairs (Table 1 of the textual-transform paper), and the mean of pair means."""
    pairs = pair_summary(store, survey)
    if question is not None:
        pairs = pairs[pairs["question"] == question]
    return method_summary_of(pairs, seed=seed)


def method_summary_of(pairs: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """:func:`method_summary` of a :func:`pair_summary` table (perhaps filtered)."""
    columns = [
        "survey",
        "question",
        "method",
        "operating_point",
        "pairs",
        "ratings",
        "median_mean",
        "median_ci_low",
        "median_ci_high",
        "mean_mean",
    ]
    rows = []
    keys = ["survey", "question", "method", "operating_point"]
    for (survey_id, question_id, method, point), group in pairs.groupby(keys, dropna=False):
        medians = group["median"].to_numpy(dtype=float)
        low, high = mean_ci(medians, seed)
        rows.append(
            [
                survey_id,
                question_id,
                method,
                point,
                len(group),
                int(group["n"].sum()),
                float(np.mean(medians)),
                low,
                high,
                float(group["mean"].mean()),
            ]
        )
    return pd.DataFrame(rows, columns=columns)


def _group_keys(by: str | tuple[str, ...] | list[str]) -> list[str]:
    keys = [by] if isinstance(by, str) else list(by)
    unknown = [k for k in keys if k not in GROUP_COLUMNS]
    if not keys or unknown:
        raise ConfigError(f"by must name one or more of {', '.join(GROUP_COLUMNS)}, not {by!r}")
    return keys


def dimension_summary(
    store: Store, survey: str = "B", by: str | tuple[str, ...] = METHOD_POINT
) -> pd.DataFrame:
    """Survey B: mean and standard deviation of every question over kept ratings, per method
    and operating point (``by``; :data:`BY_CATEGORY` adds the category); one row per group
    with ratings, columns ``<question> mean``, ``<question> std`` and ``assignments`` (how
    many answered)."""
    definition = survey_definitions(store).get(survey)
    order = [q.id for q in definition.questions] if definition else []
    return dimension_summary_of(kept_ratings(store, survey), order, by)


def dimension_summary_of(
    ratings: pd.DataFrame, order: list[str], by: str | tuple[str, ...] = METHOD_POINT
) -> pd.DataFrame:
    """:func:`dimension_summary` of one survey's :func:`kept_ratings` (perhaps filtered);
    ``order`` is the survey's question ids in the order it asks them."""
    keys = _group_keys(by)
    ratings = ratings[ratings["value"].notna()]
    if ratings.empty:
        return pd.DataFrame(columns=[*keys, "assignments"])
    ratings = ratings.assign(**{k: ratings[k].fillna("") for k in keys})
    # groups that have ratings only (a pivot table would add every method × category)
    stats = ratings.groupby([*keys, "question"])["value"].agg(["mean", "std"]).unstack("question")
    stats.columns = [f"{question} {stat}" for stat, question in stats.columns]
    asked = set(ratings["question"])
    ordered = [f"{q} {s}" for q in order if q in asked for s in ("mean", "std")]
    counts = ratings.groupby(keys)["assignment_id"].nunique().rename("assignments")
    table = stats[ordered].join(counts).reset_index()
    table["assignments"] = table["assignments"].astype(int)
    return table


# ---- Survey C: free answers -------------------------------------------------------------

_ARTICLES = re.compile(r"^(?:a|an|the)\s+")
_SPACE = re.compile(r"\s+")


#: words the plural rules below would get wrong: the same in singular and plural, or only
#: used in the plural (a pair of glasses, scissors)
UNCHANGED = frozenset(
    {
        "species", "series", "news", "means", "glasses", "sunglasses", "eyeglasses",
        "scissors", "trousers", "pants", "jeans", "shorts", "tights", "clothes",
        "binoculars", "headphones", "stairs", "goods", "physics", "mathematics",
        "gymnastics", "athletics", "politics", "economics", "christmas", "lens", "canvas",
    }
)  # fmt: skip


def singular(word: str) -> str:
    """A simple English plural-to-singular: ``puppies``→``puppy``, ``boxes``→``box``,
    ``dogs``→``dog``; words ending in ss, us, is and those in :data:`UNCHANGED`
    (``species``, ``glasses``, ``news``...) are left alone."""
    if word in UNCHANGED:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normalise_answer(text: str, synonyms: dict[str, str] | None = None) -> str:
    """Lower case, one space, no surrounding punctuation or leading article, last word
    singular, then the synonym map (variant → canonical answer)."""
    cleaned = _SPACE.sub(" ", text.strip().lower()).strip(" .;:!?\"'()[]")
    cleaned = _ARTICLES.sub("", cleaned)
    if cleaned:
        words = cleaned.split(" ")
        words[-1] = singular(words[-1])
        cleaned = " ".join(words)
    return (synonyms or {}).get(cleaned, cleaned)


def load_synonyms(path: Path | None) -> dict[str, str]:
    """A synonym map from TOML, ``canonical = ["variant", ...]``: variant → canonical.
    Variants are normalised the same way answers are."""
    if path is None:
        return {}
    data = read_toml(path, "synonyms")
    synonyms: dict[str, str] = {}
    for canonical, variants in data.items():
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            raise ConfigError(f"synonyms {path}: {canonical!r} must be a list of strings")
        target = normalise_answer(canonical)
        for variant in [canonical, *variants]:
            synonyms[normalise_answer(variant)] = target
    return synonyms


def answer_items(
    store: Store, survey: str = "C", synonyms: dict[str, str] | None = None
) -> pd.DataFrame:
    """Kept text and choice answers split into items (at most the question's ``max_items``,
    in the order given) and normalised; one row per item with its ``rank``."""
    definition = survey_definitions(store).get(survey)
    if definition is None:
        return answer_items_of(kept_ratings(store, survey).iloc[:0], {}, synonyms)
    limits = {q.id: q.max_items for q in definition.questions}
    return answer_items_of(kept_ratings(store, survey), limits, synonyms)


def answer_items_of(
    ratings: pd.DataFrame, limits: dict[str, int], synonyms: dict[str, str] | None = None
) -> pd.DataFrame:
    """:func:`answer_items` of one survey's :func:`kept_ratings` (perhaps filtered);
    ``limits`` maps question id → how many items count (``max_items``)."""
    ratings = ratings[ratings["text"].notna()]
    columns = [*PAIR_COLUMNS, "worker_id", "rank", "answer"]
    if ratings.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for record in ratings.itertuples(index=False):
        parts = [p for p in str(record.text).split(",") if p.strip()]
        for rank, part in enumerate(parts[: limits.get(record.question, len(parts))], start=1):
            answer = normalise_answer(part, synonyms)
            if answer:
                rows.append(
                    [*(getattr(record, c) for c in PAIR_COLUMNS), record.worker_id, rank, answer]
                )
    return pd.DataFrame(rows, columns=columns)


def top_answers(
    store: Store,
    survey: str = "C",
    *,
    top: int = 3,
    synonyms: dict[str, str] | None = None,
    by: str | tuple[str, ...] = METHOD_POINT,
) -> pd.DataFrame:
    """The ``top`` most frequent normalised answers per method and operating point (or per
    the ``by`` columns) and question (ties broken alphabetically), with their count and
    share of that group's answers."""
    return top_answers_of(answer_items(store, survey, synonyms), top=top, by=by)


def top_answers_of(
    items: pd.DataFrame, *, top: int = 3, by: str | tuple[str, ...] = METHOD_POINT
) -> pd.DataFrame:
    """:func:`top_answers` of an :func:`answer_items` table (perhaps filtered)."""
    groups = _group_keys(by)
    columns = [*groups, "question", "rank", "answer", "count", "share"]
    if items.empty:
        return pd.DataFrame(columns=columns)
    items = items.assign(**{k: items[k].fillna("") for k in groups})
    keys = [*groups, "question"]
    counts = items.groupby([*keys, "answer"]).size().rename("count").reset_index()
    counts = counts.join(items.groupby(keys).size().rename("total"), on=keys)
    counts["share"] = counts["count"] / counts["total"]
    counts = counts.sort_values(
        [*keys, "count", "answer"], ascending=[*(True for _ in keys), False, True]
    )
    counts["rank"] = counts.groupby(keys).cumcount() + 1
    return counts[counts["rank"] <= top][columns].reset_index(drop=True)


def answer_overlap(
    store: Store,
    survey: str = "C",
    *,
    top: int | None = None,
    synonyms: dict[str, str] | None = None,
    by: str | tuple[str, ...] = METHOD_POINT,
) -> pd.DataFrame:
    """Per question and pair of groups (methods at an operating point, or the ``by``
    columns; ``<column>_a`` and ``<column>_b`` name them): the distinct normalised answers
    both gave, as a percentage of the distinct answers either gave (|A ∩ B| / |A ∪ B| × 100).
    With ``top``, only each group's ``top`` most frequent answers count (the paper compares
    its top 3)."""
    return answer_overlap_of(answer_items(store, survey, synonyms), top=top, by=by)


def answer_overlap_of(
    items: pd.DataFrame, *, top: int | None = None, by: str | tuple[str, ...] = METHOD_POINT
) -> pd.DataFrame:
    """:func:`answer_overlap` of an :func:`answer_items` table (perhaps filtered)."""
    keys = _group_keys(by)
    named = [f"{k}_a" for k in keys] + [f"{k}_b" for k in keys]
    columns = ["question", *named, "shared", "distinct", "overlap_percent"]
    answers = items if top is None else top_answers_of(items, top=top, by=by)
    if answers.empty:
        return pd.DataFrame(columns=columns)
    answers = answers.assign(**{k: answers[k].fillna("").astype(str) for k in keys})
    rows = []
    for question, group in answers.groupby("question"):
        sets = {name: set(g["answer"]) for name, g in group.groupby(keys)}
        for first, second in combinations(sorted(sets), 2):
            union = sets[first] | sets[second]
            shared = sets[first] & sets[second]
            rows.append(
                [question, *first, *second, len(shared), len(union),
                 100.0 * len(shared) / len(union) if union else np.nan]
            )  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


# ---- inter-rater reliability --------------------------------------------------------


def reliability(
    store: Store, survey: str | None = None, synonyms: dict[str, str] | None = None
) -> pd.DataFrame:
    """Krippendorff's alpha per (survey, question), with the ``krippendorff`` package.

    Scales are ordinal over the scale's values. A choice question (Survey C's adjectives)
    becomes one nominal yes/no unit per (item, option). A text question is nominal on the
    first normalised item (the most important object). Units are (original, candidate)
    items; alpha is NaN when fewer than two units have two or more ratings.
    """
    definitions = survey_definitions(store)
    if survey is not None:
        definitions = {k: v for k, v in definitions.items() if k == survey}
    return reliability_of(kept_ratings(store, survey), definitions, synonyms)


def reliability_of(
    ratings: pd.DataFrame,
    definitions: dict[str, SurveyDefinition],
    synonyms: dict[str, str] | None = None,
) -> pd.DataFrame:
    """:func:`reliability` of a :func:`kept_ratings` table (perhaps filtered) for the
    surveys in ``definitions``."""
    import krippendorff

    columns = ["survey", "question", "level", "alpha", "units", "pairable_units", "ratings"]
    rows = []
    for survey_id, definition in definitions.items():
        of_survey = ratings[ratings["survey"] == survey_id]
        for question in definition.questions:
            answers = of_survey[of_survey["question"] == question.id]
            if answers.empty:
                continue
            unit = answers["original_id"] + "|" + answers["candidate_id"].fillna("")
            if question.kind == "scale":
                level, domain = "ordinal", list(range(question.low, question.high + 1))
                units, values = unit, answers["value"].astype(int)
            elif question.kind == "choice":
                level, domain = "nominal", [0, 1]
                chosen = answers["text"].fillna("").map(lambda t: {p.strip() for p in t.split(",")})
                units = pd.concat([unit + "|" + option for option in question.options])
                values = pd.concat(
                    [chosen.map(lambda s, o=option: int(o in s)) for option in question.options]
                )
            else:
                level = "nominal"
                values = (
                    answers["text"]
                    .fillna("")
                    .map(lambda t: normalise_answer(t.split(",")[0], synonyms))
                )
                domain = sorted(set(values))
                units = unit
            counts = pd.crosstab(units.to_numpy(), values.to_numpy()).reindex(
                columns=domain, fill_value=0
            )
            pairable = int((counts.sum(axis=1) >= 2).sum())
            alpha = np.nan
            if pairable >= 2 and len(domain) >= 2:
                # every rating the same value: alpha is undefined (0/0), NaN without a warning
                with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                    warnings.simplefilter("ignore", RuntimeWarning)
                    alpha = float(
                        krippendorff.alpha(
                            value_counts=counts.to_numpy(),
                            value_domain=list(range(len(domain))) if level == "nominal" else domain,
                            level_of_measurement=level,
                        )
                    )
            rows.append([survey_id, question.id, level, alpha, len(counts), pairable, len(answers)])
    return pd.DataFrame(rows, columns=columns)


def unmatched_answers(store: Store, survey: str | None = None) -> pd.DataFrame:
    """Answers about images the study does not know, kept aside at import."""
    where, params = ("WHERE survey = ?", [survey]) if survey else ("", [])
    return store.frame(
        f"SELECT * FROM ratings_unmatched {where} ORDER BY source_file, source_line", params
    )


def imports(store: Store) -> pd.DataFrame:
    """Every import: file, its SHA-256, survey, format, QC options and summary."""
    return store.frame("SELECT * FROM rating_imports ORDER BY id")
