"""Shared fixtures: offline mode, CPU only, a tiny random-weight CLIP, study builders."""

import os

# Read at import time by huggingface_hub: set before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["DIFFUSERS_VERBOSITY"] = "error"
os.environ["CUDA_VISIBLE_DEVICES"] = ""

from pathlib import Path

import pytest

from helpers import photo
from semcomp.tiny_models import write_tiny_open_clip


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``local-dir:`` id of a tiny random-weight CLIP, built once per session."""
    return write_tiny_open_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Four photos in two category folders."""
    root = tmp_path / "images"
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (root / category).mkdir(parents=True)
        for seed in seeds:
            photo(160, 120, seed).save(root / category / f"img{seed}.png")
    return root


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_blip

    return write_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_blip2

    return write_tiny_blip2(tmp_path_factory.mktemp("models") / "tiny-blip2")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_stable_diffusion

    return write_tiny_stable_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def jpeg_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study with candidates (JPEG at two qualities of four photos), built once.

    Not scored (no CLIP model is loaded); tests that write to it copy it first.
    """
    from helpers import write_study
    from semcomp.study import Study

    base = tmp_path_factory.mktemp("jpeg-study")
    images = base / "images"
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (images / category).mkdir(parents=True)
        for seed in seeds:
            photo(96, 64, seed).save(images / category / f"img{seed}.png")
    root = write_study(base / "study", images, "unused-clip-model")
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode", "decode"])
    assert summary.status == "finished" and not summary.failures
    return root


@pytest.fixture
def fake_openai():
    """An OpenAI-compatible server on 127.0.0.1 (see fake_openai.py)."""
    from fake_openai import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server


#: the demo made small for the session's end-to-end study: one scene per category, four
#: JPEG and three WebP operating points, a PQVAE-shared trained for two epochs on 18
#: drawn scenes (evaluated on 6)
SMALL_DEMO_PIXEL_METHODS = """
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]
quality = [15, 50]

[[methods]]
name = "webp"
codec = "webp"
reduction = [0.9]
quality = [15, 50]
"""


@pytest.fixture(scope="session")
def all_methods_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study with every kind of method and human ratings, built once per session.

    The demo study made small (:data:`SMALL_DEMO_PIXEL_METHODS`: JPEG and WebP, human
    captions and BLIP through a tiny Stable Diffusion, a tiny PQVAE-shared; three
    originals) plus imported external reconstructions with captions for two of them,
    and human score rows for every image candidate.
    """
    from helpers import add_human_scores
    from semcomp.demo import SCENE_CAPTIONS, DemoSize, prepare_demo
    from semcomp.study import Study

    root = tmp_path_factory.mktemp("all-methods") / "study"
    size = DemoSize(
        per_category=1, pixel_methods=SMALL_DEMO_PIXEL_METHODS, pqvae_scenes=8, pqvae_epochs=2
    )
    prepare_demo(root, say=lambda _: None, size=size)
    external = root / "external"
    external.mkdir()
    names = sorted(p.stem for p in (root / "images").rglob("*.png"))[:2]
    for seed, name in enumerate(names):
        photo(96, 72, seed).save(external / f"{name}_gr.png")
    lines = [f"{name},{SCENE_CAPTIONS[name][:40]}" for name in names]
    (root / "external.csv").write_text("image,caption\n" + "\n".join(lines) + "\n")
    with (root / "study.toml").open("a") as handle:
        handle.write(
            '\n[[methods]]\nname = "external-gr"\nfolder = "external"\n'
            'pattern = "{name}_gr.png"\ncaptions = "external.csv"\n'
        )
    with Study.open(root) as study:
        study.run(progress=False)
    add_human_scores(root)
    return root


@pytest.fixture(scope="session")
def metric_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEG and WebP sweeps with PSNR, LPIPS, CLIP, FID (a set metric) and Survey A rows
    written straight into the store (see metric_store.py); read-only for tests."""
    from metric_store import write_metric_study

    return write_metric_study(tmp_path_factory.mktemp("metric-study"))
