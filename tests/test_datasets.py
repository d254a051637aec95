"""Named datasets read in torchvision's and Hugging Face's real layouts (small generated copies)."""

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dataset_layouts as layouts
from semcomp.datasets import open_dataset, stratified
from semcomp.datasets.tables import class_table, normalised
from semcomp.errors import ConfigError


def files(images):
    return [Path(str(ref)).name for ref, _ in images.items]


def labelled(images):
    return [(Path(str(ref)).name, images.class_ids[label]) for ref, label in images.items]


# ---- class tables ---------------------------------------------------------------------------


def test_tables_are_validated_and_name_every_class_readably():
    import open_clip.zero_shot_metadata as meta

    imagenet = class_table("imagenet-1k")
    assert len(imagenet.ids) == 1000 and list(imagenet.ids) == sorted(imagenet.ids)
    assert imagenet.names == tuple(meta.IMAGENET_CLASSNAMES)  # open_clip ships the same
    assert imagenet.templates == tuple(t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES)
    assert dict(zip(imagenet.ids, imagenet.names, strict=True))["n02085620"] == "Chihuahua"
    assert imagenet.ids[415] == "n02776631" and imagenet.names[415] == "bakery"
    pets = class_table("oxford-pets")
    assert len(pets.ids) == 37 and pets.templates == ("a photo of a {}, a type of pet.",)
    assert len(class_table("food-101").ids) == 101 and len(class_table("caltech-101").ids) == 101
    assert len(class_table("cifar-100").ids) == 100
    assert class_table("tiny-imagenet").templates == imagenet.templates


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('title = "x"\nids = ["a", "b"]\nnames = ["a"]\ntemplates = ["a {c}."]', "2 ids but 1"),
        ('ids = ["a", "A"]\nnames = ["a", "b"]\ntemplates = ["{c}"]', "ids listed twice"),
        ('ids = ["a"]\nnames = ["n01440764"]\ntemplates = ["{c}"]', "not WordNet ids"),
        ('ids = ["a"]\nnames = ["a"]\ntemplates = ["a photo of a {}."]', "exactly one {c}"),
        ('ids = ["a"]\nnames = ["a"]\ntemplates = ["{c} {x}"]', "brace besides"),
        ('ids = ["a"]\nnames = [""]\ntemplates = ["{c}"]', "non-empty string"),
    ],
)
def test_a_broken_table_is_refused_on_load(monkeypatch, tmp_path, text, problem):
    from semcomp.datasets import tables

    (tmp_path / "classes").mkdir()
    (tmp_path / "classes" / "broken.toml").write_text(text)
    monkeypatch.setattr(tables.resources, "files", lambda package: tmp_path)
    tables.class_table.cache_clear()
    try:
        with pytest.raises(ConfigError, match=problem.replace("{", r"\{").replace("}", r"\}")):
            tables.class_table("broken")
    finally:
        tables.class_table.cache_clear()


# ---- torchvision's layouts ------------------------------------------------------------------


def test_imagenet_torchvision_layout_uses_the_official_labels(tmp_path):
    layouts.imagenet_torchvision(tmp_path)
    val = open_dataset(tmp_path, "imagenet", None)
    assert (val.dataset, val.split, val.layout) == ("imagenet-1k", "val", "torchvision")
    assert len(val.class_ids) == 1000  # classified among all 1000 classes
    labels = sorted({label for _, label in val.items})
    assert labels == [0, 151, 999]  # tench, Chihuahua, toilet paper: the official numbering
    assert [val.class_names[label] for label in labels] == ["tench", "Chihuahua", "toilet paper"]
    assert len(open_dataset(tmp_path, "imagenet-1k", "train").items) == 9
    # the split folder itself is accepted too
    assert len(open_dataset(tmp_path / "val", "imagenet-1k").items) == 6


def test_a_folder_of_wordnet_ids_gets_readable_names(tmp_path):
    layouts.imagenet_torchvision(tmp_path)
    folder = open_dataset(tmp_path / "train", "folder")
    assert folder.class_ids == ["n01440764", "n02085620", "n15075141"]
    assert folder.class_names == ["tench", "Chihuahua", "toilet paper"]
    (tmp_path / "train" / "n99999999").mkdir()
    layouts.jpeg(tmp_path / "train" / "n99999999" / "x.jpg", 1)
    with pytest.raises(ConfigError, match="n99999999 is a WordNet id"):
        open_dataset(tmp_path / "train", "folder")


