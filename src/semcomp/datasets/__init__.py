"""Labelled image datasets, read in the layouts their users have.

``open_dataset(root, dataset, split)`` lists a dataset's images with their
labels, its classes (ids as the dataset writes them, and human-readable
names: never a WordNet id as a prompt) and its prompt templates. Datasets:

- ``folder``: a folder per class (``ROOT/<class>/<image>``, torchvision's
  ``ImageFolder``); WordNet-id folders (ImageNet's ``train/``) are named by the
  ImageNet table.
- ``hf``: a Hugging Face ``datasets`` layout: Parquet shards
  (``data/<split>-00000-of-00002.parquet`` with an ``Image`` column and a
  ``ClassLabel``, as ``push_to_hub`` writes them) or an ``imagefolder``
  (``<split>/metadata.csv`` or ``metadata.jsonl`` with ``file_name`` and a label
  column, or ``<split>/<class>/<image>``).
- the paper's datasets, in torchvision's folder layout or any Hugging Face layout
  above: ``imagenet-1k`` (``train/`` and ``val/`` of WordNet-id folders),
  ``tiny-imagenet`` (``tiny-imagenet-200/`` as it unzips: ``wnids.txt``,
  ``words.txt``, ``train/<wnid>/images/``, ``val/images`` with
  ``val_annotations.txt``), ``oxford-pets`` (``oxford-iiit-pet/images`` and
  ``annotations/{trainval,test}.txt``), ``food-101`` (``food-101/images`` and
  ``meta/{train,test}.json``), ``caltech-101`` (``caltech101/101_ObjectCategories``,
  without ``BACKGROUND_Google``), ``cifar-10`` / ``cifar-100``
  (``cifar-10-batches-py`` / ``cifar-100-python``: pickles read with a loader
  that accepts arrays only).

A named dataset is evaluated on its official test split by default
(:data:`EVALUATION_SPLIT`); its classes are the full table (so a subset of the
images is still classified among all classes) and its templates those of
OpenAI's CLIP for that dataset (``classes/<dataset>.toml``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcomp.datasets.sources import CifarImage, ParquetImage, read_cifar_pickle
from semcomp.datasets.tables import WORDNET_ID, ClassTable, class_table, normalised
from semcomp.errors import ConfigError
from semcomp.images import IMAGE_SUFFIXES

NAMED = (
    "imagenet-1k",
    "tiny-imagenet",
    "oxford-pets",
    "food-101",
    "caltech-101",
    "cifar-10",
    "cifar-100",
)
DATASETS = ("folder", "hf", *NAMED)
ALIASES = {
    "imagenet": "imagenet-1k",
    "pets": "oxford-pets",
    "oxford-iiit-pet": "oxford-pets",
    "food101": "food-101",
    "caltech101": "caltech-101",
    "cifar10": "cifar-10",
    "cifar100": "cifar-100",
    "tinyimagenet": "tiny-imagenet",
}
#: the split each named dataset is evaluated on (Food-101's 25,250 test images, Pets' test
#: list, ImageNet's and Tiny-ImageNet's validation sets, Caltech-101 has no official split)
EVALUATION_SPLIT = {
    "imagenet-1k": "val",
    "tiny-imagenet": "val",
    "oxford-pets": "test",
    "food-101": "test",
    "caltech-101": "all",
    "cifar-10": "test",
    "cifar-100": "test",
}
VALIDATION_NAMES = ("validation", "valid", "val", "dev")
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", *VALIDATION_NAMES})


@dataclass
class LabelledImages:
    """A dataset's images (paths or :mod:`sources` references) with labels into its classes."""

    dataset: str
    split: str
    layout: str
    root: Path
    class_ids: list[str]
    class_names: list[str]
    #: the dataset's prompt templates (``{}`` for the name); empty: the caller's default
    templates: list[str]
    items: list[tuple[Any, int]] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What to record beside embeddings of these images."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "layout": self.layout,
            "class_ids": self.class_ids,
        }


