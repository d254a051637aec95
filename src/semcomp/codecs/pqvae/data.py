"""Embedding sets to train and evaluate on: embeddings, labels, class names, CLIP identity.

Formats (by suffix): ``.safetensors`` (tensors ``embeddings`` and ``labels``;
metadata ``class_names`` and ``clip`` as JSON: what ``semcomp features
extract`` writes, one file or a folder of shards), ``.npz`` (arrays
``embeddings``, ``labels`` and optionally ``class_names``), ``.npy``
(embeddings; labels from a second ``.npy``), ``.parquet`` (columns
``embedding`` and ``label``), and ``.pt`` (a dict of tensors, loaded with
``weights_only=True``, so nothing is unpickled).
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

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.labels):
            raise ConfigError(
                f"embeddings {self.embeddings.shape} and labels {self.labels.shape} do not match"
            )

    def subset(self, rows: np.ndarray) -> EmbeddingSet:
        return EmbeddingSet(self.embeddings[rows], self.labels[rows], self.class_names, self.clip)

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
    return EmbeddingSet(
        embeddings,
        labels,
        json.loads(metadata.get("class_names", "[]")),
        json.loads(metadata.get("clip", "{}")),
    )


def load_embeddings(path: Path, labels: Path | None = None) -> EmbeddingSet:
    """Read an embedding set from a file or a folder of ``.safetensors`` shards."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise ConfigError(f"{path} holds no .safetensors shards")
        parts = [_read_safetensors(shard) for shard in shards]
        return EmbeddingSet(
            np.concatenate([p.embeddings for p in parts]),
            np.concatenate([p.labels for p in parts]),
            parts[0].class_names,
            parts[0].clip,
        )
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
        import pandas as pd

        frame = pd.read_parquet(path)
        missing = {"embedding", "label"} - set(frame.columns)
        if missing:
            raise ConfigError(f"{path} lacks column(s) {sorted(missing)}")
        return EmbeddingSet(np.stack(frame["embedding"].to_numpy()), frame["label"].to_numpy())
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
