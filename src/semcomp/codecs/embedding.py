"""Embedding codecs: a CLIP embedding → the bytes sent → the decoded embedding.

:data:`EMBEDDING_CODECS` is the family's table of names (entry-point group
``semcomp.embedding_codecs``). The built-in ``pqvae`` runs a checkpoint trained by
``semcomp pqvae train`` (PQVAE-shared, its VQ-VAE and scalar-quantisation baselines,
the float16/float32 upper bounds) with one of its entropy coders. A study names a
codec in an ``[[methods]]`` table of ``kind = "embedding"``; the embedding-codecs
stage hands it the originals' L2-normalised embeddings in batches, stores each
payload (its exact bytes are the rate) and scores the decoded embedding against
the original's under the CLIP model the codec was made for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from semcomp.params import PluginParams
from semcomp.registry import Registry

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class EncodedEmbedding:
    """What is sent for one embedding, and facts about it for the rate table."""

    payload: bytes
    #: e.g. ``ideal_bits`` (the code length under the codec's model), written to the
    #: representation's meta and to rd.csv
    meta: dict[str, Any] = field(default_factory=dict)


class EmbeddingCodec(ABC):
    """Base of the embedding-codec family: built once per method from validated ``Params``."""

    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    #: the pip extra its dependencies come in (``semcomp.extras``); None: the base install
    extra: ClassVar[str | None] = None
    #: the stored payload's media type
    media_type: ClassVar[str] = "application/octet-stream"

    def __init__(self, params: PluginParams):
        self.params = params

    @classmethod
    def clip(cls, params: PluginParams) -> dict[str, str] | None:
        """The CLIP identity (``{"model": ..., "pretrained": ...}``) whose embeddings the
        codec compresses, or ``None`` for any: the study's first CLIP model."""
        return None

    @classmethod
    def identity(cls, params: PluginParams) -> dict[str, Any]:
        """What determines the codec's output (enters the method id): by default its
        parameters; a codec reading a file should name the file's content hash."""
        return params.identity()

    @classmethod
    def label(cls, params: PluginParams) -> str:
        """The operating point's label in rd.csv and the figures."""
        return cls.name

    @classmethod
    def describe(cls, params: PluginParams) -> str:
        return f"{cls.name} embedding codec"

    @abstractmethod
    def encode(self, embeddings: np.ndarray) -> list[EncodedEmbedding]:
        """One payload per row of ``embeddings`` (float32, L2-normalised)."""

    @abstractmethod
    def decode(self, payloads: list[bytes]) -> np.ndarray:
        """The decoded embeddings (float32), one row per payload: what the receiver gets."""


EMBEDDING_CODECS = Registry(
    "embedding codec",
    entry_point_group="semcomp.embedding_codecs",
    base="semcomp.codecs.embedding:EmbeddingCodec",
)
EMBEDDING_CODECS.register("pqvae", "semcomp.codecs.pqvae.plugin:PqvaeCodec")