@dataclass
class _Found:
    layout: str
    split: str
    ids: list[str]
    items: list[tuple[Any, int]]
    #: names the dataset itself gives (Tiny-ImageNet's words.txt), for ids no table names
    names: dict[str, str] = field(default_factory=dict)
    #: integer labels in a table's own order (a Hugging Face ClassLabel): map by position
    by_position: bool = False


def dataset_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; datasets: {', '.join(DATASETS)}")
    return key


def open_dataset(
    root: Path,
    dataset: str = "folder",
    split: str | None = None,
    *,
    label_column: str | None = None,
    per_class: int | None = None,
    limit: int | None = None,
) -> LabelledImages:
    """List a dataset's labelled images (see the module docstring); ``per_class`` and
    ``limit`` take a stratified subset (the first images of each class, classes in turn)."""
    dataset = dataset_name(dataset)
    root = Path(root).resolve()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    if dataset == "folder":
        ids, items = class_folders(root)
        found = _Found("folder", split or "all", ids, items)
    elif dataset == "hf":
        found = _huggingface(root, split, label_column, None)
    else:
        found = _named_layout(dataset, root, split, label_column)
    if dataset in NAMED:
        images = _on_table(class_table(dataset), found, root)
    else:
        names = _readable(found.ids, root)
        images = LabelledImages(dataset, found.split, found.layout, root, found.ids, names, [])
        images.items = found.items
    images.items = stratified(images.items, per_class, limit)
    if not images.items:
        raise ConfigError(f"{root}: no labelled images in split {images.split!r}")
    return images


def stratified(
    items: list[tuple[Any, int]], per_class: int | None, limit: int | None
) -> list[tuple[Any, int]]:
    """At most ``per_class`` images of each class, then at most ``limit`` in all, taking
    classes in turn; the kept images stay in their listed order."""
    if per_class is None and limit is None:
        return items
    by_class: dict[int, list[int]] = {}
    for position, (_, label) in enumerate(items):
        by_class.setdefault(label, []).append(position)
    if per_class is not None:
        by_class = {label: rows[:per_class] for label, rows in by_class.items()}
    kept: list[int] = []
    queues = [rows for _, rows in sorted(by_class.items())]
    depth = 0
    while queues and (limit is None or len(kept) < limit):
        queues = [rows for rows in queues if len(rows) > depth]
        for rows in queues:
            if limit is not None and len(kept) >= limit:
                break
            kept.append(rows[depth])
        depth += 1
    return [items[position] for position in sorted(kept)]


def pixel_count(image: Any) -> int:
    """Width × height of an image file or dataset row, from its header (nothing decoded)."""
    from PIL import Image

    opened = image if isinstance(image, (str, Path)) else io.BytesIO(image.read_bytes())
    with Image.open(opened) as header:  # a file: only its header is read
        return header.width * header.height


# ---- class folders --------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
    )


def class_folders(root: Path, exclude: frozenset[str] = frozenset()) -> tuple[list[str], list]:
    """Class ids (sorted subfolders) and (file, label) pairs, in a stable order."""
    classes = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in exclude
    )
    if not classes:
        raise ConfigError(f"{root} has no class subfolders (expected ROOT/<class>/<image>)")
    files = [
        (path, label) for label, name in enumerate(classes) for path in _images_in(root / name)
    ]
    return classes, files


def _readable(ids: list[str], root: Path) -> list[str]:
    """Folder or label names as prompts; WordNet ids become ImageNet's readable names."""
    if not any(WORDNET_ID.match(i) for i in ids):
        return list(ids)
    table = class_table("imagenet-1k")
    rows = dict(zip(table.ids, table.names, strict=True))
    unknown = [i for i in ids if WORDNET_ID.match(i) and i not in rows]
    if unknown:
        raise ConfigError(
            f"{root}: class {unknown[0]} is a WordNet id that is not an ImageNet-1k class; "
            "a prompt needs a readable name (rename the folder)"
        )
    return [rows.get(i, i) for i in ids]


