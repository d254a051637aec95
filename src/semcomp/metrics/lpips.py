"""The ``lpips`` metric: Learned Perceptual Image Patch Similarity (Zhang et al., 2018).

Through the ``lpips`` package (version 0.1 of the metric): distances between
unit-normalised deep features of an ImageNet backbone (AlexNet or VGG16), weighted
by linear layers trained on human judgements and averaged over the image. The
linear layers ship inside the package; the backbone weights are torchvision's,
downloaded into torch's cache. The candidate is resized to the original's size.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, ClassVar, Literal

from semcomp.metrics.base import RESIZED_TO_ORIGINAL, ScoreSpec, at_original_size
from semcomp.metrics.learned import (
    LearnedPairwiseMetric,
    Weights,
    distance_score,
    missing_packages,
    seeded,
)
from semcomp.models import load_torch_weights, torch_weights_problem
from semcomp.params import PluginParams

#: torchvision's ImageNet weights of each backbone (``AlexNet_Weights.IMAGENET1K_V1.url``,
#: ``VGG16_Weights.IMAGENET1K_V1.url``), which ``lpips`` loads
BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
BACKBONE_NAMES = {"alex": "AlexNet", "vgg": "VGG16"}


class LpipsParams(PluginParams):
    #: the backbone: ``alex`` (what the LPIPS authors recommend as a metric) or ``vgg``
    net: Literal["alex", "vgg"] = "alex"
    #: ``random``: a random backbone (the linear layers stay the trained ones)
    weights: Weights = "pretrained"


class Lpips(LearnedPairwiseMetric):
    """LPIPS distance of each candidate to its original: 0 for identical images."""

    name = "lpips"
    Params: ClassVar[type[PluginParams]] = LpipsParams
    default_batch_size = 16

    @classmethod
    def scores(cls, params: LpipsParams) -> list[ScoreSpec]:
        random = params.weights == "random"
        backbone = BACKBONE_NAMES[params.net]
        return [
            distance_score(
                f"lpips[{params.net}{',random' if random else ''}]",
                f"LPIPS ({backbone}{', random weights' if random else ''})",
                f"LPIPS v0.1 with the {backbone} backbone: learned distance between deep "
                "features of the candidate and the original (0 = identical; about 0.1–0.7 "
                "for visibly different images)",
            )
        ]

    @classmethod
    def identity_of(cls, params: LpipsParams) -> dict[str, Any]:
        return {
            **super().identity_of(params),
            "version": "0.1",
            "backbone": f"torchvision {BACKBONE_NAMES[params.net]} IMAGENET1K_V1"
            if params.weights == "pretrained"
            else f"{BACKBONE_NAMES[params.net]}, random weights (seed 0)",
            "preprocess": f"{RESIZED_TO_ORIGINAL}; RGB scaled to [-1, 1]; no resize otherwise",
        }

    @classmethod
    def weights_problem(cls, params: LpipsParams, reachable: Any) -> str | None:
        problem = missing_packages(cls.name, "lpips")
        if params.weights == "random" or problem:
            return problem
        return torch_weights_problem(
            f"LPIPS ({BACKBONE_NAMES[params.net]})", [BACKBONE_URLS[params.net]]
        )

    def load(self) -> Any:
        import lpips

        net = self.params.net

        def build(random_backbone: bool) -> Any:
            # lpips prints where it loads from and asks torchvision with a deprecated flag
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return lpips.LPIPS(
                    net=net, pretrained=True, pnet_rand=random_backbone, verbose=False
                )

        if self.random_weights:
            with seeded():
                return build(True)
        return load_torch_weights(
            lambda: build(False),
            what=f"LPIPS ({BACKBONE_NAMES[net]})",
            urls=[BACKBONE_URLS[net]],
        )

    def pixels(self, original: Any, candidate: Any) -> tuple[Any, Any]:
        from torchvision.transforms.functional import to_tensor

        candidate = at_original_size(original, candidate)
        return to_tensor(original) * 2 - 1, to_tensor(candidate) * 2 - 1

    def distances(self, originals: Any, candidates: Any) -> Any:
        return self.model(originals, candidates, normalize=False)
