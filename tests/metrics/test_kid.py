"""KID from cached features: the unbiased polynomial MMD², checked against torchmetrics."""

import numpy as np
import pytest
import torch

from semcomp.metrics import METRICS
from semcomp.metrics.kid import Kid, KidParams, polynomial_mmd


class PassThrough(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x


def features(seed: int, n: int = 40, dim: int = 16, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=(n, dim))


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_whole_set_kid_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.kid import KernelInceptionDistance

    x, y = features(1), features(2, shift=0.4)
    metric = KernelInceptionDistance(feature=PassThrough(16), subsets=1, subset_size=40)
    metric.update(torch.from_numpy(x), real=True)
    metric.update(torch.from_numpy(y), real=False)
    theirs, _ = metric.compute()
    params = KidParams(subset_size=40)
    assert Kid.compare_sets(params, x, y) == {
        "kid": (pytest.approx(float(theirs), rel=1e-6), None, None)
    }
    assert polynomial_mmd(x, y, 3, None, 1.0) == pytest.approx(float(theirs), rel=1e-6)


def test_subsets_give_a_spread_and_the_same_distribution_is_near_zero():
    x, y = features(1, n=120), features(2, n=120, shift=0.5)
    params = KidParams(subsets=30, subset_size=40)
    [(value, low, high)] = Kid.compare_sets(params, x, y, seed=3).values()
    assert low < value < high
    [(same, _, _)] = Kid.compare_sets(params, x, features(5, n=120), seed=3).values()
    assert abs(same) < value / 5
    assert Kid.compare_sets(params, x, y, seed=3) == {"kid": (value, low, high)}


def test_scores_and_too_few_images():
    assert METRICS.get("kid") is Kid
    [spec] = Kid.scores(KidParams(weights="tiny"))
    assert (spec.key, spec.higher_is_better, spec.low) == ("kid[tiny]", False, None)
    with pytest.raises(ValueError, match="at least 2"):
        Kid.compare_sets(KidParams(), features(1, n=1), features(2, n=5))
