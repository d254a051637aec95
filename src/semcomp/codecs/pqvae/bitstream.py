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

- ``range`` (global prior), ``range-position`` (a prior per grid position),
  ``range-subspace`` (a prior per subspace) and ``range-positional`` (a prior per
  position and subspace): a byte-wise range coder (below) that ends its stream
  on the shortest byte string inside the final interval, so it costs the ideal
  code length plus a few bits. It never costs more than ``fixed``: when the
  range-coded stream would be as long as the fixed-length one, the fixed-length
  bytes are sent instead, and the stream's **length is the flag** (exactly the
  fixed length → fixed-length code; shorter → range code), so the flag costs
  no bits. ``ans`` and ``ans-positional`` are kept, unchanged, so that streams
  written with them still decode.

A batch of embeddings sent together is one stream (``encode_stream``): a
LEB128 count of embeddings, then all their indices in one code of the coder
(``fixed``, ``huffman`` or a range coder), so the termination is paid once.

The reference implementation only *counted* bits with a fixed 4-symbol
Huffman table and had no decoder; here every coder round-trips exactly.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from semcomp.codecs.varint import read_varint, varint

#: coder name → the prior it codes under (``range-*`` coders name their prior)
RANGE_PRIORS = {
    "range": "global",
    "range-position": "position",
    "range-subspace": "subspace",
    "range-positional": "positional",
}
CODERS = ("fixed", "huffman", "ans", "ans-positional", *RANGE_PRIORS)
#: what ``pqvae eval``/``sweep`` and embedding methods use unless told otherwise
DEFAULT_CODER = "range-positional"
#: coders that can code a batch of embeddings as one stream (``encode_stream``)
STREAM_CODERS = ("fixed", "huffman", *RANGE_PRIORS)


def smoothed(counts: np.ndarray) -> np.ndarray:
    """Probabilities from counts with add-one smoothing, so that every symbol stays codable."""
    counts = np.asarray(counts, dtype=np.float64) + 1.0
    return counts / counts.sum(axis=-1, keepdims=True)


