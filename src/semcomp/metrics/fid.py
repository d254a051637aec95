"""The ``fid`` metric: Fréchet Inception Distance (Heusel et al., 2017) between a method's
candidates at one operating point and the originals they came from.

Per-image features are torchmetrics' Inception-v3 (torch-fidelity's port of the
TensorFlow FID network, 2048-d pool3 features; each image resized to 299×299 by
bilinear interpolation with antialiasing, as ``FrechetInceptionDistance`` does).
They are cached per artifact, so FID and KID share them and a value is recomputed
from the cache when the set of originals changes. The distance itself is computed
here with numpy from the cached features (tested against torchmetrics).

FID is biased upwards for small sets and needs thousands of images to mean much
(the usual 50,000, at least 2,048 for a full-rank covariance); every value is stored
with ``n``, the number of originals it is over. Its interval is a percentile
bootstrap: originals resampled with replacement, each with its candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal
from unittest import mock

import numpy as np

from semcomp.engines import phase
from semcomp.metrics.base import ScoreSpec, SetMetric
from semcomp.metrics.learned import missing_packages, raise_weights_problem, seeded
from semcomp.models import (
    batches_with_backoff,
    drop_model,
    load_torch_weights,
    select_device,
    torch_hub_checkpoint,
    torch_weights_problem,
)
from semcomp.params import PluginParams

#: torch-fidelity's ``URL_INCEPTION_V3``: the FID Inception weights (TensorFlow's, converted)
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
FEATURES = 2048
INPUT_SIZE = 299
#: pixels resized in one float batch at most (a 12-megapixel photo goes alone)
MAX_BATCH_PIXELS = 64_000_000


#: ``weights = "tiny"``: the random-weight network on 75×75 inputs (its smallest), 16 times
#: faster than at 299×299 (tests and the offline demo)
TINY_INPUT_SIZE = 75


class InceptionParams(PluginParams):
    #: ``random``: the same Inception-v3 with random weights; ``tiny``: random weights and
    #: 75×75 inputs (tests, the offline demo)
    weights: Literal["pretrained", "random", "tiny"] = "pretrained"


def load_inception(weights: str) -> Any:
    """torchmetrics' ``NoTrainInceptionV3`` (2048-d features), with the FID weights or random
    ones (He-initialised convolutions, so features neither vanish nor explode)."""
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity
    from torchmetrics.image.fid import NoTrainInceptionV3

    def build() -> Any:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(FEATURES)])

    if weights == "pretrained":
        return load_torch_weights(build, what="FID Inception-v3", urls=[INCEPTION_URL])
    # the library's own constructor, with its download and load of the weights left out
    with (
        seeded(),
        mock.patch.object(fidelity, "load_state_dict_from_url", lambda *_, **__: {}),
        mock.patch.object(NoTrainInceptionV3, "load_state_dict", lambda *_, **__: None),
    ):
        model = build()
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    if weights == "tiny":
        model.INPUT_IMAGE_SIZE = TINY_INPUT_SIZE
    return model.eval()


class InceptionSetMetric(SetMetric):
    """What FID and KID share: Inception-v3 features per image, cached under one identity."""

    Params: ClassVar[type[PluginParams]] = InceptionParams
    default_batch_size = 32

    def __init__(
        self, params: PluginParams, *, device: str = "auto", batch_size: int | None = None
    ):
        super().__init__(params, device=device, batch_size=batch_size)
        raise_weights_problem(self)
        self.device = select_device(device)
        self.model = load_inception(self.params.weights).to(self.device)

    @property
    def random_weights(self) -> bool:
        return self.params.weights != "pretrained"

    @classmethod
    def feature_identity(cls, params: PluginParams) -> dict[str, Any]:
        random = params.weights != "pretrained"
        size = TINY_INPUT_SIZE if params.weights == "tiny" else INPUT_SIZE
        return {
            "kind": "inception-v3",
            "model": "torchmetrics NoTrainInceptionV3 (torch-fidelity FID Inception-v3), "
            f"{FEATURES}-d pool3",
            "pretrained": params.weights if random else "pt_inception-2015-12-05",
            "preprocess": {
                "size": size,
                "resize": "bilinear, antialiased, aspect ratio not kept (torchmetrics FID)",
                "input": "RGB uint8, scaled to [-1, 1]",
            },
            "weights": "random (seed 0)" if random else torch_hub_checkpoint(INCEPTION_URL).name,
            "random_weights": random,
        }

    @classmethod
    def weights_problem(cls, params: PluginParams, reachable: Any) -> str | None:
        problem = missing_packages(cls.name, "torchmetrics", "torch_fidelity")
        if params.weights != "pretrained" or problem:
            return problem
        return torch_weights_problem("FID Inception-v3", [INCEPTION_URL])

    @classmethod
    def identity_of(cls, params: PluginParams) -> dict[str, Any]:
        return {**super().identity_of(params), "features": cls.feature_identity(params)}

    def features(self, images: Sequence[Any]) -> np.ndarray:
        """2048 float32 features per RGB PIL image (images of one size run as one batch)."""
        import torch

        with phase("preprocess"):
            pixels = [torch.from_numpy(np.array(image.convert("RGB"))) for image in images]
        rows: list[Any] = [None] * len(pixels)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(pixels):
            groups.setdefault(tuple(p.shape), []).append(i)

        def run(indices: Sequence[int]) -> np.ndarray:
            batch = torch.stack([pixels[i] for i in indices]).permute(0, 3, 1, 2)
            with torch.inference_mode():
                out = self.model(batch.contiguous().to(self.device))
            return out.float().cpu().numpy()

        for (height, width, _), indices in groups.items():
            size = max(1, min(self.batch_size, MAX_BATCH_PIXELS // (height * width)))
            for batch, out in batches_with_backoff(indices, size, run):
                for i, row in zip(batch, out, strict=True):
                    rows[i] = row
        if not rows:
            return np.zeros((0, FEATURES), np.float32)
        return np.stack(rows).astype(np.float32)

    def close(self) -> None:
        drop_model(self)


def _factor(features: np.ndarray) -> np.ndarray:
    """``L`` with ``L @ L.T`` = the features' covariance (d×d), from the centred rows when
    there are fewer rows than dimensions (exact and cheap), else from its eigenvectors."""
    n, dim = features.shape
    centred = features - features.mean(axis=0)
    if n <= dim:
        return centred.T / np.sqrt(n - 1)
    values, vectors = np.linalg.eigh(centred.T @ centred / (n - 1))
    return vectors * np.sqrt(np.clip(values, 0, None))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """FID of two feature sets (rows = images): ‖μx − μy‖² + tr Σx + tr Σy − 2 tr √(Σx Σy).

    tr √(Σx Σy) is the nuclear norm of Lxᵀ Ly (Σ = L Lᵀ): the eigenvalues of Σx Σy are
    the squared singular values of Lxᵀ Ly, which stays symmetric and well conditioned.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("FID needs at least 2 images on each side")
    lx, ly = _factor(x), _factor(y)
    cross = np.linalg.svd(lx.T @ ly, compute_uv=False).sum()
    mean = np.sum((x.mean(axis=0) - y.mean(axis=0)) ** 2)
    return float(mean + np.sum(lx**2) + np.sum(ly**2) - 2 * cross)


