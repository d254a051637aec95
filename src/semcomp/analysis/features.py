"""``semcomp features extract``: CLIP embeddings of a class-subfolder image folder.

Images are decoded and preprocessed in DataLoader workers, embedded in batches,
and written in shards (``images/shard-00000.safetensors``: ``embeddings``,
``labels``, class names and CLIP identity in the metadata, the file list
beside it). A shard that exists is skipped, so an interrupted extraction
resumes. Class text embeddings come from prompt templates, one or an ensemble
averaged per class, as CLIP_benchmark does (``text.safetensors``). Unreadable
images are listed in ``failures.csv`` and left out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.config import EmbedderConfig
from semcomp.errors import ConfigError, ImageError
from semcomp.images import IMAGE_SUFFIXES, decode_image

TEMPLATES: dict[str, list[str]] = {
    "single": ["a photo of a {}."],
    # the seven ImageNet templates OpenAI's CLIP notebook found best as an ensemble
    "ensemble": [
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ],
}


def class_folder_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted subfolders) and (file, label) pairs, in a stable order."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"{root} has no class subfolders (expected ROOT/<class>/<image>)")
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, files


class ImageFiles:
    """A map-style dataset: preprocessed pixels, or None for an unreadable file."""

    def __init__(self, files: list[tuple[Path, int]], preprocess: Callable[[Any], Any]):
        self.files = files
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        path, _ = self.files[index]
        try:
            return index, self.preprocess(decode_image(path.read_bytes()).rgb), None
        except (OSError, ImageError) as exc:
            return index, None, str(exc)


def _collate(items: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list]:
    import torch

    good = [(i, pixels) for i, pixels, _ in items if pixels is not None]
    bad = [(i, error) for i, pixels, error in items if pixels is None]
    pixels = torch.stack([p for _, p in good]) if good else None
    return [i for i, _ in good], pixels, bad


@dataclass
class ExtractionSummary:
    out: Path
    images: int
    shards_written: int
    shards_skipped: int
    failures: int
    classes: int


def extract_features(
    root: Path,
    out: Path,
    embedder_config: EmbedderConfig,
    *,
    batch_size: int = 64,
    workers: int = 2,
    shard_size: int = 10_000,
    templates: str = "ensemble",
    device: str = "auto",
    progress: bool = True,
) -> ExtractionSummary:
    import torch
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    from semcomp.analysis.clip import OpenClipEmbedder

    if templates not in TEMPLATES:
        raise ConfigError(f"templates must be one of {', '.join(TEMPLATES)}")
    classes, files = class_folder_files(Path(root))
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    shards = [files[i : i + shard_size] for i in range(0, len(files), shard_size)]
    pending = [
        n
        for n in range(len(shards))
        if not (out / "images" / f"shard-{n:05d}.safetensors").exists()
    ]
    clip = {"model": embedder_config.model, "pretrained": embedder_config.pretrained}
    metadata = {"class_names": json.dumps(classes), "clip": json.dumps(clip)}
    failures: list[tuple[str, str]] = []
    embedder = OpenClipEmbedder(embedder_config, device=device, batch_size=batch_size)
    try:
        for number in pending:
            shard = shards[number]
            loader = torch.utils.data.DataLoader(
                ImageFiles(shard, embedder.preprocess),
                batch_size=batch_size,
                num_workers=workers,
                collate_fn=_collate,
                pin_memory=embedder.device.startswith("cuda"),
            )
            kept, vectors = [], []
            for indices, pixels, bad in tqdm(
                loader, desc=f"shard {number}", disable=not progress, unit="batch"
            ):
                failures += [(str(shard[i][0]), error) for i, error in bad]
                if pixels is not None:
                    vectors.append(embedder.embed_pixels(pixels))
                    kept += indices
            embeddings = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim))
            labels = np.array([shard[i][1] for i in kept], dtype=np.int64)
            target = out / "images" / f"shard-{number:05d}.safetensors"
            (target.with_suffix(".paths.txt")).write_text(
                "\n".join(str(shard[i][0]) for i in kept) + "\n", encoding="utf-8"
            )
            tmp = target.with_name(f".{target.name}.tmp")
            save_file(
                {"embeddings": embeddings.astype(np.float32), "labels": labels},
                str(tmp),
                metadata=metadata,
            )
            tmp.replace(target)
        text_path = out / "text.safetensors"
        if not text_path.exists():
            prompts = TEMPLATES[templates]
            rows = []
            for name in classes:
                readable = name.replace("_", " ")
                mean = embedder.embed_texts([t.format(readable) for t in prompts]).mean(0)
                rows.append(mean / np.linalg.norm(mean))
            save_file(
                {
                    "embeddings": np.stack(rows).astype(np.float32),
                    "labels": np.arange(len(classes)),
                },
                str(text_path),
                metadata=metadata | {"templates": json.dumps(prompts)},
            )
    finally:
        embedder.close()
    (out / "classes.json").write_text(json.dumps(classes, indent=2))
    if failures:
        with (out / "failures.csv").open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(failures)
    return ExtractionSummary(
        out=out,
        images=len(files),
        shards_written=len(pending),
        shards_skipped=len(shards) - len(pending),
        failures=len(failures),
        classes=len(classes),
    )
