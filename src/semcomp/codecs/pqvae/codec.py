"""The embedding codec: CLIP embeddings → streams of bytes → decoded embeddings.

``decode(encode(x))`` equals the model's quantised reconstruction of ``x``
exactly: the streams carry the quantisation indices losslessly. The float
upper bounds send the embedding's own float32 / float16 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semcomp.codecs.pqvae.bitstream import (
    CODERS,
    DEFAULT_CODER,
    STREAM_CODERS,
    EntropyCoder,
    decode_streams,
    encode_streams,
)
from semcomp.codecs.pqvae.checkpoint import Checkpoint

FLOATS = {"float32": np.float32, "float16": np.float16}


@dataclass(frozen=True)
class EncodedBatch:
    streams: list[bytes]
    #: ideal code length under the coder's model, per stream (bits)
    ideal_bits: np.ndarray

    @property
    def bits(self) -> np.ndarray:
        return np.array([8 * len(s) for s in self.streams])


class CheckpointCodec:
    """A trained checkpoint's quantiser and prior with one entropy coder: embeddings →
    streams → decoded embeddings (the ``pqvae`` embedding codec, and the downstream
    tasks' codecs, run it)."""

    def __init__(self, checkpoint: Checkpoint, coder: str = DEFAULT_CODER):
        if coder not in CODERS:
            raise ValueError(f"unknown entropy coder {coder!r}; coders: {', '.join(CODERS)}")
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.float_type = FLOATS.get(self.config.architecture)
        self.coder_name = coder if self.float_type is None else self.config.architecture
        self.coder: EntropyCoder | None = None if self.float_type else checkpoint.coder(coder)

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    def _normalised(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.input_dim:
            raise ValueError(
                f"expected embeddings of shape (n, {self.input_dim}), got {embeddings.shape}"
            )
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return embeddings / np.maximum(norms, 1e-12)

    def indices(self, embeddings: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            tensor = torch.from_numpy(self._normalised(embeddings))
            return self.checkpoint.model.indices(tensor).cpu().numpy()

    def dequantize(self, indices: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            decoded = self.checkpoint.model.decode(torch.as_tensor(indices, dtype=torch.long))
        return decoded.cpu().numpy().astype(np.float32)

    def reconstruct(self, embeddings: np.ndarray) -> np.ndarray:
        """The model's quantised reconstruction (what decoding the streams gives)."""
        if self.float_type is not None:
            return self._normalised(embeddings).astype(self.float_type).astype(np.float32)
        return self.dequantize(self.indices(embeddings))

    def encode_batch(self, embeddings: np.ndarray) -> EncodedBatch:
        if self.float_type is not None:
            rows = self._normalised(embeddings).astype(self.float_type)
            streams = [row.tobytes() for row in rows]
            return EncodedBatch(streams, np.array([8.0 * len(s) for s in streams]))
        indices = self.indices(embeddings)
        return EncodedBatch(self.coder.encode(indices), self.coder.ideal_bits(indices))

    def encode(self, embeddings: np.ndarray) -> list[bytes]:
        """One stream of bytes per embedding (batched)."""
        return self.encode_batch(embeddings).streams

    def encode_streams(self, embeddings: np.ndarray, size: int) -> EncodedBatch:
        """Batch streams of ``size`` embeddings each (a count header, then one code).

        ``ideal_bits`` stays per embedding; ``bits`` is per stream.
        """
        if self.coder is None or self.coder_name not in STREAM_CODERS:
            raise ValueError(
                f"the {self.coder_name} coder sends one embedding per stream; batch streams: "
                f"{', '.join(STREAM_CODERS)}"
            )
        indices = self.indices(embeddings)
        return EncodedBatch(
            encode_streams(self.coder, indices, size), self.coder.ideal_bits(indices)
        )

    def decode_streams(self, streams: list[bytes]) -> np.ndarray:
        """Decoded embeddings of every batch stream, in order."""
        return self.dequantize(decode_streams(self.coder, streams))

    def decode(self, streams: list[bytes]) -> np.ndarray:
        """Decoded, L2-normalised embeddings (float32), one row per stream."""
        if self.float_type is not None:
            rows = [np.frombuffer(s, dtype=self.float_type) for s in streams]
            return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.input_dim))
        return self.dequantize(self.coder.decode(streams))
