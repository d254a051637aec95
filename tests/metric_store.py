"""A study whose scores go beyond CLIP, written straight into its store.

JPEG and WebP sweeps of four photos (real files, real rates; no model runs), then
rows as the metric plugins' score stage writes them: ``psnr`` (higher is better,
dB), ``lpips[alex]`` (lower is better), CLIP rows as migration 3 leaves them
(display = key), a set metric ``fid`` (lower is better) with one ``set_scores``
row per method × operating point, and Survey A ratings that follow PSNR.

Scores are a function of each candidate's bits per pixel, with WebP's 1.15 times
as efficient as JPEG's (``score(1.15 × bpp)``): WebP needs about 13 % less rate
for the same score, whatever the metric's direction (the qualities are chosen so
that the two sweeps' rates and scores overlap enough for BD-rate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from helpers import photo, write_study

PSNR, LPIPS, FID = "psnr", "lpips[alex]", "fid"
CLIP_COS, CLIP = "clip_cos[tiny]", "clip_(cos+1)/2[tiny]"
SAT = "human.A.median[similarity]"
METHODS = (
    '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [20, 40, 60, 80, 90]\n\n'
    '[[methods]]\nname = "webp"\ncodec = "webp"\nquality = [40, 60, 80, 95]\n'
)
#: how many times more efficient each method is (its scores are those of gain × bpp)
GAIN = {"jpeg": 1.0, "webp": 1.15}


def psnr_of(bpp: np.ndarray) -> np.ndarray:
    return 30 + 4 * np.log2(bpp)


def lpips_of(bpp: np.ndarray) -> np.ndarray:
    return 0.3 - 0.05 * np.log2(bpp)


def fid_of(bpp: float) -> float:
    return float(40 - 8 * np.log2(bpp))


def metric_row(name: str, kind: str, display: str | None, higher: bool, low, high, **extra):
    return {
        "name": name,
        "embedder_id": None,
        "formula": extra.pop("formula", name),
        "description": extra.pop("description", f"{name} of each candidate"),
        "kind": kind,
        "display": display,
        "higher_is_better": int(higher),
        "low": low,
        "high": high,
        "identity": json.dumps({"metric": name.split("[")[0], **extra}),
    }


def write_metric_study(base: Path) -> Path:
    """The study described above, under ``base``; returns its folder."""
    from semcomp.store import Store, utc_now
    from semcomp.study import Study

    images = base / "images"
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (images / category).mkdir(parents=True)
        for seed in seeds:
            photo(96, 64, seed).save(images / category / f"img{seed}.png")
    root = write_study(base / "study", images, "unused-clip-model", methods=METHODS)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode", "decode"])
    assert summary.status == "finished" and not summary.failures, summary.failures
    rng = np.random.default_rng(0)
    now = utc_now()
    with Store(root) as store, store.transaction():
        for row in (
            metric_row(PSNR, "pairwise", "PSNR", True, 0.0, None, unit="dB"),
            metric_row(LPIPS, "pairwise", "LPIPS (AlexNet)", False, 0.0, None, net="alex"),
            # as migration 3 leaves the score stage's CLIP rows: display = key
            metric_row(CLIP_COS, "embedding", CLIP_COS, True, -1.0, 1.0, formula="cos"),
            metric_row(CLIP, "embedding", CLIP, True, 0.0, 1.0, formula="(cos+1)/2"),
            metric_row(FID, "set", "FID (Inception pool3)", False, 0.0, None),
            metric_row(
                SAT,
                "embedding",  # the default kind of a row the survey import wrote
                None,
                True,
                None,
                None,
                formula="median(ratings of survey A question similarity, 1–10)",
            ),
        ):
            store.upsert("metrics", row, key=("name",))
        rows = store.frame(
            "SELECT c.id, m.id AS method_id, m.name AS method, r.operating_point, "
            "r.rate_bits * 1.0 / o.pixels AS bpp, o.id AS original_id FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN methods m ON m.id = r.method_id JOIN originals o ON o.id = r.original_id"
        )
        effective = rows["bpp"].to_numpy() * rows["method"].map(GAIN).to_numpy()
        psnr = psnr_of(effective)
        values = {
            PSNR: psnr,
            LPIPS: lpips_of(effective),
            CLIP_COS: np.tanh(effective / 2),
            CLIP: (np.tanh(effective / 2) + 1) / 2,
            SAT: np.clip(np.round((psnr - 20) / 2 + rng.normal(0, 0.7, len(rows))), 1, 10),
        }
        for metric, column in values.items():
            store.upsert_many(
                "scores",
                ("candidate_id", "metric", "value", "run_id", "created_at"),
                [(c, metric, float(v), None, now) for c, v in zip(rows["id"], column, strict=True)],
                key=("candidate_id", "metric"),
            )
        for (method_id, point), group in rows.assign(effective=effective).groupby(
            ["method_id", "operating_point"]
        ):
            value = fid_of(float(group["effective"].mean()))
            store.upsert(
                "set_scores",
                {
                    "metric": FID,
                    "method_id": method_id,
                    "operating_point": point,
                    "originals_key": "-".join(sorted(group["original_id"])),
                    "n": int(group["original_id"].nunique()),
                    "value": value,
                    "ci_low": value - 2.0,
                    "ci_high": value + 2.5,
                    "run_id": None,
                    "created_at": now,
                },
                key=("metric", "method_id", "operating_point"),
            )
    return root
