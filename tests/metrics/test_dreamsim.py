"""DreamSim: the package's own model (ensemble of three ViTs with LoRA) built offline from
tiny random backbones; the pretrained path names what is missing and how to fetch it."""

import numpy as np
import pytest
from PIL import ImageFilter

from helpers import photo
from semcomp.errors import ModelUnavailableError
from semcomp.metrics import METRICS
from semcomp.metrics.dreamsim import BACKBONES, DreamSim, DreamSimParams, required_files
from semcomp.metrics.learned import missing_packages


@pytest.fixture(scope="module")
def dreamsim():
    metric = DreamSim(DreamSimParams(weights="tiny"), device="cpu", batch_size=2)
    yield metric
    metric.close()


def test_registered_with_its_scores_and_identity():
    assert METRICS.get("dreamsim") is DreamSim
    [spec] = DreamSim.scores(DreamSimParams())
    assert (spec.key, spec.display, spec.higher_is_better, spec.low) == (
        "dreamsim",
        "DreamSim",
        False,
        0.0,
    )
    keys = {
        DreamSim.scores(DreamSimParams(variant=v, weights=w))[0].key
        for v in ("ensemble", "dino_vitb16")
        for w in ("pretrained", "random", "tiny")
    }
    assert keys == {
        "dreamsim",
        "dreamsim[random]",
        "dreamsim[tiny]",
        "dreamsim[dino_vitb16]",
        "dreamsim[dino_vitb16,random]",
        "dreamsim[dino_vitb16,tiny]",
    }
    identity = DreamSim.identity_of(DreamSimParams(weights_dir="/somewhere"))
    assert identity["backbones"] == "dino_vitb16,clip_vitb16,open_clip_vitb16"
    assert "224×224" in identity["preprocess"] and "weights_dir" not in identity


def test_identical_pair_is_zero_and_a_degraded_one_is_not(dreamsim):
    original = photo(96, 64, 1)
    other = photo(96, 64, 5).filter(ImageFilter.GaussianBlur(2))
    [same, different] = dreamsim.compare([original, original], [original, other])
    assert same["dreamsim[tiny]"] == pytest.approx(0, abs=1e-6)
    assert 1e-3 < different["dreamsim[tiny]"] <= 2
    identity = dreamsim.identity()
    assert identity["random_weights"] is True and identity["lora"]["r"] == 16


def test_batch_equals_one_by_one(dreamsim):
    originals = [photo(64, 48, s) for s in range(3)]
    candidates = [photo(64, 48, s + 3) for s in range(2)] + [photo(30, 20, 9)]
    batched = dreamsim.compare(originals, candidates)
    single = [dreamsim.compare([o], [c])[0] for o, c in zip(originals, candidates, strict=True)]
    assert np.allclose(
        [b["dreamsim[tiny]"] for b in batched], [s["dreamsim[tiny]"] for s in single], atol=1e-5
    )


def test_building_leaves_torch_hub_where_it_was(dreamsim):
    import torch

    before = torch.hub.get_dir()
    DreamSim(DreamSimParams(variant="clip_vitb32", weights="tiny"), device="cpu").close()
    assert torch.hub.get_dir() == before


def test_missing_weights_name_the_files_and_the_fetch_command(tmp_path):
    params = DreamSimParams(weights_dir=tmp_path)
    problem = DreamSim.weights_problem(params, None)
    assert problem is not None and "\n" not in problem
    assert f"weights not in {tmp_path}" in problem
    assert "from dreamsim import dreamsim; dreamsim(pretrained=True" in problem
    assert f"cache_dir='{tmp_path}'" in problem
    with pytest.raises(ModelUnavailableError, match="weights not in"):
        DreamSim(params, device="cpu")
    for name in required_files("ensemble"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert DreamSim.weights_problem(params, None) is None
    assert DreamSim.weights_problem(DreamSimParams(weights="random"), None) is None


def test_backbones_are_the_packages_and_a_missing_package_is_named():
    from dreamsim.config import dreamsim_args

    for variant, backbones in BACKBONES.items():
        assert dreamsim_args["model_config"][variant]["model_type"] == backbones
    assert missing_packages("dreamsim", "dreamsim", "peft") is None
    problem = missing_packages("dreamsim", "dreamsim", "no_such_package_here")
    assert problem == (
        "metric 'dreamsim' needs the package(s) no_such_package_here: "
        "pip install 'semcomp[metrics]'"
    )
