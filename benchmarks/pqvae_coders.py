"""Entropy coders on a trained PQVAE-shared model's indices: coded bits against the ideal
code length under each prior and the empirical entropy, per embedding and in batch streams,
with encode/decode speed; and Huffman decoding, per-row loop (the former decoder) beside
the vectorised one, in the same run.

    python benchmarks/pqvae_coders.py [--embeddings 4000] [--epochs 6] [--json]

The model has the paper's index layout (a 5×5 grid, 8 subspaces of d_sub 16, K 4: 200
indices, 400 fixed bits) on a small encoder (64-dimensional inputs), trained for a few
epochs on synthetic clustered features (class means on a low-rank sphere plus noise), with
k-means initialisation and dead-codeword revival so that the codebook is used. The priors
are index counts on the training rows; rates are measured on held-out rows. Speeds are
coder only (indices precomputed), in embeddings per second.

``--json`` prints a list of objects, one per coder × prior × stream size, with keys
``coder``, ``prior``, ``stream_size``, ``coded_bits`` and ``ideal_bits`` (per embedding),
``fixed_bits``, ``ratio``, ``encode_per_s``, ``decode_per_s``, and also ``name`` (the
coder's name in semcomp) and ``empirical_bits`` (the held-out rows' own entropy under the
same prior structure, per embedding: a lower bound no stored prior reaches).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pqvae_epoch import synthetic  # class means on a low-rank sphere plus noise
from semcomp.codecs.pqvae.bitstream import (
    CODERS,
    RANGE_PRIORS,
    STREAM_CODERS,
    prior_contexts,
    prior_counts,
)
from semcomp.codecs.pqvae.codec import CheckpointCodec
from semcomp.codecs.pqvae.evaluate import coder_rate
from semcomp.codecs.pqvae.model import PQVAEConfig
from semcomp.codecs.pqvae.train import TrainConfig, Trainer, index_counts

#: the paper's index layout (5×5 grid, 128 channels, d_sub 16, K 4) on a small encoder
MODEL = PQVAEConfig(input_dim=64, hidden=(128, 64), residual_hidden=32, channels=128, d_sub=16)
STREAM_SIZES = (1, 10, 100)


def empirical_bits(indices: np.ndarray, prior: str, subspaces: int) -> float | None:
    """Mean −Σ log2 p per embedding, p the rows' own frequencies under ``prior``'s contexts
    (None for the fixed-length code, which has no prior)."""
    if prior == "none":
        return None
    overall, positional = index_counts(indices, MODEL.alphabet)
    counts = prior_counts(prior, overall, positional, subspaces)
    p = counts / counts.sum(1, keepdims=True)
    contexts = prior_contexts(prior, indices.shape[1], subspaces)
    return float(-np.log2(p[contexts[None, :], indices]).sum(1).mean())


def loop_huffman_decode(coder, streams: list[bytes]) -> np.ndarray:
    """The former Huffman decoder: a Python loop over rows and symbols."""
    out = np.zeros((len(streams), coder.symbols), dtype=np.int64)
    pad = np.zeros(coder.max_length, dtype=np.uint8)
    weights = 1 << np.arange(coder.max_length - 1, -1, -1)
    for row, stream in enumerate(streams):
        bits = np.concatenate([np.unpackbits(np.frombuffer(stream, dtype=np.uint8)), pad])
        windows = np.lib.stride_tricks.sliding_window_view(bits, coder.max_length)
        prefixes = windows @ weights
        position = 0
        for index in range(coder.symbols):
            prefix = prefixes[position]
            out[row, index] = coder.table_symbol[prefix]
            position += coder.table_length[prefix]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embeddings", type=int, default=4000, help="held-out rows coded")
    parser.add_argument("--train", type=int, default=6000, help="training rows")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON only")
    args = parser.parse_args()
    say = (lambda *_: None) if args.json else print
    data = synthetic(args.train + args.embeddings, dim=64, classes=100, rank=16)
    training = data.subset(np.arange(args.train))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            MODEL,
            TrainConfig(
                epochs=args.epochs,
                lr=3e-3,
                batch_size=128,
                split="random",
                validation=0.1,
                kmeans_init=True,
                reinit_dead=True,
            ),
            training,
            None,
            Path(tmp),
            log=lambda _: None,
            progress=False,
        )
        started = time.perf_counter()
        checkpoint = trainer.train()
        trained_s = time.perf_counter() - started
    last = trainer.history[-1]
    codec = CheckpointCodec(checkpoint, "fixed")
    indices = codec.indices(data.embeddings[args.train :])
    if not args.json:
        from common import machine

        say(f"machine: {machine()}")
    say(
        f"model: {MODEL.symbols} indices of K={MODEL.alphabet} ({MODEL.raw_bits} fixed bits), "
        f"trained {len(trainer.history)} epochs in {trained_s:.0f} s on {args.train} rows: "
        f"val cosine {last.val_cosine:.3f}, codebook use {last.utilisation:.2f}, "
        f"index entropy {last.index_entropy_bits:.3f} bits/index; {len(indices)} held-out rows"
    )
    rows = []
    for size in STREAM_SIZES:
        for name in CODERS if size == 1 else STREAM_CODERS:
            rate = asdict(coder_rate(checkpoint, indices, name, size))
            rate["empirical_bits"] = empirical_bits(indices, rate["prior"], MODEL.subspaces)
            rows.append(rate)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return
    say(
        f"\n{'coder':<8} {'prior':<10} {'N':>4} {'coded':>7} {'ideal':>7} {'ratio':>6} "
        f"{'empirical':>9} {'fixed':>5} {'encode/s':>9} {'decode/s':>9}"
    )
    for r in rows:
        empirical = "-" if r["empirical_bits"] is None else f"{r['empirical_bits']:.1f}"
        say(
            f"{r['coder']:<8} {r['prior']:<10} {r['stream_size']:>4} {r['coded_bits']:7.1f} "
            f"{r['ideal_bits']:7.1f} {r['ratio']:6.3f} {empirical:>9} "
            f"{r['fixed_bits']:5d} {r['encode_per_s']:9.0f} {r['decode_per_s']:9.0f}"
        )
    huffman = checkpoint.coder("huffman")
    streams = huffman.encode(indices)
    started = time.perf_counter()
    looped = loop_huffman_decode(huffman, streams)
    loop_s = time.perf_counter() - started
    started = time.perf_counter()
    vectorised = huffman.decode(streams)
    vector_s = time.perf_counter() - started
    assert np.array_equal(looped, indices) and np.array_equal(vectorised, indices)
    say(
        f"\nhuffman decode, same streams: per-row loop {len(indices) / loop_s:.0f}/s, "
        f"vectorised {len(indices) / vector_s:.0f}/s ({loop_s / vector_s:.0f}x)"
    )
    best = min(
        (r for r in rows if r["stream_size"] == 1 and r["name"] in RANGE_PRIORS),
        key=lambda r: r["coded_bits"],
    )
    say(
        f"fewest bits per embedding, one stream each: {best['name']} "
        f"{best['coded_bits']:.1f} bits ({best['ratio']:.3f} × its ideal)"
    )


if __name__ == "__main__":
    main()
