"""A small study with candidates (JPEG at two qualities of four photos), built once."""

import shutil
from pathlib import Path

import pytest

from helpers import photo, write_study
from semcomp.store import Store
from semcomp.study import Study


@pytest.fixture(scope="session")
def built_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("survey-study")
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
def study(built_study: Path, tmp_path: Path) -> Path:
    """A private copy of the built study (tests write ratings into it)."""
    target = tmp_path / "study"
    shutil.copytree(built_study, target)
    return target


@pytest.fixture
def store(study: Path):
    with Store(study) as opened:
        yield opened
