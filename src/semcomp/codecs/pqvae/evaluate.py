"""Evaluating embedding codecs: zero-shot accuracy, cosine distortion and exact rates.

``evaluate`` measures one checkpoint on held-out embeddings against the raw
(uncompressed) upper bound. ``sweep`` trains PQVAE-shared over a grid of
(d_sub, K) with the baselines and writes the paper's Table 1 layout (rows:
method, columns: bpd) and the subspace ablation (accuracy against bpd, one
curve per d_sub) as CSV and figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semcomp.codecs.pqvae.bitstream import (
    CODERS,
    DEFAULT_CODER,
    STREAM_CODERS,
    decode_streams,
    encode_streams,
)
from semcomp.codecs.pqvae.checkpoint import Checkpoint
from semcomp.codecs.pqvae.codec import EmbeddingCodec
from semcomp.codecs.pqvae.data import EmbeddingSet
from semcomp.codecs.pqvae.model import PQVAEConfig
from semcomp.codecs.pqvae.train import TrainConfig, Trainer
from semcomp.metrics.zeroshot import mean_cosine, zero_shot


@dataclass
class CoderRate:
    """A coder's rate and speed on a set of indices, per embedding (speeds exclude the network)."""

    coder: str
    prior: str
    name: str
    stream_size: int
    #: mean coded bits per embedding (stream bytes × 8, headers and flags included)
    coded_bits: float
    #: mean ideal code length per embedding under the coder's prior (−Σ log2 p)
    ideal_bits: float
    fixed_bits: int
    ratio: float
    encode_per_s: float
    decode_per_s: float


def coder_rate(
    checkpoint: Checkpoint, indices: np.ndarray, name: str, stream_size: int = 1
) -> CoderRate:
    """Code ``indices`` with coder ``name`` in streams of ``stream_size`` embeddings, time both
    ways and check the round trip (a mismatch is a coder bug, so it raises)."""
    coder = checkpoint.coder(name)
    started = time.perf_counter()
    if stream_size == 1:
        streams = coder.encode(indices)
    else:
        streams = encode_streams(coder, indices, stream_size)
    encoding = time.perf_counter() - started
    started = time.perf_counter()
    decoded = coder.decode(streams) if stream_size == 1 else decode_streams(coder, streams)
    decoding = time.perf_counter() - started
    if not np.array_equal(decoded, indices):
        raise RuntimeError(f"the {name} coder did not decode its own streams")
    count = max(len(indices), 1)
    coded = sum(8 * len(stream) for stream in streams) / count
    ideal = float(coder.ideal_bits(indices).mean()) if len(indices) else 0.0
    return CoderRate(
        coder=coder.family,
        prior=coder.prior,
        name=name,
        stream_size=stream_size,
        coded_bits=coded,
        ideal_bits=ideal,
        fixed_bits=checkpoint.config.raw_bits,
        ratio=coded / ideal if ideal else float("nan"),
        encode_per_s=len(indices) / max(encoding, 1e-9),
        decode_per_s=len(indices) / max(decoding, 1e-9),
    )


def coder_rates(
    checkpoint: Checkpoint,
    indices: np.ndarray,
    coders: tuple[str, ...] = CODERS,
    stream_size: int = 1,
) -> list[CoderRate]:
    """Every coder on one embedding a stream, and the batch coders on streams of ``stream_size``."""
    rates = [coder_rate(checkpoint, indices, name) for name in coders]
    if stream_size > 1:
        rates += [
            coder_rate(checkpoint, indices, name, stream_size)
            for name in coders
            if name in STREAM_CODERS
        ]
    return rates


@dataclass
class Evaluation:
    method: str
    coder: str
    d_sub: int | None
    codebook_size: int | None
    embeddings: int
    bits_mean: float
    ideal_bits_mean: float
    bpd: float
    cosine: float
    distortion: float
    top1: float | None
    top5: float | None
    raw_top1: float | None
    raw_top5: float | None
    classes: int | None
    #: embeddings per stream for ``coder`` (1: one stream each; more: batch streams)
    stream_size: int = 1
    #: every coder's rate and speed on these embeddings' indices (quantised models only)
    rates: list[CoderRate] = field(default_factory=list)


def method_label(config: PQVAEConfig) -> str:
    if config.architecture in ("pqvae-shared", "vqvae-kmeans"):
        return f"{config.architecture} (d_sub={config.d_sub}, K={config.codebook_size})"
    if config.architecture == "scalar":
        return f"scalar ({config.scalar_bits} bit)"
    return config.architecture


def evaluate(
    checkpoint: Checkpoint,
    data: EmbeddingSet,
    text: np.ndarray | None,
    coder: str = DEFAULT_CODER,
    classes: np.ndarray | None = None,
    stream_size: int = 1,
) -> Evaluation:
    """Encode to real streams, decode them, and measure what survived.

    With ``stream_size`` > 1 the embeddings go in batch streams of that many;
    ``bits_mean`` is then the streams' bits per embedding.
    """
    if stream_size < 1:
        raise ValueError(f"stream size must be at least 1, not {stream_size}")
    codec = EmbeddingCodec(checkpoint, coder)
    if stream_size > 1 and codec.coder is not None:
        batch = codec.encode_streams(data.embeddings, stream_size)
        decoded = codec.decode_streams(batch.streams)
        bits_mean = batch.bits.sum() / max(len(decoded), 1)
    else:
        batch = codec.encode_batch(data.embeddings)
        decoded = codec.decode(batch.streams)
        bits_mean = float(batch.bits.mean())
    rates = []
    if codec.coder is not None:
        rates = coder_rates(checkpoint, codec.indices(data.embeddings), CODERS, stream_size)
    shot = raw = None
    if text is not None:
        shot = zero_shot(decoded, data.labels, text, classes)
        raw = zero_shot(data.embeddings, data.labels, text, classes)
    cosine = mean_cosine(decoded, data.embeddings)
    config = checkpoint.config
    pq = config.architecture in ("pqvae-shared", "vqvae-kmeans")
    return Evaluation(
        method=method_label(config),
        coder=codec.coder_name,
        d_sub=config.d_sub if pq else None,
        codebook_size=config.codebook_size if pq else None,
        embeddings=len(decoded),
        bits_mean=float(bits_mean),
        ideal_bits_mean=float(batch.ideal_bits.mean()),
        bpd=float(bits_mean / config.input_dim),
        cosine=cosine,
        distortion=1.0 - cosine,
        top1=shot.top1 if shot else None,
        top5=shot.top5 if shot else None,
        raw_top1=raw.top1 if raw else None,
        raw_top5=raw.top5 if raw else None,
        classes=shot.classes if shot else None,
        stream_size=stream_size if codec.coder is not None else 1,
        rates=rates,
    )


