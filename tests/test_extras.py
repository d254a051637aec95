"""Optional dependency sets (pip extras): the base install runs the store, surveys, status
and report without torch; a command that needs a missing extra says which, in one line."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import command_outputs, photo, semcomp_in_one_process, write_study
from semcomp.cli import main
from semcomp.extras import EXTRA_MODULES, missing_extras, require_extras
from semcomp.stages import STAGES
from semcomp.study import Study

#: every module an extra brings: what a base install (pip install semcomp) lacks
EXTRA_ONLY = sorted({module for modules in EXTRA_MODULES.values() for module in modules})


def block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """As if ``modules`` were not installed (``import`` raises, ``find_spec`` finds none)."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_missing_extras_are_named_with_their_install_command(monkeypatch):
    assert missing_extras(*EXTRA_MODULES) == []  # the test environment has them all
    require_extras("semcomp run", "clip", "pqvae")  # nothing missing: no error

    block(monkeypatch, "open_clip", "constriction")
    assert missing_extras("clip", "app", "pqvae", "clip") == ["clip", "pqvae"]
    with pytest.raises(Exception) as one:
        require_extras("semcomp run", "clip", "app")
    assert str(one.value) == "semcomp run needs the 'clip' extra: pip install 'semcomp[clip]'"
    with pytest.raises(Exception) as two:
        require_extras("semcomp demo", "clip", "pqvae")
    assert str(two.value) == (
        "semcomp demo needs the 'clip', 'pqvae' extras: pip install 'semcomp[clip,pqvae]'"
    )

    block(monkeypatch, "compressai")  # installed with --no-deps, so the hint says so
    with pytest.raises(Exception, match="needs the 'learned' extra") as learned:
        require_extras('codec "compressai"', "learned")
    assert str(learned.value).endswith(
        "pip install 'semcomp[learned]' && pip install --no-deps 'compressai>=1.2.8'"
    )


def copy_study(source: Path, tmp_path: Path) -> Path:
    return Path(
        shutil.copytree(source, tmp_path / "study", ignore=shutil.ignore_patterns("*.lock"))
    )


def run_ids(root: Path) -> list[int]:
    with Study.open(root, read_only=True) as study:
        return [row[0] for row in study.store.conn.execute("SELECT id FROM runs")]


GATED = [  # (arguments, a module its extra brings, what the error names, the extra)
    (["demo", "--dir", "{tmp}/demo"], "diffusers", "semcomp demo", "diffusion"),
    (["app", "{study}"], "streamlit", "semcomp app", "app"),
    (["models", "fetch", "--clip", "ViT-B-32"], "open_clip", "semcomp models fetch", "clip"),
    (["models", "fetch", "--hf", "org/m"], "huggingface_hub", "semcomp models fetch", "hub"),
    (["features", "extract", "{tmp}/i", "{tmp}/o"], "torch", "semcomp features extract", "clip"),
    (
        ["pqvae", "train", "{tmp}/e.npy", "--out", "{tmp}/r"],
        "torch",
        "semcomp pqvae train",
        "pqvae",
    ),
    (["pqvae", "eval", "{tmp}/c", "{tmp}/e.npy"], "constriction", "semcomp pqvae eval", "pqvae"),
    (
        ["pqvae", "sweep", "{tmp}/e.npy", "--out", "{tmp}/s"],
        "torch",
        "semcomp pqvae sweep",
        "pqvae",
    ),
    (
        ["clipcap", "train", "{tmp}/a.json", "{tmp}/f", "--out", "{tmp}/r"],
        "pycocoevalcap",
        "semcomp clipcap train",
        "downstream",
    ),
    (
        ["clipcap", "eval", "{tmp}/r", "{tmp}/a.json", "{tmp}/f", "--out", "{tmp}/e"],
        "transformers",
        "semcomp clipcap eval",
        "downstream",
    ),
    (
        ["referring", "eval", "{tmp}/refs.json", "{tmp}/images", "--out", "{tmp}/e"],
        "transformers",
        "semcomp referring eval",
        "downstream",
    ),
    (
        ["referring", "eval", "{tmp}/refs.json", "{tmp}/images", "--out", "{tmp}/e"],
        "open_clip",
        "semcomp referring eval",
        "clip",
    ),
    (["run", "{study}"], "open_clip", "semcomp run", "clip"),
    (["run", "{study}", "--engine", "ray"], "ray", "--engine ray", "ray"),
]


