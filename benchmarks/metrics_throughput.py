"""Throughput of each metric through semcomp beside the bare library on the same batches.

    python benchmarks/metrics_throughput.py [--device cpu|cuda] [--full-size]
        [--pairs 16] [--batch-size 8] [--repeats 3] [--size 128x96] [--metrics psnr,lpips]
        [--json]

For each metric the same decoded images (photo-like originals and JPEG-degraded
candidates, as RGB PIL images) go in batches of ``--batch-size`` through

- semcomp: the metric class's own entry point, called as the score stage calls it
  (``compare`` for pairwise metrics, ``features`` for FID/KID's Inception features,
  ``embed`` for CLIP, ``predict`` for zero-shot), and
- the bare library: the same model object's forward (or the library function) on the
  same batches, stacked into tensors by hand, with no grouping by size, no per-pair
  failures, no out-of-memory back-off and no resizing checks.

Both sides are timed alternately ``--repeats`` times after one warm-up batch each (going
over the pairs several times when one pass is under ~0.2 s), and the best time of each is
kept (the machine may be shared); the ratio is semcomp's throughput
over the bare library's (1.00: no overhead). Pairwise and task metrics count pairs per
second, feature and embedding metrics images per second.

Without ``--full-size`` the models are the tiny or random-weight ones the tests use
(LPIPS AlexNet random, DISTS random, DreamSim tiny, Inception tiny at 75 px, tiny CLIP)
and MS-SSIM uses ``win_size = 3`` (small images). ``--full-size`` builds random-weight
models at the real sizes without downloads (DreamSim ViT-B ensemble, Inception-v3 at
299 px, CLIP ViT-L/14@336) on 512×384 images with MS-SSIM's standard window 11: for a
lent GPU (``--device cuda --full-size``).

``--json`` prints a list of objects with keys ``metric``, ``unit`` (pairs/s or
images/s), ``items``, ``semcomp_per_s``, ``bare_per_s`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common import machine, photo

METRICS = ("psnr", "ms-ssim", "lpips", "dists", "dreamsim", "fid", "clip", "zero-shot")


def degraded(image: Image.Image, quality: int) -> Image.Image:
    """``image`` through JPEG at ``quality``, decoded: a candidate as the decode stage gives."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def tensors(images: list[Image.Image], scale: float = 1.0, shift: float = 0.0) -> Any:
    """A float batch (N×3×H×W) in [0, 1] × scale + shift, stacked by hand."""
    import torch
    from torchvision.transforms.functional import to_tensor

    return torch.stack([to_tensor(image) * scale + shift for image in images])


def seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def cases(args: argparse.Namespace, folder: Path) -> dict[str, Callable[[], tuple]]:
    """For each metric, a builder of (unit, semcomp(batch of pairs), bare(batch of pairs),
    close)."""
    import torch

    device, full = args.device, args.full_size

    def psnr() -> tuple:
        from semcomp.metrics.psnr import PsnrMetric, PsnrParams

        metric = PsnrMetric(PsnrParams(), device=device)

        def bare(originals, candidates):
            x = np.stack([np.asarray(o) for o in originals]).astype(np.float64)
            y = np.stack([np.asarray(c) for c in candidates]).astype(np.float64)
            mse = ((x - y) ** 2).reshape(len(x), -1).mean(1)
            return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))

        return "pairs/s", metric.compare, bare, metric.close

    def ms_ssim() -> tuple:
        from pytorch_msssim import ms_ssim as library

        from semcomp.metrics.msssim import MsSsimMetric, MsSsimParams

        params = MsSsimParams(win_size=11 if full else 3)
        metric = MsSsimMetric(params, device=device)

        def bare(originals, candidates):
            x, y = (tensors(images, 255.0).to(device) for images in (originals, candidates))
            with torch.inference_mode():
                return library(x, y, data_range=255, size_average=False, win_size=params.win_size)

        return "pairs/s", metric.compare, bare, metric.close

    def learned(metric_class, params, pixels) -> tuple:
        """LPIPS, DISTS, DreamSim: the bare side calls the library's model object that
        semcomp built (the libraries download weights in their constructors; random weights
        need semcomp's loader), on tensors stacked by hand."""
        metric = metric_class(params, device=device, batch_size=args.batch_size)

        def bare(originals, candidates):
            x, y = pixels(originals), pixels(candidates)
            with torch.inference_mode():
                return metric.distances(x.to(metric.device), y.to(metric.device)).cpu()

        return "pairs/s", metric.compare, bare, metric.close

    def lpips() -> tuple:
        from semcomp.metrics.lpips import Lpips, LpipsParams

        return learned(Lpips, LpipsParams(weights="random"), lambda im: tensors(im, 2.0, -1.0))

    def dists() -> tuple:
        from semcomp.metrics.dists import Dists, DistsParams

        return learned(Dists, DistsParams(weights="random"), tensors)

    def dreamsim() -> tuple:
        from semcomp.metrics.dreamsim import IMAGE_SIZE, DreamSim, DreamSimParams

        def pixels(images):
            size = (IMAGE_SIZE, IMAGE_SIZE)
            return tensors([im.resize(size, Image.Resampling.BICUBIC) for im in images])

        params = DreamSimParams(weights="random" if full else "tiny")
        return learned(DreamSim, params, pixels)

    def fid() -> tuple:
        from semcomp.metrics.fid import Fid, FidParams

        metric = Fid(FidParams(weights="random" if full else "tiny"), device=device)
        metric.batch_size = 2 * args.batch_size  # a batch of pairs is twice as many images

        def bare(originals, candidates):
            images = [*originals, *candidates]
            batch = torch.stack([torch.from_numpy(np.array(im)) for im in images])
            with torch.inference_mode():
                return metric.model(batch.permute(0, 3, 1, 2).contiguous().to(metric.device))

        return "images/s", lambda o, c: metric.features([*o, *c]), bare, metric.close

    def clip_model() -> str:
        from semcomp.tiny_models import write_tiny_open_clip

        return write_tiny_open_clip(folder / "clip", full_size=full)

    def clip() -> tuple:
        from semcomp.config import EmbedderConfig
        from semcomp.metrics.clip import ClipMetric

        config = EmbedderConfig(model=clip_model(), random_weights=True)
        metric = ClipMetric(config, device=device, batch_size=2 * args.batch_size)
        embedder = metric.embedder

        def bare(originals, candidates):
            images = [*originals, *candidates]
            pixels = torch.stack([metric.preprocess(im) for im in images])
            with torch.inference_mode():
                pixels = pixels.to(embedder.device, embedder.dtype)
                features = embedder.model.encode_image(pixels).float()
                return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()

        return "images/s", lambda o, c: metric.embed([*o, *c]), bare, metric.close

    def zero_shot() -> tuple:
        from semcomp.metrics.zeroshot import ZeroShotMetric, ZeroShotParams

        classes = tuple(f"class {i}" for i in range(10))
        params = ZeroShotParams(model=clip_model(), random_weights=True, classes=classes)
        metric = ZeroShotMetric(params, device=device, batch_size=args.batch_size)
        embedder = metric.embedder
        text = torch.from_numpy(metric.class_embeddings).float()

        def labels(candidates):
            return [classes[i % len(classes)] for i in range(len(candidates))]

        def bare(originals, candidates):
            pixels = torch.stack([embedder.preprocess(im) for im in candidates])
            with torch.inference_mode():
                pixels = pixels.to(embedder.device, embedder.dtype)
                features = embedder.model.encode_image(pixels).float().cpu()
            predicted = (torch.nn.functional.normalize(features, dim=-1) @ text.T).argmax(1)
            truth = torch.tensor([classes.index(label) for label in labels(candidates)])
            return (predicted == truth).float()

        return "pairs/s", lambda o, c: metric.predict(c, labels(c)), bare, metric.close

    return {
        "psnr": psnr,
        "ms-ssim": ms_ssim,
        "lpips": lpips,
        "dists": dists,
        "dreamsim": dreamsim,
        "fid": fid,
        "clip": clip,
        "zero-shot": zero_shot,
    }


