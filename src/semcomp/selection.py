"""Encoder-side selection (best-of-N): the rules a textual method's ``select`` follows.

The encoder, which has the original, reconstructs N candidates from the same
caption (and side information), scores each against the original with one metric
and sends the index of the best, so the decoder reproduces it. What this module
fixes, before any stage uses it:

- ``select = { n = [1, 2, 4, 8], by = "<metric>" }``: each ``n`` an operating point,
  ``by`` a registered pairwise or embedding metric, ``params`` its parameters
  (validated by its ``Params`` model), ``score`` which of its scores decides when
  a pairwise metric writes several (an embedding metric's all grow with its cosine);
- the index costs exactly ``⌈log2 N⌉`` bits (:func:`select_bits`), sent as
  :func:`index_bytes` whole bytes (one byte up to N = 256, none for N = 1) before
  the method's payload (its caption payload, or its caption + side container).
  The stored representation holds the payload without it and a rate that includes
  it (meta ``select_bits`` and ``index_bytes``); each replicate chooses its own
  index, which its candidate's meta records (``select_index``);
- candidate ``k`` of replicate ``r`` (of ``R`` replicates) uses the seed of replicate
  index ``r + k·R`` (:func:`candidate_replicate`): candidate 0 is the replicate itself,
  so N = 1 is today's reconstruction, and the seeds do not depend on N, so a larger N
  reuses the smaller N's reconstructions;
- the best is the first argmax (argmin for a lower-is-better score) among the values
  that are numbers (:func:`best_index`).

Selecting by a metric and then scoring with the same metric is optimistic: the
selection has seen that metric's value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from semcomp.metrics import METRICS
from semcomp.validation import registered, validated_params

#: the metric kinds that score one candidate against its original
SELECTABLE_KINDS = ("pairwise", "embedding")
#: the largest N: its index fits in one byte
MAX_CANDIDATES = 256


def select_bits(n: int) -> int:
    """The bits an index among ``n`` candidates takes: ``⌈log2 n⌉`` (0 for one)."""
    if n < 1:
        raise ValueError(f"best-of-{n}: N is a positive number of candidates")
    return (n - 1).bit_length()


def index_bytes(n: int) -> int:
    """The whole bytes the index among ``n`` candidates occupies in the payload."""
    return math.ceil(select_bits(n) / 8)


def candidate_replicate(replicate: int, candidate: int, replicates: int) -> int:
    """The replicate index whose seed candidate ``candidate`` of ``replicate`` uses."""
    if not 0 <= replicate < replicates or candidate < 0:
        raise ValueError(
            f"candidate {candidate} of replicate {replicate} (of {replicates}) does not exist"
        )
    return replicate + candidate * replicates


def best_index(values: Sequence[float | None], higher_is_better: bool) -> int:
    """The first candidate with the best value; values that are not numbers never win."""
    usable = [
        (value, i)
        for i, value in enumerate(values)
        if value is not None and not math.isnan(float(value))
    ]
    if not usable:
        raise ValueError(f"none of the {len(values)} candidates has a score to select by")
    sign = -1.0 if higher_is_better else 1.0
    return min(usable, key=lambda pair: (sign * float(pair[0]), pair[1]))[1]


def operating_label(n: int) -> str:
    """The operating point's label of best-of-``n``."""
    return f"best-of={n}"


class SelectConfig(BaseModel):
    """A textual method's ``select`` table (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    #: candidates per reconstruction, each an operating point
    n: list[int] = Field(min_length=1)
    #: the metric that picks the best candidate (pairwise or embedding)
    by: str
    #: the metric's parameters (validated, defaults filled in)
    params: dict[str, Any] = Field(default_factory=dict)
    #: which of the metric's scores decides (needed only when it writes several)
    score: str | None = None

    @field_validator("n")
    @classmethod
    def _positive_distinct(cls, values: list[int]) -> list[int]:
        for value in values:
            if not 1 <= value <= MAX_CANDIDATES:
                raise ValueError(f"n = {value} is outside 1..{MAX_CANDIDATES}")
        if len(set(values)) != len(values):
            raise ValueError(f"n repeats: {values}")
        return values

    @field_validator("by")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        registered(METRICS, name)
        kind = METRICS.get(name).kind
        if kind not in SELECTABLE_KINDS:
            raise ValueError(
                f"metric {name!r} is a {kind} metric; selection scores one candidate "
                f"against its original: use a {' or '.join(SELECTABLE_KINDS)} metric"
            )
        return name

    @model_validator(mode="after")
    def _validate_params(self, info: ValidationInfo) -> SelectConfig:
        validated = validated_params(METRICS, self.by, self.params, "params", info)
        self.params = validated.model_dump(mode="json")
        keys = [spec.key for spec in METRICS.get(self.by).scores(validated)]
        # an embedding metric's scores all grow with the cosine: any of them decides alike
        if self.score is None:
            if len(keys) > 1 and METRICS.get(self.by).kind != "embedding":
                raise ValueError(
                    f"metric {self.by!r} writes several scores: name one as "
                    f"score ({', '.join(keys)})"
                )
        elif self.score not in keys:
            raise ValueError(
                f"score {self.score!r} is not a score of {self.by!r} ({', '.join(keys)})"
            )
        return self

    @property
    def metric_params(self) -> Any:
        """The metric's parameters as its ``Params`` model."""
        return METRICS.get(self.by).Params.model_validate(self.params)

    @property
    def score_spec(self) -> Any:
        """The :class:`~semcomp.metrics.base.ScoreSpec` that decides."""
        specs = METRICS.get(self.by).scores(self.metric_params)
        if self.score is None:
            return specs[0]
        return next(spec for spec in specs if spec.key == self.score)

    def identity(self) -> dict[str, Any]:
        """What enters the method's identity (its ``n`` are operating points, not part of it)."""
        return {
            "by": self.by,
            "metric": METRICS.get(self.by).identity_of(self.metric_params),
            "score": self.score_spec.key,
        }
