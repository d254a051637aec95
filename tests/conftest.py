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
