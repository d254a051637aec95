"""Embedding sets to train and evaluate on: embeddings, labels, class names, CLIP identity.

Formats (by suffix): ``.safetensors`` (tensors ``embeddings``, ``labels`` and
optionally ``pixels``, each original's width × height; metadata ``class_names``,
``clip`` and ``dataset`` as JSON: what ``semcomp features extract`` writes, one
file or a folder of shards), ``.npz`` (arrays ``embeddings``, ``labels`` and
optionally ``class_names``), ``.npy`` (embeddings; labels from a second
``.npy``), ``.parquet`` (columns ``embedding``, ``label`` and optionally
``pixels``; class names from a Hugging Face ``ClassLabel`` in the schema
metadata; one file or a folder of shards, such as ``data/train-00000-of-00004.parquet``),
and ``.pt`` (a dict of tensors, loaded with ``weights_only=True``, so nothing
is unpickled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semcomp.errors import ConfigError


@dataclass
class EmbeddingSet:
    embeddings: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    clip: dict[str, str] = field(default_factory=dict)
    #: the originals' pixel counts (width × height), when known: for bits per pixel
    pixels: np.ndarray | None = None
    #: where the images came from (``features extract``: dataset, split, layout, class ids)
    dataset: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.labels):
            raise ConfigError(
                f"embeddings {self.embeddings.shape} and labels {self.labels.shape} do not match"
            )
        if self.pixels is not None:
            self.pixels = np.asarray(self.pixels, dtype=np.int64)
            if len(self.pixels) != len(self.labels) or (self.pixels <= 0).any():
                self.pixels = None  # not one positive count per row: no bits per pixel

    def subset(self, rows: np.ndarray) -> EmbeddingSet:
        pixels = self.pixels[rows] if self.pixels is not None else None
        return EmbeddingSet(
            self.embeddings[rows],
            self.labels[rows],
            self.class_names,
            self.clip,
            pixels,
            self.dataset,
        )

    @classmethod
    def concatenate(cls, parts: list[EmbeddingSet]) -> EmbeddingSet:
        has_pixels = all(p.pixels is not None for p in parts)
        return cls(
            np.concatenate([p.embeddings for p in parts]),
            np.concatenate([p.labels for p in parts]),
            parts[0].class_names,
            parts[0].clip,
            np.concatenate([p.pixels for p in parts]) if has_pixels else None,
            parts[0].dataset,
        )

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]


def _read_safetensors(path: Path) -> EmbeddingSet:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        keys = set(handle.keys())
        if "embeddings" not in keys:
            raise ConfigError(f"{path} has no 'embeddings' tensor (has {sorted(keys)})")
        embeddings = handle.get_tensor("embeddings")
        labels = handle.get_tensor("labels") if "labels" in keys else np.zeros(len(embeddings))
        pixels = handle.get_tensor("pixels") if "pixels" in keys else None
    return EmbeddingSet(
        embeddings,
        labels,
        json.loads(metadata.get("class_names", "[]")),
        json.loads(metadata.get("clip", "{}")),
        pixels,
        json.loads(metadata.get("dataset", "{}")),
    )


def _read_parquet(path: Path) -> EmbeddingSet:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = {"embedding", "label"} - set(table.column_names)
    if missing:
        raise ConfigError(f"{path} lacks column(s) {sorted(missing)}")
    names: list[str] = []
    hf = (table.schema.metadata or {}).get(b"huggingface")
    if hf:  # a Hugging Face ClassLabel names the labels
        feature = json.loads(hf).get("info", {}).get("features", {}).get("label", {})
        names = [str(n) for n in feature.get("names", [])]
    pixels = table.column("pixels").to_numpy() if "pixels" in table.column_names else None
    embeddings = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    return EmbeddingSet(embeddings, table.column("label").to_numpy(), names, {}, pixels)


def load_embeddings(path: Path, labels: Path | None = None) -> EmbeddingSet:
    """Read an embedding set from a file or a folder of ``.safetensors`` shards."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if shards:
            return EmbeddingSet.concatenate([_read_safetensors(shard) for shard in shards])
        shards = sorted(path.rglob("*.parquet"))
        if shards:
            return EmbeddingSet.concatenate([_read_parquet(shard) for shard in shards])
        raise ConfigError(f"{path} holds no .safetensors or .parquet shards")
    if not path.is_file():
        raise ConfigError(f"no embedding file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            names = [str(n) for n in data["class_names"]] if "class_names" in data else []
            return EmbeddingSet(data["embeddings"], data["labels"], names)
    if suffix == ".npy":
        embeddings = np.load(path, allow_pickle=False)
        if labels is None:
            raise ConfigError(f"{path} holds embeddings only: give the labels (.npy) too")
        return EmbeddingSet(embeddings, np.load(labels, allow_pickle=False))
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".pt":
        import torch

        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses anything that would need unpickling
            raise ConfigError(
                f"{path} cannot be loaded safely (weights_only=True): {exc}"
            ) from None
        if not isinstance(data, dict) or "embeddings" not in data:
            raise ConfigError(f"{path} must hold a dict with 'embeddings' and 'labels' tensors")
        return EmbeddingSet(data["embeddings"].float().numpy(), data["labels"].numpy())
    raise ConfigError(
        f"{path}: unsupported embedding file (use .safetensors, .npz, .npy, .parquet or .pt)"
    )


def load_text_embeddings(path: Path) -> np.ndarray:
    """Class text embeddings (one row per class, in label order) for zero-shot evaluation."""
    return load_embeddings(path).embeddings


def split(
    data: EmbeddingSet, how: str, validation: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of (train, validation).

    ``class``: whole classes held out (the paper: 800 ImageNet classes train,
    200 validate); ``random``: rows held out at random.
    """
    rng = np.random.default_rng(seed)
    if how == "class":
        classes = np.unique(data.labels)
        held = max(1, round(validation * len(classes)))
        val_classes = rng.permutation(classes)[:held]
        is_val = np.isin(data.labels, val_classes)
    elif how == "random":
        is_val = np.zeros(len(data.labels), dtype=bool)
        is_val[
            rng.permutation(len(data.labels))[: max(1, round(validation * len(data.labels)))]
        ] = True
    else:
        raise ConfigError(f"split must be 'class' or 'random', not {how!r}")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def classes_from_file(path: Path, data: EmbeddingSet) -> tuple[int, ...]:
    """Labels listed in a split file, one class per line (``#`` starts a comment): a label
    number, a class id as the dataset writes it (an ImageNet WordNet id), or a class name."""
    from semcomp.datasets.tables import normalised

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no split file at {path}")
    lookup = {normalised(name): label for label, name in enumerate(data.class_names)}
    ids = data.dataset.get("class_ids") or []
    lookup |= {normalised(class_id): label for label, class_id in enumerate(ids)}
    labels, unknown = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("#")[0].strip()
        if not entry:
            continue
        if entry.isdigit():
            labels.append(int(entry))
        elif normalised(entry) in lookup:
            labels.append(lookup[normalised(entry)])
        else:
            unknown.append(entry)
    present = set(np.unique(data.labels).tolist())
    unknown += [str(label) for label in labels if label not in present]
    if unknown:
        raise ConfigError(
            f"{path}: {len(unknown)} class(es) are not in the embeddings (first: {unknown[0]})"
        )
    if not labels:
        raise ConfigError(f"{path} lists no classes")
    return tuple(sorted(set(labels)))