def test_imagenet_matches_torchvision(tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    import torch

    layouts.imagenet_torchvision(tmp_path)
    wnids = ["n01440764", "n02085620", "n15075141"]
    torch.save(({w: (w,) for w in wnids}, []), tmp_path / "meta.bin")
    theirs = datasets.ImageNet(str(tmp_path), split="val")
    ours = open_dataset(tmp_path, "imagenet-1k", "val")
    assert [str(r) for r, _ in ours.items] == [p for p, _ in theirs.samples]
    assert [ours.class_ids[label] for _, label in ours.items] == [
        theirs.wnids[t] for _, t in theirs.samples
    ]


def test_tiny_imagenet_as_it_unzips(tmp_path):
    layouts.tiny_imagenet(tmp_path)
    val = open_dataset(tmp_path, "tiny-imagenet")
    assert (val.split, val.layout) == ("val", "tiny-imagenet")
    assert val.class_ids == ["n01443537", "n02085620"] and val.class_names == [
        "goldfish",
        "Chihuahua",
    ]
    assert labelled(val) == [
        ("val_0.JPEG", "n01443537"),
        ("val_1.JPEG", "n01443537"),
        ("val_2.JPEG", "n02085620"),
        ("val_3.JPEG", "n02085620"),
    ]
    train = open_dataset(tmp_path / "tiny-imagenet-200", "tiny-imagenet", "train")
    assert len(train.items) == 4 and all("images" in str(ref) for ref, _ in train.items)
    with pytest.raises(ConfigError, match="no split 'test'"):
        open_dataset(tmp_path, "tiny-imagenet", "test")  # its test images carry no labels


def test_oxford_pets_test_list_and_readable_breeds(tmp_path):
    layouts.oxford_pets(tmp_path)
    test = open_dataset(tmp_path, "oxford-pets")
    assert (test.split, test.layout, len(test.class_ids)) == ("test", "torchvision", 37)
    assert test.templates == ["a photo of a {}, a type of pet."]
    assert sorted(files(test)) == sorted(
        f"{breed}_{i}.jpg" for breed, _, _ in layouts.PETS for i in (3, 4)
    )
    named = {test.class_names[label] for _, label in test.items}
    assert named == {"Abyssinian", "American Bulldog", "Yorkshire Terrier"}
    assert len(open_dataset(tmp_path, "pets", "trainval").items) == 6


def test_oxford_pets_matches_torchvision(tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    layouts.oxford_pets(tmp_path)
    theirs = datasets.OxfordIIITPet(str(tmp_path), split="test")
    ours = open_dataset(tmp_path, "oxford-pets", "test")
    assert [Path(str(r)) for r, _ in ours.items] == [Path(p) for p in theirs._images]
    # torchvision numbers breeds by annotations' class id - 1: the table's row
    assert [label for _, label in ours.items] == theirs._labels


def test_food101_official_test_split_matches_torchvision(tmp_path):
    layouts.food101(tmp_path)
    ours = open_dataset(tmp_path, "food-101")
    assert ours.split == "test" and ours.templates == ["a photo of {}, a type of food."]
    assert {ours.class_names[label] for _, label in ours.items} == {
        "apple pie",
        "cheese plate",
        "cheesecake",
    }
    datasets = pytest.importorskip("torchvision.datasets")
    theirs = datasets.Food101(str(tmp_path), split="test")
    assert [Path(str(r)) for r, _ in ours.items] == [Path(p) for p in theirs._image_files]
    assert [ours.class_ids[label] for _, label in ours.items] == [
        theirs.classes[t] for t in theirs._labels
    ]


def test_caltech101_leaves_out_the_background_class(tmp_path):
    layouts.caltech101(tmp_path)
    ours = open_dataset(tmp_path, "caltech-101")
    assert ours.split == "all" and len(ours.class_ids) == 101
    assert "BACKGROUND_Google" not in ours.class_ids
    assert {ours.class_names[label] for _, label in ours.items} == {"centered face", "airplane"}
    with pytest.raises(ConfigError, match="no official split"):
        open_dataset(tmp_path, "caltech-101", "test")
    datasets = pytest.importorskip("torchvision.datasets")
    theirs = datasets.Caltech101(str(tmp_path), target_type="category")
    assert [ours.class_ids[label] for _, label in ours.items] == [
        theirs.categories[t] for t in theirs.y
    ]


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_pickles_read_without_unpickling_anything_else(tmp_path, hundred, monkeypatch):
    layouts.cifar(tmp_path, hundred)
    ours = open_dataset(tmp_path, "cifar-100" if hundred else "cifar-10")
    assert ours.split == "test" and len(ours.items) == 4
    assert len(ours.class_ids) == (100 if hundred else 10)
    train = open_dataset(tmp_path, "cifar-100" if hundred else "cifar-10", "train")
    assert len(train.items) == (6 if hundred else 10)
    datasets = pytest.importorskip("torchvision.datasets")
    import torchvision.datasets.cifar as tv_cifar

    # torchvision checks the real files' MD5 sums; these are generated copies
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    kind = datasets.CIFAR100 if hundred else datasets.CIFAR10
    theirs = kind(str(tmp_path), train=False)
    for (ref, label), pixels, target in zip(ours.items, theirs.data, theirs.targets, strict=True):
        decoded = np.asarray(Image.open(io.BytesIO(ref.read_bytes())))
        np.testing.assert_array_equal(decoded, pixels)  # lossless, same orientation
        assert normalised(ours.class_names[label]) == normalised(theirs.classes[target])
    # a reference travels to worker processes
    ref = pickle.loads(pickle.dumps(ours.items[0][0]))
    assert ref.read_bytes() == ours.items[0][0].read_bytes()


def test_a_cifar_file_with_code_in_it_is_refused(tmp_path):
    import os

    layouts.cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("wb") as handle:
        pickle.dump({"data": Evil(), "labels": [0]}, handle, protocol=2)
    with pytest.raises(ConfigError, match="refused to load"):
        open_dataset(tmp_path, "cifar-10")


# ---- Hugging Face layouts --------------------------------------------------------------------


def test_parquet_shards_with_image_and_classlabel(tmp_path):
    layouts.hf_parquet(tmp_path, ["cat", "dog"], {"train": [0, 1, 0, 1, 0], "test": [1, 0, 1]})
    test = open_dataset(tmp_path, "hf")
    assert (test.split, test.layout) == ("test", "hf-parquet")
    assert test.class_names == ["cat", "dog"]
    assert [label for _, label in test.items] == [1, 1, 0]  # shard 0 (rows 0, 2), shard 1
    decoded = [Image.open(io.BytesIO(ref.read_bytes())).size for ref, _ in test.items]
    assert decoded == [(36, 30)] * 3
    train = open_dataset(tmp_path, "hf", "train")
    assert len(train.items) == 5 and str(train.items[2][0]).endswith(
        "train-00000-of-00002.parquet#2"
    )
    # a row in a later row group (2 rows each) reads its own image
    first = layouts.image_bytes(1)
    assert train.items[0][0].read_bytes() == first
    assert train.items[2][0].read_bytes() == layouts.image_bytes(3)


def test_parquet_without_class_names_needs_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    table = pa.table({"image": [layouts.image_bytes(1)], "label": [3]})
    pq.write_table(table, tmp_path / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(ConfigError, match="numbers without class names"):
        open_dataset(tmp_path, "hf")


def test_unlabelled_split_is_refused(tmp_path):
    layouts.hf_parquet(tmp_path, ["cat", "dog"], {"test": [-1, -1]}, shards=1)
    with pytest.raises(ConfigError, match="unlabelled"):
        open_dataset(tmp_path, "hf", "test")


def test_named_datasets_as_hugging_face_copies(tmp_path):
    # ethz/food101 keeps the official test split as "validation"
    food = tmp_path / "food"
    names = ["apple_pie", "cheesecake", "cheese_plate"]
    layouts.hf_parquet(food, names, {"train": [0, 1, 2], "validation": [2, 1]})
    test = open_dataset(food, "food-101")
    assert test.split == "validation" and len(test.class_ids) == 101
    assert [test.class_names[label] for _, label in test.items] == ["cheese plate", "cheesecake"]
    # the ImageNet copy names classes by their long WordNet lemmas, in the official order
    imagenet = tmp_path / "imagenet"
    long_names = [f"{name}, something" for name in class_table("imagenet-1k").names]
    layouts.hf_parquet(imagenet, long_names, {"validation": [0, 999]}, shards=1)
    val = open_dataset(imagenet, "imagenet-1k")
    assert [val.class_names[label] for _, label in val.items] == ["tench", "toilet paper"]
    # CIFAR-100 has two ClassLabels: the fine one is the class
    c100 = tmp_path / "cifar100"
    fine = list(class_table("cifar-100").ids)
    layouts.hf_parquet(
        c100, fine, {"test": [4, 99]}, image="img", label="fine_label", extra={"coarse_label": []}
    )
    assert [label for _, label in open_dataset(c100, "cifar-100").items] == [4, 99]
    # a Pets copy with lower-case breed names
    pets = tmp_path / "pets"
    layouts.hf_parquet(pets, ["abyssinian", "american_bulldog"], {"test": [1, 0]}, shards=1)
    got = open_dataset(pets, "oxford-pets")
    assert [got.class_names[label] for _, label in got.items] == ["American Bulldog", "Abyssinian"]
    # a Tiny-ImageNet copy labelled by WordNet ids (zh-plus/tiny-imagenet)
    tiny = tmp_path / "tiny"
    layouts.hf_parquet(tiny, ["n01443537", "n02085620"], {"valid": [0, 1]}, shards=1)
    got = open_dataset(tiny, "tiny-imagenet")
    assert got.split == "valid" and got.class_names == ["goldfish", "Chihuahua"]


def test_wrong_dataset_names_its_classes(tmp_path):
    layouts.hf_parquet(tmp_path, ["cat", "dog"], {"test": [0, 1]}, shards=1)
    with pytest.raises(ConfigError, match=r"not Food-101 classes.*cat, dog"):
        open_dataset(tmp_path, "food-101")


def test_imagefolder_with_metadata_csv(tmp_path):
    layouts.hf_imagefolder(
        tmp_path,
        {
            "train": [("a.jpg", "dog"), ("b.jpg", "cat"), ("sub/c.jpg", "dog")],
            "test": [("d.jpg", "cat")],
        },
    )
    train = open_dataset(tmp_path, "hf", "train")
    assert train.layout == "hf-imagefolder" and train.class_names == ["cat", "dog"]
    assert labelled(train) == [("a.jpg", "dog"), ("b.jpg", "cat"), ("c.jpg", "dog")]
    assert open_dataset(tmp_path, "hf").split == "test"
    (tmp_path / "test" / "metadata.csv").write_text("file_name,label\n../train/a.jpg,cat\n")
    with pytest.raises(ConfigError, match="points outside"):
        open_dataset(tmp_path, "hf", "test")
    (tmp_path / "test" / "metadata.csv").write_text("file_name,breed\nd.jpg,cat\n")
    assert open_dataset(tmp_path, "hf", "test", label_column="breed").class_ids == ["cat"]


def test_imagefolder_with_class_folders_per_split(tmp_path):
    for split in ("train", "validation"):
        for c, name in enumerate(["Abyssinian", "american_bulldog"]):
            layouts.jpeg(tmp_path / split / name / f"{split}{c}.jpg", c)
    got = open_dataset(tmp_path, "oxford-pets", "test")  # validation stands in for test
    assert got.split == "validation" and got.layout == "hf-imagefolder"
    assert {got.class_names[label] for _, label in got.items} == {"Abyssinian", "American Bulldog"}


def test_stratified_subset_takes_classes_in_turn():
    items = [(f"{c}{i}", c) for c in range(3) for i in range(4)]
    assert stratified(items, 1, None) == [("00", 0), ("10", 1), ("20", 2)]
    assert stratified(items, None, 4) == [("00", 0), ("01", 0), ("10", 1), ("20", 2)]
    assert stratified(items, 2, 5) == [("00", 0), ("01", 0), ("10", 1), ("11", 1), ("20", 2)]


def test_unknown_layout_and_dataset_names(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        open_dataset(tmp_path, "mnist")
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match="neither Oxford-IIIT Pets as torchvision lays it out"):
        open_dataset(tmp_path, "oxford-pets")
