"""Zero-shot accuracy against bits per pixel: the PQVAE paper's Fig. 6, for any candidate.

Every method of a labelled study — a pixel codec (JPEG, WebP), a learned codec
(CompressAI), a textual transform's reconstruction, an embedding codec's decoded
embedding — is a point (per operating point) at its mean bpp, with the mean of the
``zero-shot`` metric's 0/1 scores: its top-1 accuracy, with a bootstrap 95 % CI over
images. The methods compared share their originals (:func:`~.coverage.rate_comparison`).
Two rates per point: ``bpp_mean`` (each image's bits over its own pixels, averaged:
how semcomp counts bpp, the x axis) and ``bpp_of_mean_pixels`` (mean bits over the mean
pixel count of the originals: the paper's definition, 400 bits ↔ 2.29e-3 bpp on Pets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from semcomp.analysis.coverage import Coverage, rate_comparison
from semcomp.analysis.rd import summarise, summary_columns
from semcomp.analysis.scores import Scores

#: the score keys the ``zero-shot`` metric writes for top-1 accuracy
ZERO_SHOT_TOP1 = "zero-shot top-1["
#: the columns of :func:`accuracy_against_bpp`'s table
COLUMNS = [
    "metric",
    "method",
    "kind",
    "codec",
    "operating_point",
    "n",
    "image_set",
    "bpp_mean",
    "bpp_of_mean_pixels",
    "rate_bits_mean",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
]


def zero_shot_keys(scores: Scores, points: pd.DataFrame) -> list[str]:
    """The study's zero-shot top-1 scores (one per ``zero-shot`` metric entry)."""
    return [k for k in scores.per_candidate(points) if k.startswith(ZERO_SHOT_TOP1)]


@dataclass
class ZeroShotCurves:
    #: one row per metric × method × operating point (:data:`COLUMNS`)
    table: pd.DataFrame
    #: per metric: the originals it covers and what it left out
    coverages: list[Coverage] = field(default_factory=list)


def accuracy_against_bpp(
    points: pd.DataFrame,
    scores: Scores,
    *,
    seed: int = 0,
    unpaired: bool = False,
) -> ZeroShotCurves:
    """Fig. 6's points for every zero-shot top-1 score of ``points`` (see the module
    docstring); an empty table when the study has none."""
    tables, coverages = [], []
    for key in zero_shot_keys(scores, points):
        coverage = rate_comparison(points, key, unpaired=unpaired)
        coverages.append(coverage)
        covered = coverage.points
        if covered.empty:
            continue
        others = [c for c in scores.per_candidate(points) if c != key]
        summary = summarise(
            covered.drop(columns=others, errors="ignore"),
            seed=seed,
            image_set=coverage.image_set,
            scores=scores.restricted([key]),
        )
        centre, low, high, _ = summary_columns(key, scores)
        pixels = covered.drop_duplicates("original_id")["pixels"].astype(float).mean()
        kinds = covered.groupby("method", observed=True)["kind"].first()
        table = summary.assign(
            metric=key,
            kind=summary["method"].map(kinds),
            bpp_of_mean_pixels=summary["rate_bits_mean"] / pixels,
            accuracy=summary[centre],
            accuracy_ci_low=summary[low],
            accuracy_ci_high=summary[high],
        )
        tables.append(table[COLUMNS])
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    return ZeroShotCurves(table, coverages)
