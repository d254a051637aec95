"""The suite's own scheduling: the longest test files are handed out first."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS = Path(__file__).parent


@pytest.fixture
def conftest(request):
    """tests/conftest.py as pytest loaded it: ``import conftest`` finds whichever of the
    suite's conftest modules (tests/app/, tests/surveys/, ...) was imported last."""
    module = request.config.pluginmanager.get_plugin(str(TESTS / "conftest.py"))
    assert module is not None
    return module


def test_the_longest_files_are_test_files_of_this_suite(conftest):
    for name in conftest.LONGEST_FILES:
        assert (TESTS / name).is_file(), name
    assert len(set(conftest.LONGEST_FILES)) == len(conftest.LONGEST_FILES)


def test_longest_files_first_then_slow_ones_then_the_rest_each_in_its_own_order(conftest):
    def item(name: str, test: str, slow: bool = False) -> SimpleNamespace:
        return SimpleNamespace(
            path=TESTS / name,
            name=test,
            get_closest_marker=lambda marker: object() if slow and marker == "slow" else None,
        )

    items = [
        item("test_config.py", "a"),
        item("test_one_writer.py", "b", slow=True),
        item("test_readme.py", "c"),
        item("test_config.py", "d"),
        item("test_engines.py", "e"),
        item("test_readme.py", "f", slow=True),
        item("test_one_writer.py", "g"),
    ]
    conftest.pytest_collection_modifyitems(items)
    assert [i.name for i in items] == ["e", "c", "f", "b", "g", "a", "d"]


def test_pytest_xdist_keeps_the_collection_order_of_the_files():
    """Without --no-loadscope-reorder, pytest-xdist hands out the files with the most tests
    first, and the longest files (one or two long tests each) would start last."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    pyproject = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    addopts = pyproject["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert "--dist" in addopts and addopts[addopts.index("--dist") + 1] == "loadfile"
    assert "--no-loadscope-reorder" in addopts


def test_a_run_lists_its_slowest_tests():
    """CI's log names the tests over 5 s, slowest first: what LONGEST_FILES is ordered by."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    pyproject = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    addopts = pyproject["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert "--durations=30" in addopts and "--durations-min=5" in addopts
