"""Small generated datasets in the exact layouts torchvision and Hugging Face ``datasets`` use.

Every builder writes real files: JPEG/PNG images, torchvision's annotation
files and pickled CIFAR batches, Parquet shards with the schema metadata
``datasets`` writes (``Image`` and ``ClassLabel`` features), an ``imagefolder``
with ``metadata.csv``.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np

from helpers import photo


def jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(*size, seed=seed).save(path, format="JPEG" if path.suffix.lower() != ".png" else "PNG")
    return path


def image_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    photo(36, 30, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def imagenet_torchvision(root: Path, wnids=("n01440764", "n02085620", "n15075141")) -> Path:
    """``train/`` and ``val/`` of WordNet-id folders (what torchvision's ImageNet leaves)."""
    for split, count in (("train", 3), ("val", 2)):
        for c, wnid in enumerate(wnids):
            for i in range(count):
                jpeg(root / split / wnid / f"{wnid}_{split}_{i}.JPEG", 100 * c + i)
    return root


def tiny_imagenet(root: Path, wnids=("n01443537", "n02085620")) -> Path:
    """``tiny-imagenet-200/`` as the zip unpacks."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text(
        "n01443537\tgoldfish, Carassius auratus\nn02085620\tChihuahua\nn99999999\tsomething\n"
    )
    annotations = []
    for c, wnid in enumerate(wnids):
        for i in range(2):
            jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 10 * c + i)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(2):
            name = f"val_{2 * c + i}.JPEG"
            jpeg(base / "val" / "images" / name, 50 + 10 * c + i)
            annotations.append(f"{name}\t{wnid}\t0\t0\t10\t10\n")
    (base / "val" / "val_annotations.txt").write_text("".join(annotations))
    jpeg(base / "test" / "images" / "test_0.JPEG", 99)
    return root


PETS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("yorkshire_terrier", 37, 2)]


def oxford_pets(root: Path) -> Path:
    """``oxford-iiit-pet/`` with ``images/`` and ``annotations/{trainval,test}.txt``."""
    base = root / "oxford-iiit-pet"
    lines = {"trainval": [], "test": []}
    for breed, class_id, species in PETS:
        for i in range(1, 5):
            image_id = f"{breed}_{i}"
            jpeg(base / "images" / f"{image_id}.jpg", class_id * 10 + i)
            split = "trainval" if i <= 2 else "test"
            lines[split].append(f"{image_id} {class_id} {species} {i}\n")
    (base / "annotations").mkdir(parents=True)
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("".join(rows))
    return root


def food101(root: Path, classes=("apple_pie", "cheese_plate", "cheesecake")) -> Path:
    """``food-101/`` with ``images/<class>/<id>.jpg`` and ``meta/{train,test}.json``."""
    base = root / "food-101"
    listed = {"train": {}, "test": {}}
    for c, name in enumerate(classes):
        for i in range(4):
            jpeg(base / "images" / name / f"{1000 + i}.jpg", 10 * c + i)
            listed["train" if i < 2 else "test"].setdefault(name, []).append(f"{name}/{1000 + i}")
    (base / "meta").mkdir(parents=True)
    for split, entries in listed.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(entries))
        (base / "meta" / f"{split}.txt").write_text(
            "".join(f"{e}\n" for entry in entries.values() for e in entry)
        )
    (base / "meta" / "classes.txt").write_text("".join(f"{c}\n" for c in sorted(classes)))
    return root


def caltech101(root: Path, categories=("BACKGROUND_Google", "Faces_easy", "airplanes")) -> Path:
    """``caltech101/101_ObjectCategories/<category>/image_0001.jpg`` (torchvision's layout)."""
    base = root / "caltech101" / "101_ObjectCategories"
    for c, category in enumerate(categories):
        for i in range(1, 4):
            jpeg(base / category / f"image_{i:04d}.jpg", 10 * c + i)
    (root / "caltech101" / "Annotations").mkdir()
    return root


def cifar(root: Path, hundred: bool = False) -> Path:
    """``cifar-10-batches-py`` / ``cifar-100-python``: pickled dicts of arrays, as shipped."""
    rng = np.random.default_rng(1)
    if hundred:
        base = root / "cifar-100-python"
        base.mkdir(parents=True)
        names = ["apple", "aquarium_fish", "worm"]
        meta = {"fine_label_names": names, "coarse_label_names": ["fruit", "fish", "insects"]}
        files = {"train": 6, "test": 4}
    else:
        base = root / "cifar-10-batches-py"
        base.mkdir(parents=True)
        meta = {"label_names": ["airplane", "automobile", "bird"], "num_cases_per_batch": 4}
        files = {f"data_batch_{n}": 2 for n in range(1, 6)} | {"test_batch": 4}
    with (base / ("meta" if hundred else "batches.meta")).open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    for name, count in files.items():
        data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = [i % 3 for i in range(count)]
        batch = {"batch_label": f"{name}", "data": data, "filenames": [f"{i}.png" for i in labels]}
        if hundred:
            batch |= {"fine_labels": labels, "coarse_labels": labels}
        else:
            batch["labels"] = labels
        with (base / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return root


def hf_features(names: list[str], image: str = "image", label: str = "label", **extra) -> bytes:
    features = {image: {"_type": "Image"}, label: {"names": names, "_type": "ClassLabel"}}
    features |= {key: {"names": value, "_type": "ClassLabel"} for key, value in extra.items()}
    return json.dumps({"info": {"features": features}}).encode()


def hf_parquet(
    root: Path,
    names: list[str],
    splits: dict[str, list[int]],
    *,
    shards: int = 2,
    image: str = "image",
    label: str = "label",
    extra: dict[str, list[str]] | None = None,
) -> Path:
    """``data/<split>-0000i-of-0000n.parquet`` with an Image struct column and a ClassLabel,
    the schema metadata ``datasets`` writes, and row groups of 2 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    extra = extra or {}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (root / "data").mkdir(parents=True)
    seed = 0
    for split, labels in splits.items():
        parts = [labels[i::shards] for i in range(shards)]
        for number, part in enumerate(parts):
            cells = []
            for _ in part:
                seed += 1
                cells.append({"bytes": image_bytes(seed), "path": f"{seed}.png"})
            columns = {image: pa.array(cells, type=image_type), label: pa.array(part, pa.int64())}
            columns |= {key: pa.array([0] * len(part), pa.int64()) for key in extra}
            table = pa.table(columns)
            metadata = {b"huggingface": hf_features(names, image, label, **extra)}
            table = table.replace_schema_metadata(metadata)
            name = f"{split}-{number:05d}-of-{shards:05d}.parquet"
            pq.write_table(table, root / "data" / name, row_group_size=2)
    return root


def hf_imagefolder(root: Path, rows: dict[str, list[tuple[str, str]]]) -> Path:
    """``<split>/metadata.csv`` (file_name, label) beside the images."""
    seed = 0
    for split, entries in rows.items():
        lines = ["file_name,label\n"]
        for file_name, label in entries:
            seed += 1
            jpeg(root / split / file_name, seed)
            lines.append(f"{file_name},{label}\n")
        (root / split / "metadata.csv").write_text("".join(lines))
    return root