def _on_table(table: ClassTable, found: _Found, root: Path) -> LabelledImages:
    """Name a named dataset's classes by its table; labels become rows of the table."""
    lookup = table.lookup()
    if table.borrowed:  # the dataset's own class list, named by the table
        names, unknown = [], []
        for class_id in found.ids:
            row = lookup.get(normalised(class_id))
            if row is not None:
                names.append(table.names[row])
            elif class_id in found.names:
                names.append(found.names[class_id])
            else:
                unknown.append(class_id)
        if unknown:
            raise ConfigError(
                f"{root}: {len(unknown)} class(es) of {table.title} have no readable name "
                f"(first: {unknown[0]})"
            )
        images = LabelledImages(
            table.name, found.split, found.layout, root, found.ids, names, list(table.templates)
        )
        images.items = found.items
        return images
    excluded = {normalised(e) for e in table.exclude}
    rows = [lookup.get(normalised(class_id)) for class_id in found.ids]
    unknown = [
        class_id
        for class_id, row in zip(found.ids, rows, strict=True)
        if row is None and normalised(class_id) not in excluded
    ]
    if unknown and found.by_position and len(found.ids) == len(table.ids):
        rows = list(range(len(table.ids)))  # a ClassLabel in the table's order, other wording
    elif unknown:
        raise ConfigError(
            f"{root}: {len(unknown)} class(es) are not {table.title} classes "
            f"(first: {', '.join(unknown[:3])}); is this the right --dataset?"
        )
    images = LabelledImages(
        table.name,
        found.split,
        found.layout,
        root,
        list(table.ids),
        list(table.names),
        list(table.templates),
    )
    images.items = [(ref, rows[label]) for ref, label in found.items if rows[label] is not None]
    return images


# ---- splits -----------------------------------------------------------------------------------


def _choose_split(
    available: list[str],
    wanted: str | None,
    dataset: str | None,
    root: Path,
    stand_ins: bool = False,
) -> str:
    """The split asked for, or its other name (``val`` / ``validation`` / ``valid``); with
    ``stand_ins`` (a Hugging Face copy, which may keep the official test split as
    ``validation``) also ``validation`` for ``test`` and ``train`` for ``trainval``. By
    default: the dataset's evaluation split, else the only split, else ``test``."""
    if wanted is None and dataset in EVALUATION_SPLIT:
        wanted = EVALUATION_SPLIT[dataset]
    if wanted is None:
        if len(available) == 1:
            return available[0]
        wanted = "test"
    if wanted in available:
        return wanted
    candidates = {
        "test": ("testing", *(VALIDATION_NAMES if stand_ins else ())),
        "train": ("training",),
        "trainval": ("train",) if stand_ins else (),
    }.get(wanted, VALIDATION_NAMES if wanted in VALIDATION_NAMES else ())
    for other in candidates:
        if other in available:
            return other
    raise ConfigError(
        f"{root} has no split {wanted!r} (splits: {', '.join(sorted(available)) or 'none'})"
    )


# ---- Hugging Face datasets --------------------------------------------------------------------


def parquet_split(path: Path, root: Path) -> str:
    match = re.match(r"^(.+?)-\d{5}-of-\d{5}$", path.stem)
    if match:
        return match[1]
    if path.stem in SPLIT_NAMES:
        return path.stem
    if path.parent != root and path.parent.name in SPLIT_NAMES:
        return path.parent.name
    return "train"


