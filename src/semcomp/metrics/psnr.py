"""``psnr``: peak signal-to-noise ratio of the candidate against its original, in dB.

RGB, 8 bits per channel (data range 255), mean squared error over every pixel and
channel (CompressAI's convention). A candidate of another size is resized to the
original's first, with the filter its ``resize`` parameter names (in its identity).
Identical images have an infinite PSNR: it is capped at ``max_db``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from semcomp.metrics.base import PairwiseMetric, ScoreSpec, resized_to
from semcomp.params import PluginParams

#: what every pixel metric states about its input in its identity
PIXEL_INPUT = "RGB, 8 bits per channel (data range 255)"


def resize_statement(resize: str) -> str:
    return f"candidate resized to the original's size (Pillow, {resize}) when they differ"


def psnr(original: np.ndarray, candidate: np.ndarray, max_db: float = math.inf) -> float:
    """PSNR in dB of two uint8 arrays of one shape (data range 255), at most ``max_db``."""
    error = np.mean((original.astype(np.float64) - candidate.astype(np.float64)) ** 2)
    if error == 0:
        return max_db
    return min(max_db, 10.0 * math.log10(255.0**2 / error))


class PsnrParams(PluginParams):
    #: how a candidate of another size meets the original's
    resize: Literal["bicubic", "bilinear", "lanczos", "nearest"] = "bicubic"
    #: the value of identical images (whose PSNR is infinite)
    max_db: float = Field(default=100.0, gt=0)


class PsnrMetric(PairwiseMetric):
    extra = None
    name = "psnr"
    Params = PsnrParams
    #: arithmetic on pixels: no model to spread over a cluster
    scalable = False

    @classmethod
    def scores(cls, params: PsnrParams) -> list[ScoreSpec]:  # type: ignore[override]
        return [
            ScoreSpec(
                key="psnr",
                display="PSNR",
                higher_is_better=True,
                low=0.0,
                high=params.max_db,
                unit="dB",
                description=(
                    "peak signal-to-noise ratio of the candidate against its original "
                    f"({PIXEL_INPUT}; {resize_statement(params.resize)}; identical images "
                    f"give {params.max_db:g} dB)"
                ),
            )
        ]

    @classmethod
    def identity_of(cls, params: PsnrParams) -> dict[str, Any]:  # type: ignore[override]
        return {
            **super().identity_of(params),
            "input": PIXEL_INPUT,
            "preprocess": resize_statement(params.resize),
        }

    def compare(
        self, originals: Sequence[Any], candidates: Sequence[Any]
    ) -> list[dict[str, float]]:
        return [
            {
                "psnr": psnr(
                    np.asarray(original.convert("RGB")),
                    np.asarray(resized_to(original, candidate, self.params.resize).convert("RGB")),
                    self.params.max_db,
                )
            }
            for original, candidate in zip(originals, candidates, strict=True)
        ]
