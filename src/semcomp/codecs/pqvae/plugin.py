"""The built-in embedding codec ``pqvae``: a checkpoint trained by ``semcomp pqvae train``
(PQVAE-shared, a baseline, or a float upper bound) with one of its entropy coders."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import PrivateAttr, field_validator, model_validator

from semcomp.codecs.embedding import EmbeddingCodec, EncodedEmbedding
from semcomp.errors import ConfigError
from semcomp.params import PluginParams, StudyPath, file_sha256


class PqvaeParams(PluginParams):
    checkpoint: StudyPath
    #: one of semcomp.codecs.pqvae.bitstream.CODERS
    entropy_coder: str = "range-positional"

    _sha256: str = PrivateAttr(default="")
    _clip: dict[str, str] = PrivateAttr(default_factory=dict)
    _architecture: str = PrivateAttr(default="")

    @field_validator("entropy_coder")
    @classmethod
    def _known_coder(cls, value: str) -> str:
        from semcomp.codecs.pqvae.bitstream import CODERS

        if value not in CODERS:
            raise ValueError(f"unknown entropy coder {value!r}; coders: {', '.join(CODERS)}")
        return value

    @model_validator(mode="after")
    def _read_checkpoint(self) -> PqvaeParams:
        from semcomp.codecs.pqvae.checkpoint import FORMAT, read_metadata

        try:
            metadata = read_metadata(self.checkpoint)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{self.checkpoint} is not a semcomp PQVAE checkpoint")
        self._clip = json.loads(metadata.get("clip", "{}"))
        self._architecture = json.loads(metadata["config"])["architecture"]
        self._sha256 = file_sha256(self.checkpoint, "checkpoint")
        return self


class PqvaeCodec(EmbeddingCodec):
    """A trained checkpoint's quantiser and prior, with the chosen entropy coder."""

    name = "pqvae"
    Params = PqvaeParams
    extra = "pqvae"
    media_type = "application/x-semcomp-pqvae"

    def __init__(self, params: PqvaeParams):
        from semcomp.codecs.pqvae.checkpoint import load_checkpoint
        from semcomp.codecs.pqvae.codec import CheckpointCodec

        super().__init__(params)
        self.codec = CheckpointCodec(load_checkpoint(params.checkpoint), params.entropy_coder)

    @classmethod
    def clip(cls, params: PqvaeParams) -> dict[str, str]:
        return dict(params._clip)

    @classmethod
    def identity(cls, params: PqvaeParams) -> dict[str, Any]:
        return {"checkpoint_sha256": params._sha256, "entropy_coder": params.entropy_coder}

    @classmethod
    def label(cls, params: PqvaeParams) -> str:
        return params.entropy_coder

    @classmethod
    def describe(cls, params: PqvaeParams) -> str:
        return (
            f"{params._architecture} embedding codec {params.checkpoint.name}, "
            f"{params.entropy_coder}"
        )

    def encode(self, embeddings: np.ndarray) -> list[EncodedEmbedding]:
        batch = self.codec.encode_batch(embeddings)
        return [
            EncodedEmbedding(
                stream,
                {
                    "entropy_coder": self.codec.coder_name,
                    "bpd": 8 * len(stream) / self.codec.input_dim,
                    "ideal_bits": float(ideal),
                },
            )
            for stream, ideal in zip(batch.streams, batch.ideal_bits, strict=True)
        ]

    def decode(self, payloads: list[bytes]) -> np.ndarray:
        return self.codec.decode(payloads)
