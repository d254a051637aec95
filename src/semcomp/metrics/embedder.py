"""The embedder family's base class: images (and class prompts) → L2-normalised vectors.

Kept apart from the CLIP implementation so that checking a plugin's type imports
neither torch nor open_clip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from semcomp.errors import ImageError

if TYPE_CHECKING:
    import numpy as np


class Embedder(ABC):
    """Built once per stage as ``Embedder(config, device=..., batch_size=...)`` from an
    :class:`~semcomp.config.EmbedderConfig` (``kind`` names the registered embedder), then
    :meth:`close`\\ d.

    ``preprocess`` turns one RGB PIL image into the model's input (it runs in data-loader
    workers); :meth:`embed_preprocessed` embeds a list (or stacked batch) of them.
    """

    #: a local model: ``--engine ray`` runs it in actors
    scalable: ClassVar[bool] = True
    #: one image → the model's input
    preprocess: Any

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What the store keeps for this embedder: model, weights, preprocessing."""

    @abstractmethod
    def embed_preprocessed(self, pixels: Any) -> np.ndarray:
        """L2-normalised float32 rows, one per preprocessed image."""

    @abstractmethod
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 rows, one per text (zero-shot class prompts)."""

    def embed(self, images: list[Any]) -> np.ndarray:
        """Embeddings of RGB images, one L2-normalised float32 row each."""
        return self.embed_preprocessed([self.preprocess(image) for image in images])

    def close(self) -> None:  # noqa: B027 - an optional hook: nothing to free by default
        """Free the model (the next stage loads its own)."""


@dataclass(frozen=True)
class GuardedPreprocess:
    """A CLIP transform that refuses an image its resize would blow up.

    Resizing the shortest side to the model's input size makes an extreme panorama
    enormous before the centre crop (70000×1 becomes 23,520,000×336, about 24 GB, at
    336 px): such an image is an :class:`ImageError` when the resized image would have
    more than ``max_pixels`` pixels, instead of a run killed for memory.
    """

    preprocess: Any
    config: dict
    max_pixels: int

    def __call__(self, image: Any) -> Any:
        size = self.config.get("size")
        if size and (self.config.get("resize_mode") or "shortest") == "shortest":
            short = min(size) if isinstance(size, list | tuple) else int(size)
            width, height = image.size
            scale = short / min(width, height)
            resized = (max(1, round(width * scale)), max(1, round(height * scale)))
            if resized[0] * resized[1] > self.max_pixels:
                raise ImageError(
                    f"CLIP preprocessing would resize this {width:,}×{height:,} image to "
                    f"{resized[0]:,}×{resized[1]:,} (short side {short} px) = "
                    f"{resized[0] * resized[1]:,} pixels, over images.max_pixels "
                    f"({self.max_pixels:,})"
                )
        return self.preprocess(image)


def preprocess_each(context: Any, images: list[Any], problems: list[Exception | None]) -> list:
    """``context`` applied to each readable image; a refused one becomes its item's problem."""
    pixels = []
    readable = iter(images)
    for i, problem in enumerate(problems):
        if problem is None:
            try:
                pixels.append(context(next(readable)))
            except ImageError as exc:
                problems[i] = exc
    return pixels


def on_preprocessed(
    context: Any, images: Sequence[Any], run: Callable[[list, list[int]], list]
) -> list:
    """One result per image: ``run(pixels, kept)`` on the images ``context`` (a
    :class:`GuardedPreprocess`) transforms, ``kept`` their positions in ``images``, and the
    :class:`ImageError` of each image it refuses in that image's place."""
    from semcomp.engines import phase

    problems: list[Exception | None] = [None] * len(images)
    with phase("preprocess"):
        pixels = preprocess_each(context, list(images), problems)
    kept = [i for i, problem in enumerate(problems) if problem is None]
    done = iter(run(pixels, kept) if pixels else [])
    return [next(done) if problem is None else problem for problem in problems]
