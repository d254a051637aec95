"""``[[metrics]]`` in study.toml: parsing, defaults, ``[[similarity.models]]`` as clip, errors."""

from pathlib import Path

import pytest

from semcomp.config import EmbedderConfig, parse_config
from semcomp.errors import ConfigError
from semcomp.metrics.clip import ClipMetric
from semcomp.metrics.msssim import MsSsimMetric
from semcomp.metrics.psnr import PsnrMetric, PsnrParams
from semcomp.metrics.zeroshot import ZeroShotMetric


def study(tmp_path: Path, **extra) -> dict:
    data = {
        "images": {"source": str(tmp_path)},
        "methods": [{"name": "jpeg", "codec": "jpeg", "quality": [50]}],
    }
    return data | extra


def parse(tmp_path: Path, **extra):
    return parse_config(study(tmp_path, **extra), "study.toml", tmp_path)


def test_metrics_entries_with_their_class_params_device_and_batch_size(tmp_path):
    config = parse(
        tmp_path,
        similarity={"batch_size": 7, "device": "cpu", "models": [{"model": "tiny"}]},
        metrics=[
            {"metric": "psnr"},
            {"metric": "ms-ssim", "win_size": 3, "batch_size": 2},
            {"metric": "zero-shot", "model": "tiny", "templates": ["a {}."], "device": "cuda:1"},
        ],
    )
    entries = config.metric_entries
    assert [(e.metric, e.metric_class) for e in entries] == [
        ("clip", ClipMetric),
        ("psnr", PsnrMetric),
        ("ms-ssim", MsSsimMetric),
        ("zero-shot", ZeroShotMetric),
    ]
    assert [(e.device, e.batch_size) for e in entries] == [
        ("cpu", 7),
        ("cpu", 7),
        ("cpu", 2),
        ("cuda:1", 7),
    ]
    assert entries[1].validated == PsnrParams(resize="bicubic", max_db=100.0)
    assert entries[2].validated.win_size == 3 and entries[2].params["win_size"] == 3
    zero_shot = entries[3].validated
    assert zero_shot.templates == ("a {}.",)
    # "tiny" resolves inside the study folder, as for [[similarity.models]]
    assert zero_shot.clip.model == f"local-dir:{(tmp_path / 'models' / 'tiny-clip').resolve()}"
    assert entries[3].random_weights and not entries[1].random_weights
    assert [e.kind for e in entries] == ["embedding", "pairwise", "pairwise", "task"]


def test_similarity_models_are_clip_metrics_and_identical_entries_are_one(tmp_path):
    model = {"model": "ViT-B-32", "pretrained": "openai"}
    config = parse(
        tmp_path,
        similarity={"models": [model]},
        metrics=[{"metric": "clip", **model}, {"metric": "psnr"}],
    )
    assert [e.metric for e in config.metric_entries] == ["clip", "psnr"]
    assert config.clip_models == [EmbedderConfig(**model)]
    keys = [s.key for s in config.metric_entries[0].scores()]
    assert keys == ["clip_cos[ViT-B-32/openai]", "clip_(cos+1)/2[ViT-B-32/openai]"]


def test_a_clip_metric_name_is_its_label_and_a_second_clip_model_is_added(tmp_path):
    config = parse(
        tmp_path,
        similarity={"models": [{"model": "ViT-B-32", "pretrained": "openai"}]},
        metrics=[{"metric": "clip", "model": "ViT-B-16", "pretrained": "openai", "name": "b16"}],
    )
    assert [e.label for e in config.metric_entries] == ["ViT-B-32/openai", "b16"]
    assert [m.model for m in config.clip_models] == ["ViT-B-32", "ViT-B-16"]
    assert config.metric_entries[1].scores()[1].key == "clip_(cos+1)/2[b16]"


def test_metrics_without_similarity_models_add_no_default_clip(tmp_path):
    config = parse(tmp_path, metrics=[{"metric": "psnr"}])
    assert [e.metric for e in config.metric_entries] == ["psnr"] and config.clip_models == []
    default = parse(tmp_path)
    assert [e.metric for e in default.metric_entries] == ["clip"]
    assert default.clip_models[0].model == "ViT-L-14-336"


def test_unknown_metric_names_close_matches(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.metric: unknown metric 'psnrr'") as e:
        parse(tmp_path, metrics=[{"metric": "psnrr"}])
    assert "did you mean 'psnr'" in str(e.value)


def test_bad_metric_parameters_are_config_errors_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics\[0\]: wnd_size: unknown key"):
        parse(tmp_path, metrics=[{"metric": "ms-ssim", "wnd_size": 3}])
    with pytest.raises(ConfigError, match="win_size must be odd"):
        parse(tmp_path, metrics=[{"metric": "ms-ssim", "win_size": 4}])
    with pytest.raises(ConfigError, match="resize: Input should be 'bicubic'"):
        parse(tmp_path, metrics=[{"metric": "psnr", "resize": "area"}])
    with pytest.raises(ConfigError, match="needs exactly one"):
        parse(tmp_path, metrics=[{"metric": "zero-shot", "templates": ["a photo"]}])
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.batch_size"):
        parse(tmp_path, metrics=[{"metric": "psnr", "batch_size": 0}])


def test_two_entries_writing_one_score_need_a_name(tmp_path):
    with pytest.raises(ConfigError, match="both write the score 'psnr': give one of them a name"):
        parse(tmp_path, metrics=[{"metric": "psnr"}, {"metric": "psnr", "resize": "lanczos"}])
    config = parse(
        tmp_path,
        metrics=[{"metric": "psnr"}, {"metric": "psnr", "resize": "lanczos", "name": "lanczos"}],
    )
    specs = [e.scores()[0] for e in config.metric_entries]
    assert [(s.key, s.display) for s in specs] == [
        ("psnr", "PSNR"),
        ("psnr[lanczos]", "PSNR [lanczos]"),
    ]


def test_two_clip_models_with_one_label_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="two CLIP models are labelled 'x'"):
        parse(
            tmp_path,
            similarity={"models": [{"model": "ViT-B-32", "name": "x"}]},
            metrics=[{"metric": "clip", "model": "ViT-B-16", "name": "x"}],
        )


def test_score_specs_state_direction_range_and_resizing(tmp_path):
    config = parse(tmp_path, metrics=[{"metric": "psnr"}, {"metric": "ms-ssim"}])
    psnr, msssim = (e.scores()[0] for e in config.metric_entries)
    assert (psnr.higher_is_better, psnr.low, psnr.high, psnr.unit) == (True, 0.0, 100.0, "dB")
    assert psnr.axis_label == "PSNR (dB)"
    assert (msssim.low, msssim.high) == (0.0, 1.0)
    identity = config.metric_entries[1].identity()
    assert "resized to the original's size (Pillow, bicubic)" in identity["preprocess"]
    assert identity["win_size"] == 11 and identity["implementation"].startswith("pytorch-msssim")


def test_naming_metrics_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom pathlib import Path\nfrom semcomp.config import parse_config\n"
        "c = parse_config({'images': {'source': '.'}, 'methods': [{'name': 'j', 'codec': 'jpeg', "
        "'quality': [5]}], 'metrics': [{'metric': m} for m in ('psnr', 'ms-ssim', 'zero-shot')]}"
        ", 's', Path('.'))\n[e.scores() + [e.identity()] for e in c.metric_entries]\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
