"""The ``dists`` metric: Deep Image Structure and Texture Similarity (Ding et al., 2020).

Through ``piq.DISTS``: structure (feature means) and texture (feature
correlations) similarities of VGG16 features at five scales, with L2 pooling,
weighted by the trained DISTS weights; reported as 1 − similarity, so 0 is
identical. The VGG16 weights are torchvision's and the DISTS weights piq's
release file, both downloaded into torch's cache. The candidate is resized to the
original's size; piq then scales both so the shorter side is at most 256 pixels
(bilinear), as the reference implementation does.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar
from unittest import mock

from semcomp.metrics.base import RESIZED_TO_ORIGINAL, ScoreSpec, at_original_size
from semcomp.metrics.learned import (
    LearnedPairwiseMetric,
    Weights,
    distance_score,
    missing_packages,
    seeded,
)
from semcomp.metrics.lpips import BACKBONE_URLS
from semcomp.models import load_torch_weights, torch_weights_problem
from semcomp.params import PluginParams

#: ``piq.DISTS._weights_url``: the trained α, β of the five VGG16 stages and the input
DISTS_WEIGHTS_URL = (
    "https://github.com/photosynthesis-team/piq/releases/download/v0.4.1/dists_weights.pt"
)
URLS = [BACKBONE_URLS["vgg"], DISTS_WEIGHTS_URL]
#: channels of the input and of VGG16's five stages (the sizes of α and β)
CHANNELS = (3, 64, 128, 256, 512, 512)


class DistsParams(PluginParams):
    #: ``random``: random VGG16 and random DISTS weights (DISTS' own initialisation)
    weights: Weights = "pretrained"


def _random_vgg16(**_: Any) -> Any:
    from torchvision.models import vgg16

    return vgg16(weights=None)


def _random_dists_weights(*_: Any, **__: Any) -> dict[str, Any]:
    """α and β as the DISTS authors initialise them (N(0.1, 0.01)), normalised to sum to 1
    like the trained ones."""
    import torch

    alpha = torch.normal(0.1, 0.01, (1, sum(CHANNELS), 1, 1))
    beta = torch.normal(0.1, 0.01, (1, sum(CHANNELS), 1, 1))
    total = alpha.sum() + beta.sum()
    return {"alpha": alpha / total, "beta": beta / total}


class Dists(LearnedPairwiseMetric):
    """DISTS distance of each candidate to its original, in [0, 1]: 0 for identical images."""

    name = "dists"
    Params: ClassVar[type[PluginParams]] = DistsParams
    default_batch_size = 8

    @classmethod
    def scores(cls, params: DistsParams) -> list[ScoreSpec]:
        random = params.weights == "random"
        return [
            distance_score(
                "dists[random]" if random else "dists",
                "DISTS, random weights" if random else "DISTS",
                "DISTS: 1 − structure and texture similarity of VGG16 features "
                "(0 = identical, 1 = nothing shared); tolerant of texture resampling",
                high=1.0,
            )
        ]

    @classmethod
    def identity_of(cls, params: DistsParams) -> dict[str, Any]:
        return {
            **super().identity_of(params),
            "implementation": "piq.DISTS",
            "backbone": "torchvision VGG16 IMAGENET1K_V1, piq DISTS weights v0.4.1"
            if params.weights == "pretrained"
            else "VGG16 and DISTS weights random (seed 0)",
            "preprocess": f"{RESIZED_TO_ORIGINAL}; RGB in [0, 1], ImageNet mean/std; "
            "shorter side scaled to 256 px (bilinear) when longer",
        }

    @classmethod
    def weights_problem(cls, params: DistsParams, reachable: Any) -> str | None:
        problem = missing_packages(cls.name, "piq")
        if params.weights == "random" or problem:
            return problem
        return torch_weights_problem("DISTS", URLS)

    def load(self) -> Any:
        import piq
        import piq.perceptual
        import torch

        def build() -> Any:
            with warnings.catch_warnings():  # piq asks torchvision with a deprecated flag
                warnings.simplefilter("ignore", UserWarning)
                return piq.DISTS(reduction="none")

        if self.random_weights:
            # piq's own constructor, with its two downloads answered by random weights
            with (
                seeded(),
                mock.patch.object(piq.perceptual, "vgg16", _random_vgg16),
                mock.patch.object(torch.hub, "load_state_dict_from_url", _random_dists_weights),
            ):
                return build()
        return load_torch_weights(build, what="DISTS", urls=URLS)

    def pixels(self, original: Any, candidate: Any) -> tuple[Any, Any]:
        from torchvision.transforms.functional import to_tensor

        return to_tensor(original), to_tensor(at_original_size(original, candidate))

    def distances(self, originals: Any, candidates: Any) -> Any:
        return self.model(candidates, originals)
