"""`semcomp status` and the end of `semcomp run` show every failure, grouped by stage;
an image source with no images is an error at `init` and at `run`."""

import csv
from pathlib import Path

import pytest

from helpers import write_study
from semcomp.cli import main
from semcomp.errors import ConfigError
from semcomp.study import Study, init_study, summarise_failures

#: three unreadable images (ingest) and a byte target no quality meets (encode, 4 images)
METHODS = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\nbytes = [40]\n'


def failing_study(tmp_path: Path, image_folder: Path) -> Path:
    for index in range(3):
        (image_folder / "landscape" / f"broken{index}.jpg").write_bytes(b"not a jpeg")
    return write_study(tmp_path / "s", image_folder, "unused-clip-model", methods=METHODS)


def cli(args: list[str], capsys, code: int = 0) -> str:
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == code, capsys.readouterr().err
    return capsys.readouterr().out


def test_run_and_status_list_every_failure_by_stage_ingest_first(tmp_path, image_folder, capsys):
    root = failing_study(tmp_path, image_folder)
    run = ["run", str(root), "--no-progress", "--stage", "ingest", "--stage", "encode"]
    out = cli(run, capsys, code=1)  # finished with failures
    assert "7 failure(s) recorded in this run:" in out and "see `semcomp status`" not in out
    lines = out.splitlines()
    ingest, encode = lines.index("  ingest (3):"), lines.index("  encode (4):")
    assert ingest < encode
    assert all("broken" in line for line in lines[ingest + 1 : ingest + 4])
    assert all("bytes=40" in line for line in lines[encode + 1 : encode + 5])

    out = cli(["status", str(root)], capsys)
    lines = out.splitlines()
    assert "7 failure(s):" in out and lines.index("  ingest (3):") < lines.index("  encode (4):")
    assert sum("broken" in line for line in lines) == 3
    assert sum("bytes=40" in line for line in lines) == 4

    out = cli(["status", str(root), "--failures", "1"], capsys)
    lines = out.splitlines()
    assert sum("broken" in line for line in lines) == 1
    assert "    ... and 2 more ingest failure(s)" in out and "3 more encode failure(s)" in out
    assert "report/failures.csv" in out
    assert "broken" not in cli(["status", str(root), "--failures", "0"], capsys)


def test_bad_failures_option_is_a_one_line_error(tmp_path, image_folder, capsys):
    root = failing_study(tmp_path, image_folder)
    with pytest.raises(SystemExit) as raised:
        main(["status", str(root), "--failures", "some"])
    assert raised.value.code == 2
    assert "--failures must be 'all' or a number" in capsys.readouterr().err


def test_report_failures_csv_has_them_all(tmp_path, image_folder):
    from semcomp.report import write_report

    root = failing_study(tmp_path, image_folder)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode"])
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
        assert len(study.failures()) == 7
    with files.failures_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and {r["stage"] for r in rows} == {"ingest", "encode"}


def test_summary_groups_unknown_stages_after_the_pipeline():
    failures = [("ratings", "a.csv:3", "blank"), ("score", "x", "y"), ("ingest", "b.png", "z")]
    lines = summarise_failures(failures)
    assert [line for line in lines if line.endswith(":") and "(" in line] == [
        "  ingest (1):",
        "  score (1):",
        "  ratings (1):",
    ]


def test_zero_images_is_an_error_at_init_and_at_run(tmp_path, image_folder):
    empty = tmp_path / "empty"
    (empty / "landscape").mkdir(parents=True)
    (empty / "landscape" / "README.txt").write_text("no photos here")
    with pytest.raises(ConfigError, match="holds no images"):
        init_study(tmp_path / "study", empty)
    assert not (tmp_path / "study" / "study.toml").exists()

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,category\n../outside.png,landscape\n")
    with pytest.raises(ConfigError, match=r"holds no images \(1 unusable"):
        init_study(tmp_path / "study", manifest)

    # a study whose images were all removed after `init`
    root = write_study(tmp_path / "s", empty, "unused-clip-model")
    with Study.open(root) as study, pytest.raises(ConfigError, match="holds no images"):
        study.run(progress=False)
    with Study.open(root) as study:
        assert study.store.count("runs") == 0  # refused before any stage started
        # stages that do not read the source still run
        assert study.run(progress=False, stages=["encode"]).status == "finished"


def test_zero_images_cli_message(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as raised:
        main(["init", str(tmp_path / "study"), "--images", str(empty)])
    assert raised.value.code == 2
    assert "holds no images" in capsys.readouterr().err
