"""`semcomp survey ...` and `semcomp ratings ...` on the command line, and survey definitions."""

import json
from pathlib import Path

import pytest

from mturk_format import simulate, write_batch_results
from semcomp.cli import main
from semcomp.errors import ConfigError
from semcomp.surveys.definitions import builtin_surveys, load_survey


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    captured = capsys.readouterr()
    return raised.value.code, captured.out, captured.err


def test_list_make_import_summary(study, tmp_path, capsys):
    code, out, _ = run(["survey", "list"], capsys)
    assert code == 0 and "A: Semantic Satisfaction (pair)" in out
    assert "How similar is the feeling or meaning of these images?" in out
    code, out, _ = run(
        ["survey", "make", str(study), "--survey", "A", "--base-url", "https://x.org/a",
         "--out", str(tmp_path / "hits"), "--items-per-hit", "3", "--seed", "2"],
        capsys,
    )  # fmt: skip
    assert code == 0 and "4 HITs of 3 items (4 attention checks" in out
    assignments, expected = simulate(tmp_path / "hits", load_survey("A"), workers=4)
    results = write_batch_results(tmp_path / "results.csv", assignments)
    code, out, _ = run(["ratings", "import", str(study), str(results), "--survey", "A"], capsys)
    assert code == 0
    assert len(expected) == 32
    assert "kept 32 answers; excluded: none; failed 0; unknown images 0" in out
    code, out, _ = run(["ratings", "summary", str(study), "--survey", "A"], capsys)
    assert code == 0 and "median_mean" in out and "ordinal" in out and "jpeg" in out
    code, out, _ = run(["ratings", "summary", str(study), "--survey", "a", "--json"], capsys)
    document = json.loads(out)  # the same tables, for scripts
    assert code == 0 and document["survey"] == "A" and document["kept"] == 32
    assert {"methods", "reliability"} <= set(document) and "top_answers" not in document
    assert any(row["method"] == "jpeg" and row["median_mean"] > 0 for row in document["methods"])


