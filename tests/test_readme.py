"""The README's commands work as written (and CI runs the same test command)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import app_answers, serving_app
from semcomp.analysis.scores import file_stem

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def setup_commands() -> tuple[str, str]:
    main_job, tests = (block.strip() for block in bash_blocks()[:2])
    return main_job, tests


def test_two_setup_commands_install_then_run():
    main_job, tests = setup_commands()
    assert "pip install" in main_job and main_job.endswith("semcomp demo")
    assert "pip install" in tests and tests.endswith("pytest")


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_study_file_example_is_valid(tmp_path: Path):
    from semcomp.config import parse_config

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    example = re.findall(r"```toml\n(.*?)```", README, flags=re.S)[0]  # the tour's study.toml
    (tmp_path / "paper").mkdir()  # the user's files the example names
    (tmp_path / "paper" / "gpt4_captions.csv").write_text("image,caption\nObject 3,a red apple\n")
    config = parse_config(tomllib.loads(example), "README.md", tmp_path)
    kinds = [method.kind for method in config.methods]
    assert kinds == ["pixel", "pixel", "pixel", "textual", "textual", "external"]
    assert config.methods[2].operating_point_labels() == ["quality=1", "quality=11"]
    assert config.methods[4].operating_point_labels() == [
        "max_words=8",
        "max_words=16",
        "max_words=32",
    ]


def test_every_pattern_placeholder_is_documented():
    from semcomp.methods import ANY_IMAGE_EXTENSION, PATTERN_FIELDS

    for field in PATTERN_FIELDS:
        assert f"`{{{field}}}`" in README, field
    assert f"trailing `{ANY_IMAGE_EXTENSION}`" in README


def semcomp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "semcomp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.slow
def test_demo_then_tour_commands(tmp_path: Path):
    demo_dir = tmp_path / "semcomp-demo"
    # its time is measured in the README (and benchmarks), not asserted here
    demo = semcomp("demo", "--dir", str(demo_dir), "--no-progress")
    assert demo.returncode == 0, demo.stderr
    assert "not available offline" in demo.stdout
    assert "random weights — numbers are not meaningful" in demo.stdout
    assert (demo_dir / "report" / "rd.png").exists()
    assert "0 failed" in demo.stdout and "failure" not in demo.stdout
    # PSNR beside CLIP, each with its figure
    figures = {path.name for path in (demo_dir / "report" / "rd").glob("*.png")}
    keys = ("clip_(cos+1)/2[tiny-clip-random]", "psnr")
    assert {f"{file_stem(key)}.png" for key in keys} <= figures, figures

    tour = [line.split("#")[0].split() for line in bash_blocks()[2].splitlines()]
    for words in tour:
        command = words[1]
        if command in {"status", "report"}:
            result = semcomp(command, str(demo_dir), *words[3:])
            assert result.returncode == 0, result.stderr
        elif command == "init":
            images = demo_dir / "images"
            result = semcomp("init", str(tmp_path / "my-study"), "--images", str(images))
            assert result.returncode == 0, result.stderr
        elif command == "run":
            continue  # run below, on the finished demo study
        elif command == "app":  # serves the demo study on localhost until stopped
            with serving_app(demo_dir, tmp_path / "app.log") as (url, _):
                assert app_answers(url)
        elif command == "models":
            result = semcomp(*words[1:], timeout=60)
            assert result.returncode == 3 and "hub is unreachable" in result.stderr
        else:
            pytest.fail(f"README tour has an untested command: {words}")
    # re-running the finished demo loads no model
    again = semcomp("run", str(demo_dir), "--no-progress")
    assert again.returncode == 0 and "loaded" not in again.stdout


def test_pqvae_commands_in_the_readme_exist():
    """The PQVAE block's commands run for real in test_pqvae_cli.py; here: names and options."""
    block = bash_blocks()[3]
    for line in block.strip().splitlines():
        words = line.split("#")[0].split()
        assert words[0] == "semcomp"
        result = semcomp(words[1], words[2], "--help", timeout=60)
        assert result.returncode == 0, result.stderr
        for option in (w for w in words if w.startswith("--")):
            assert option in result.stdout, (option, line)
