"""`model = "tiny"` runs the demo's tiny random-weight models on purpose; without it, a run
checks every model its pending stages need before any stage starts."""

import shutil
import time
from pathlib import Path

import pytest

from helpers import photo, write_study
from semcomp.cli import main
from semcomp.errors import ModelUnavailableError
from semcomp.study import Study

CAPTIONS = "image,caption\nimg1,a red apple on a table\nimg3,a blue ball on the grass\n"


def small_images(folder: Path) -> Path:
    for category, seed in (("landscape", 1), ("single_object", 3)):
        (folder / category).mkdir(parents=True, exist_ok=True)
        photo(64, 48, seed).save(folder / category / f"img{seed}.png")
    return folder


def real_models_study(root: Path) -> Path:
    """A study that names real models, none of them cached here (the hub is offline)."""
    images = small_images(root / "images")
    (root / "captions.csv").write_text(CAPTIONS)
    root.joinpath("study.toml").write_text(
        'name = "real"\n[images]\nsource = "images"\n\n'
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n\n'
        '[[methods]]\nname = "blip"\ncaptioner = "blip"\n'
        'captioner_params = { model = "Salesforce/blip-image-captioning-base" }\n'
        'reconstructor_params = { model = "stabilityai/sd-turbo" }\n\n'
        '[[methods]]\nname = "human"\ncaptioner = "human"\n'
        'captioner_params = { csv = "captions.csv" }\n'
        'reconstructor_params = { model = "stabilityai/sd-turbo", steps = 2 }\n\n'
        "[[similarity.models]]\nmodel = 'ViT-L-14-336'\npretrained = 'openai'\n\n"
        "[[similarity.models]]\nmodel = 'local-dir:models/my-clip'\n"
    )
    assert images.exists()
    return root


def test_missing_models_are_all_named_before_any_stage_runs(tmp_path):
    root = real_models_study(tmp_path / "study")
    with Study.open(root) as study:
        started = time.perf_counter()
        with pytest.raises(ModelUnavailableError) as raised:
            study.run(progress=False)
        elapsed = time.perf_counter() - started
        assert study.store.count("runs") == 0 and study.store.count("originals") == 0
    message = str(raised.value)
    assert elapsed < 2.0, elapsed
    assert message.startswith("4 model(s) this run needs cannot be loaded")
    assert "'Salesforce/blip-image-captioning-base'" in message
    assert "semcomp models fetch --hf stabilityai/sd-turbo" in message
    assert message.count("sd-turbo'") == 1  # one line per model, whichever methods use it
    assert "CLIP model 'ViT-L-14-336/openai'" in message and "--clip ViT-L-14-336" in message
    assert f"no open_clip model in {root / 'models' / 'my-clip'}" in message
    assert "(needed by method 'blip')" in message and "(needed by similarity)" in message


def test_missing_models_cli_is_one_error_and_exit_3(tmp_path, capsys):
    root = real_models_study(tmp_path / "study")
    with pytest.raises(SystemExit) as raised:
        main(["run", str(root), "--no-progress"])
    assert raised.value.code == 3
    captured = capsys.readouterr()
    assert captured.err.startswith("error: 4 model(s) this run needs cannot be loaded")
    assert "Traceback" not in captured.err and "encode" not in captured.out


def test_only_the_selected_stages_models_are_checked(tmp_path):
    root = real_models_study(tmp_path / "study")
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode", "decode"])
        assert summary.status == "finished" and study.store.count("candidates") == 2
        with pytest.raises(ModelUnavailableError, match=r"^2 model\(s\)") as raised:
            study.run(progress=False, stages=["embed"])
        assert "sd-turbo" not in str(raised.value)


def test_a_finished_study_needs_no_model_to_be_there(tmp_path, image_folder, tiny_clip):
    clip = tmp_path / "clip-copy"
    shutil.copytree(tiny_clip.removeprefix("local-dir:"), clip)
    root = write_study(tmp_path / "s", image_folder, f"local-dir:{clip}")
    with Study.open(root) as study:
        assert study.run(progress=False).status == "finished"
    shutil.rmtree(clip)
    with Study.open(root) as study:
        assert study.models_needed(["embed"]) == []
        summary = study.run(progress=False)
    assert summary.status == "finished" and summary.models_loaded == []
    photo(64, 48, 7).save(image_folder / "landscape" / "new.png")  # new work needs the model
    with Study.open(root) as study, pytest.raises(ModelUnavailableError, match="clip-copy"):
        study.run(progress=False)


def test_tiny_models_run_as_in_the_demo_and_are_marked_random_weights(tmp_path, capsys):
    from semcomp.report import write_report

    root = tmp_path / "study"
    small_images(root / "images")
    (root / "captions.csv").write_text(CAPTIONS)
    root.joinpath("study.toml").write_text(
        'name = "tiny"\n[images]\nsource = "images"\n\n'
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n\n'
        '[[methods]]\nname = "blip"\ncaptioner = "blip"\ncaptioner_params = { model = "tiny" }\n'
        'reconstructor_params = { model = "tiny", steps = 2, width = 64, height = 64 }\n\n'
        "[[similarity.models]]\nmodel = 'tiny'\n"
    )
    with Study.open(root) as study:
        assert study.random_weights
        assert all(m.random_weights for m in study.config.methods if m.name == "blip")
        assert study.config.similarity.models[0].label == "tiny-clip-random"  # the demo's
        # stages that need no model build none
        study.run(progress=False, stages=["ingest", "encode", "decode"])
        assert not (root / "models").exists()
        summary = study.run(progress=False)
        assert summary.status == "finished" and not summary.failures
        for folder in ("tiny-clip", "tiny-blip", "tiny-sd"):  # where the demo keeps them
            assert (root / "models" / folder).is_dir()
        assert {"blip", "diffusers", "tiny-clip-random"} <= set(summary.models_loaded)
        store = study.store
        assert store.count("scores") == 2 * 2 * 2  # (jpeg + blip) × 2 images × 2 metrics
        assert store.frame("SELECT random_weights FROM embedders").random_weights.tolist() == [1]
        assert store.get_info("random_weights") is True
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    assert "random weights" in (files.folder / "README.txt").read_text()
    with pytest.raises(SystemExit):
        main(["status", str(root)])
    assert "random-weight similarity model" in capsys.readouterr().out