@pytest.mark.parametrize(("args", "missing", "command", "extra"), GATED, ids=lambda v: str(v))
def test_a_command_without_its_extra_says_which_to_install(
    args, missing, command, extra, jpeg_study, tmp_path, monkeypatch, capsys
):
    root = copy_study(jpeg_study, tmp_path)
    before = run_ids(root)
    block(monkeypatch, missing)
    with pytest.raises(SystemExit) as failed:
        main([a.format(tmp=tmp_path, study=root) for a in args])
    assert failed.value.code == 3  # an extra is missing (README: exit statuses)
    assert capsys.readouterr().err == (
        f"error: {command} needs the '{extra}' extra: pip install 'semcomp[{extra}]'\n"
    )
    assert run_ids(root) == before  # refused before anything ran
    assert not (tmp_path / "demo").exists()


def test_a_run_needs_the_extras_of_its_pending_work_only(jpeg_study, image_folder, tmp_path):
    root = copy_study(jpeg_study, tmp_path)  # encoded and decoded, not embedded
    with Study.open(root) as study:
        assert study.extras_needed(["ingest", "encode", "decode"]) == []
        assert study.extras_needed(STAGES) == ["clip"]  # embed is pending

    learned = write_study(
        tmp_path / "learned",
        image_folder,
        "unused-clip-model",
        methods='[[methods]]\nname = "l"\ncodec = "compressai"\nquality = [1]\n',
    )
    with Study.open(learned) as study:
        assert study.extras_needed(["ingest", "encode", "decode"]) == ["learned"]
        assert study.extras_needed(["ingest"]) == []


def test_a_finished_study_needs_no_extra_until_new_images_arrive(all_methods_study, tmp_path):
    root = copy_study(all_methods_study, tmp_path)
    with Study.open(root) as study:
        assert study.extras_needed(STAGES) == []
        source = study.config.images.source
    photo(80, 60, seed=99).save(source / "new.png")  # every method has work again
    with Study.open(root) as study:
        # in the study file's order: human captions through diffusers, BLIP, the best-of-4
        # method's CLIP selection, PQVAE
        assert study.extras_needed(STAGES) == ["diffusion", "captioning", "clip", "pqvae"]
        assert study.extras_needed(["ingest", "caption"]) == ["diffusion", "captioning"]
        assert study.extras_needed(["ingest", "encode", "decode"]) == []


#: a fresh interpreter in which the extras' modules cannot be found, as in a base install
WITHOUT_EXTRAS = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
"""


@pytest.mark.slow
def test_status_report_survey_and_ratings_run_without_any_extra(all_methods_study, tmp_path):
    """What a base install (no torch, no extra) runs on a study made elsewhere; CI runs the
    same commands in a real venv without the extras (.ci/run)."""
    from semcomp.demo import SCENE_FACTS
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.simulated import SceneFacts, write_simulated_results

    root = copy_study(all_methods_study, tmp_path)
    results = tmp_path / "batch_results.csv"
    with Study.open(root) as study:
        facts = {name: SceneFacts(*entry) for name, entry in SCENE_FACTS.items()}
        assert write_simulated_results(study.store, load_survey("A"), results, facts=facts)
    absent = WITHOUT_EXTRAS.format(blocked={*EXTRA_ONLY, "pyarrow"})
    commands = [
        ["status", str(root)],
        ["report", str(root)],
        ["survey", "make", str(root), "--survey", "A", "--base-url", "https://x.test/a",
         "--out", str(tmp_path / "hits")],
        ["ratings", "import", str(root), str(results), "--survey", "A"],
        ["ratings", "summary", str(root)],
    ]  # fmt: skip
    done = subprocess.run(
        semcomp_in_one_process(commands, before=absent), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    results, rest = command_outputs(done.stdout)
    assert [status for _, status in results] == [0] * len(commands) and not rest, done.stderr
    outputs = [output for output, _ in results]
    assert (root / "report" / "rd.png").exists()
    assert (tmp_path / "hits" / "hits.csv").exists()
    assert "kept" in outputs[3] and "failed 0" in outputs[3]
    torch = subprocess.run([sys.executable, "-c", absent + "import torch"], capture_output=True)
    assert b"No module named 'torch'" in torch.stderr  # so none of the above imported it
