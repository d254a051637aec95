"""Evaluating embedding codecs: zero-shot accuracy, cosine distortion and exact rates.

``evaluate`` measures one checkpoint on held-out embeddings against the raw
(uncompressed) upper bound. ``sweep`` trains PQVAE-shared over a grid of
(d_sub, K) with the baselines and writes the paper's Table 1 layout (rows:
method, columns: nominal bpd, with the measured coded bpd beside each) and the
subspace ablation (accuracy against bpd, one curve per d_sub) as CSV and figures.

Rates, per embedding (one image):

- ``fixed_bits`` / ``fixed_bpd``: the fixed-length code, h·w·d·⌈log2 K⌉ bits, and
  that over the embedding's 768 dimensions: the paper's bpd (0.52 at 400 bits).
- ``bits_mean`` / ``bpd``: what the entropy coder's streams really cost (bytes × 8),
  and that over 768.
- ``fixed_bpp_of_mean_pixels``: the paper's bits per pixel: the fixed bit count over
  the dataset's MEAN image size (400 bits ↔ 2.29e-3 bpp on Oxford Pets, about
  174,700 pixels); ``bpp_of_mean_pixels`` is the same with the coded bits.
- ``bpp_per_image``: the mean over images of each image's coded bits over ITS
  pixels (what semcomp's studies call bpp; small images weigh more).
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
from semcomp.codecs.pqvae.codec import CheckpointCodec
from semcomp.codecs.pqvae.data import EmbeddingSet
from semcomp.codecs.pqvae.model import PQVAEConfig
from semcomp.codecs.pqvae.train import TrainConfig, Trainer
from semcomp.errors import ConfigError
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
    #: mean coded bits per embedding (the streams' bytes × 8)
    bits_mean: float
    ideal_bits_mean: float
    #: coded bits per feature dimension: bits_mean / input_dim
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
    #: the fixed-length code's bits per embedding, and per dimension (the paper's bpd)
    fixed_bits: int = 0
    fixed_bpd: float = 0.0
    #: the originals' mean pixel count (when the embeddings carry pixel counts)
    mean_pixels: float | None = None
    #: the paper's bpp: fixed bits / mean pixels of the dataset
    fixed_bpp_of_mean_pixels: float | None = None
    #: coded bits / mean pixels of the dataset
    bpp_of_mean_pixels: float | None = None
    #: mean over images of coded bits / that image's pixels
    bpp_per_image: float | None = None
    #: which classes compete in zero-shot: held-out (the checkpoint's validation classes) or all
    class_set: str = "all"


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
    codec = CheckpointCodec(checkpoint, coder)
    if text is not None and len(data.labels) and data.labels.max() >= len(text):
        raise ConfigError(
            f"labels go up to {data.labels.max()} but the class text embeddings have "
            f"{len(text)} rows: give this dataset's text.safetensors"
        )
    if stream_size > 1 and codec.coder is not None:
        batch = codec.encode_streams(data.embeddings, stream_size)
        decoded = codec.decode_streams(batch.streams)
        bits_mean = batch.bits.sum() / max(len(decoded), 1)
        counts = [min(stream_size, len(decoded) - i) for i in range(0, len(decoded), stream_size)]
        row_bits = np.repeat(np.asarray(batch.bits, dtype=np.float64) / counts, counts)
    else:
        batch = codec.encode_batch(data.embeddings)
        decoded = codec.decode(batch.streams)
        bits_mean = float(batch.bits.mean())
        row_bits = np.asarray(batch.bits, dtype=np.float64)
    rates = []
    if codec.coder is not None:
        rates = coder_rates(checkpoint, codec.indices(data.embeddings), CODERS, stream_size)
    shot = raw = None
    if text is not None:
        # every class of the dataset competes, also those with no image here
        competing = classes if classes is not None else np.arange(len(text))
        shot = zero_shot(decoded, data.labels, text, competing)
        raw = zero_shot(data.embeddings, data.labels, text, competing)
    cosine = mean_cosine(decoded, data.embeddings)
    config = checkpoint.config
    pq = config.architecture in ("pqvae-shared", "vqvae-kmeans")
    per_pixel: dict[str, Any] = {}
    if data.pixels is not None and len(data.pixels):
        mean_pixels = float(data.pixels.mean())
        per_pixel = {
            "mean_pixels": mean_pixels,
            "fixed_bpp_of_mean_pixels": config.raw_bits / mean_pixels,
            "bpp_of_mean_pixels": float(bits_mean) / mean_pixels,
            "bpp_per_image": float(np.mean(row_bits / data.pixels)),
        }
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
        fixed_bits=config.raw_bits,
        fixed_bpd=config.raw_bits / config.input_dim,
        class_set="all" if classes is None else "held-out",
        **per_pixel,
    )


CLASS_SETS = ("auto", "held-out", "all")


def trained_on(checkpoint: Checkpoint, data: EmbeddingSet) -> bool:
    """Whether ``data`` is the dataset the checkpoint was trained on (same classes).

    Checkpoints record their training classes' names; an older one without them
    is taken to match when its validation classes are labels of ``data``.
    """
    names = checkpoint.training.get("class_names")
    if names is not None:
        return list(names) == list(data.class_names)
    classes = checkpoint.training.get("val_classes") or []
    known = len(data.class_names) or (int(data.labels.max()) + 1 if len(data.labels) else 0)
    return bool(classes) and max(classes) < known


def evaluation_classes(
    checkpoint: Checkpoint, data: EmbeddingSet, which: str = "auto"
) -> tuple[EmbeddingSet, np.ndarray | None]:
    """The rows and competing classes of a zero-shot evaluation.

    ``held-out``: the checkpoint's validation classes (rows of those classes, only
    they compete), which needs the training dataset; ``all``: every row, every
    class of ``data``; ``auto``: held-out on the training dataset, else all.
    """
    if which not in CLASS_SETS:
        raise ConfigError(f"classes must be one of {', '.join(CLASS_SETS)}, not {which!r}")
    same = trained_on(checkpoint, data)
    if which == "held-out" and not same:
        raise ConfigError(
            "--classes held-out needs the dataset the checkpoint was trained on; this one "
            "has other classes (use --classes all)"
        )
    classes = checkpoint.training.get("val_classes")
    if which == "all" or not same or not classes:
        return data, None
    rows = np.flatnonzero(np.isin(data.labels, classes))
    return data.subset(rows), np.asarray(classes)


def held_out(checkpoint: Checkpoint, data: EmbeddingSet) -> tuple[EmbeddingSet, np.ndarray | None]:
    """The validation classes a checkpoint was trained without, when it recorded them."""
    return evaluation_classes(checkpoint, data, "auto")


#: Table 1's PQVAE-shared columns: d_sub 16 (d = 8 subspaces) and K = 4, 8, 16, 32, 64, 1024
#: give 400, 600, 800, 1000, 1200 and 2000 bits: 0.52, 0.78, 1.04, 1.3, 1.56 and 2.604 bpd
TABLE1_D_SUB = (16,)
TABLE1_K = (4, 8, 16, 32, 64, 1024)
#: learned scalar quantisation at 1, 2 and 3 bits per dimension (Table 1's SQ columns)
TABLE1_SCALAR_BITS = (1, 2, 3)


def sweep_configs(
    input_dim: int,
    d_subs: list[int],
    sizes: list[int],
    base: PQVAEConfig,
    scalar_bits: tuple[int, ...] = TABLE1_SCALAR_BITS,
) -> list[PQVAEConfig]:
    """PQVAE-shared over the (d_sub, K) grid, the VQ-VAE k-means baseline at every d_sub and K,
    learned scalar quantisation at ``scalar_bits``, and the float upper bounds."""
    configs = [
        base.model_copy(
            update={
                "architecture": architecture,
                "input_dim": input_dim,
                "d_sub": d,
                "codebook_size": k,
            }
        )
        for architecture in ("pqvae-shared", "vqvae-kmeans")
        for d in d_subs
        for k in sizes
    ]
    configs += [
        base.model_copy(update={"architecture": "scalar", "input_dim": input_dim, "scalar_bits": b})
        for b in scalar_bits
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
    others: dict[str, tuple[EmbeddingSet, np.ndarray | None]] | None = None,
) -> pd.DataFrame:
    """Train and evaluate every configuration; write results, Table 1 and the ablation.

    Each model is evaluated on the training data's held-out classes (dataset
    ``held-out``) and zero-shot on every dataset of ``others`` (name → embeddings and
    class text embeddings, all their classes): Table 1's rows. ``rates.csv`` holds every
    coder's coded and ideal bits, ratio and speed per method.
    """
    out = Path(out)
    rows, rates = [], []
    others = others or {}
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
        rows.append({"dataset": "held-out", **row})
        for dataset, (other, other_text) in others.items():
            row = asdict(evaluate(checkpoint, other, other_text, coder, None, stream_size))
            row.pop("rates")
            rows.append({"dataset": dataset, **row})
    results = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    pd.DataFrame(rates).to_csv(out / "rates.csv", index=False)
    write_table1(results, out / "table1.csv")
    write_ablation(results[results["dataset"] == "held-out"], out / "ablation")
    (out / "sweep.json").write_text(
        json.dumps(
            {
                "d_sub": d_subs,
                "K": sizes,
                "coder": coder,
                "stream_size": stream_size,
                "datasets": ["held-out", *others],
                "train": train_config.model_dump(),
            },
            indent=2,
        )
    )
    return results


def table1_row(method: str, d_sub: Any) -> str:
    """A Table 1 row: the method's family, with its d_sub when a sweep has several."""
    family = method.split(" (")[0]
    if family in ("pqvae-shared", "vqvae-kmeans") and pd.notna(d_sub):
        return f"{family} (d_sub={int(d_sub)})"
    return family


def write_table1(results: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The paper's Table 1 layout: a row per dataset and method, a column per NOMINAL bpd
    (fixed-length bits / 768, the numbers the paper prints), each cell zero-shot top-1
    (cosine without class texts), with the MEASURED coded bpd of the same model beside it."""
    frame = results.copy()
    frame["row"] = [table1_row(m, d) for m, d in zip(frame["method"], frame["d_sub"], strict=True)]
    if "dataset" in frame:  # a block of rows per dataset, as the paper's Table 1
        frame["row"] = frame["dataset"] + ": " + frame["row"]
    nominal = frame["fixed_bpd"] if "fixed_bpd" in frame else frame["bpd"]
    frame["nominal"] = nominal.round(3)
    value = "top1" if frame["top1"].notna().any() else "cosine"
    order = list(dict.fromkeys(frame["row"]))
    columns: dict[str, pd.Series] = {}
    for bpd in sorted(frame["nominal"].unique()):
        at = frame[frame["nominal"] == bpd].groupby("row")
        columns[f"{bpd:g} bpd: {value}"] = at[value].max()
        columns[f"{bpd:g} bpd: coded bpd"] = at["bpd"].max().round(4)
    table = pd.DataFrame(columns).reindex(order)
    table.index.name = "method"
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