def byte_matrix(streams: list[bytes], extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Streams as rows of a zero-padded (B, longest + ``extra``) uint8 matrix, and their lengths."""
    lengths = np.array([len(s) for s in streams], dtype=np.int64)
    matrix = np.zeros((len(streams), int(lengths.max(initial=0)) + extra), dtype=np.uint8)
    if lengths.sum():
        rows = np.repeat(np.arange(len(streams)), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        columns = np.arange(int(lengths.sum())) - starts
        matrix[rows, columns] = np.frombuffer(b"".join(streams), dtype=np.uint8)
    return matrix, lengths


class EntropyCoder(ABC):
    name: ClassVar[str]
    #: the coding method and the prior it codes under (for rate tables)
    family: ClassVar[str] = ""
    prior: str = "none"

    def __init__(self, symbols: int, alphabet: int):
        self.symbols = symbols
        self.alphabet = alphabet

    def repeated(self, times: int) -> EntropyCoder:
        """This coder over ``times`` embeddings in a row (one code for a batch stream)."""
        raise ValueError(f"the {self.name} coder codes one embedding per stream only")

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
    family = "fixed"

    def repeated(self, times: int) -> FixedLengthCoder:
        return FixedLengthCoder(self.symbols * times, self.alphabet)

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
    family = "huffman"
    prior = "global"

    def repeated(self, times: int) -> HuffmanCoder:
        return HuffmanCoder(self.symbols * times, self.alphabet, self.probabilities)

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
        """All rows at once: one table look-up per symbol position, over every stream."""
        out = np.zeros((len(streams), self.symbols), dtype=np.int64)
        if not streams:
            return out
        matrix, _ = byte_matrix(streams, extra=(self.max_length + 7) // 8)
        bits = np.unpackbits(matrix, axis=1)
        rows = np.arange(len(streams))[:, None]
        offsets = np.arange(self.max_length)
        weights = 1 << np.arange(self.max_length - 1, -1, -1)
        position = np.zeros(len(streams), dtype=np.int64)
        last = bits.shape[1] - self.max_length
        for index in range(self.symbols):
            # a corrupt stream may run past its end: read its padding, never out of bounds
            window = bits[rows, np.minimum(position, last)[:, None] + offsets]
            prefix = window @ weights
            out[:, index] = self.table_symbol[prefix]
            position += self.table_length[prefix]
        return out


class AnsCoder(EntropyCoder):
    """rANS (constriction) under one prior for every symbol, or one per position (``positional``).

    The stream is constriction's 32-bit words, so its length is a multiple of
    4 bytes; the final state flush is the coder's fixed overhead.
    """

    name = "ans"
    family = "ans"
    prior = "global"

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
            self.prior = "positional"
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


#: probabilities are quantised to integer frequencies summing to 2**PRECISION
PRECISION = 16
_TOTAL = 1 << PRECISION
_WORD = (1 << 32) - 1
_TOP = 1 << 24


def quantised_frequencies(probabilities: np.ndarray) -> np.ndarray:
    """Integer frequencies ≥ 1 summing to 2**PRECISION, one row per prior (C, K)."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    alphabet = probabilities.shape[1]
    if alphabet > _TOTAL // 2:
        raise ValueError(f"the range coder takes at most {_TOTAL // 2} symbols, not {alphabet}")
    frequencies = 1 + np.floor(probabilities * (_TOTAL - alphabet)).astype(np.int64)
    rows = np.arange(len(frequencies))
    frequencies[rows, frequencies.argmax(1)] += _TOTAL - frequencies.sum(1)
    return frequencies


def _carry(buffer: np.ndarray, position: np.ndarray, rows: np.ndarray) -> None:
    """Add one to the bytes written so far in ``rows`` (a carry out of the coder's low end)."""
    index = position[rows] - 1
    while len(rows):
        keep = index >= 0  # never false for a valid code; guards the loop
        rows, index = rows[keep], index[keep]
        buffer[rows, index] += 1  # uint8: 0xFF + 1 wraps to 0 and carries on
        more = buffer[rows, index] == 0
        rows, index = rows[more], index[more] - 1


class RangeCoder(EntropyCoder):
    """A byte-wise range coder (32-bit low and range, 16-bit frequencies), vectorised over rows.

    Every symbol position has a context (its prior row): the same for all
    positions (global), its grid position, its subspace, or both. All streams
    step through the symbol positions together, so coding a batch costs numpy
    operations per symbol position, not per symbol. The encoder ends on the
    value in the final interval with the most trailing zero bytes and drops
    those bytes; the decoder reads zeros past the end of a stream. The cost is
    the ideal length plus the finite-precision loss (under 0.006 bits a
    symbol) and at most one byte of termination.
    """

    family = "range"

    def __init__(
        self,
        symbols: int,
        alphabet: int,
        probabilities: np.ndarray,
        contexts: np.ndarray,
        name: str,
        prior: str,
    ):
        super().__init__(symbols, alphabet)
        self.name = name
        self.prior = prior
        self.probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
        self.contexts = np.asarray(contexts, dtype=np.int64)
        if self.contexts.shape != (symbols,):
            raise ValueError(f"expected one context per symbol ({symbols}), got {contexts.shape}")
        self.frequencies = quantised_frequencies(self.probabilities)
        self.cumulative = np.concatenate(
            [np.zeros((len(self.frequencies), 1), dtype=np.int64), self.frequencies.cumsum(1)], 1
        )
        self.fixed = FixedLengthCoder(symbols, alphabet)
        #: bytes of the fixed-length code; a stream of exactly this length is fixed-length coded
        self.fixed_bytes = math.ceil(symbols * self.fixed.width / 8)

    def repeated(self, times: int) -> RangeCoder:
        return RangeCoder(
            self.symbols * times,
            self.alphabet,
            self.probabilities,
            np.tile(self.contexts, times),
            self.name,
            self.prior,
        )

    def ideal_bits(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        p = self.probabilities[self.contexts[None, :], indices]
        return -np.log2(p).sum(axis=1)

    def range_code(self, indices: np.ndarray) -> list[bytes]:
        """The range-coded bytes of every row (no fixed-length fallback)."""
        indices = np.asarray(indices, dtype=np.int64)
        count, symbols = indices.shape
        buffer = np.zeros((count, 2 * symbols + 8), dtype=np.uint8)
        position = np.zeros(count, dtype=np.int64)
        low = np.zeros(count, dtype=np.int64)
        width = np.full(count, 1 << 32, dtype=np.int64)
        rows = np.arange(count)
        for index in range(symbols):
            context = self.contexts[index]
            symbol = indices[:, index]
            unit = width >> PRECISION
            low += unit * self.cumulative[context, symbol]
            width = unit * self.frequencies[context, symbol]
            carried = low > _WORD
            if carried.any():
                _carry(buffer, position, rows[carried])
                low &= _WORD
            while True:
                short = width < _TOP
                if not short.any():
                    break
                moving = rows[short]
                buffer[moving, position[moving]] = low[moving] >> 24
                position[moving] += 1
                low[moving] = (low[moving] << 8) & _WORD
                width[moving] <<= 8
        # end on the value in [low, low + width) with the most trailing zero bytes
        ends = np.zeros(count, dtype=np.int64)
        chosen = np.zeros(count, dtype=bool)
        for tail in range(5):
            step = 1 << (32 - 8 * tail)
            value = -(-low // step) * step
            fits = ~chosen & (value < low + width)
            ends[fits] = value[fits]
            chosen |= fits
        carried = ends > _WORD
        if carried.any():
            _carry(buffer, position, rows[carried])
        ends &= _WORD
        for shift in (24, 16, 8, 0):
            buffer[rows, position] = (ends >> shift) & 0xFF
            position += 1
        nonzero = buffer != 0
        lengths = np.where(nonzero.any(1), buffer.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
        return [row[:length].tobytes() for row, length in zip(buffer, lengths, strict=True)]

    def range_decode(self, streams: list[bytes]) -> np.ndarray:
        count = len(streams)
        out = np.zeros((count, self.symbols), dtype=np.int64)
        if not count:
            return out
        matrix, _ = byte_matrix(streams, extra=2 * self.symbols + 8)
        code = np.zeros(count, dtype=np.int64)
        for column in range(4):
            code = (code << 8) | matrix[:, column]
        position = np.full(count, 4, dtype=np.int64)
        width = np.full(count, 1 << 32, dtype=np.int64)
        rows = np.arange(count)
        last = matrix.shape[1] - 1
        for index in range(self.symbols):
            context = self.contexts[index]
            cumulative = self.cumulative[context]
            unit = width >> PRECISION
            target = np.minimum(code // unit, _TOTAL - 1)
            symbol = np.searchsorted(cumulative, target, side="right") - 1
            out[:, index] = symbol
            code -= unit * cumulative[symbol]
            width = unit * self.frequencies[context, symbol]
            while True:
                short = width < _TOP
                if not short.any():
                    break
                moving = rows[short]
                next_byte = matrix[moving, np.minimum(position[moving], last)]
                code[moving] = ((code[moving] << 8) | next_byte) & ((1 << 40) - 1)
                position[moving] += 1
                width[moving] <<= 8
        return out

    def encode(self, indices: np.ndarray) -> list[bytes]:
        indices = np.asarray(indices, dtype=np.int64)
        streams = self.range_code(indices)
        longer = [i for i, s in enumerate(streams) if len(s) >= self.fixed_bytes]
        if longer:
            for i, stream in zip(longer, self.fixed.encode(indices[longer]), strict=True):
                streams[i] = stream
        return streams

    def decode(self, streams: list[bytes]) -> np.ndarray:
        out = np.zeros((len(streams), self.symbols), dtype=np.int64)
        fixed = np.array([len(s) == self.fixed_bytes for s in streams], dtype=bool)
        if fixed.any():
            out[fixed] = self.fixed.decode([s for s, f in zip(streams, fixed, strict=True) if f])
        if (~fixed).any():
            out[~fixed] = self.range_decode(
                [s for s, f in zip(streams, fixed, strict=True) if not f]
            )
        return out


def prior_contexts(prior: str, symbols: int, subspaces: int) -> np.ndarray:
    """The prior row each symbol position codes under (symbols are position-major)."""
    index = np.arange(symbols)
    return {
        "global": np.zeros(symbols, dtype=np.int64),
        "position": index // subspaces,
        "subspace": index % subspaces,
        "positional": index,
    }[prior]


def prior_counts(prior: str, counts: np.ndarray, positional: np.ndarray, subspaces: int):
    """Index counts per context of ``prior``, from the checkpoint's global and per-symbol counts."""
    positional = np.asarray(positional, dtype=np.float64)
    if prior == "global":
        return np.asarray(counts, dtype=np.float64)[None]
    if prior == "positional":
        return positional
    grid = positional.reshape(-1, subspaces, positional.shape[-1])
    return grid.sum(1) if prior == "position" else grid.sum(0)


def make_coder(
    name: str,
    symbols: int,
    alphabet: int,
    prior: np.ndarray,
    positional_prior: np.ndarray,
    subspaces: int = 1,
) -> EntropyCoder:
    """The coder ``name`` with the checkpoint's priors (index counts, smoothed here).

    ``subspaces`` is d (indices per grid position) for the position and
    subspace priors; symbols are ordered position-major, as the model writes them.
    """
    if name == "fixed":
        return FixedLengthCoder(symbols, alphabet)
    if name == "huffman":
        return HuffmanCoder(symbols, alphabet, smoothed(prior))
    if name == "ans":
        return AnsCoder(symbols, alphabet, smoothed(prior))
    if name == "ans-positional":
        return AnsCoder(symbols, alphabet, smoothed(positional_prior))
    if name in RANGE_PRIORS:
        kind = RANGE_PRIORS[name]
        counts = prior_counts(kind, prior, positional_prior, subspaces)
        contexts = prior_contexts(kind, symbols, subspaces)
        return RangeCoder(symbols, alphabet, smoothed(counts), contexts, name, kind)
    raise ValueError(f"unknown entropy coder {name!r}; coders: {', '.join(CODERS)}")


#: what decoding a batch stream cut inside its count header says
TRUNCATED_COUNT = "truncated stream: its count header does not end"


def encode_stream(coder: EntropyCoder, indices: np.ndarray) -> bytes:
    """One stream for a batch of embeddings: a count header, then one code for all indices."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 2 or indices.shape[1] != coder.symbols:
        raise ValueError(f"expected indices of shape (n, {coder.symbols}), got {indices.shape}")
    if not len(indices):
        return varint(0)
    return varint(len(indices)) + coder.repeated(len(indices)).encode(indices.reshape(1, -1))[0]


def encode_streams(coder: EntropyCoder, indices: np.ndarray, size: int) -> list[bytes]:
    """Batch streams of ``size`` embeddings each (the last one may hold fewer), coded together."""
    indices = np.asarray(indices, dtype=np.int64)
    full = len(indices) // size * size
    streams = []
    if full:
        code = coder.repeated(size)
        header = varint(size)
        payloads = code.encode(indices[:full].reshape(full // size, -1))
        streams += [header + payload for payload in payloads]
    if full < len(indices):
        streams.append(encode_stream(coder, indices[full:]))
    return streams


def decode_streams(coder: EntropyCoder, streams: list[bytes]) -> np.ndarray:
    """Batch streams → (total embeddings, symbols); streams of one size are decoded together."""
    parsed = [read_varint(stream, 0, TRUNCATED_COUNT) for stream in streams]
    parts: list[np.ndarray | None] = [None] * len(streams)
    for count in sorted({count for count, _ in parsed}):
        which = [i for i, (n, _) in enumerate(parsed) if n == count]
        if count == 0:
            for i in which:
                parts[i] = np.zeros((0, coder.symbols), dtype=np.int64)
            continue
        payloads = [streams[i][parsed[i][1] :] for i in which]
        decoded = coder.repeated(count).decode(payloads).reshape(len(which), count, coder.symbols)
        for i, rows in zip(which, decoded, strict=True):
            parts[i] = rows
    if not parts:
        return np.zeros((0, coder.symbols), dtype=np.int64)
    return np.concatenate(parts)
