"""A study folder that is moved or copied opens, shows every stage done and reruns with no
model loaded: paths inside it are stored relative to it; paths outside stay absolute."""

import json
import shutil
from pathlib import Path

import pytest

from helpers import photo
from semcomp.store import Store, content_key
from semcomp.study import IDENTITY_ROOT, Study, init_study

CAPTIONS = "image,caption\nimg1,a red apple on a table\nimg3,a blue ball on the grass\n"


def make_study(root: Path, outside: Path) -> Path:
    """Images, captions, external reconstructions and tiny models inside the study folder;
    one external method's folder outside it."""
    for category, seed in (("landscape", 1), ("single_object", 3)):
        (root / "images" / category).mkdir(parents=True)
        photo(64, 48, seed).save(root / "images" / category / f"img{seed}.png")
    (root / "captions.csv").write_text(CAPTIONS)
    for folder in (root / "external", outside):
        folder.mkdir(parents=True, exist_ok=True)
        for seed, name in ((5, "img1"), (6, "img3")):
            photo(48, 48, seed).save(folder / f"{name}_gr.png")
    init_study(root, root / "images", name="portable").close()
    with (root / "study.toml").open("a") as handle:
        handle.write(
            '\n[[methods]]\nname = "human"\ncaptioner = "human"\n'
            'captioner_params = { csv = "captions.csv" }\n'
            'reconstructor_params = { model = "tiny", steps = 2, width = 64, height = 64 }\n\n'
            '[[methods]]\nname = "paper-gr"\nfolder = "external"\npattern = "{name}_gr.png"\n'
            'captions = "captions.csv"\n\n'
            f'[[methods]]\nname = "elsewhere"\nfolder = "{outside.as_posix()}"\n'
            'pattern = "{name}_gr.png"\n\n'
            "[[similarity.models]]\nmodel = 'tiny'\n"
        )
    return root


def run(root: Path):
    with Study.open(root) as study:
        return study.run(progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("portable")
    root = make_study(base / "original", base / "outside")
    summary = run(root)
    assert summary.status == "finished", summary.failures
    assert not [f for f in summary.failures if f[0] != "encode"]  # reductions may miss
    return root


def assert_done_without_work(root: Path) -> None:
    with Study.open(root) as study:
        rows = study.status(rescan=True)  # new images in the source counted too
        assert all(row.pending == 0 for row in rows), rows
        assert study.models_needed(["caption", "reconstruct", "embed"]) == []
    summary = run(root)
    assert summary.status == "finished" and summary.models_loaded == []
    assert all(stage.done == 0 for stage in summary.stages), summary.stages


def test_copy_opens_done_and_reruns_with_no_model(built, tmp_path):
    before = Store(built, read_only=True)
    counts = {t: before.count(t) for t in ("originals", "representations", "candidates", "scores")}
    methods = set(before.frame("SELECT id FROM methods").id)
    before.close()
    original = tmp_path / "original"
    shutil.copytree(built, original)
    copy = tmp_path / "moved" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    assert_done_without_work(copy)
    with Study.open(copy) as study:
        store = study.store
        assert {t: store.count(t) for t in counts} == counts
        assert set(store.frame("SELECT id FROM methods").id) == methods
        assert {m.method_id for m in study.config.methods} == methods
        assert len(store.frame("SELECT id FROM embedders")) == 1


def test_cp_r_without_file_times_reruns_with_no_work(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy, copy_function=shutil.copy)  # like `cp -r`: new mtimes
    assert_done_without_work(copy)


def test_paths_inside_are_relative_and_outside_absolute(built):
    text = (built / "study.toml").read_text()
    assert 'source = "images"' in text  # written by init
    with Store(built, read_only=True) as store:
        sources = store.frame("SELECT path FROM sources").path.tolist()
        assert sorted(sources) == ["images/landscape/img1.png", "images/single_object/img3.png"]
        assert set(store.frame("SELECT source_path FROM originals").source_path) == set(sources)
        params = {
            row.name: json.loads(row.params)
            for row in store.frame("SELECT name, params FROM methods").itertuples()
        }
        assert params["paper-gr"]["folder"] == "external"
        assert params["paper-gr"]["captions"] == "captions.csv"
        assert params["human"]["captioner_params"]["csv"] == "captions.csv"
        assert params["human"]["reconstructor_params"]["model"] == "models/tiny-sd"
        outside = built.parent / "outside"
        assert params["elsewhere"]["folder"] == str(outside)
        assert store.frame("SELECT model FROM embedders").model.tolist() == [
            "local-dir:models/tiny-clip"
        ]
        for table in ("captions", "reconstructions", "runs", "representations", "candidates"):
            for column in ("meta", "params", "config"):
                try:
                    values = store.frame(f"SELECT {column} FROM {table}")[column]
                except Exception:  # the table has no such column
                    continue
                assert not any(str(built) in value for value in values), (table, column)


def test_a_study_made_before_keeps_its_rows_and_becomes_portable(tmp_path):
    """A study whose identities were made with absolute paths (no identity_root in the
    store) keeps them where it is, and keeps its rows when moved afterwards."""
    root = make_study(tmp_path / "old", tmp_path / "outside")
    with Store(root) as store, store.transaction():
        store.set_info(IDENTITY_ROOT, str(root.resolve()))  # identities as semcomp made them
    run(root)
    with Store(root) as store, store.transaction():
        store.conn.execute("DELETE FROM study_info WHERE key = ?", (IDENTITY_ROOT,))
        legacy = {r["name"]: r["id"] for r in store.conn.execute("SELECT name, id FROM methods")}
        sources = store.frame("SELECT path FROM sources").path.tolist()
    # the ids are those of a semcomp that put absolute paths into them
    with Study.open(root) as study:
        external = next(m for m in study.config.methods if m.name == "paper-gr")
        absolute = content_key(
            "method",
            "external",
            str((root / "external").resolve()),
            external.pattern,
            external._captions_sha256,
            external.text_codec,
            external._text_codec_identity,
        )
        assert legacy["paper-gr"] == absolute == external.method_id
    assert all(Path(path).is_absolute() for path in sources)
    assert_done_without_work(root)  # records where its identities are anchored
    with Store(root, read_only=True) as store:
        assert store.get_info(IDENTITY_ROOT) == str(root.resolve())
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    assert_done_without_work(moved)
    with Study.open(moved) as study:
        assert {m.name: m.method_id for m in study.config.methods} == legacy


def test_a_new_study_records_relative_identities(built):
    with Store(built, read_only=True) as store:
        assert store.get_info(IDENTITY_ROOT) == ""


def test_the_demo_study_moves_with_its_tiny_models_and_pqvae_checkpoint(
    all_methods_study, tmp_path
):
    """The demo (tiny CLIP, BLIP and Stable Diffusion from `model = "tiny"`, a PQVAE-shared
    checkpoint whose CLIP is the study's tiny CLIP) plus external reconstructions."""
    text = (all_methods_study / "study.toml").read_text()
    assert "model = 'tiny'" in text and str(all_methods_study) not in text
    copy = tmp_path / "copy"
    shutil.copytree(all_methods_study, copy)
    away = all_methods_study.with_name("away")
    all_methods_study.rename(away)  # nothing may still point at the original folder
    try:
        assert_done_without_work(copy)
        with Study.open(copy) as study:
            pqvae = next(m for m in study.config.methods if m.kind == "embedding")
            assert study.config.embedder_for(pqvae) is study.config.similarity.models[0]
    finally:
        away.rename(all_methods_study)
