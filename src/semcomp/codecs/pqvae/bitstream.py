"""Real bytes for quantisation indices, and back.

Every stream codes one embedding's indices (h·w·d of them at the paper's
preset, in position-then-subspace order). The number of symbols and the coder
come from the checkpoint, which both ends hold, so a stream carries **no
header**: its rate is exactly its length in bytes (the padding of the last
byte, or word for ANS, is counted).

Coders:

- ``fixed``: h·w·d·⌈log2 K⌉ bits packed into bytes (400 bits = 50 bytes at the preset);
- ``huffman``: a canonical Huffman code built from training-set index
  frequencies (the paper's method);
- ``ans``: rANS from ``constriction`` under the same prior;
- ``ans-positional``: rANS with one prior per (position, subspace), learnt on
  the training set, which lowers the rate when index statistics differ by place.

The reference implementation only *counted* bits with a fixed 4-symbol
Huffman table and had no decoder; here every coder round-trips exactly.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

CODERS = ("fixed", "huffman", "ans", "ans-positional")


def smoothed(counts: np.ndarray) -> np.ndarray:
    """Probabilities from counts with add-one smoothing, so that every symbol stays codable."""
    counts = np.asarray(counts, dtype=np.float64) + 1.0
    return counts / counts.sum(axis=-1, keepdims=True)


class EntropyCoder(ABC):
    name: ClassVar[str]

    def __init__(self, symbols: int, alphabet: int):
        self.symbols = symbols
        self.alphabet = alphabet

    @abstractmethod
    def encode(self, indices: np.ndarray) -> list[bytes]:
        """(B, symbols) integer indices → one stream per row."""

    @abstractmethod
    def decode(self, streams: list[bytes]) -> np.ndarray:
        """Streams → (B, symbols) int64 indices."""

    def ideal_bits(self, indices: np.ndarray) -> np.ndarray:
        """Ideal code length of each row under this coder's model (bits, not rounded)."""
        return np.full(len(indices), self.symbols * math.log2(self.alphabet))


class FixedLengthCoder(EntropyCoder):
    name = "fixed"

    @property
    def width(self) -> int:
        return math.ceil(math.log2(self.alphabet))

    def ideal_bits(self, indices: np.ndarray) -> np.ndarray:
        return np.full(len(indices), float(self.symbols * self.width))

    def encode(self, indices: np.ndarray) -> list[bytes]:
        indices = np.asarray(indices, dtype=np.uint32)
        shifts = np.arange(self.width - 1, -1, -1, dtype=np.uint32)
        bits = ((indices[..., None] >> shifts) & 1).astype(np.uint8).reshape(len(indices), -1)
        packed = np.packbits(bits, axis=1)
        return [row.tobytes() for row in packed]

    def decode(self, streams: list[bytes]) -> np.ndarray:
        if not streams:
            return np.zeros((0, self.symbols), dtype=np.int64)
        packed = np.frombuffer(b"".join(streams), dtype=np.uint8).reshape(len(streams), -1)
        bits = np.unpackbits(packed, axis=1)[:, : self.symbols * self.width]
        bits = bits.reshape(len(streams), self.symbols, self.width).astype(np.int64)
        weights = 1 << np.arange(self.width - 1, -1, -1)
        return (bits * weights).sum(-1)


def huffman_lengths(probabilities: np.ndarray) -> np.ndarray:
    """Code lengths of a Huffman code for ``probabilities`` (every symbol gets a code)."""
    if len(probabilities) == 1:
        return np.ones(1, dtype=np.int64)
    heap = [(float(p), i, (i,)) for i, p in enumerate(probabilities)]
    heapq.heapify(heap)
    lengths = np.zeros(len(probabilities), dtype=np.int64)
    tie = len(probabilities)
    while len(heap) > 1:
        p1, _, a = heapq.heappop(heap)
        p2, _, b = heapq.heappop(heap)
        for symbol in a + b:
            lengths[symbol] += 1
        heapq.heappush(heap, (p1 + p2, tie, a + b))
        tie += 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> list[int]:
    """Canonical Huffman codewords (as integers of their length) for code ``lengths``."""
    order = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
    codes = [0] * len(lengths)
    code, previous = 0, int(lengths[order[0]])
    for rank, symbol in enumerate(order):
        length = int(lengths[symbol])
        if rank:
            code = (code + 1) << (length - previous)
        codes[symbol] = code
        previous = length
    return codes


