"""FID: Inception-v3 features (torchmetrics' network, random weights offline) and the distance
from cached features, checked against torchmetrics' own computation on the same features."""

import numpy as np
import pytest
import torch

from helpers import photo
from semcomp.errors import ModelUnavailableError
from semcomp.metrics import METRICS
from semcomp.metrics.fid import (
    INCEPTION_URL,
    Fid,
    FidParams,
    frechet_distance,
    resample,
)
from semcomp.metrics.kid import Kid, KidParams


class PassThrough(torch.nn.Module):
    """A "feature extractor" for torchmetrics that hands it the features we already have."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x


def torchmetrics_fid(x: np.ndarray, y: np.ndarray) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=PassThrough(x.shape[1]))
    metric.update(torch.from_numpy(x), real=True)
    metric.update(torch.from_numpy(y), real=False)
    return float(metric.compute())


@pytest.fixture(scope="module")
def inception():
    metric = Fid(FidParams(weights="tiny"), device="cpu", batch_size=4)
    yield metric
    metric.close()


@pytest.mark.parametrize(("n", "dim"), [(30, 64), (200, 16)])
def test_distance_matches_torchmetrics_on_the_same_features(n, dim):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, dim))
    y = rng.normal(loc=0.3, scale=1.2, size=(n + 7, dim)) @ rng.normal(size=(dim, dim)) / 4
    ours = frechet_distance(x, y)
    assert ours == pytest.approx(torchmetrics_fid(x, y), rel=1e-6, abs=1e-8)
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9)
    shift = np.full(dim, 0.5)
    assert frechet_distance(x, x + shift) == pytest.approx(np.sum(shift**2), rel=1e-9)


def test_bootstrap_interval_resamples_originals_with_their_candidates():
    rng = np.random.default_rng(0)
    originals = rng.normal(size=(40, 8))
    candidates = np.repeat(originals, 2, axis=0) + rng.normal(scale=0.3, size=(80, 8))
    origin = np.repeat(np.arange(40), 2)
    picked, rows = resample(40, 80, origin, np.random.default_rng(1))
    assert len(picked) == 40 and len(rows) == 80
    assert sorted(origin[rows].tolist()) == sorted(np.repeat(picked, 2).tolist())
    params = FidParams(weights="tiny", bootstrap=30)
    [(value, low, high)] = Fid.compare_sets(params, originals, candidates, 0, origin).values()
    assert value == pytest.approx(frechet_distance(originals, candidates))
    assert low < high and low <= value * 1.5
    again = Fid.compare_sets(params, originals, candidates, 0, origin)
    assert again == {"fid[tiny]": (value, low, high)}  # the same seed, the same interval
    no_ci = Fid.compare_sets(FidParams(bootstrap=0), originals, candidates, 0, origin)
    assert no_ci == {"fid": (pytest.approx(value), None, None)}


def test_scores_identity_and_shared_features():
    assert METRICS.get("fid") is Fid
    [spec] = Fid.scores(FidParams())
    assert (spec.key, spec.display, spec.higher_is_better, spec.low) == (
        "fid",
        "FID (Inception-v3)",
        False,
        0.0,
    )
    assert Fid.scores(FidParams(weights="random"))[0].key == "fid[random]"
    # FID and KID on one Inception share its cached features; other weights do not
    assert Fid.features_id(FidParams()) == Kid.features_id(KidParams(subsets=3))
    assert Fid.features_id(FidParams()) != Fid.features_id(FidParams(weights="tiny"))
    identity = Fid.feature_identity(FidParams())
    assert identity["weights"] == "weights-inception-2015-12-05-6726825d.pth"
    assert identity["preprocess"]["size"] == 299
    assert Fid.feature_identity(FidParams(weights="tiny"))["preprocess"]["size"] == 75


def test_features_batch_equals_one_by_one_and_a_degraded_set_is_further(inception):
    images = [photo(64, 48, s) for s in range(4)] + [photo(40, 40, 7)]
    batched = inception.features(images)
    single = np.concatenate([inception.features([image]) for image in images])
    assert batched.shape == (5, 2048) and batched.dtype == np.float32
    assert np.allclose(batched, single, atol=1e-5)
    assert np.abs(batched).sum() > 0 and not np.allclose(batched[0], batched[1])
    darker = inception.features([image.point(lambda v: v // 3) for image in images])
    [(same, _, _)] = Fid.compare_sets(inception.params, batched, batched).values()
    [(degraded, _, _)] = Fid.compare_sets(inception.params, batched, darker).values()
    assert same == pytest.approx(0, abs=1e-9) and degraded > 1e-4
    assert inception.identity()["random_weights"] is True


def test_random_inception_at_full_size_builds_from_torchmetrics_class():
    from torchmetrics.image.fid import NoTrainInceptionV3

    metric = Fid(FidParams(weights="random"), device="cpu")
    try:
        assert isinstance(metric.model, NoTrainInceptionV3)
        assert metric.model.INPUT_IMAGE_SIZE == 299
        assert metric.features([photo(32, 32, 1)]).shape == (1, 2048)
    finally:
        metric.close()


def test_missing_inception_weights_give_one_line_with_the_fetch_command(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    assert fidelity.URL_INCEPTION_V3 == INCEPTION_URL
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as raised:
        Fid(FidParams(), device="cpu")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("FID Inception-v3: ")
    assert f"curl -L --create-dirs -o {tmp_path}/hub/checkpoints/" in message
    assert INCEPTION_URL in message
    assert Kid.weights_problem(KidParams(), None) == message
    assert Fid.weights_problem(FidParams(weights="tiny"), None) is None
