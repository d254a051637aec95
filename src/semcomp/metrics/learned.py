"""What the learned pairwise metrics (LPIPS, DISTS, DreamSim) share: a torch model built once,
pairs grouped by size and run in batches (halved on out-of-memory), per-pair failures.

A backend says how it loads its model (:meth:`LearnedPairwiseMetric.load`), how a pair
becomes two equal-size tensors (:meth:`~LearnedPairwiseMetric.pixels`) and how a batch
of pairs becomes distances (:meth:`~LearnedPairwiseMetric.distances`). Models run in
float32 on every device: they are small, and the reference numbers are float32.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from semcomp.engines import phase
from semcomp.errors import ImageError, ModelUnavailableError
from semcomp.metrics.base import Metric, PairwiseMetric, ScoreSpec
from semcomp.models import batches_with_backoff, drop_model, is_out_of_memory, select_device
from semcomp.params import PluginParams

#: ``weights = "random"``: the real architecture with random backbone weights (tests, the
#: offline demo); its numbers measure nothing, and its score keys say ``random``
Weights = Literal["pretrained", "random"]


def missing_packages(metric: str, *modules: str) -> str | None:
    """Why ``metric`` cannot run here (packages of the ``metrics`` extra not installed), or
    None; checked before any stage starts, with :meth:`Metric.weights_problem`."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"metric {metric!r} needs the package(s) {', '.join(missing)}: "
        "pip install 'semcomp[metrics]'"
    )


def raise_weights_problem(metric: Metric) -> None:
    """Fail at once, with :meth:`Metric.weights_problem`'s one line, before any library is
    imported or asked to download."""
    problem = type(metric).weights_problem(metric.params, lambda: False)
    if problem is not None:
        raise ModelUnavailableError(problem)


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Random weights that are the same in every process, without touching the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class PreparedPairs:
    """A batch of pairs ready for a learned metric's model: per pair its problem (or None),
    its two tensors, and the pairs of each shape (one model batch per shape)."""

    results: list[Any]
    tensors: dict[int, tuple[Any, Any]]
    groups: dict[tuple[int, ...], list[int]]


class LearnedPairwiseMetric(PairwiseMetric):
    """A pairwise distance computed by a torch model; one score per pair."""

    default_batch_size = 8

    def __init__(
        self, params: PluginParams, *, device: str = "auto", batch_size: int | None = None
    ):
        super().__init__(params, device=device, batch_size=batch_size)
        raise_weights_problem(self)
        self.device = select_device(device)
        self.key = self.scores(params)[0].key
        self.display = self.scores(params)[0].display
        self.model = self.load().to(self.device).eval()

    @property
    def random_weights(self) -> bool:
        return getattr(self.params, "weights", "pretrained") != "pretrained"

    @abstractmethod
    def load(self) -> Any:
        """The model (a torch module), its weights loaded (or random when asked for)."""

    @abstractmethod
    def pixels(self, original: Any, candidate: Any) -> tuple[Any, Any]:
        """Two float tensors of one shape (3×H×W) for a pair of RGB PIL images."""

    @abstractmethod
    def distances(self, originals: Any, candidates: Any) -> Any:
        """One distance per pair of a batch (N×3×H×W each): a tensor of N values."""

    def compare(
        self, originals: Sequence[Any], candidates: Sequence[Any]
    ) -> list[dict[str, float]]:
        return self.compare_prepared(self.prepare_pairs(originals, candidates))

    def prepare_pairs(self, originals: Sequence[Any], candidates: Sequence[Any]) -> PreparedPairs:
        """The pairs as tensors grouped by shape, and each pair's problem: the part of
        :meth:`compare` without the model, which the engine runs while loading the batch
        (ahead of the model, in its prefetch thread or loader workers)."""
        prepared = PreparedPairs([None] * len(originals), {}, {})
        with phase("preprocess"):
            for i, (original, candidate) in enumerate(zip(originals, candidates, strict=True)):
                try:
                    x, y = self.pixels(original, candidate)
                except (ImageError, ValueError, OSError) as exc:
                    prepared.results[i] = ImageError(f"{self.display}: {exc}")
                    continue
                prepared.tensors[i] = (x, y)
                prepared.groups.setdefault(tuple(x.shape), []).append(i)
        return prepared

    def compare_prepared(self, prepared: PreparedPairs) -> list[Any]:
        """:meth:`compare` of pairs :meth:`prepare_pairs` prepared: the model's part."""
        import torch

        results, tensors = list(prepared.results), prepared.tensors

        def run(indices: Sequence[int]) -> list[float]:
            x = torch.stack([tensors[i][0] for i in indices]).to(self.device)
            y = torch.stack([tensors[i][1] for i in indices]).to(self.device)
            with torch.inference_mode():
                # a distance of an image to itself can come out as -1e-7 in float32
                return [max(0.0, v) for v in self.distances(x, y).reshape(-1).cpu().tolist()]

        keep = partial(setattr, self, "batch_size")
        for shape, indices in prepared.groups.items():
            try:
                for batch, values in batches_with_backoff(indices, self.batch_size, run, keep):
                    for i, value in zip(batch, values, strict=True):
                        results[i] = {self.key: value}
            except RuntimeError as exc:
                if is_out_of_memory(exc):
                    raise
                problem = f"{self.display} cannot score a {shape[-1]}×{shape[-2]} pair: {exc}"
                for i in indices:
                    if results[i] is None:
                        results[i] = ImageError(problem)
        if results and all(isinstance(r, Exception) for r in results):
            raise results[0]
        return results

    def close(self) -> None:
        drop_model(self)


def distance_score(
    key: str, display: str, description: str, *, high: float | None = None
) -> ScoreSpec:
    """A distance: 0 for identical images, lower is better."""
    return ScoreSpec(
        key=key,
        display=display,
        higher_is_better=False,
        low=0.0,
        high=high,
        description=description,
    )