def measure(name: str, build: Callable[[], tuple], pairs: list, args) -> dict:
    unit, semcomp, bare, close = build()
    chunks = batches(pairs, args.batch_size)

    def through(run: Callable) -> Callable[[], None]:
        def every_batch() -> None:
            for chunk in chunks:
                originals, candidates = zip(*chunk, strict=True)
                run(list(originals), list(candidates))

        return every_batch

    first = chunks[0]
    warm = max(  # warm-up: lazy imports, first-call allocations
        seconds(lambda run=run: run([o for o, _ in first], [c for _, c in first]))
        for run in (semcomp, bare)
    )
    # fast metrics go over the pairs several times, so that a timing is at least ~0.2 s
    loops = max(1, min(1000, int(0.2 / max(warm * len(chunks), 1e-6))))
    semcomp_s, bare_s = float("inf"), float("inf")
    for _ in range(args.repeats):  # alternate, so that both see the same load
        semcomp_s = min(semcomp_s, seconds(lambda: [through(semcomp)() for _ in range(loops)]))
        bare_s = min(bare_s, seconds(lambda: [through(bare)() for _ in range(loops)]))
    close()
    items = loops * len(pairs) * (2 if unit == "images/s" else 1)
    return {
        "metric": name,
        "unit": unit,
        "items": items,
        "semcomp_per_s": items / semcomp_s,
        "bare_per_s": items / bare_s,
        "ratio": bare_s / semcomp_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true", help="real-size random weights")
    parser.add_argument("--pairs", type=int, default=16, help="original/candidate pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default=None, help="WxH (default 128x96, full size 512x384)")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON only")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = map(int, (args.size or ("512x384" if args.full_size else "128x96")).split("x"))
    originals = [photo(width, height, seed) for seed in range(args.pairs)]
    pairs = [(o, degraded(o, 10 + 5 * (i % 4))) for i, o in enumerate(originals)]
    chosen = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown:
        parser.error(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    say = (lambda *_: None) if args.json else print
    say(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    say(
        f"{args.pairs} pairs of {width}×{height} images, batches of {args.batch_size}, "
        f"device {args.device}, {'full-size' if args.full_size else 'tiny'} random weights, "
        f"best of {args.repeats}"
    )
    say(f"\n{'metric':<10} {'unit':<9} {'semcomp':>9} {'bare':>9} {'ratio':>6}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        builders = cases(args, Path(tmp))
        for name in chosen:
            row = measure(name, builders[name], pairs, args)
            rows.append(row)
            say(
                f"{name:<10} {row['unit']:<9} {row['semcomp_per_s']:9.1f} "
                f"{row['bare_per_s']:9.1f} {row['ratio']:6.2f}"
            )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
