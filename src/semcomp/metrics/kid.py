"""The ``kid`` metric: Kernel Inception Distance (Bińkowski et al., 2018).

The unbiased squared MMD between a method's candidates and their originals with
the polynomial kernel k(x, y) = (γ xᵀy + c)^d on the same cached Inception-v3
features as FID (γ = 1/dim, c = 1, d = 3 by default), averaged over random
subsets of ``subset_size`` images of each set, as torchmetrics and torch-fidelity
compute it. Unlike FID it is unbiased, so it means something with fewer images
(hundreds rather than thousands); a value near 0 (it can be slightly negative) is
the same distribution.

Its interval is the spread of the subsets' values (2.5th–97.5th percentile). When
both sets have at most ``subset_size`` images every subset is the whole set: the
value is then the KID of all images and has no interval.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from semcomp.metrics.base import ScoreSpec
from semcomp.metrics.fid import (
    InceptionParams,
    InceptionSetMetric,
    percentile_interval,
    weights_display,
    weights_key,
)
from semcomp.params import PluginParams


class KidParams(InceptionParams):
    #: random subsets the value is averaged over
    subsets: int = 100
    #: images per subset (of each set; fewer when a set is smaller)
    subset_size: int = 1000
    #: the polynomial kernel's degree, γ (None: 1 / feature dimension) and constant
    degree: int = 3
    gamma: float | None = None
    coef: float = 1.0


def polynomial_mmd(x: np.ndarray, y: np.ndarray, degree: int, gamma: float | None, coef: float):
    """Unbiased MMD² of two equal-size feature sets with the polynomial kernel."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = len(x)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    same = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(same - 2 * k_xy.sum() / m**2)


class Kid(InceptionSetMetric):
    """KID between a method's candidates and their originals: about 0 for the same
    distribution."""

    name = "kid"
    Params: ClassVar[type[PluginParams]] = KidParams

    @classmethod
    def scores(cls, params: KidParams) -> list[ScoreSpec]:
        return [
            ScoreSpec(
                key=weights_key("kid", params.weights),
                display=weights_display("KID (Inception-v3)", params.weights),
                higher_is_better=False,
                description="Kernel Inception Distance (unbiased polynomial-kernel MMD²) "
                "between the candidates and their originals, averaged over subsets "
                "(about 0 = same feature distribution; can be slightly negative)",
            )
        ]

    @classmethod
    def compare_sets(
        cls,
        params: KidParams,
        originals: np.ndarray,
        candidates: np.ndarray,
        seed: int = 0,
        origin: np.ndarray | None = None,
    ) -> dict[str, tuple[float, float | None, float | None]]:
        key = cls.scores(params)[0].key
        size = min(params.subset_size, len(originals), len(candidates))
        if size < 2:
            raise ValueError("KID needs at least 2 images on each side")
        whole = size == len(originals) == len(candidates)
        rng = np.random.default_rng(seed)
        values = []
        for _ in range(1 if whole else params.subsets):
            x = originals[rng.permutation(len(originals))[:size]]
            y = candidates[rng.permutation(len(candidates))[:size]]
            values.append(polynomial_mmd(x, y, params.degree, params.gamma, params.coef))
        low, high = (None, None) if whole else percentile_interval(values)
        return {key: (float(np.mean(values)), low, high)}
