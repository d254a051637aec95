"""Evaluating embedding codecs: zero-shot accuracy, cosine distortion and exact rates.

``evaluate`` measures one checkpoint on held-out embeddings against the raw
(uncompressed) upper bound. ``sweep`` trains PQVAE-shared over a grid of
(d_sub, K) with the baselines and writes the paper's Table 1 layout (rows:
method, columns: bpd) and the subspace ablation (accuracy against bpd, one
curve per d_sub) as CSV and figures.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semcomp.analysis.zeroshot import mean_cosine, zero_shot
from semcomp.codecs.pqvae.checkpoint import Checkpoint
from semcomp.codecs.pqvae.codec import EmbeddingCodec
from semcomp.codecs.pqvae.data import EmbeddingSet
from semcomp.codecs.pqvae.model import PQVAEConfig
from semcomp.codecs.pqvae.train import TrainConfig, Trainer


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
    coder: str = "ans",
    classes: np.ndarray | None = None,
) -> Evaluation:
    """Encode to real streams, decode them, and measure what survived."""
    codec = EmbeddingCodec(checkpoint, coder)
    batch = codec.encode_batch(data.embeddings)
    decoded = codec.decode(batch.streams)
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
        bits_mean=float(batch.bits.mean()),
        ideal_bits_mean=float(batch.ideal_bits.mean()),
        bpd=float(batch.bits.mean() / config.input_dim),
        cosine=cosine,
        distortion=1.0 - cosine,
        top1=shot.top1 if shot else None,
        top5=shot.top5 if shot else None,
        raw_top1=raw.top1 if raw else None,
        raw_top5=raw.top5 if raw else None,
        classes=shot.classes if shot else None,
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
    coder: str = "ans",
    log: Any = print,
    progress: bool = True,
) -> pd.DataFrame:
    """Train and evaluate every configuration; write results, Table 1 and the ablation."""
    out = Path(out)
    rows = []
    for config in sweep_configs(data.dim, d_subs, sizes, base):
        name = method_label(config).replace(" ", "").replace("(", "_").replace(")", "")
        log(f"== {method_label(config)}")
        trainer = Trainer(
            config, train_config, data, text, out / "runs" / name, log=log, progress=progress
        )
        checkpoint = trainer.train()
        validation, classes = held_out(checkpoint, data)
        rows.append(asdict(evaluate(checkpoint, validation, text, coder, classes)))
    results = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    write_table1(results, out / "table1.csv")
    write_ablation(results, out / "ablation")
    (out / "sweep.json").write_text(
        json.dumps(
            {"d_sub": d_subs, "K": sizes, "coder": coder, "train": train_config.model_dump()},
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
