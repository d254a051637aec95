"""What a study's scores are: key, display name, direction, range, unit and kind.

The report and the app read the store's ``metrics`` table (``metrics_table`` in
:mod:`semcomp.analysis.rd`) and turn it into a :class:`Scores` with
:meth:`Scores.from_frame`; the pure functions of :mod:`semcomp.analysis` take it
and never guess a metric's direction. A table built without a store (a test, a
CSV) gets one from :meth:`Scores.infer`, which knows semcomp's own key forms:
CLIP similarity, human ratings (``human.<survey>.<stat>[<question>]``); any other
key is taken as higher-is-better and named by its key.

Each score is a :class:`ScoreInfo`: the metric plugins' own
:class:`~semcomp.metrics.base.ScoreSpec` (so axis labels come from one place,
``ScoreSpec.axis_label``) plus its ``kind``: ``embedding``, ``pairwise``, ``task``
(one value per candidate: a column of rd.csv), ``set`` (one value per method ×
operating point, from the ``set_scores`` table) or ``human`` (imported ratings).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from semcomp.metrics.base import ScoreSpec

SET = "set"
HUMAN = "human"
#: human-rating keys: ``human.<survey>.<stat>[<question>]`` (surveys import)
HUMAN_PREFIX = "human."
CLIP_COSINE_PREFIX = "clip_cos["
#: CLIP similarity scaled to [0, 1], as in the textual-transform paper
SCALED_CLIP = "clip_(cos+1)/2["
#: the textual-transform paper's semantic satisfaction index: median Survey A rating
SATISFACTION_PREFIX = "human.A.median["
#: a rating scale stated in a human metric's formula: ``..., 1–10)``
_SCALE = re.compile(r"(-?\d+(?:\.\d+)?)\s*[–-]\s*(-?\d+(?:\.\d+)?)\)?\s*$")


@dataclass(frozen=True)
class ScoreInfo(ScoreSpec):
    """A :class:`~semcomp.metrics.base.ScoreSpec` and the kind of metric that writes it."""

    kind: str = "pairwise"

    @property
    def is_set(self) -> bool:
        return self.kind == SET

    @property
    def is_human(self) -> bool:
        return self.kind == HUMAN


def readable_clip_model(label: str) -> str:
    """An open_clip label as people write it: ``ViT-L-14-336/openai`` → ``ViT-L/14@336``;
    a weights tag other than OpenAI's is kept in parentheses (``ViT-B/32 (laion2b_s34b)``)."""
    model, _, weights = label.partition("/")
    model = re.sub(r"^(ViT-[A-Za-z]+)-(\d+)(?:-(\d+))?", _vit, model)
    return f"{model} ({weights})" if weights and weights != "openai" else model


def _vit(match: re.Match) -> str:
    name, patch, size = match.groups()
    return f"{name}/{patch}" + (f"@{size}" if size else "")


def infer_score(key: str) -> ScoreInfo:
    """A description of ``key`` from its form alone (no metrics table to read)."""
    inner = key[key.index("[") + 1 : -1] if "[" in key and key.endswith("]") else ""
    if key.startswith(SCALED_CLIP):
        return ScoreInfo(
            key,
            f"CLIP {readable_clip_model(inner)} similarity (cos+1)/2",
            True,
            0.0,
            1.0,
            kind="embedding",
        )
    if key.startswith(CLIP_COSINE_PREFIX):
        return ScoreInfo(
            key, f"CLIP {readable_clip_model(inner)} cosine", True, -1.0, 1.0, kind="embedding"
        )
    human = re.match(r"^human\.([^.\[]+)\.([^\[]+)\[(.*)\]$", key)
    if human:
        survey, stat, question = human.groups()
        return ScoreInfo(key, f"Survey {survey} {stat} rating ({question})", True, kind=HUMAN)
    return ScoreInfo(key, key, True)


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return float(value)


def score_from_row(row: dict) -> ScoreInfo:
    """One row of the store's ``metrics`` table as a :class:`ScoreInfo`.

    Rows written before the metric plugins (CLIP from the score stage, human ratings
    from the survey import) have no display name, or their key as one, and the default
    kind: their name, kind and (human) rating scale come from :func:`infer_score` and
    the formula. ``unit`` is a column when the store has one, else ``identity["unit"]``.
    """
    key = str(row["name"])
    inferred = infer_score(key)
    display = row.get("display")
    if not isinstance(display, str) or not display or display == key:
        display = inferred.display
    identity = row.get("identity")
    try:
        identity = json.loads(identity) if isinstance(identity, str) and identity else {}
    except json.JSONDecodeError:
        identity = {}
    unit = row.get("unit") or (identity.get("unit") if isinstance(identity, dict) else "") or ""
    kind = str(row.get("kind") or inferred.kind)
    low, high = _number(row.get("low")), _number(row.get("high"))
    if inferred.is_human:
        # the migration gave every non-cosine row a 0–1 range; a rating's is in its formula
        kind = HUMAN
        scale = _SCALE.search(str(row.get("formula") or ""))
        low, high = (float(scale.group(1)), float(scale.group(2))) if scale else (None, None)
    elif low is None and high is None and inferred.kind == "embedding":
        low, high = inferred.low, inferred.high
    higher = row.get("higher_is_better")
    return ScoreInfo(
        key=key,
        display=display,
        higher_is_better=True if _number(higher) is None else bool(higher),
        low=low,
        high=high,
        description=str(row.get("description") or ""),
        unit=str(unit),
        kind=kind,
    )


