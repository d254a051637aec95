"""The demo fills every page: simulated Survey A/B/C ratings imported through the real
importer and labelled wherever they appear, a PQVAE evaluation file, and `survey make`
on a study whose candidates include decoded embeddings."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semcomp.analysis.embedding_results import embedding_results
from semcomp.cli import main
from semcomp.errors import ConfigError
from semcomp.store import Store
from semcomp.study import Study
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.mturk import read_batch_results
from semcomp.surveys.simulated import SIMULATED, rated_candidates, simulated_surveys


def copy_study(source: Path, target: Path) -> Path:
    """A copy of a demo study whose models stay where they were built (the copy's
    study.toml names them by absolute path, so its methods and CLIP are the same)."""
    shutil.copytree(source, target)
    text = (source / "study.toml").read_text()
    text = text.replace("local-dir:models/", f"local-dir:{source}/models/")
    (target / "study.toml").write_text(text.replace('"models/', f'"{source}/models/'))
    return target


@pytest.fixture(scope="module")
def rated_demo(all_methods_study: Path, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the demo study (plus an external method) with the demo's simulated ratings."""
    from semcomp.demo import add_simulated_ratings

    root = copy_study(all_methods_study, tmp_path_factory.mktemp("rated-demo") / "study")
    said: list[str] = []
    with Study.open(root) as study:
        files = add_simulated_ratings(study.store, root / "surveys", say=said.append)
    return root, files, said