def held_out(checkpoint: Checkpoint, data: EmbeddingSet) -> tuple[EmbeddingSet, np.ndarray | None]:
    """The validation classes a checkpoint was trained without, when it recorded them."""
    classes = checkpoint.training.get("val_classes")
    if not classes:
        return data, None
    rows = np.flatnonzero(np.isin(data.labels, classes))
    return data.subset(rows), np.asarray(classes)


def sweep_configs(
    input_dim: int, d_subs: list[int], sizes: list[int], base: PQVAEConfig
) -> list[PQVAEConfig]:
    """PQVAE-shared over the (d_sub, K) grid, the VQ-VAE and scalar baselines, the float bounds."""
    configs = [
        base.model_copy(update={"input_dim": input_dim, "d_sub": d, "codebook_size": k})
        for d in d_subs
        for k in sizes
    ]
    configs += [
        base.model_copy(
            update={
                "architecture": "vqvae-kmeans",
                "input_dim": input_dim,
                "d_sub": d,
                "codebook_size": k,
            }
        )
        for d in d_subs[:1]
        for k in sizes
    ]
    configs += [
        base.model_copy(update={"architecture": "scalar", "input_dim": input_dim, "scalar_bits": b})
        for b in (1, 2)
    ]
    configs += [
        base.model_copy(update={"architecture": a, "input_dim": input_dim})
        for a in ("float16", "float32")
    ]
    return configs


def sweep(
    data: EmbeddingSet,
    text: np.ndarray | None,
    out: Path,
    *,
    d_subs: list[int],
    sizes: list[int],
    base: PQVAEConfig,
    train_config: TrainConfig,
    coder: str = DEFAULT_CODER,
    log: Any = print,
    progress: bool = True,
    stream_size: int = 1,
) -> pd.DataFrame:
    """Train and evaluate every configuration; write results, Table 1 and the ablation.

    ``rates.csv`` holds every coder's coded and ideal bits, ratio and speed per method.
    """
    out = Path(out)
    rows, rates = [], []
    for config in sweep_configs(data.dim, d_subs, sizes, base):
        name = method_label(config).replace(" ", "").replace("(", "_").replace(")", "")
        log(f"== {method_label(config)}")
        trainer = Trainer(
            config, train_config, data, text, out / "runs" / name, log=log, progress=progress
        )
        checkpoint = trainer.train()
        validation, classes = held_out(checkpoint, data)
        row = asdict(evaluate(checkpoint, validation, text, coder, classes, stream_size))
        rates += [{"method": row["method"], **rate} for rate in row.pop("rates")]
        rows.append(row)
    results = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    pd.DataFrame(rates).to_csv(out / "rates.csv", index=False)
    write_table1(results, out / "table1.csv")
    write_ablation(results, out / "ablation")
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "d_sub": d_subs,
                "K": sizes,
                "coder": coder,
                "stream_size": stream_size,
                "train": train_config.model_dump(),
            },
            indent=2,
        )
    )
    return results


def write_table1(results: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The paper's Table 1 layout: rows are methods, columns are bpd, cells top-1 accuracy."""
    frame = results.copy()
    frame["family"] = frame["method"].str.replace(r" \(.*\)", "", regex=True)
    frame["bpd"] = frame["bpd"].round(3)
    value = "top1" if frame["top1"].notna().any() else "cosine"
    table = frame.pivot_table(index="family", columns="bpd", values=value, aggfunc="max")
    table.to_csv(path)
    return table


def write_ablation(results: pd.DataFrame, stem: Path) -> list[Path]:
    """Accuracy (or cosine) against bpd, one curve per d_sub, for PQVAE-shared."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shared = results[results["method"].str.startswith("pqvae-shared")].copy()
    shared.to_csv(stem.with_suffix(".csv"), index=False)
    value = "top1" if shared["top1"].notna().any() else "cosine"
    figure, axis = plt.subplots(figsize=(4.5, 3.4))
    for d_sub, rows in shared.groupby("d_sub"):
        rows = rows.sort_values("bpd")
        axis.plot(rows["bpd"], rows[value], marker="o", label=f"d_sub={int(d_sub)}")
    if value == "top1" and results["raw_top1"].notna().any():
        axis.axhline(results["raw_top1"].max(), color="grey", ls="--", label="raw (32 bpd)")
    axis.set_xlabel("bits per feature dimension (bpd)")
    axis.set_ylabel("zero-shot top-1" if value == "top1" else "cosine")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    paths = []
    for suffix in (".png", ".pdf"):
        figure.savefig(stem.with_suffix(suffix), dpi=150)
        paths.append(stem.with_suffix(suffix))
    plt.close(figure)
    return paths