def _features(path: Path) -> dict[str, Any]:
    """The ``datasets`` feature types a Parquet shard's schema metadata records."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if b"huggingface" not in metadata:
        return {}
    try:
        info = json.loads(metadata[b"huggingface"])
    except ValueError:
        return {}
    return info.get("info", {}).get("features", {}) or {}


def _huggingface(
    root: Path, split: str | None, label_column: str | None, dataset: str | None
) -> _Found:
    shards = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
    if shards:
        return _parquet_shards(root, shards, split, label_column, dataset)
    return _imagefolder(root, split, label_column, dataset)


def _parquet_shards(
    root: Path, shards: list[Path], split: str | None, label_column: str | None, dataset: str | None
) -> _Found:
    import pyarrow.parquet as pq

    splits: dict[str, list[Path]] = {}
    for shard in shards:
        splits.setdefault(parquet_split(shard, root), []).append(shard)
    chosen = _choose_split(list(splits), split, dataset, root, stand_ins=True)
    features = _features(splits[chosen][0])
    columns = pq.read_schema(splits[chosen][0]).names
    image = next((c for c, f in features.items() if f.get("_type") == "Image"), None)
    image = image or next((c for c in ("image", "img") if c in columns), None)
    labels = [c for c, f in features.items() if f.get("_type") == "ClassLabel"]
    label = label_column or next((c for c in ("label", "fine_label") if c in labels), None)
    label = label or (labels[0] if labels else "label")
    if image is None or label not in columns:
        raise ConfigError(
            f"{splits[chosen][0]}: needs an image column and a label column "
            f"(columns: {', '.join(columns)}; name the label with --label-column)"
        )
    names = features.get(label, {}).get("names")
    values: list[tuple[Path, int, Any]] = []
    for shard in splits[chosen]:
        column = pq.read_table(shard, columns=[label]).column(0).to_pylist()
        values += [(shard, row, value) for row, value in enumerate(column)]
    ids, items, by_position = _labels([v for _, _, v in values], names, root, dataset)
    refs = [ParquetImage(shard, row, image) for shard, row, _ in values]
    return _Found(
        "hf-parquet",
        chosen,
        ids,
        [(refs[i], label) for i, label in items],
        by_position=by_position,
    )


def _labels(
    values: list[Any], names: list[str] | None, root: Path, dataset: str | None
) -> tuple[list[str], list[tuple[int, int]], bool]:
    """Class ids and (row, label) pairs from a label column: ClassLabel integers with their
    names, integers in a named dataset's own order, or class names as text."""
    if any(v is None or (isinstance(v, int) and v < 0) for v in values):
        raise ConfigError(f"{root}: this split has unlabelled images (label -1 or empty)")
    if all(isinstance(v, int) for v in values):
        if names:
            ids = [str(n) for n in names]
        elif dataset in NAMED and not class_table(dataset).borrowed:
            ids = list(class_table(dataset).ids)  # numbered in the table's order
        else:
            raise ConfigError(
                f"{root}: labels are numbers without class names (no ClassLabel in the "
                "dataset's metadata); write the class names as the labels"
            )
        too_big = [v for v in values if v >= len(ids)]
        if too_big:
            raise ConfigError(f"{root}: label {too_big[0]} but only {len(ids)} classes")
        return ids, list(enumerate(values)), True
    text = [str(v) for v in values]
    ids = sorted(set(text))
    position = {class_id: label for label, class_id in enumerate(ids)}
    return ids, [(row, position[v]) for row, v in enumerate(text)], False


