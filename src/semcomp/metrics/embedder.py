"""The embedder family's base class: images (and class prompts) → L2-normalised vectors.

Kept apart from the CLIP implementation so that checking a plugin's type imports
neither torch nor open_clip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

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