class HuffmanCoder(EntropyCoder):
    """Canonical Huffman from training-set index frequencies; decoded with a prefix table."""

    name = "huffman"

    def __init__(self, symbols: int, alphabet: int, probabilities: np.ndarray):
        super().__init__(symbols, alphabet)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.lengths = huffman_lengths(self.probabilities)
        self.codes = canonical_codes(self.lengths)
        self.max_length = int(self.lengths.max())
        # every symbol's code as a row of bits, left-aligned in max_length columns
        self.code_bits = np.zeros((alphabet, self.max_length), dtype=np.uint8)
        for symbol, (code, length) in enumerate(zip(self.codes, self.lengths, strict=True)):
            for position in range(int(length)):
                self.code_bits[symbol, position] = (code >> (int(length) - 1 - position)) & 1
        # prefix table: the next max_length bits → (symbol, length)
        self.table_symbol = np.zeros(1 << self.max_length, dtype=np.int64)
        self.table_length = np.zeros(1 << self.max_length, dtype=np.int64)
        for symbol, (code, length) in enumerate(zip(self.codes, self.lengths, strict=True)):
            shift = self.max_length - int(length)
            start = code << shift
            self.table_symbol[start : start + (1 << shift)] = symbol
            self.table_length[start : start + (1 << shift)] = length

    def ideal_bits(self, indices: np.ndarray) -> np.ndarray:
        return -np.log2(self.probabilities[np.asarray(indices)]).sum(axis=1)

    def code_length(self, indices: np.ndarray) -> np.ndarray:
        """Huffman bits per row, before byte padding."""
        return self.lengths[np.asarray(indices)].sum(axis=1)

    def encode(self, indices: np.ndarray) -> list[bytes]:
        indices = np.asarray(indices, dtype=np.int64)
        streams = []
        lengths = self.lengths[indices]
        mask = np.arange(self.max_length) < lengths[..., None]  # (B, n, max_length)
        bits = self.code_bits[indices]
        for row_bits, row_mask in zip(bits, mask, strict=True):
            streams.append(np.packbits(row_bits[row_mask]).tobytes())
        return streams

    def decode(self, streams: list[bytes]) -> np.ndarray:
        out = np.zeros((len(streams), self.symbols), dtype=np.int64)
        pad = np.zeros(self.max_length, dtype=np.uint8)
        weights = 1 << np.arange(self.max_length - 1, -1, -1)
        for row, stream in enumerate(streams):
            bits = np.concatenate([np.unpackbits(np.frombuffer(stream, dtype=np.uint8)), pad])
            # the prefix value at every bit offset, computed once per stream
            windows = np.lib.stride_tricks.sliding_window_view(bits, self.max_length)
            prefixes = windows @ weights
            position = 0
            for index in range(self.symbols):
                prefix = prefixes[position]
                out[row, index] = self.table_symbol[prefix]
                position += self.table_length[prefix]
        return out


class AnsCoder(EntropyCoder):
    """rANS (constriction) under one prior for every symbol, or one per position (``positional``).

    The stream is constriction's 32-bit words, so its length is a multiple of
    4 bytes; the final state flush is the coder's fixed overhead.
    """

    name = "ans"

    def __init__(self, symbols: int, alphabet: int, probabilities: np.ndarray):
        super().__init__(symbols, alphabet)
        import constriction

        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.positional = self.probabilities.ndim == 2
        if self.positional:
            if self.probabilities.shape != (symbols, alphabet):
                raise ValueError(f"positional prior must be {(symbols, alphabet)}")
            self.model = constriction.stream.model.Categorical(perfect=False)
            self.name = "ans-positional"
        else:
            self.model = constriction.stream.model.Categorical(self.probabilities, perfect=False)

    def ideal_bits(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        if self.positional:
            p = np.take_along_axis(self.probabilities[None], indices[..., None], axis=2)[..., 0]
            return -np.log2(p).sum(axis=1)
        return -np.log2(self.probabilities[indices]).sum(axis=1)

    def _model_args(self) -> tuple:
        return (self.model, self.probabilities) if self.positional else (self.model,)

    def encode(self, indices: np.ndarray) -> list[bytes]:
        import constriction

        streams = []
        for row in np.asarray(indices, dtype=np.int32):
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(row, *self._model_args())
            streams.append(coder.get_compressed().astype("<u4").tobytes())
        return streams

    def decode(self, streams: list[bytes]) -> np.ndarray:
        import constriction

        out = np.zeros((len(streams), self.symbols), dtype=np.int64)
        for row, stream in enumerate(streams):
            words = np.frombuffer(stream, dtype="<u4").astype(np.uint32)
            coder = constriction.stream.stack.AnsCoder(words)
            if self.positional:
                out[row] = coder.decode(self.model, self.probabilities)
            else:
                out[row] = coder.decode(self.model, self.symbols)
        return out


def make_coder(
    name: str, symbols: int, alphabet: int, prior: np.ndarray, positional_prior: np.ndarray
) -> EntropyCoder:
    """The coder ``name`` with the checkpoint's priors (index counts, smoothed here)."""
    if name == "fixed":
        return FixedLengthCoder(symbols, alphabet)
    if name == "huffman":
        return HuffmanCoder(symbols, alphabet, smoothed(prior))
    if name == "ans":
        return AnsCoder(symbols, alphabet, smoothed(prior))
    if name == "ans-positional":
        return AnsCoder(symbols, alphabet, smoothed(positional_prior))
    raise ValueError(f"unknown entropy coder {name!r}; coders: {', '.join(CODERS)}")