def _imagefolder(
    root: Path, split: str | None, label_column: str | None, dataset: str | None
) -> _Found:
    folders = {p.name: p for p in root.iterdir() if p.is_dir() and p.name in SPLIT_NAMES}
    folders = folders or {"train": root}
    chosen = _choose_split(list(folders), split, dataset, root, stand_ins=True)
    folder = folders[chosen]
    metadata = next(
        (folder / n for n in ("metadata.csv", "metadata.jsonl") if (folder / n).is_file()), None
    )
    if metadata is None:
        ids, items = class_folders(folder)
        return _Found("hf-imagefolder", chosen, ids, items)
    if metadata.suffix == ".csv":
        with metadata.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = [
            json.loads(line) for line in metadata.read_text("utf-8").splitlines() if line.strip()
        ]
    label = label_column or "label"
    if not rows or "file_name" not in rows[0] or label not in rows[0]:
        raise ConfigError(
            f"{metadata} needs a file_name and a {label!r} column (has "
            f"{', '.join(rows[0]) if rows else 'no rows'}; name the label with --label-column)"
        )
    files = []
    for row in rows:
        path = (folder / row["file_name"]).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise ConfigError(f"{metadata}: {row['file_name']!r} points outside {folder}")
        files.append(path)
    values = [row[label] for row in rows]
    if all(isinstance(v, str) and v.strip().lstrip("-").isdigit() for v in values):
        values = [int(v) for v in values]  # CSV cells are text; integer labels stay integers
    ids, items, by_position = _labels(values, None, metadata, dataset)
    return _Found(
        "hf-imagefolder",
        chosen,
        ids,
        [(files[row], label) for row, label in items],
        by_position=by_position,
    )


# ---- torchvision's layouts --------------------------------------------------------------------


def _base(root: Path, folder: str, marker: str) -> Path | None:
    """``root/folder`` or ``root`` itself, whichever holds ``marker``."""
    for base in (root / folder, root):
        if (base / marker).exists():
            return base
    return None


def _imagenet(root: Path, split: str | None) -> _Found | None:
    def wordnet_folders(path: Path) -> bool:
        return path.is_dir() and any(WORDNET_ID.match(p.name) for p in path.iterdir())

    splits = {name: root / name for name in ("train", "val") if wordnet_folders(root / name)}
    if not splits and wordnet_folders(root):  # the split folder itself
        splits = {root.name: root}
    if not splits:
        return None
    chosen = _choose_split(list(splits), split, "imagenet-1k", root)
    ids, items = class_folders(splits[chosen])
    return _Found("torchvision", chosen, ids, items)


def _tiny_imagenet(root: Path, split: str | None) -> _Found | None:
    base = _base(root, "tiny-imagenet-200", "wnids.txt")
    if base is None:
        return None
    ids = base.joinpath("wnids.txt").read_text().split()
    names = {}
    if (base / "words.txt").is_file():
        for line in base.joinpath("words.txt").read_text("utf-8").splitlines():
            wnid, _, words = line.partition("\t")
            names[wnid.strip()] = words.split(",")[0].strip()
    chosen = _choose_split(["train", "val"], split, "tiny-imagenet", root)
    label = {wnid: row for row, wnid in enumerate(ids)}
    if chosen == "train":
        items = [
            (path, row)
            for row, wnid in enumerate(ids)
            for path in _images_in(base / "train" / wnid / "images")
        ]
    else:
        annotations = base / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise ConfigError(f"{annotations} is missing (the validation labels)")
        items = []
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            if parts[1] not in label:
                raise ConfigError(f"{annotations}: {parts[1]} is not in wnids.txt")
            items.append((base / "val" / "images" / parts[0], label[parts[1]]))
    return _Found("tiny-imagenet", chosen, ids, items, names)


def _oxford_pets(root: Path, split: str | None) -> _Found | None:
    base = _base(root, "oxford-iiit-pet", "annotations")
    if base is None:
        return None
    chosen = _choose_split(["trainval", "test"], split, "oxford-pets", root)
    listing = base / "annotations" / f"{chosen}.txt"
    if not listing.is_file():
        raise ConfigError(f"{listing} is missing (the {chosen} split's image list)")
    breeds: dict[int, str] = {}
    rows: list[tuple[str, int]] = []
    for line in listing.read_text().splitlines():
        parts = line.split()
        if not parts or line.startswith("#"):
            continue
        image_id, class_id = parts[0], int(parts[1])
        breeds.setdefault(class_id, image_id.rsplit("_", 1)[0])
        rows.append((image_id, class_id))
    ids = [breeds[c] for c in sorted(breeds)]
    position = {c: row for row, c in enumerate(sorted(breeds))}
    items = [(base / "images" / f"{i}.jpg", position[c]) for i, c in rows]
    return _Found("torchvision", chosen, ids, items)


