"""The metric contract: what every metric plugin declares, and the four kinds it can be.

A metric is configured in ``study.toml`` as a ``[[metrics]]`` entry (``metric =
"lpips"`` plus that metric's parameters, validated by its ``Params`` model) and
writes one or more *scores*, each described by a :class:`ScoreSpec`: its key in
the store and in rd.csv, the name figures show, its direction and its range.

The kinds differ in what they compare, and so in how the pipeline runs them:

- :class:`EmbeddingMetric`: image → vector, cached in the store per artifact and
  compared by cosine (CLIP, SigLIP, EVA-CLIP through open_clip);
- :class:`PairwiseMetric`: (original, candidate) → values (PSNR, MS-SSIM, LPIPS,
  DISTS, DreamSim);
- :class:`SetMetric`: a method's candidates at one operating point against the
  originals → one value (FID, KID), from per-image features cached per artifact;
- :class:`TaskMetric`: whether a downstream prediction on the candidate is right
  (zero-shot classification), one 0/1 value per candidate, so its mean is the
  accuracy and its confidence interval comes from the images like any score.

A metric is built once per stage step (perhaps inside a Ray actor) from its
validated ``Params``, with the study's device and batch size, and holds at most
one model. Declaring its scores and identity needs no model: a run checks a
study, lists its scores and names its figures without loading anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from semcomp.params import PluginParams

if TYPE_CHECKING:
    import numpy as np

METRIC_KINDS = ("embedding", "pairwise", "set", "task")


@dataclass(frozen=True)
class ScoreSpec:
    """One number a metric writes per candidate (or per method × operating point for a set
    metric): its key, how figures and tables name it, its direction and its range."""

    #: unique in a study: the column of rd.csv and the ``metric`` of the store's scores,
    #: e.g. ``"lpips[alex]"`` or ``"clip_(cos+1)/2[ViT-L-14-336/openai]"``
    key: str
    #: what a reader sees on an axis or in a table, e.g. ``"LPIPS (AlexNet)"``
    display: str
    higher_is_better: bool
    #: the values it can take (None: unbounded on that side)
    low: float | None = None
    high: float | None = None
    #: a sentence for the README, rd.csv's column notes and the app's help
    description: str = ""
    #: e.g. ``"dB"`` for PSNR; empty for unitless scores
    unit: str = ""

    @property
    def axis_label(self) -> str:
        """``display`` with its unit, and "lower is better" where it is."""
        label = f"{self.display} ({self.unit})" if self.unit else self.display
        return label if self.higher_is_better else f"{label}, lower is better"


class Metric(ABC):
    """Base of every metric backend (entry-point group ``semcomp.metrics``)."""

    #: the registry name (``metric = "..."`` in study.toml)
    name: ClassVar[str]
    #: one of :data:`METRIC_KINDS`; set by the kind's base class
    kind: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    #: whether it runs a local model that ``--engine ray`` should run in actors
    scalable: ClassVar[bool] = True
    default_batch_size: ClassVar[int] = 16
    #: the pip extra that installs what it imports (``semcomp.extras``); None: the base install
    extra: ClassVar[str | None] = "metrics"

    def __init__(
        self, params: PluginParams, *, device: str = "auto", batch_size: int | None = None
    ):
        self.params = params
        self.device = device
        self.batch_size = self.default_batch_size if batch_size is None else batch_size

    @classmethod
    @abstractmethod
    def scores(cls, params: PluginParams) -> list[ScoreSpec]:
        """The scores this metric writes with ``params`` (no model is loaded)."""

    @classmethod
    def identity_of(cls, params: PluginParams) -> dict[str, Any]:
        """Everything that changes its values: model, weights, preprocessing, parameters
        (e.g. "candidate resized to the original's size, bicubic"). Stored with each score,
        so values of another identity are never mixed."""
        return {"metric": cls.name, **params.identity()}

    @classmethod
    def chunk_for(cls, params: PluginParams, batch_size: int) -> int:
        """Items per engine batch (and per transaction)."""
        return batch_size

    @classmethod
    def weights_problem(cls, params: PluginParams, reachable: Any) -> str | None:
        """Why its weights cannot be loaded (one line with the fetch command), or None.

        Called before any stage starts, so a missing download fails the run at once; fast:
        no model is built. Metrics without weights keep the default."""
        return None

    @classmethod
    def embedders(cls, params: PluginParams) -> list[Any]:
        """The CLIP models (:class:`~semcomp.config.EmbedderConfig`) it loads, so that a run
        builds tiny ones (``model = "tiny"``) and checks the weights of the others before
        any stage starts, as for ``[[similarity.models]]``. None by default."""
        return []

    @property
    def random_weights(self) -> bool:
        """Whether its model has random weights (tests, the offline demo): its numbers then
        measure nothing, and the report and app say so."""
        return False

    def identity(self) -> dict[str, Any]:
        """The loaded metric's identity: :meth:`identity_of`, plus what loading resolved
        (a weights file's hash, random weights)."""
        return {**self.identity_of(self.params), "random_weights": self.random_weights}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (the next step may load another)."""


#: Pillow's resampling filters by the names a metric's ``resize`` parameter takes
RESIZE_FILTERS = ("bicubic", "bilinear", "lanczos", "nearest")


def resized_to(original: Any, candidate: Any, resize: str) -> Any:
    """``candidate`` at ``original``'s size (Pillow's ``resize`` filter; as is when equal)."""
    if candidate.size == original.size:
        return candidate
    from PIL import Image

    return candidate.resize(original.size, getattr(Image.Resampling, resize.upper()))


def at_original_size(original: Any, candidate: Any) -> Any:
    """``candidate`` (a PIL image) resized to ``original``'s size, bicubic, when it differs:
    what a metric that needs equal sizes compares (and says so in its identity)."""
    return resized_to(original, candidate, "bicubic")


#: how :func:`at_original_size` resizes, for identities
RESIZED_TO_ORIGINAL = "candidate resized to the original's size (PIL bicubic) when it differs"


class PairwiseMetric(Metric):
    """(original, candidate) → one value per score, for each pair of a batch."""

    kind = "pairwise"

    @abstractmethod
    def compare(
        self, originals: Sequence[Any], candidates: Sequence[Any]
    ) -> list[dict[str, float]]:
        """Values for each pair of RGB PIL images, as ``{score key: value}``.

        A metric that needs equal sizes resizes the candidate to the original's size and
        says how in its identity. A pair it cannot score raises
        :class:`~semcomp.errors.ImageError` for the whole batch only if no pair can be
        scored; otherwise it returns an exception in that pair's place.
        """


class EmbeddingMetric(Metric):
    """Image → vector, cached in the store per artifact and compared by cosine."""

    kind = "embedding"

    @abstractmethod
    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per RGB PIL image."""

    @classmethod
    @abstractmethod
    def values(cls, params: PluginParams, cosine: float) -> dict[str, float]:
        """The metric's scores from one cosine similarity."""

    @classmethod
    def embedder_id(cls, params: PluginParams) -> str:
        """The key its vectors are cached under in the store (same identity, same vectors)."""
        from semcomp.store import content_key

        return content_key("embedder", cls.name, cls.identity_of(params))

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "embedder": self.embedder_identity()}

    def embedder_identity(self) -> dict[str, Any]:
        """The store's ``embedders`` row for its vectors: ``kind``, ``model``, ``pretrained``,
        ``preprocess`` (a dict), ``weights`` and ``random_weights``."""
        identity = self.identity_of(self.params)
        return {
            "kind": self.name,
            "model": str(identity.get("model", self.name)),
            "pretrained": str(identity.get("pretrained", "")),
            "preprocess": identity.get("preprocess", {}),
            "weights": str(identity.get("weights", "")),
            "random_weights": self.random_weights,
        }


