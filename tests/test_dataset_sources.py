"""``[images.source]`` naming a labelled dataset or a codec image set: the originals, their
classes (for zero-shot), stratified subsets, checked file lists and clear config errors."""

import json
import logging
import shutil
from pathlib import Path

import pytest

import dataset_layouts as layouts
from helpers import photo, rows
from semcomp.config import parse_config
from semcomp.datasets.image_sets import image_set, parse_image_set
from semcomp.datasets.tables import class_table
from semcomp.errors import ConfigError
from semcomp.study import Study

JPEG = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n'


def study_file(root: Path, source: str, tiny_clip: str, metrics: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(
        f'name = "datasets"\nseed = 0\n\n[images]\nsource = {source}\n\n{JPEG}\n'
        f"[similarity]\nbatch_size = 4\n\n[[similarity.models]]\nmodel = '{tiny_clip}'\n"
        f"name = 'tiny'\nrandom_weights = true\n{metrics}"
    )
    return root


def test_a_labelled_dataset_gives_originals_classes_and_the_zero_shot_protocol(tmp_path, tiny_clip):
    layouts.oxford_pets(tmp_path / "pets")
    metrics = f'\n[[metrics]]\nmetric = "zero-shot"\nmodel = "{tiny_clip}"\nname = "zs"\n'
    root = study_file(
        tmp_path / "s",
        '{ dataset = "oxford-pets", root = "../pets", per_class = 1 }',
        tiny_clip,
        metrics,
    )
    with Study.open(root) as study:
        summary = study.run(progress=False)
    assert summary.status == "finished", summary.failures
    # the test split's first image of each breed, named readably, as category and class
    originals = sorted(rows(root, "SELECT name, category FROM originals"))
    assert originals == [
        ("Abyssinian_3", "Abyssinian"),
        ("american_bulldog_3", "American Bulldog"),
        ("yorkshire_terrier_3", "Yorkshire Terrier"),
    ]
    # all 37 breeds compete, prompted with the dataset's own templates
    identity = json.loads(
        rows(root, "SELECT identity FROM metrics WHERE name = 'zero-shot top-1[zs]'")[0][0]
    )
    table = class_table("oxford-pets")
    assert identity["classes"] == sorted(table.names) and len(identity["classes"]) == 37
    assert identity["templates"] == list(table.templates)
    scored = rows(root, "SELECT value FROM scores WHERE metric = 'zero-shot top-1[zs]'")
    assert len(scored) == 3 and {v for (v,) in scored} <= {0.0, 1.0}


def test_templates_given_in_the_study_file_win_over_the_dataset_s(tmp_path, tiny_clip):
    layouts.oxford_pets(tmp_path / "pets")
    metrics = (
        f'\n[[metrics]]\nmetric = "zero-shot"\nmodel = "{tiny_clip}"\nname = "zs"\n'
        'templates = ["a {}."]\n'
    )
    root = study_file(
        tmp_path / "s", '{ dataset = "pets", root = "../pets", limit = 1 }', tiny_clip, metrics
    )
    with Study.open(root) as study:
        assert study.run(progress=False).status == "finished"
    identity = json.loads(rows(root, "SELECT identity FROM metrics WHERE name LIKE 'zero%'")[0][0])
    assert identity["templates"] == ["a {}."]


def test_a_stratified_subset_is_deterministic_and_takes_classes_in_turn(tmp_path):
    layouts.food101(tmp_path / "food")  # 3 classes x 2 test images
    config = parse_config(
        {
            "images": {"source": {"dataset": "food-101", "root": "food", "limit": 4}},
            "methods": [{"name": "jpeg", "codec": "jpeg", "quality": [50]}],
        },
        "study.toml",
        tmp_path,
    )
    names = [s.path.relative_to(tmp_path / "food").as_posix() for s in config.images.find_sources()]
    assert names == [
        "food-101/images/apple_pie/1002.jpg",
        "food-101/images/apple_pie/1003.jpg",
        "food-101/images/cheese_plate/1002.jpg",
        "food-101/images/cheesecake/1002.jpg",
    ]
    again = parse_config(
        {
            "images": {"source": {"dataset": "food-101", "root": "food", "limit": 4}},
            "methods": [{"name": "jpeg", "codec": "jpeg", "quality": [50]}],
        },
        "study.toml",
        tmp_path,
    )
    assert [s.path for s in again.images.find_sources()] == [
        s.path for s in config.images.find_sources()
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"dataset": "oxford-petz", "root": "x"}, "images.source.dataset: unknown dataset"),
        ({"dataset": "pets", "root": "x", "per_clas": 2}, "images.source.per_clas: unknown key"),
        ({"dataset": "pets"}, "images.source.root: Field required"),
        ({"dataset": "pets", "root": "x", "limit": 0}, "images.source.limit"),
        ({"dataset": "kodak", "root": "x", "split": "test"}, "kodak is an image set without"),
    ],
)
def test_a_bad_dataset_source_is_a_config_error_naming_the_key(tmp_path, source, message):
    data = {
        "images": {"source": source},
        "methods": [{"name": "jpeg", "codec": "jpeg", "quality": [50]}],
    }
    with pytest.raises(ConfigError) as error:
        parse_config(data, "study.toml", tmp_path)
    assert str(error.value).startswith("study.toml: ") and message in str(error.value)


