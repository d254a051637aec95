"""A study's originals from a named dataset or a codec image set (``[images.source]``).

A labelled dataset gives each original its class (readable name) as category and
label, so task metrics (``zero-shot``) know it, and its whole class table and prompt
templates; a codec image set (Kodak, CLIC, DIV2K) gives its files, checked against its
known list: each missing or extra file is a :class:`~semcomp.images.SourceProblem` (the
ingest stage records it) and a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from semcomp.datasets import dataset_name, open_dataset
from semcomp.datasets.image_sets import image_set_name, open_image_set
from semcomp.errors import ConfigError
from semcomp.filenames import path_text
from semcomp.images import UNCATEGORISED, SourceImage, SourceProblem

log = logging.getLogger(__name__)


@dataclass
class DatasetOriginals:
    #: the dataset's name (``oxford-pets``, ``kodak``, ...)
    dataset: str
    #: the images (as :class:`SourceImage`) and the file-list problems, in a stable order
    sources: list[SourceImage | SourceProblem] = field(default_factory=list)
    #: every class of a labelled dataset (readable names), even those the subset left out
    classes: list[str] = field(default_factory=list)
    #: a labelled dataset's own prompt templates (``{}`` for the class name)
    templates: list[str] = field(default_factory=list)


def known_dataset(name: str) -> str:
    """The dataset or image set ``name`` names; a :class:`ConfigError` listing them if none."""
    found = image_set_name(name)
    if found is not None:
        return found
    return dataset_name(name)


def is_image_set(name: str) -> bool:
    return image_set_name(name) is not None


def problem_prefix(dataset: str) -> str:
    """The item prefix of an image set's file-list problems (cleared on every ingest)."""
    return f"{dataset} file list: "


def dataset_originals(
    dataset: str,
    root: Path,
    *,
    split: str | None = None,
    per_class: int | None = None,
    limit: int | None = None,
    label_column: str | None = None,
) -> DatasetOriginals:
    """The originals ``dataset`` at ``root`` holds (a :class:`ConfigError` when it cannot
    be read at all); ``per_class`` and ``limit`` take a deterministic stratified subset."""
    dataset = known_dataset(dataset)
    if is_image_set(dataset):
        found = open_image_set(root, dataset)
        images = found.images[:limit] if limit is not None else found.images
        result = DatasetOriginals(dataset)
        problems = found.problems()
        if problems:
            log.warning(
                "%s: %s",
                found.image_set.title,
                "; ".join(f"{what}: {reason}" for what, reason in problems),
            )
        result.sources = [
            SourceImage(
                path=path,
                category=UNCATEGORISED,
                name=path_text(path.stem),
                origin=f"{dataset} {found.folder}",
            )
            for path in images
        ] + [
            SourceProblem(item=problem_prefix(dataset) + what, reason=reason)
            for what, reason in problems
        ]
        return result
    labelled = open_dataset(
        Path(root), dataset, split, label_column=label_column, per_class=per_class, limit=limit
    )
    stored_elsewhere = next((ref for ref, _ in labelled.items if not isinstance(ref, Path)), None)
    if stored_elsewhere is not None:
        container = str(stored_elsewhere).rsplit("#", 1)[0]
        raise ConfigError(
            f"{root}: this copy of {labelled.dataset} keeps its images inside {container} "
            f"({labelled.layout}), and a study's originals are image files: use the "
            "torchvision layout or a Hugging Face imagefolder copy"
        )
    origin = f"{labelled.dataset} {labelled.split}"
    sources: list[SourceImage | SourceProblem] = []
    for path, label in labelled.items:
        name = labelled.class_names[label]
        sources.append(
            SourceImage(
                path=path, category=name, name=path_text(path.stem), origin=origin, label=name
            )
        )
    return DatasetOriginals(
        labelled.dataset,
        sources,
        classes=list(dict.fromkeys(labelled.class_names)),
        templates=list(labelled.templates),
    )