class SetMetric(Metric):
    """A method's candidates at one operating point against the originals → one value.

    Per-image features are cached per artifact like embeddings; :meth:`compare_sets`
    needs no model, so a value is recomputed from the cache when the set changes.
    """

    kind = "set"
    #: fewer images than this give a value that means little (shown with ``n``)
    min_images: ClassVar[int] = 2

    @classmethod
    @abstractmethod
    def feature_identity(cls, params: PluginParams) -> dict[str, Any]:
        """The feature extractor's row in the store's ``embedders`` table (``kind``,
        ``model``, ``pretrained``, ``preprocess``, ``weights``, ``random_weights``): metrics
        with the same extractor (FID and KID on Inception) share its cached features."""

    @classmethod
    def features_id(cls, params: PluginParams) -> str:
        """The key of the cached features: a content key of :meth:`feature_identity`."""
        from semcomp.store import content_key

        return content_key("set-features", cls.feature_identity(params))

    @abstractmethod
    def features(self, images: Sequence[Any]) -> np.ndarray:
        """One feature row per RGB PIL image."""

    @classmethod
    @abstractmethod
    def compare_sets(
        cls,
        params: PluginParams,
        originals: np.ndarray,
        candidates: np.ndarray,
        seed: int = 0,
        origin: np.ndarray | None = None,
    ) -> dict[str, tuple[float, float | None, float | None]]:
        """``{score key: (value, ci_low, ci_high)}`` for two feature sets (rows = images);
        the interval from resampling images, or None where that means nothing.

        ``origin``: for each candidate row, the row of its original in ``originals`` (a
        method's replicates share one), so that a bootstrap resamples originals with their
        candidates; None resamples each set on its own.
        """


class TaskMetric(Metric):
    """Whether a downstream prediction on the candidate is right: 1.0 or 0.0 per candidate
    for each score (e.g. top-1 and top-5), so the mean over images is the accuracy.

    The true label of a candidate is its original's class (a manifest's ``label``, else
    its ``category``); :meth:`with_classes` gives the parameters for a study's classes
    (the score stage calls it before building the metric or listing its scores).
    """

    kind = "task"

    @classmethod
    def with_classes(
        cls, params: PluginParams, classes: Sequence[str], templates: Sequence[str] = ()
    ) -> PluginParams:
        """``params`` for a study whose originals have ``classes`` (sorted, distinct): a
        labelled dataset's whole class list, with its own prompt ``templates``."""
        return params

    @classmethod
    def embedder_for_vectors(cls, params: PluginParams) -> str | None:
        """The ``embedder_id`` of the vectors :meth:`predict_embeddings` can classify (an
        embedding codec's decoded embeddings of that model), or None."""
        return None

    @abstractmethod
    def predict(self, images: Sequence[Any], labels: Sequence[str]) -> list[dict[str, float]]:
        """For each RGB PIL image and its true label: ``{score key: 1.0 or 0.0}``, or the
        :class:`~semcomp.errors.ImageError` of an image it cannot classify in its place."""

    def predict_embeddings(
        self, vectors: np.ndarray, labels: Sequence[str]
    ) -> list[dict[str, float]] | None:
        """The same from decoded embeddings (an embedding codec's candidates), when the
        metric's model is the one that made them; None when it cannot."""
        return None
