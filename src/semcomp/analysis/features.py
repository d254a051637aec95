"""``semcomp features extract``: CLIP embeddings of a class-subfolder image folder.

Images are decoded and preprocessed in DataLoader workers (or Ray CPU tasks
with ``--engine ray``), embedded in batches by the engine's model,
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.config import EmbedderConfig
from semcomp.engines import BatchTask, Engine, LocalEngine
from semcomp.errors import ConfigError
from semcomp.images import IMAGE_SUFFIXES

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


@dataclass(frozen=True)
class ClassTexts(BatchTask):
    """Class names → one L2-normalised text embedding each, averaged over the templates."""

    templates: tuple[str, ...]

    def load(self, batch: Sequence[str], context: Any) -> Sequence[str]:
        return batch

    def infer(self, model: Any, loaded: Sequence[str], context: Any) -> list[Any]:
        rows = []
        for name in loaded:
            readable = name.replace("_", " ")
            mean = model.embed_texts([t.format(readable) for t in self.templates]).mean(0)
            rows.append(mean / np.linalg.norm(mean))
        return rows


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
    engine: Engine | None = None,
) -> ExtractionSummary:
    """Embed ``root``'s images into shards under ``out`` (see the module docstring).

    ``engine`` runs the model (default: this process, decoding and
    preprocessing in ``workers`` DataLoader processes); every pending shard's
    batches go through it in one pass, so a Ray actor pool loads the model once,
    and each shard is written as soon as its last batch is back.
    """
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    from semcomp.stages.embed import EmbedImages, embedder_factory

    if templates not in TEMPLATES:
        raise ConfigError(f"templates must be one of {', '.join(TEMPLATES)}")
    engine = engine or LocalEngine(workers=workers)
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
    factory = embedder_factory(embedder_config, device=device, batch_size=batch_size)
    # (shard number, position of the batch's first file in the shard) per batch
    where: list[tuple[int, int]] = []
    batches: list[list[Path]] = []
    for number in pending:
        for start in range(0, len(shards[number]), batch_size):
            where.append((number, start))
            batches.append([path for path, _ in shards[number][start : start + batch_size]])
    waiting = {number: -(-len(shards[number]) // batch_size) for number in pending}
    results: dict[int, dict[int, list[Any]]] = {number: {} for number in pending}
    failures: list[tuple[str, str]] = []
    task = EmbedImages()
    dim = 0  # of the vectors seen, for the shape of a shard whose every image failed
    with tqdm(total=len(batches), desc="features", disable=not progress, unit="batch") as bar:
        for outcome in engine.run(factory, task, batches):
            number, start = where[outcome.index]
            results[number][start] = outcome.results
            dim = next((len(r) for r in outcome.results if not isinstance(r, Exception)), dim)
            waiting[number] -= 1
            bar.update()
            if waiting[number] == 0:
                failures += write_shard(
                    out, number, shards[number], results.pop(number), metadata, dim
                )
    text_path = out / "text.safetensors"
    if not text_path.exists():
        prompts = TEMPLATES[templates]
        names = [classes[i : i + 256] for i in range(0, len(classes), 256)]
        rows: dict[int, list[Any]] = {}
        for outcome in engine.run(factory, ClassTexts(tuple(prompts)), names):
            rows[outcome.index] = outcome.results
        save_file(
            {
                "embeddings": np.stack([r for i in sorted(rows) for r in rows[i]]).astype(
                    np.float32
                ),
                "labels": np.arange(len(classes)),
            },
            str(text_path),
            metadata=metadata | {"templates": json.dumps(prompts)},
        )
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


def write_shard(
    out: Path,
    number: int,
    shard: list[tuple[Path, int]],
    results: dict[int, list[Any]],
    metadata: dict[str, str],
    dim: int,
) -> list[tuple[str, str]]:
    """Write one shard atomically (file list, then embeddings); return its unreadable files."""
    from safetensors.numpy import save_file

    kept, vectors, failures = [], [], []
    for start in sorted(results):
        for offset, result in enumerate(results[start]):
            path, label = shard[start + offset]
            if isinstance(result, Exception):
                failures.append((str(path), str(result)))
            else:
                kept.append((path, label))
                vectors.append(result)
    embeddings = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    labels = np.array([label for _, label in kept], dtype=np.int64)
    target = out / "images" / f"shard-{number:05d}.safetensors"
    target.with_suffix(".paths.txt").write_text(
        "\n".join(str(path) for path, _ in kept) + "\n", encoding="utf-8"
    )
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(
        {"embeddings": embeddings.astype(np.float32), "labels": labels},
        str(tmp),
        metadata=metadata,
    )
    tmp.replace(target)
    return failures
