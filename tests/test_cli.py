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
    assert raised.value.code == 1
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
    for expected in (0, 1):
        with pytest.raises(SystemExit) as raised:
            main(["init", str(tmp_path / "s"), "--images", str(image_folder)])
        assert raised.value.code == expected
    assert "already exists" in capsys.readouterr().err


def test_status_json_for_scripts(tmp_path, image_folder, tiny_clip, capsys):
    import json

    (image_folder / "landscape" / "broken.png").write_bytes(b"not a png")
    study = write_study(tmp_path / "study", image_folder, tiny_clip)
    with pytest.raises(SystemExit):
        main(["run", str(study), "--no-progress", "--stage", "ingest"])
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
