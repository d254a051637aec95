"""``ms-ssim``: multi-scale structural similarity (Wang et al. 2003) through pytorch-msssim.

Five scales with the standard weights, a Gaussian window of ``win_size`` (σ = 1.5),
RGB with data range 255 (the value is the mean over the three channels), as in
CompressAI's benchmarks. A candidate of another size is resized to the original's
first (``resize``). Four halvings need the shorter side over ``16 × (win_size − 1)``
pixels (160 at the default 11): a smaller image is a recorded failure that says so;
``win_size = 3`` scores images down to 33 pixels (not comparable with 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from semcomp.errors import ImageError
from semcomp.metrics.base import PairwiseMetric, ScoreSpec, resized_to
from semcomp.metrics.psnr import PIXEL_INPUT, resize_statement
from semcomp.models import batches_with_backoff, select_device
from semcomp.params import PluginParams

#: the four halvings between MS-SSIM's five scales
SCALES = 5


def min_side(win_size: int) -> int:
    """The shortest side MS-SSIM accepts at ``win_size`` (pytorch-msssim: over this)."""
    return (win_size - 1) * 2 ** (SCALES - 1) + 1


class MsSsimParams(PluginParams):
    resize: Literal["bicubic", "bilinear", "lanczos", "nearest"] = "bicubic"
    #: the Gaussian window's side (odd); 11 is the standard
    win_size: int = Field(default=11, ge=3)

    @field_validator("win_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"win_size must be odd, not {value}")
        return value


class MsSsimMetric(PairwiseMetric):
    name = "ms-ssim"
    Params = MsSsimParams
    scalable = False

    def __init__(
        self, params: MsSsimParams, *, device: str = "auto", batch_size: int | None = None
    ):
        super().__init__(params, device=device, batch_size=batch_size)
        self.torch_device = select_device(device)

    @classmethod
    def scores(cls, params: MsSsimParams) -> list[ScoreSpec]:  # type: ignore[override]
        return [
            ScoreSpec(
                key="ms-ssim",
                display="MS-SSIM",
                higher_is_better=True,
                low=0.0,
                high=1.0,
                description=(
                    f"multi-scale structural similarity ({SCALES} scales, window "
                    f"{params.win_size}; {PIXEL_INPUT}; {resize_statement(params.resize)})"
                ),
            )
        ]

    @classmethod
    def identity_of(cls, params: MsSsimParams) -> dict[str, Any]:  # type: ignore[override]
        from importlib.metadata import version

        return {
            **super().identity_of(params),
            "implementation": f"pytorch-msssim {version('pytorch-msssim')}",
            "input": PIXEL_INPUT,
            "preprocess": resize_statement(params.resize),
        }

    def compare(
        self, originals: Sequence[Any], candidates: Sequence[Any]
    ) -> list[dict[str, float] | Exception]:  # type: ignore[override]
        """The pairs of one size (after the candidate's resize) in one pytorch-msssim call
        each, in batches of ``batch_size`` halved on out-of-memory: each image's value is
        computed on its own in the batch, so it is the value of that pair alone."""
        import torch
        from pytorch_msssim import ms_ssim

        smallest = min_side(self.params.win_size)
        results: list[dict[str, float] | Exception | None] = [None] * len(originals)
        arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (original, candidate) in enumerate(zip(originals, candidates, strict=True)):
            width, height = original.size
            if min(width, height) < smallest:
                results[i] = ImageError(
                    f"MS-SSIM needs both sides of at least {smallest} px at win_size "
                    f"{self.params.win_size} ({SCALES} scales); this original is "
                    f"{width}×{height} (win_size = 3 takes images from {min_side(3)} px)"
                )
                continue
            candidate = resized_to(original, candidate, self.params.resize)
            arrays[i] = (np.asarray(original.convert("RGB")), np.asarray(candidate.convert("RGB")))
            groups.setdefault((height, width), []).append(i)

        def pixels(indices: Sequence[int], side: int) -> Any:
            stacked = np.stack([arrays[i][side] for i in indices]).astype(np.float32)
            return torch.from_numpy(stacked).permute(0, 3, 1, 2).to(self.torch_device)

        def run(indices: Sequence[int]) -> list[float]:
            with torch.inference_mode():
                values = ms_ssim(
                    pixels(indices, 0),
                    pixels(indices, 1),
                    data_range=255,
                    size_average=False,
                    win_size=self.params.win_size,
                )
            return values.reshape(-1).cpu().tolist()

        keep = partial(setattr, self, "batch_size")
        for indices in groups.values():
            for batch, values in batches_with_backoff(indices, self.batch_size, run, keep):
                for i, value in zip(batch, values, strict=True):
                    results[i] = {"ms-ssim": value}
        return results  # type: ignore[return-value]
