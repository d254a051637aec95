"""``semcomp features extract``: CLIP embeddings of a labelled image dataset.

The dataset is a folder per class or a named dataset in torchvision's or Hugging
Face's layout (:mod:`semcomp.datasets`); its class names (readable) and its own
prompt templates (``--templates auto``) go with it, and the shards' metadata
records which dataset, split and layout they came from.

Images are decoded and preprocessed in DataLoader workers (or Ray CPU tasks
with ``--engine ray``), embedded in batches by the engine's model,
and written in shards (``images/shard-00000.safetensors``: ``embeddings``,
``labels``, class names and CLIP identity in the metadata, the file list
beside it). A shard that exists is skipped, so an interrupted extraction
resumes. Class text embeddings come from prompt templates, one or an ensemble
averaged per class, as CLIP_benchmark does (``text.safetensors``); they run
through the same model as the images (loaded once).

Images that do not decode are left out of their shard and listed beside it
(``shard-00000.failures.csv``, written before the shard) and, for the whole
folder, in ``failures.csv``. A file that cannot be *read* (missing, a mount
or network file system error) is not a bad image: its shard is not written,
the others are, and the command ends with an error naming it, so a re-run
after the fix extracts that shard whole. Paths are absolute (Ray workers may
run in another directory).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.config import EmbedderConfig
from semcomp.datasets import open_dataset, pixel_count
from semcomp.engines import BatchTask, Engine, LocalEngine
from semcomp.errors import ConfigError, SemcompError

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
    # a named dataset's own (OpenAI CLIP's per-dataset prompts, semcomp.datasets)
    "dataset": [],
}


@dataclass(frozen=True)
class ClassTexts(BatchTask):
    """Class names → one L2-normalised text embedding each, averaged over the templates."""

    loads = False
    templates: tuple[str, ...]

    def load(self, batch: Sequence[str], context: Any) -> Sequence[str]:
        return batch

    def infer(self, model: Any, loaded: Sequence[str], context: Any) -> list[Any]:
        # every prompt of the batch's names in one call (the embedder batches the forwards)
        prompts = [t.format(name.replace("_", " ")) for name in loaded for t in self.templates]
        if not prompts:
            return []
        means = model.embed_texts(prompts).reshape(len(loaded), len(self.templates), -1).mean(1)
        return list(means / np.linalg.norm(means, axis=1, keepdims=True))


@dataclass(frozen=True)
class ClassName:
    """A class name, as the item of a text batch (image batches hold file paths)."""

    name: str


@dataclass(frozen=True)
class ClassNames:
    names: tuple[str, ...]


@dataclass(frozen=True)
class ImagesAndTexts(BatchTask):
    """Image batches (paths) and class-name batches (:class:`ClassName`) on one model,
    so ``features extract`` loads CLIP once for both."""

    images: BatchTask
    texts: ClassTexts

    def context(self, model: Any) -> Any:
        return self.images.context(model)

    def load(self, batch: Sequence[Any], context: Any) -> Any:
        if batch and isinstance(batch[0], ClassName):
            return ClassNames(tuple(item.name for item in batch))
        return self.images.load(batch, context)

    def infer(self, model: Any, loaded: Any, context: Any) -> list[Any]:
        if isinstance(loaded, ClassNames):
            return self.texts.infer(model, loaded.names, context)
        return self.images.infer(model, loaded, context)


@dataclass
class ExtractionSummary:
    out: Path
    images: int
    shards_written: int
    shards_skipped: int
    #: images left out because they do not decode (all shards, ``failures.csv``)
    failures: int
    classes: int
    #: which images: the dataset, split and layout read (``semcomp.datasets``)
    source: str = ""


def shard_path(out: Path, number: int, suffix: str = ".safetensors") -> Path:
    return out / "images" / f"shard-{number:05d}{suffix}"


def write_atomically(path: Path, write: Any) -> None:
    """``write(tmp)`` to a hidden file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def write_rows(path: Path, rows: Sequence[Sequence[str]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)

    write_atomically(path, write)


def extract_features(
    root: Path,
    out: Path,
    embedder_config: EmbedderConfig,
    *,
    batch_size: int = 64,
    workers: int = 2,
    shard_size: int = 10_000,
    templates: str = "auto",
    device: str = "auto",
    progress: bool = True,
    engine: Engine | None = None,
    dataset: str = "folder",
    split: str | None = None,
    label_column: str | None = None,
) -> ExtractionSummary:
    """Embed ``root``'s images into shards under ``out`` (see the module docstring).

    ``engine`` runs the model (default: this process, decoding and
    preprocessing in ``workers`` DataLoader processes); every pending shard's
    batches, and the class names' text batches, go through it in one pass, so
    the model (or a Ray actor pool) loads once; batches come back in order, and
    each shard is written as soon as its last batch is back.
    """
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    from semcomp.stages.embed import EmbedImages, embedder_factory, settled

    if templates not in (*TEMPLATES, "auto"):
        raise ConfigError(f"templates must be auto or one of {', '.join(TEMPLATES)}")
    engine = engine or LocalEngine(workers=workers)
    labelled = open_dataset(root, dataset, split, label_column=label_column)
    classes, files = labelled.class_names, labelled.items
    if templates in ("auto", "dataset") and labelled.templates:
        prompts = labelled.templates
    else:
        prompts = TEMPLATES["ensemble" if templates == "auto" else templates]
    if not prompts:
        raise ConfigError(f"{labelled.dataset} has no templates of its own: use single or ensemble")
    out = Path(out).resolve()
    (out / "images").mkdir(parents=True, exist_ok=True)
    shards = [files[i : i + shard_size] for i in range(0, len(files), shard_size)]
    pending = [n for n in range(len(shards)) if not shard_path(out, n).exists()]
    clip = {"model": embedder_config.model, "pretrained": embedder_config.pretrained}
    metadata = {
        "class_names": json.dumps(classes),
        "clip": json.dumps(clip),
        "dataset": json.dumps(labelled.identity()),
    }
    factory = embedder_factory(embedder_config, device=device, batch_size=batch_size)
    # (shard number, position of the batch's first file in the shard) per image batch
    where: list[tuple[int, int]] = []
    batches: list[list[Any]] = []
    for number in pending:
        for start in range(0, len(shards[number]), batch_size):
            where.append((number, start))
            batches.append([path for path, _ in shards[number][start : start + batch_size]])
    text_path = out / "text.safetensors"
    if not text_path.exists():
        batches += [
            [ClassName(name) for name in classes[i : i + 256]] for i in range(0, len(classes), 256)
        ]
    expected = {n: set(range(0, len(shards[n]), batch_size)) for n in pending}
    results: dict[int, dict[int, list[Any]]] = {number: {} for number in pending}
    texts: dict[int, list[Any]] = {}
    unread: list[tuple[str, str]] = []  # (file, reason): their shards are not written
    not_written = 0
    task = ImagesAndTexts(EmbedImages(), ClassTexts(tuple(prompts)))
    dim = 0  # of the vectors seen, for the shape of a shard whose every image failed
    with tqdm(total=len(batches), desc="features", disable=not progress, unit="batch") as bar:
        for outcome in engine.run(factory, task, batches, ordered=True):
            bar.update()
            if outcome.index >= len(where):
                texts[outcome.index] = outcome.results
                continue
            number, start = where[outcome.index]
            results[number][start] = outcome.results
            dim = next((len(r) for r in outcome.results if not isinstance(r, Exception)), dim)
            if set(results[number]) != expected[number]:
                continue
            received = results.pop(number)
            problems = [
                (str(shards[number][start + offset][0]), str(result))
                for start, part in received.items()
                for offset, result in enumerate(part)
                if isinstance(result, Exception) and not settled(result)
            ]
            if problems:
                unread += problems
                not_written += 1
                continue
            write_shard(out, number, shards[number], received, metadata, dim)
    if not text_path.exists():
        embeddings = np.stack([r for i in sorted(texts) for r in texts[i]]).astype(np.float32)
        write_atomically(
            text_path,
            lambda tmp: save_file(
                {"embeddings": embeddings, "labels": np.arange(len(classes))},
                str(tmp),
                metadata=metadata | {"templates": json.dumps(prompts)},
            ),
        )
    write_atomically(
        out / "classes.json", lambda tmp: tmp.write_text(json.dumps(classes, indent=2))
    )
    failures = [
        row
        for number in range(len(shards))
        if (listed := shard_path(out, number, ".failures.csv")).exists()
        for row in csv.reader(io.StringIO(listed.read_text(encoding="utf-8"), newline=""))
    ]
    write_rows(out / "failures.csv", failures)
    if unread:
        path, reason = unread[0]
        raise SemcompError(
            f"{len(unread)} image file(s) could not be read, so {not_written} shard(s) were not "
            f"written (first: {path}: {reason}); the other shards are saved. Fix the files or "
            "the mount and run the same command again to extract the missing shards"
        )
    return ExtractionSummary(
        out=out,
        images=len(files),
        shards_written=len(pending),
        shards_skipped=len(shards) - len(pending),
        failures=len(failures),
        classes=len(classes),
        source=f"{labelled.dataset}, split {labelled.split}, {labelled.layout} layout",
    )


def write_shard(
    out: Path,
    number: int,
    shard: list[tuple[Path, int]],
    results: dict[int, list[Any]],
    metadata: dict[str, str],
    dim: int,
) -> list[tuple[str, str]]:
    """Write one shard: its failures and file list, then (last, atomically) its embeddings.

    Returns the images that do not decode (left out of the shard).
    """
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
    # the originals' sizes, for bits per pixel (the images decoded, so their headers read)
    pixels = np.array([pixel_count(path) for path, _ in kept], dtype=np.int64)
    write_rows(shard_path(out, number, ".failures.csv"), failures)
    paths = "\n".join(str(path) for path, _ in kept) + "\n"
    write_atomically(
        shard_path(out, number, ".paths.txt"),
        lambda tmp: tmp.write_text(paths, encoding="utf-8"),
    )
    write_atomically(
        shard_path(out, number),
        lambda tmp: save_file(
            {"embeddings": embeddings.astype(np.float32), "labels": labels, "pixels": pixels},
            str(tmp),
            metadata=metadata,
        ),
    )
    return failures
