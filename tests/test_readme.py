"""The README's commands work as written (and CI runs the same test command)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import app_answers, command_outputs, semcomp_in_one_process, serving_app
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
    """`semcomp demo`, then every command of the README's tour on the demo study: the demo
    and the commands that need no process of their own run in one Python process
    (:func:`~helpers.semcomp_in_one_process`: each process's imports cost seconds); the app
    is served, and the demo study run again, each in a process of its own."""
    demo_dir = tmp_path / "semcomp-demo"
    commands = [["demo", "--dir", str(demo_dir), "--no-progress"]]
    tour = [line.split("#")[0].split() for line in bash_blocks()[2].splitlines()]
    serve = False
    for words in tour:
        command = words[1]
        if command in {"status", "report"}:
            commands.append([command, str(demo_dir), *words[3:]])
        elif command == "init":
            commands.append(
                ["init", str(tmp_path / "my-study"), "--images", str(demo_dir / "images")]
            )
        elif command == "run":
            continue  # run below, on the finished demo study
        elif command == "app":  # serves the demo study on localhost until stopped
            serve = True
        elif command == "models":
            commands.append(words[1:])
        else:
            pytest.fail(f"README tour has an untested command: {words}")
    done = subprocess.run(
        semcomp_in_one_process(commands),
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )
    outputs, rest = command_outputs(done.stdout)
    assert len(outputs) == len(commands) and not rest, done.stderr
    # its time is measured in the README (and benchmarks), not asserted here
    demo, status = outputs[0]
    assert status == 0, done.stderr
    assert "not available offline" in demo
    assert "random weights — numbers are not meaningful" in demo
    assert (demo_dir / "report" / "rd.png").exists()
    assert "0 failed" in demo and "failure" not in demo
    # PSNR beside CLIP, each with its figure
    figures = {path.name for path in (demo_dir / "report" / "rd").glob("*.png")}
    keys = ("clip_(cos+1)/2[tiny-clip-random]", "psnr")
    assert {f"{file_stem(key)}.png" for key in keys} <= figures, figures

    errors = done.stderr.splitlines()
    for command, (_, status) in zip(commands[1:], outputs[1:], strict=True):
        if command[0] == "models":  # offline: each says the hub is unreachable, exit 3
            model = command[3]
            assert status == 3, (command, done.stderr)
            assert any(model in line and "hub is unreachable" in line for line in errors)
        else:
            assert status == 0, (command, done.stderr)
    assert (tmp_path / "my-study" / "study.toml").exists()
    assert serve
    with serving_app(demo_dir, tmp_path / "app.log") as (url, _):
        assert app_answers(url)
    # re-running the finished demo (a fresh process: nothing loaded yet) loads no model
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