def test_cli_errors_are_one_line(study, tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    code, _, err = run(["ratings", "import", str(study), str(missing), "--survey", "A"], capsys)
    assert code == 2 and err.startswith("error: no ratings file") and "Traceback" not in err
    code, _, err = run(["ratings", "import", str(study), str(missing), "--survey", "Z"], capsys)
    assert code == 2 and "unknown survey 'Z'" in err
    code, _, err = run(["ratings", "summary", str(study), "--survey", "B"], capsys)
    assert code == 3 and "no ratings for survey 'B'" in err
    code, _, err = run(
        ["ratings", "import", str(tmp_path / "nostudy"), str(missing), "--survey", "A"], capsys
    )
    assert code == 2 and not (tmp_path / "nostudy").exists()


def test_builtin_definitions():
    surveys = builtin_surveys()
    assert list(surveys) == ["A", "B", "C"]
    a, b, c = surveys.values()
    assert (a.questions[0].low, a.questions[0].high) == (1, 10)
    assert [q.id for q in b.questions] == [
        "objects",
        "appearance",
        "position",
        "background",
        "color",
    ]
    assert all((q.low, q.high) == (1, 5) for q in b.questions)
    assert c.subject == "candidate" and len(c.question("adjectives").options) == 12
    assert c.question("objects").max_items == 5 and c.question("adjectives").max_items == 3
    assert load_survey("a") is a


def test_custom_definition_and_its_errors(tmp_path):
    good = tmp_path / "mood.toml"
    good.write_text(
        'id = "mood"\nname = "Mood"\nsubject = "candidate"\n'
        '[[questions]]\nid = "calm"\nkind = "scale"\ntext = "How calm?"\nlow = 0\nhigh = 4\n'
    )
    assert load_survey(good).question("calm").high == 4
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text() + 'colour = "red"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*colour: unknown key"):
        load_survey(bad)
    bad.write_text(good.read_text().replace("low = 0", "low = 9"))
    with pytest.raises(ConfigError, match="needs integers low < high"):
        load_survey(bad)
    bad.write_text(good.read_text().replace('id = "mood"', 'id = "A"'))
    with pytest.raises(ConfigError, match="id 'A' of a built-in survey"):
        load_survey(bad)
    with pytest.raises(ConfigError, match="registered surveys are A, B, C"):
        load_survey("D")
    bad.write_text(
        good.read_text().replace('id = "mood"', 'id = "tone"')
        + '[[questions]]\nid = "words"\nkind = "choice"\ntext = "Pick"\n'
        'options = ["Calm!", "calm"]\n'
    )
    with pytest.raises(ConfigError, match="options must differ"):
        load_survey(bad)


def test_readme_survey_commands(study, tmp_path, capsys, monkeypatch):
    """The README's survey block, run as written on a test study (results simulated)."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [
        b for b in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) if "survey make" in b
    ]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    commands = [shlex.split(c)[1:] for c in commands if c]
    assert [c[:2] for c in commands] == [
        ["survey", "make"],
        ["ratings", "import"],
        ["ratings", "summary"],
    ]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-study").symlink_to(study)
    code, out, err = run(commands[0], capsys)
    assert code == 0, err
    assignments, _ = simulate(tmp_path / "hits-a", load_survey("A"), workers=2)
    write_batch_results(tmp_path / "Batch_123_batch_results.csv", assignments)
    for command in commands[1:]:
        code, out, err = run(command, capsys)
        assert code == 0, err
    assert "median_mean" in out


def test_summary_dimensions_for_any_survey_with_several_scales_and_lower_case_ids(
    study, tmp_path, capsys
):
    from mturk_format import candidates
    from semcomp.store import Store

    mood = tmp_path / "mood.toml"
    mood.write_text(
        'id = "mood"\nname = "Mood"\nsubject = "candidate"\n'
        '[[questions]]\nid = "calm"\nkind = "scale"\ntext = "How calm?"\nlow = 1\nhigh = 5\n'
        '[[questions]]\nid = "warm"\nkind = "scale"\ntext = "How warm?"\nlow = 1\nhigh = 5\n'
    )
    with Store(study) as store:
        found = candidates(store)
    lines = ["rater,original,candidate,question,value"]
    for survey, questions in ((mood, ("calm", "warm")), ("b", ("objects", "color"))):
        for rater, value in (("r1", 2), ("r2", 4)):
            lines += [f"{rater},,{c['id']},{q},{value}" for c in found[:2] for q in questions]
        path = tmp_path / f"{Path(str(survey)).stem}.csv"
        path.write_text("\n".join(lines) + "\n")
        lines = lines[:1]
        code, out, err = run(
            ["ratings", "import", str(study), str(path), "--survey", str(survey),
             "--format", "long"],
            capsys,
        )  # fmt: skip
        assert code == 0, err
    for survey in (str(mood), "mood", "b"):
        code, out, err = run(["ratings", "summary", str(study), "--survey", survey], capsys)
        assert code == 0, err
        assert "calm mean" in out or "objects mean" in out  # the dimension table
        assert "operating_point" in out


def test_import_keeps_the_surveys_quality_control_and_says_when_it_changes(study, tmp_path, capsys):
    from mturk_format import candidates
    from semcomp.store import Store

    with Store(study) as store:
        found = candidates(store)
    path = tmp_path / "a.csv"
    path.write_text(f"rater,original,candidate,question,value\nr1,,{found[0]['id']},similarity,5\n")
    base = ["ratings", "import", str(study), str(path), "--survey", "A", "--format", "long"]
    code, out, _ = run([*base, "--min-work-seconds", "30"], capsys)
    assert code == 0 and "quality control" not in out
    code, out, _ = run(base, capsys)
    assert code == 0 and "quality control" not in out  # not given: the survey's 30 s stays
    code, out, _ = run([*base, "--include-rejected"], capsys)
    assert "quality control of survey A changed: include_rejected False → True" in out
    code, out, _ = run(base, capsys)
    assert code == 0 and "quality control" not in out  # rejected assignments stay included
