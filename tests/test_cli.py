"""The command line: thin, light to import, one-line errors."""

import subprocess
import sys

import pytest

from helpers import write_study
from semcomp.cli import main


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom semcomp.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'open_clip', 'pandas', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "demo" in out.stdout and "report" in out.stdout


@pytest.mark.parametrize("argv", [["--version"], ["-V"]])
def test_version(argv, capsys):
    from semcomp import __version__

    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 0
    assert capsys.readouterr().out == f"semcomp {__version__}\n"


def test_plain_semcomp_and_dash_h_print_help(capsys):
    for argv in ([], ["-h"], ["status", "-h"]):
        with pytest.raises(SystemExit) as raised:
            main(argv)
        assert raised.value.code == 0, argv
        assert "Usage: semcomp" in capsys.readouterr().out, argv


def test_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["run", str(tmp_path / "nowhere")])
    assert raised.value.code == 2  # no study there: a wrong argument
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "semcomp init" in err and "Traceback" not in err


def test_init_run_status_report(tmp_path, image_folder, tiny_clip, capsys):
    study = tmp_path / "study"
    with pytest.raises(SystemExit) as raised:
        main(["init", str(study), "--images", str(image_folder)])
    assert raised.value.code == 0
    text = (study / "study.toml").read_text()
    assert 'codec = "jpeg"' in text and "reduction = [0.8, 0.9]" in text
    # run with the tiny CLIP instead of the default (no network here)
    (study / "study.toml").unlink()
    write_study(study, image_folder, tiny_clip)
    for command in (["run", str(study), "--no-progress"], ["status", str(study)]):
        with pytest.raises(SystemExit) as raised:
            main(command)
        assert raised.value.code == 0
    out = capsys.readouterr().out
    assert "run 1: finished" in out and "represent: jpeg" in out
    with pytest.raises(SystemExit) as raised:
        main(["report", str(study), "--rate", "bytes"])
    assert raised.value.code == 0
    assert (study / "report" / "rd.pdf").exists()


def test_init_refuses_to_overwrite(tmp_path, image_folder, capsys):
    for expected in (0, 2):
        with pytest.raises(SystemExit) as raised:
            main(["init", str(tmp_path / "s"), "--images", str(image_folder)])
        assert raised.value.code == expected
    assert "already exists" in capsys.readouterr().err


def test_status_json_for_scripts(tmp_path, image_folder, tiny_clip, capsys):
    import json

    (image_folder / "landscape" / "broken.png").write_bytes(b"not a png")
    study = write_study(tmp_path / "study", image_folder, tiny_clip)
    with pytest.raises(SystemExit) as raised:
        main(["run", str(study), "--no-progress", "--stage", "ingest"])
    assert raised.value.code == 1  # finished, with a failure
    capsys.readouterr()
    with pytest.raises(SystemExit) as raised:
        main(["status", str(study), "--json"])
    assert raised.value.code == 0
    document = json.loads(capsys.readouterr().out)
    ingest = next(s for s in document["stages"] if s["what"].startswith("ingest"))
    assert ingest["done"] == 4 and ingest["failed"] == 1
    (failure,) = document["failures"]
    assert failure["stage"] == "ingest" and "broken.png" in failure["item"]
    assert document["random_weights"] is True and document["unfinished_runs"] == []  # tiny CLIP


def command_paths(command=None, path=()):
    """Every command and group of the CLI, as the words that name it."""
    import typer

    from semcomp.cli import app

    command = command or typer.main.get_command(app)
    yield list(path)
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_help_names_values_as_users_type_them(capsys):
    import re

    paths = list(command_paths())
    assert ["ratings", "summary"] in paths and ["plugins"] in paths
    for path in paths:
        with pytest.raises(SystemExit) as raised:
            main([*path, "--help"])
        assert raised.value.code == 0, path
        out = capsys.readouterr().out
        placeholders = re.findall(r"<[a-z][a-zA-Z_\[\]]*>|\{[a-z_]+\}", out)
        assert not placeholders, (path, placeholders)
    main_help = subprocess.run(
        [sys.executable, "-m", "semcomp", "run", "-h"], capture_output=True, text=True
    ).stdout
    assert main_help.startswith("Usage: semcomp run [OPTIONS] STUDY\n")
    assert "--stage STAGE" in main_help and "--failures all|N" in main_help
    assert re.search(r"--progress / --no-progress +Show progress bars\.", main_help)  # no value


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    return raised.value.code


def test_exit_statuses(tmp_path, image_folder, monkeypatch, capsys):
    from semcomp.cli import EXIT_ERROR, EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

    assert (EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)
    root = write_study(tmp_path / "s", image_folder, "unused-clip-model")
    ingest = ["run", str(root), "--no-progress", "--stage", "ingest"]
    assert exit_code(ingest) == EXIT_OK
    (image_folder / "landscape" / "broken.png").write_bytes(b"not a png")
    assert exit_code(ingest) == EXIT_FAILURES  # finished; the failure is recorded
    assert "1 failure(s) recorded in this run" in capsys.readouterr().out
    assert exit_code(ingest) == EXIT_OK  # a settled failure is not retried
    assert exit_code(["status", str(root)]) == EXIT_OK  # failures on record: status is fine

    assert exit_code(["run", str(root), "--no-such-option"]) == EXIT_USAGE
    assert "No such option" in capsys.readouterr().err
    assert exit_code(["report", str(root), "--rate", "furlongs"]) == EXIT_USAGE
    assert exit_code(["-v", "-q", "status", str(root)]) == EXIT_USAGE
    bad = write_study(tmp_path / "bad", image_folder, "x", methods="[[methods]]\nname = 1\n")
    assert exit_code(["run", str(bad)]) == EXIT_USAGE  # an invalid study.toml
    assert capsys.readouterr().err.count("\n") == 3  # three one-line errors

    assert exit_code(["ratings", "summary", str(root)]) == EXIT_ERROR  # no ratings in it
    assert capsys.readouterr().err.startswith("error: no ratings for survey 'A'")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("semcomp.study.Study.run", interrupted)
    assert exit_code(ingest) == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err


def test_verbose_and_quiet_set_the_log_level(tmp_path, image_folder, capsys):
    import logging

    root = write_study(tmp_path / "s", image_folder, "unused-clip-model")
    ingest = ["run", str(root), "--no-progress", "--stage", "ingest"]
    assert exit_code(["-v", *ingest]) == 0
    err = capsys.readouterr().err
    assert "info: run 1: ingest\n" in err and "info: run 1: ingest: 4 done" in err
    assert "package versions" not in err
    assert exit_code(["-vv", *ingest]) == 0
    assert "debug: package versions: {'semcomp': " in capsys.readouterr().err
    assert exit_code(["--quiet", *ingest]) == 0
    assert capsys.readouterr().err == ""
    assert logging.getLogger("semcomp").level == logging.ERROR
    assert exit_code(ingest) == 0
    assert capsys.readouterr().err == "" and logging.getLogger("semcomp").level == logging.WARNING
