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
  that are numbers (:func:`best_index`);
- the metric is the study's own: without ``params``, ``by`` names the study's metric
  entry of that metric (``by = "clip"`` its configured CLIP model; ``score`` picks one
  when it has several), else a metric with ``params`` (default: the metric's defaults)
  and ``[similarity]``'s device and batch size. The study file resolves it
  (:meth:`SelectConfig.use`); the reconstruct stage scores through it as the score
  stage does.

Selecting by a metric and then scoring with the same metric is optimistic: the
selection has seen that metric's value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

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

    #: the study's metric it scores with (a :class:`~semcomp.config.MetricConfig`), once
    #: the study file resolved it (:meth:`use`), and that metric's portable identity
    _metric: Any = PrivateAttr(default=None)
    _metric_identity: dict[str, Any] | None = PrivateAttr(default=None)
    _params_given: bool = PrivateAttr(default=False)

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
        self._params_given = "params" in self.model_fields_set
        validated = validated_params(METRICS, self.by, self.params, "params", info)
        self.params = validated.model_dump(mode="json")
        keys = [spec.key for spec in METRICS.get(self.by).scores(validated)]
        if self.score is not None and not self.params_given:
            # a study's entry of the metric may carry a name (``lpips[vgg]``): the study
            # file checks the whole key (:meth:`use`), this its score before the name
            keys = [key.partition("[")[0] for key in keys]
            if self.score.partition("[")[0] not in keys:
                raise ValueError(
                    f"score {self.score!r} is not a score of {self.by!r} ({', '.join(keys)})"
                )
            return self
        check_score(self.by, self.score, keys)
        return self

    @property
    def params_given(self) -> bool:
        """Whether the study file gave ``params`` (else the study's entry of ``by`` decides)."""
        return self._params_given

    @property
    def metric(self) -> Any:
        """The study's metric it scores with (a :class:`~semcomp.config.MetricConfig`: its
        parameters, device and batch size), None until the study file resolved it."""
        return self._metric

    def use(self, metric: Any, identity: dict[str, Any]) -> None:
        """Score with ``metric`` (a study's :class:`~semcomp.config.MetricConfig` of ``by``),
        whose portable identity is ``identity``; its ``score`` must be one of its keys."""
        check_score(self.by, self.score, [spec.key for spec in metric.scores()])
        self._metric, self._metric_identity = metric, identity

    @property
    def metric_params(self) -> Any:
        """The metric's parameters as its ``Params`` model (the study's entry's, once used)."""
        if self._metric is not None:
            return self._metric.validated
        return METRICS.get(self.by).Params.model_validate(self.params)

    def _specs(self) -> list[Any]:
        if self._metric is not None:
            return list(self._metric.scores())
        return METRICS.get(self.by).scores(self.metric_params)

    @property
    def score_spec(self) -> Any:
        """The :class:`~semcomp.metrics.base.ScoreSpec` that decides (its key as the study's
        metric writes it)."""
        specs = self._specs()
        if self.score is None:
            return specs[0]
        return next(spec for spec in specs if spec.key == self.score)

    def identity(self) -> dict[str, Any]:
        """What enters the method's identity (its ``n`` are operating points, not part of it):
        the metric's identity and the deciding score as the metric class names it (an
        entry's ``name`` relabels the score, never its values)."""
        specs = self._specs()
        plain = METRICS.get(self.by).scores(self.metric_params)
        index = specs.index(self.score_spec)
        metric = self._metric_identity
        return {
            "by": self.by,
            "metric": METRICS.get(self.by).identity_of(self.metric_params)
            if metric is None
            else metric,
            "score": plain[index].key,
        }


def check_score(by: str, score: str | None, keys: Sequence[str]) -> None:
    """That ``score`` is one of ``keys`` (``by``'s score keys), or that ``by`` decides without
    naming one: it writes one score, or it is an embedding metric (whose scores all grow
    with the cosine, so any of them decides alike)."""
    if score is None:
        if len(keys) > 1 and METRICS.get(by).kind != "embedding":
            raise ValueError(
                f"metric {by!r} writes several scores: name one as score ({', '.join(keys)})"
            )
    elif score not in keys:
        raise ValueError(f"score {score!r} is not a score of {by!r} ({', '.join(keys)})")