def test_a_dataset_that_cannot_be_read_stops_the_run_with_one_line(tmp_path, tiny_clip):
    root = study_file(tmp_path / "s", '{ dataset = "oxford-pets", root = "../none" }', tiny_clip)
    with Study.open(root) as study, pytest.raises(ConfigError, match="none is not a folder"):
        study.run(progress=False)
    layouts.hf_parquet(tmp_path / "hf", ["cat", "dog"], {"test": [0, 1]})
    root = study_file(tmp_path / "t", '{ dataset = "hf", root = "../hf" }', tiny_clip)
    with Study.open(root) as study, pytest.raises(ConfigError, match="image files"):
        study.run(progress=False)


def kodak_folder(folder: Path, numbers) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        photo(24, 16, seed=n).save(folder / f"kodim{n:02d}.png")
    return folder


def test_kodak_s_file_list_is_checked_missing_and_extra_files_recorded(tmp_path, tiny_clip, caplog):
    folder = kodak_folder(tmp_path / "kodak", range(1, 24))  # kodim24 missing
    photo(24, 16, seed=99).save(folder / "holiday.png")  # not Kodak's
    root = study_file(tmp_path / "s", '{ dataset = "kodak", root = "../kodak" }', tiny_clip)
    with caplog.at_level(logging.WARNING), Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest"])
    assert "kodim24.png" in caplog.text and "holiday.png" in caplog.text
    assert rows(root, "SELECT count(*) FROM originals") == [(23,)]
    failures = {item: reason for stage, item, reason in summary.failures if stage == "ingest"}
    assert set(failures) == {"kodak file list: kodim24.png", "kodak file list: holiday.png"}
    assert failures["kodak file list: kodim24.png"].startswith("missing: one of the Kodak")
    assert "left out" in failures["kodak file list: holiday.png"]
    # the set made whole: the next run ingests the missing file and forgets both problems
    kodak_folder(folder, [24])
    (folder / "holiday.png").unlink()
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest"])
    assert not summary.failures
    assert rows(root, "SELECT count(*) FROM originals") == [(24,)]
    categories = rows(root, "SELECT DISTINCT category FROM originals")
    assert categories == [("uncategorised",)]
    # a smaller subset leaves the others out of scope, their rows kept in the store
    toml = (root / "study.toml").read_text()
    (root / "study.toml").write_text(
        toml.replace('root = "../kodak" }', 'root = "../kodak", limit = 20 }')
    )
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest"])
    assert not summary.failures
    assert rows(root, "SELECT count(*) FROM sources") == [(20,)]
    assert rows(root, "SELECT count(*) FROM originals") == [(24,)]


def test_div2k_in_its_archive_folder_and_clic_checked_by_count(tmp_path):
    div2k = tmp_path / "div2k" / "DIV2K_valid_HR"
    div2k.mkdir(parents=True)
    for n in (801, 802):
        photo(16, 16, seed=n).save(div2k / f"{n:04d}.png")
    config = parse_config(
        {
            "images": {"source": {"dataset": "div2k-valid", "root": "div2k"}},
            "methods": [{"name": "jpeg", "codec": "jpeg", "quality": [50]}],
        },
        "study.toml",
        tmp_path,
    )
    found = list(config.images.find_sources())
    images = [s.path.name for s in found if hasattr(s, "path") and s.path]
    assert images == ["0801.png", "0802.png"]
    missing = [s.item for s in found if not getattr(s, "path", None)]
    assert len(missing) == 98 and missing[0] == "div2k-valid file list: 0803.png"

    clic = tmp_path / "clic"
    shutil.copytree(div2k, clic)
    config = parse_config(
        {
            "images": {"source": {"dataset": "clic2020-professional-valid", "root": "clic"}},
            "methods": [{"name": "jpeg", "codec": "jpeg", "quality": [50]}],
        },
        "study.toml",
        tmp_path,
    )
    found = list(config.images.find_sources())
    problems = [s for s in found if not getattr(s, "path", None)]
    assert [p.item for p in problems] == ["clic2020-professional-valid file list: count"]
    assert "has 2 .png image(s); the CLIC 2020 professional validation set has 41" in (
        problems[0].reason
    )
    assert "only the count is checked" in problems[0].reason


def test_the_image_set_file_lists_are_validated_on_load():
    kodak = image_set("kodak")
    assert kodak.files == tuple(f"kodim{n:02d}.png" for n in range(1, 25))
    div2k = image_set("div2k-valid")
    assert div2k.count == 100 and div2k.files[0] == "0801.png" and div2k.files[-1] == "0900.png"
    assert image_set("clic2020-professional-valid").count == 41
    bad = {
        'files = ["a.png", "a.png"]': "listed twice",
        'files = ["sub/a.png"]': "not a plain image file name",
        'files = ["a.png"]\ncount = 2': "count 2 but 1 files",
        "count = 0": "give files or a positive count",
        'files = ["a.png"]\nextra = 1': "unknown key",
    }
    for text, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            parse_image_set("broken", text)