def _food101(root: Path, split: str | None) -> _Found | None:
    base = _base(root, "food-101", "meta")
    if base is None:
        return None
    chosen = _choose_split(["train", "test"], split, "food-101", root)
    meta = base / "meta" / f"{chosen}.json"
    if meta.is_file():
        listed = json.loads(meta.read_text())
    elif meta.with_suffix(".txt").is_file():
        listed = {}
        for line in meta.with_suffix(".txt").read_text().split():
            listed.setdefault(line.split("/")[0], []).append(line)
    else:
        raise ConfigError(f"{meta} is missing (the {chosen} split's image list)")
    ids = sorted(listed)
    items = [
        (base / "images" / f"{entry}.jpg", label)
        for label, name in enumerate(ids)
        for entry in listed[name]
    ]
    return _Found("torchvision", chosen, ids, items)


def _caltech101(root: Path, split: str | None) -> _Found | None:
    base = None
    for candidate in (root / "caltech101" / "101_ObjectCategories", root / "101_ObjectCategories"):
        if candidate.is_dir():
            base = candidate
    if base is None:
        return None
    if split not in (None, "all"):
        raise ConfigError("Caltech-101 has no official split: leave --split out (all images)")
    ids, items = class_folders(base, exclude=frozenset({"BACKGROUND_Google"}))
    return _Found("torchvision", "all", ids, items)


def _cifar(root: Path, split: str | None, hundred: bool) -> _Found | None:
    folder, meta, key = (
        ("cifar-100-python", "meta", "fine_label")
        if hundred
        else ("cifar-10-batches-py", "batches.meta", "label")
    )
    base = _base(root, folder, meta)
    if base is None:
        return None
    name = "cifar-100" if hundred else "cifar-10"
    chosen = _choose_split(["train", "test"], split, name, root)
    if hundred:
        files = [base / chosen]
    elif chosen == "train":
        files = [base / f"data_batch_{n}" for n in range(1, 6)]
    else:
        files = [base / "test_batch"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"{name}: missing batch file(s) {', '.join(missing)}")
    ids = [str(n) for n in read_cifar_pickle(base / meta)[f"{key}_names"]]
    items = []
    for path in files:
        labels = read_cifar_pickle(path)[f"{key}s"]
        items += [(CifarImage(path, index), int(label)) for index, label in enumerate(labels)]
    return _Found("torchvision", chosen, ids, items)


TORCHVISION_LAYOUTS = {
    "imagenet-1k": (_imagenet, "train/ and val/ of WordNet-id folders"),
    "tiny-imagenet": (_tiny_imagenet, "tiny-imagenet-200/ with wnids.txt"),
    "oxford-pets": (_oxford_pets, "oxford-iiit-pet/ with images/ and annotations/"),
    "food-101": (_food101, "food-101/ with images/ and meta/"),
    "caltech-101": (_caltech101, "caltech101/101_ObjectCategories/"),
    "cifar-10": (lambda r, s: _cifar(r, s, False), "cifar-10-batches-py/"),
    "cifar-100": (lambda r, s: _cifar(r, s, True), "cifar-100-python/"),
}


def _named_layout(dataset: str, root: Path, split: str | None, label_column: str | None) -> _Found:
    reader, expected = TORCHVISION_LAYOUTS[dataset]
    found = reader(root, split)
    if found is not None:
        return found
    has_parquet = any(root.rglob("*.parquet"))
    has_splits = any(p.is_dir() and p.name in SPLIT_NAMES for p in root.iterdir())
    if has_parquet or has_splits:
        column = label_column or class_table(dataset).label_column
        return _huggingface(root, split, column, dataset)
    raise ConfigError(
        f"{root} holds neither {class_table(dataset).title} as torchvision lays it out "
        f"({expected}) nor a Hugging Face copy (Parquet shards, or split folders)"
    )
