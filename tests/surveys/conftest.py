"""A private copy of the session's JPEG-only study for every survey test (they write ratings)."""

import shutil
from pathlib import Path

import pytest

from semcomp.store import Store


@pytest.fixture
def study(jpeg_study: Path, tmp_path: Path) -> Path:
    """A private copy of the built study (tests write ratings into it)."""
    target = tmp_path / "study"
    shutil.copytree(jpeg_study, target)
    return target


@pytest.fixture
def store(study: Path):
    with Store(study) as opened:
        yield opened