class Scores:
    """The scores of a study by key, in the order given (the metrics table's).

    Looking up a key it does not list gives :func:`infer_score`'s description, so a
    column without a metrics row (an older store, a hand-made table) still works.
    """

    def __init__(self, infos: Iterable[ScoreInfo] = ()):
        self._infos: dict[str, ScoreInfo] = {}
        for info in infos:
            self._infos.setdefault(info.key, info)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Scores:
        """From rows of the store's ``metrics`` table (``name``, ``kind``, ``display``,
        ``higher_is_better``, ``low``, ``high``, ``identity``, ``formula``, ...)."""
        if frame is None or frame.empty:
            return cls()
        return cls(score_from_row(row) for row in frame.to_dict("records"))

    @classmethod
    def infer(cls, columns: Iterable[str]) -> Scores:
        """From column names alone: the bracketed keys semcomp writes (``clip_cos[...]``,
        ``human.A.median[...]``, ``lpips[alex]``)."""
        return cls(infer_score(c) for c in columns if "[" in c and str(c).endswith("]"))

    def __getitem__(self, key: str) -> ScoreInfo:
        return self._infos.get(key) or infer_score(key)

    def __contains__(self, key: object) -> bool:
        return key in self._infos

    def __iter__(self) -> Iterator[ScoreInfo]:
        return iter(self._infos.values())

    def __len__(self) -> int:
        return len(self._infos)

    def __repr__(self) -> str:
        return f"Scores({list(self._infos)})"

    @property
    def keys(self) -> list[str]:
        return list(self._infos)

    def with_columns(self, columns: Iterable[str]) -> Scores:
        """These scores, plus an inferred description of each bracketed column not listed
        (human ratings imported into an older store, a hand-made table)."""
        extra = [infer_score(c) for c in columns if "[" in str(c) and str(c).endswith("]")]
        return Scores([*self, *(i for i in extra if i.key not in self)])

    def per_candidate(self, points: pd.DataFrame | None = None) -> list[str]:
        """Keys with a value per candidate (columns of rd.csv), those in ``points`` when
        given."""
        keys = [i.key for i in self if not i.is_set]
        return keys if points is None else [k for k in keys if k in points.columns]

    def model(self, points: pd.DataFrame | None = None) -> list[str]:
        """Per-candidate keys computed by a model or formula (not human ratings)."""
        return [k for k in self.per_candidate(points) if not self[k].is_human]

    def human(self, points: pd.DataFrame | None = None) -> list[str]:
        return [k for k in self.per_candidate(points) if self[k].is_human]

    def set_keys(self, set_scores: pd.DataFrame | None = None) -> list[str]:
        """Set-metric keys (FID, KID), those with values in ``set_scores`` when given."""
        keys = [i.key for i in self if i.is_set]
        if set_scores is None:
            return keys
        present = set(set_scores["metric"]) if "metric" in set_scores else set()
        return [k for k in keys if k in present]

    def display(self, key: str) -> str:
        return self[key].display

    def axis_label(self, key: str) -> str:
        return self[key].axis_label

    def higher_is_better(self, key: str) -> bool:
        return self[key].higher_is_better

    def restricted(self, keys: Iterable[str]) -> Scores:
        """Only ``keys``, in their order (a key not listed is described by its form)."""
        return Scores(self[k] for k in keys)


def describe(points: pd.DataFrame, scores: Scores | None) -> Scores:
    """``scores`` covering every score column of ``points`` (inferred when ``None``)."""
    if scores is None:
        return Scores.infer(points.columns)
    return scores.with_columns(points.columns)


def headline(scores: Scores, points: pd.DataFrame | None = None) -> str | None:
    """The score a comparison leads with: Survey A satisfaction (the median Survey A
    rating), else scaled CLIP, else any other per-candidate model score, else any human
    rating, else a set metric."""
    humans = scores.human(points)
    models = scores.model(points)
    for candidates in (
        [k for k in humans if k.startswith(SATISFACTION_PREFIX)],
        [k for k in models if k.startswith(SCALED_CLIP)],
        models,
        humans,
        scores.set_keys(),
    ):
        if candidates:
            return candidates[0]
    return None


def default_figure_keys(scores: Scores, points: pd.DataFrame | None = None) -> list[str]:
    """The rate–distortion panels a report draws unless told (``--metrics``): every model
    and set metric, and the Survey A satisfaction index; a raw CLIP cosine is left out
    where its scaled twin, the same curve on another scale, is drawn. Scaled CLIP comes
    first after the satisfaction index, then the others in the metrics table's order."""
    models = sorted(scores.model(points), key=lambda k: not k.startswith(SCALED_CLIP))
    keys = [k for k in scores.human(points) if k.startswith(SATISFACTION_PREFIX)][:1]
    for key in models:
        twin = SCALED_CLIP + key.removeprefix(CLIP_COSINE_PREFIX)
        if key.startswith(CLIP_COSINE_PREFIX) and twin in models:
            continue
        keys.append(key)
    return keys + scores.set_keys()


def file_stem(key: str) -> str:
    """A score key as a file name (no dots, so a suffix can be added):
    ``lpips[alex]`` → ``lpips_alex``, ``clip_(cos+1)/2[ViT-L-14/openai]`` →
    ``clip_cos_1_2_ViT-L-14_openai``, ``human.A.median[similarity]`` →
    ``human_A_median_similarity``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", key).strip("_") or "metric"