@pytest.fixture(scope="module")
def simulated_report(rated_demo):
    """``(files, handed)``: the report (rate in bytes) of the rated demo, written once for
    the tests that read it, and the names of its figures in the order they were handed to
    :func:`~semcomp.analysis.figures.save_drawn` (recorded on the way, each figure saved
    as without the recording)."""
    from semcomp.analysis import figures
    from semcomp.report import write_report

    root, _, _ = rated_demo
    handed: list[str] = []
    save_drawn = figures.save_drawn

    def recorded(out_stem, *args, **kwargs):
        handed.append(out_stem.name)
        return save_drawn(out_stem, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_drawn", recorded)
        with Study.open(root, read_only=True) as study:
            files = write_report(study, root / "report-simulated", rate="bytes")
    return files, handed


def test_the_demo_writes_a_pqvae_evaluation_for_the_embedding_codecs_page(all_methods_study):
    found = embedding_results(all_methods_study)
    assert found.problems == [] and [p.name for p in found.files] == ["demo-eval.json"]
    table = found.table
    assert sorted(table["coder"]) == ["ans", "fixed"]
    assert table["top1"].notna().all() and table["raw_top1"].notna().all()
    # the held-out drawn scenes, not training ones: 2 of 8 per category in the session's
    # small demo (10 of 40 in `semcomp demo`)
    assert (table["embeddings"] == 6).all()
    assert table.set_index("coder").loc["fixed", "bpd"] > table.set_index("coder").loc["ans", "bpd"]


def test_the_demo_scores_every_image_candidate_with_psnr(all_methods_study):
    with Store(all_methods_study, read_only=True) as store:
        images = store.frame(
            "SELECT c.id FROM candidates c JOIN artifacts a ON a.hash = c.artifact_hash "
            "WHERE a.media_type LIKE 'image/%'"
        )
        counts = dict(store.conn.execute("SELECT metric, COUNT(*) FROM scores GROUP BY metric"))
        directions = dict(store.conn.execute("SELECT name, higher_is_better FROM metrics"))
    assert len(images) > 20  # the session study is the demo made small
    assert counts["psnr"] == len(images) and directions["psnr"] == 1


def test_simulated_ratings_are_real_batch_results_imported_and_marked(rated_demo):
    root, files, said = rated_demo
    assert [Path(f).name for f in files] == [f"simulated_{s}_batch_results.csv" for s in "ABC"]
    assert all("simulated ratings" in line for line in said)
    batch = read_batch_results(Path(files[0]))
    rows = list(batch.rows)
    assert {"HITId", "AssignmentId", "WorkerId", "WorkTimeInSeconds"} <= set(batch.columns)
    assert batch.answer_columns == ["Answer.taskAnswers"] and not batch.unknown_columns
    with Store(root, read_only=True) as store:
        images = rated_candidates(store)
        assert len(rows) == 5 * len(images)
        assert set(simulated_surveys(store)) == {"A", "B", "C"}
        kinds = store.frame(
            "SELECT DISTINCT a.media_type FROM ratings r JOIN candidates c "
            "ON c.id = r.candidate_id JOIN artifacts a ON a.hash = c.artifact_hash"
        )
        assert all(kinds["media_type"].str.startswith("image/"))  # embeddings are not rated
        counts = dict(store.conn.execute("SELECT survey, COUNT(*) FROM ratings GROUP BY survey"))
        assert counts == {"A": 5 * len(images), "B": 25 * len(images), "C": 15 * len(images)}
        failed = store.conn.execute("SELECT COUNT(*) FROM failures WHERE stage = 'ratings'")
        assert failed.fetchone()[0] == 0 and store.count("ratings_unmatched") == 0
        means = store.frame(
            "SELECT candidate_id, value FROM scores WHERE metric = 'human.A.mean[similarity]'"
        ).set_index("candidate_id")["value"]
    quality = pd.Series({c["candidate_id"]: c["q"] for c in images})
    means = means.reindex(quality.index)
    # the stated model: ratings around 1 + 9q, q the min-max-scaled CLIP similarity
    assert np.corrcoef(quality, means)[0, 1] > 0.8
    assert (means - (1 + 9 * quality)).abs().mean() < 1.0


def test_importing_the_simulated_ratings_again_adds_nothing(rated_demo, tmp_path):
    from semcomp.demo import add_simulated_ratings

    root, files, _ = rated_demo
    copy = tmp_path / "again"
    shutil.copytree(root, copy)
    with Study.open(copy) as study:
        before = [study.store.count(t) for t in ("ratings", "assignments", "scores")]
        add_simulated_ratings(study.store, copy / "surveys", say=lambda _: None)
        after = [study.store.count(t) for t in ("ratings", "assignments", "scores")]
    assert after == before
    for name in files:  # written again identically
        assert (copy / "surveys" / Path(name).name).read_bytes() == Path(name).read_bytes()


def test_the_report_labels_simulated_ratings_wherever_they_appear(simulated_report):
    files, _ = simulated_report
    folder = files.folder
    readme = (folder / "README.txt").read_text()
    assert f"WARNING: {SIMULATED} in survey A, B, C: ratings drawn at random" in readme
    assert f"Table 1 ({SIMULATED})" in readme
    table1 = pd.read_csv(folder / "table1.csv", keep_default_na=False)
    rated = table1["rated_images"] > 0
    assert set(table1.loc[rated, "rating_source"]) == {SIMULATED}
    assert set(table1.loc[~rated, "rating_source"]) == {""}  # pqvae-demo: not rated
    agreement = pd.read_csv(folder / "agreement.csv")
    assert set(agreement["rating_source"]) == {SIMULATED}
    survey_files = sorted(folder.glob("survey_*.csv"))
    assert {p.name for p in survey_files} >= {
        "survey_A_methods.csv",
        "survey_B_dimensions.csv",
        "survey_C_top_answers.csv",
    }
    for path in survey_files:
        assert set(pd.read_csv(path)["rating_source"]) == {SIMULATED}, path.name
    top = pd.read_csv(folder / "survey_C_top_answers.csv")
    objects = top[(top["question"] == "objects") & (top["method"] == "jpeg")]
    assert {"mountain", "ball", "box"} & set(objects["answer"])  # aimed at the scenes


def test_the_report_computes_the_agreement_first_and_lists_it_in_its_place(simulated_report):
    """The agreement (the report's longest bootstrap) runs before Table 1, so its figures
    reach the figure worker early; its notes, image set and rows of left_out.csv and
    dropped.csv stay after Table 1's and the rate comparisons', as before."""
    from semcomp.report import BD_NOTE

    files, handed = simulated_report
    assert handed.index("agreement") < handed.index("agreement_metrics") < handed.index("table1")
    assert handed.index("agreement_metrics") < handed.index("rd_iso_pareto")
    readme = (files.folder / "README.txt").read_text()
    notes = readme.split("## Notes")[1]
    assert notes.index("- Table 1") < notes.index(BD_NOTE) < notes.index("- agreement: ")
    image_sets = readme.split("## Image sets (n)")[1].split("\n## ")[0]
    assert image_sets.index("- table1: n = ") < image_sets.index("- agreement: n = ")
    for name in ("left_out.csv", "dropped.csv"):
        outputs = list(dict.fromkeys(pd.read_csv(files.folder / name)["output"]))
        agreement = [i for i, o in enumerate(outputs) if str(o).startswith("agreement")]
        others = [i for i, o in enumerate(outputs) if not str(o).startswith("agreement")]
        assert not agreement or not others or max(others) < min(agreement), (name, outputs)
    assert all(path.exists() for path in files.extra)


def test_ratings_summary_says_the_ratings_are_simulated(rated_demo, capsys):
    root, _, _ = rated_demo
    with pytest.raises(SystemExit) as raised:
        main(["ratings", "summary", str(root), "--survey", "A"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith(f"{SIMULATED}: ratings drawn at random")


def test_survey_make_leaves_out_candidates_that_are_not_images(rated_demo, tmp_path, capsys):
    from semcomp.surveys.make import make_survey

    root, _, _ = rated_demo
    copy = tmp_path / "study"
    shutil.copytree(root, copy)
    with Study.open(copy) as study:
        made = make_survey(
            study.store,
            load_survey("A"),
            base_url="https://images.example.org/a",
            out=tmp_path / "hits",
            methods=["blip", "pqvae-demo"],
            scope=study.scope(),
            items_per_hit=10,
        )
        assert made.items == 10 and made.checks == 1
        assert made.notes == [
            "left out 3 candidates that are not images (decoded embeddings) of method(s) "
            "pqvae-demo: a survey shows images"
        ]
        with pytest.raises(ConfigError, match="no image candidates to ask about"):
            make_survey(
                study.store,
                load_survey("A"),
                base_url="https://x.org",
                out=tmp_path / "none",
                methods=["pqvae-demo"],
            )
    with pytest.raises(SystemExit) as raised:
        main(["survey", "make", str(copy), "--survey", "C", "--base-url", "https://x.org",
              "--out", str(tmp_path / "c"), "--method", "blip", "--method",
              "pqvae-demo"])  # fmt: skip
    out = capsys.readouterr().out
    assert raised.value.code == 0
    assert "note: left out 3 candidates that are not images (decoded embeddings)" in out


def test_the_app_pages_show_the_simulated_ratings_with_their_label(rated_demo, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from semcomp.app import MAIN_SCRIPT, STUDY_ENV

    root, _, _ = rated_demo
    monkeypatch.setenv(STUDY_ENV, str(root))
    app = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=120)
    app.run()
    warnings = {}
    for page in ("overview", "surveys", "agreement", "embedding_codecs"):
        app.switch_page(f"views/{page}.py")
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        shown = "\n".join(str(w.value) for w in app.warning)
        warnings[page] = re.sub(r"\\(.)", r"\1", shown)  # as a reader sees it
        assert not app.info, (page, [i.value for i in app.info])  # no "nothing yet" notes
    for page, shown in warnings.items():  # the sidebar says so on every page
        assert "simulated ratings — Survey A, B, C" in shown, page
    assert "satisfaction column holds simulated ratings" in warnings["overview"]
    assert "simulated ratings: ratings drawn at random" in warnings["surveys"]
    assert "simulated ratings: ratings drawn at random" in warnings["agreement"]


def test_sample_images_are_drawn_once_and_pqvae_scenes_at_their_small_size(tmp_path, monkeypatch):
    import semcomp.demo as demo

    first = demo.write_sample_images(tmp_path, per_category=1)
    before = [p.read_bytes() for p in first]
    drawn: list[str] = []
    for name, draw in list(demo.SCENES.items()):
        monkeypatch.setitem(
            demo.SCENES, name, lambda *a, _d=draw, _n=name, **k: drawn.append(_n) or _d(*a, **k)
        )
    again = demo.write_sample_images(tmp_path, per_category=1)
    assert again == first and [p.read_bytes() for p in again] == before
    assert drawn == []  # files already there are not drawn again
    rng = np.random.default_rng(0)
    small = demo.SCENES["landscape"](rng, 0, size=demo.PQVAE_SCENE_SIZE)
    assert small.size == demo.PQVAE_SCENE_SIZE and np.asarray(small).std() > 10
