"""Entropy coders at the paper's configuration: overhead against the ideal code length,
and encode/decode throughput batched vs one embedding at a time vs a reference-style coder.

    python benchmarks/pqvae_coders.py [--embeddings 5000]

The paper's model (5×5×128, d_sub 16, K 4: 200 indices, 400 raw bits) with its
index priors counted on synthetic CLIP-like embeddings (the coders' overhead
depends on the index statistics, which these give; the network is untrained).
"The reference" is a per-symbol Python Huffman coder building a '0'/'1'
string, like the paper's released code (which only counted the bits).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import machine
from pqvae_epoch import synthetic
from semcomp.codecs.pqvae.checkpoint import Checkpoint
from semcomp.codecs.pqvae.codec import EmbeddingCodec
from semcomp.codecs.pqvae.model import PAPER_PRESET, EmbeddingCodecModel
from semcomp.codecs.pqvae.train import index_counts


def reference_huffman(indices: np.ndarray, codes: list[str]) -> list[str]:
    """Per-symbol string concatenation, as in the reference implementation."""
    return ["".join(codes[int(symbol)] for symbol in row) for row in indices]


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embeddings", type=int, default=5000)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = synthetic(args.embeddings * 2)
    model = EmbeddingCodecModel(PAPER_PRESET).eval()
    with torch.no_grad():
        train = model.indices(torch.from_numpy(data.embeddings[: args.embeddings])).numpy()
    prior, positional = index_counts(train, PAPER_PRESET.alphabet)
    checkpoint = Checkpoint(PAPER_PRESET, model, prior, positional, {})
    test = data.embeddings[args.embeddings :]
    print(f"machine: {machine()}")
    print(f"paper preset, {len(test)} held-out embeddings, priors from {len(train)}")
    print(f"{'coder':<15} {'bits/emb':>9} {'ideal':>8} {'overhead':>9} {'bpd':>6}")
    for name in ("fixed", "huffman", "ans", "ans-positional"):
        codec = EmbeddingCodec(checkpoint, name)
        batch = codec.encode_batch(test)
        bits, ideal = batch.bits.mean(), batch.ideal_bits.mean()
        print(f"{name:<15} {bits:9.1f} {ideal:8.1f} {bits / ideal - 1:8.2%} {bits / 768:6.3f}")
    print("\nthroughput (embeddings/s), coder only on precomputed indices:")
    indices = EmbeddingCodec(checkpoint, "fixed").indices(test)
    huffman = EmbeddingCodec(checkpoint, "huffman").coder
    codes = [
        format(code, f"0{length}b")
        for code, length in zip(huffman.codes, huffman.lengths, strict=True)
    ]
    n = len(indices)
    print(f"{'coder':<15} {'encode batch':>13} {'encode 1-by-1':>14} {'decode batch':>13}")
    for name in ("fixed", "huffman", "ans", "ans-positional"):
        coder = EmbeddingCodec(checkpoint, name).coder
        batch_s = timed(lambda c=coder: c.encode(indices))
        single_s = timed(lambda c=coder: [c.encode(indices[i : i + 1]) for i in range(n)])
        streams = coder.encode(indices)
        decode_s = timed(lambda c=coder, s=streams: c.decode(s))
        print(f"{name:<15} {n / batch_s:13.0f} {n / single_s:14.0f} {n / decode_s:13.0f}")
    reference_s = timed(lambda: reference_huffman(indices, codes))
    ours_s = timed(lambda: huffman.encode(indices))
    print(f"{'reference-style':<15} {n / reference_s:13.0f}  (Python '0'/'1' strings, no bytes)")
    print(f"huffman encode, ours vs reference-style: {reference_s / ours_s:.1f}x faster")
    full = EmbeddingCodec(checkpoint, "ans")
    rows = test[:1000]
    batched = timed(lambda: full.encode(rows))
    one_by_one = timed(lambda: [full.encode(rows[i : i + 1]) for i in range(len(rows))])
    print(
        f"end to end (network + ans) encode: batched {len(rows) / batched:.0f}/s, "
        f"one at a time {len(rows) / one_by_one:.0f}/s, ratio {one_by_one / batched:.1f}x"
    )


if __name__ == "__main__":
    main()
