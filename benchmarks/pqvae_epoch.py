"""One PQVAE-shared training epoch on 50,000 × 768 synthetic embeddings (paper preset).

    python benchmarks/pqvae_epoch.py [--embeddings 50000] [--device cpu]

Synthetic CLIP-like embeddings (class means on a rank-64 sphere plus noise),
1,000 classes, the paper's model (5×5×128, d_sub 16, K 4), batch 64. Prints the
wall time of the epoch (training steps, then validation and codebook health),
the whole call with checkpointing, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine
from semcomp.codecs.pqvae.data import EmbeddingSet
from semcomp.codecs.pqvae.model import PAPER_PRESET
from semcomp.codecs.pqvae.train import TrainConfig, Trainer


def synthetic(rows: int, dim: int = 768, classes: int = 1000, rank: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0]
    means = rng.normal(size=(classes, rank))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    labels = rng.integers(0, classes, rows)
    z = means[labels] + 0.3 * rng.normal(size=(rows, rank)) / np.sqrt(rank)
    x = z @ basis.T + 0.05 * rng.normal(size=(rows, dim)) / np.sqrt(dim)
    return EmbeddingSet(x.astype(np.float32), labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embeddings", type=int, default=50_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = synthetic(args.embeddings)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            PAPER_PRESET,
            TrainConfig(epochs=1, split="random", validation=0.02, device=args.device),
            data,
            None,
            Path(tmp),
            log=lambda _: None,
            progress=False,
        )
        started = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - started
    epoch = trainer.history[0]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {machine()}, device: {args.device}")
    print(f"{len(trainer.train_rows)} training embeddings x 768, batch 64, paper preset (400 bits)")
    print(f"epoch (steps + validation + codebook health): {epoch.seconds:8.1f} s")
    print(f"whole call incl. priors and checkpoints:      {total:8.1f} s")
    rate = len(trainer.train_rows) / epoch.seconds
    print(f"training embeddings per second:              {rate:8.1f}")
    print(f"peak resident memory:                        {peak_mib:8.0f} MiB")


if __name__ == "__main__":
    main()