def resample(
    n_originals: int, n_candidates: int, origin: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One bootstrap draw: originals with replacement, each with its candidates (or, without
    ``origin``, each set on its own). Returns the rows of both sets."""
    picked = rng.integers(0, n_originals, n_originals)
    if origin is None:
        return picked, rng.integers(0, n_candidates, n_candidates)
    members: dict[int, list[int]] = {}
    for row, original in enumerate(origin):
        members.setdefault(int(original), []).append(row)
    rows = [row for original in picked for row in members.get(int(original), [])]
    return picked, np.asarray(rows, dtype=int)


def weights_key(key: str, weights: str) -> str:
    """A score's key, marked when its model's weights are random (``fid[tiny]``)."""
    return key if weights == "pretrained" else f"{key}[{weights}]"


def weights_display(display: str, weights: str) -> str:
    labels = {"pretrained": "", "random": ", random weights", "tiny": ", tiny random"}
    return display + labels[weights]


def percentile_interval(values: list[float]) -> tuple[float | None, float | None]:
    finite = [v for v in values if np.isfinite(v)]
    if len(finite) < 2:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


class FidParams(InceptionParams):
    #: bootstrap resamples of the originals for the interval (0: no interval); each costs
    #: one FID (a second or so at 2,048-d with thousands of images)
    bootstrap: int = 50


class Fid(InceptionSetMetric):
    """FID between a method's candidates and their originals: 0 for the same distribution."""

    name = "fid"
    Params: ClassVar[type[PluginParams]] = FidParams

    @classmethod
    def scores(cls, params: FidParams) -> list[ScoreSpec]:
        return [
            ScoreSpec(
                key=weights_key("fid", params.weights),
                display=weights_display("FID (Inception-v3)", params.weights),
                higher_is_better=False,
                low=0.0,
                description="Fréchet Inception Distance between the candidates and their "
                "originals (0 = same feature distribution); one value per method and "
                "operating point, biased upwards with few images: read it with its n",
            )
        ]

    @classmethod
    def compare_sets(
        cls,
        params: FidParams,
        originals: np.ndarray,
        candidates: np.ndarray,
        seed: int = 0,
        origin: np.ndarray | None = None,
    ) -> dict[str, tuple[float, float | None, float | None]]:
        key = cls.scores(params)[0].key
        value = frechet_distance(originals, candidates)
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(params.bootstrap):
            rows_o, rows_c = resample(len(originals), len(candidates), origin, rng)
            if len(set(rows_o.tolist())) > 1 and len(set(rows_c.tolist())) > 1:
                draws.append(frechet_distance(originals[rows_o], candidates[rows_c]))
        low, high = percentile_interval(draws)
        return {key: (value, low, high)}
