"""Throughput of each metric through semcomp beside the bare library on the same batches.

    python benchmarks/metrics_throughput.py [--device cpu|cuda] [--full-size]
        [--pairs 16] [--batch-size 8] [--repeats 3] [--size 128x96] [--metrics psnr,lpips]
        [--json]

For each metric the same files (photo-like PNG originals and JPEG-degraded candidates
saved as PNG, as a study stores them) go in batches of ``--batch-size`` pairs through

- semcomp: the local engine with the score stage's own task (``ComparePairs`` for
  pairwise metrics, ``ExtractFeatures`` for FID/KID's Inception features, ``EmbedImages``
  for CLIP, ``ClassifyCandidates`` for zero-shot), so reading, decoding and the metric's
  model-free preprocessing run in the engine's prefetch thread ahead of the model, as in
  ``semcomp run``; "in turn" is the same with ``prefetch=0`` (each batch loaded just
  before its turn, as before the prefetch thread);
- the bare library: a plain loop that decodes each batch's files (Pillow), stacks
  tensors by hand and calls the same model's forward (or the library function), with no
  grouping by size, no per-pair failures, no out-of-memory back-off and no resizing checks.

The three are timed alternately ``--repeats`` times, the engine's runs after an untimed
run of one batch and from the built model to the last outcome (building and closing the
model left out; every load inside), and the best time of each is kept (the machine may be
shared); the ratio is semcomp's throughput over the bare library's (1.00: no overhead;
the target for model-based metrics is at least 0.8); "cpu s" and "bare cpu" are the least CPU
seconds (user + system, all threads) of the semcomp and bare runs, and "cpu ratio" bare's
over semcomp's: load on shared cores distorts them less than wall times. Pairwise and
task metrics count pairs per second, feature and embedding metrics images per second.

Without ``--full-size`` the models are the tiny or random-weight ones the tests use
(LPIPS AlexNet random, DISTS random, DreamSim tiny, Inception tiny at 75 px, tiny CLIP)
and MS-SSIM uses ``win_size = 3`` (small images). ``--full-size`` builds random-weight
models at the real sizes without downloads (DreamSim ViT-B ensemble, Inception-v3 at
299 px, CLIP ViT-L/14@336) on 512×384 images with MS-SSIM's standard window 11: for a
lent GPU (``--device cuda --full-size``).

``--json`` prints a list of objects with keys ``metric``, ``unit`` (pairs/s or
images/s), ``items``, ``semcomp_per_s``, ``in_turn_per_s``, ``bare_per_s``, ``ratio`` and
``in_turn_ratio``, ``semcomp_cpu_s`` and ``bare_cpu_s`` (the least CPU seconds, user +
system over every thread, of the semcomp runs and of the bare runs) and ``cpu_ratio``
(bare CPU seconds over semcomp's).
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

from common import engine_seconds, machine, photo

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


def decoded(paths: list[Path]) -> list[Image.Image]:
    """The files as RGB images, as a plain loop would read them (Pillow)."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def cases(args: argparse.Namespace, folder: Path) -> dict[str, Callable[[], dict]]:
    """For each metric, a builder of its measurement: ``unit``, the ``factory`` and ``task``
    the score stage runs on the engine, ``item`` (a pair of files → the task's item),
    ``bare`` (a batch of pairs of files → the bare library's values) and ``close``."""
    import torch

    from semcomp.engines import PluginFactory
    from semcomp.stages.embed import EmbedImages
    from semcomp.stages.score import ClassifyCandidates, ComparePairs
    from semcomp.stages.set_scores import ExtractFeatures

    device, full, size = args.device, args.full_size, args.batch_size

    def factory(name: str, params: Any, batch_size: int = size) -> PluginFactory:
        return PluginFactory("metric", name, params, {"device": device, "batch_size": batch_size})

    def pairs_case(name, metric, params, bare) -> dict:
        return {
            "unit": "pairs/s",
            "factory": factory(name, params),
            "task": ComparePairs(),
            "item": lambda pair: pair,
            "bare": bare,
            "close": metric.close,
        }

    def psnr() -> dict:
        from semcomp.metrics.psnr import PsnrMetric, PsnrParams

        metric = PsnrMetric(PsnrParams(), device=device)

        def bare(batch):
            originals, candidates = decoded([o for o, _ in batch]), decoded([c for _, c in batch])
            x = np.stack([np.asarray(o) for o in originals]).astype(np.float64)
            y = np.stack([np.asarray(c) for c in candidates]).astype(np.float64)
            mse = ((x - y) ** 2).reshape(len(x), -1).mean(1)
            return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))

        return pairs_case("psnr", metric, PsnrParams(), bare)

    def ms_ssim() -> dict:
        from pytorch_msssim import ms_ssim as library

        from semcomp.metrics.msssim import MsSsimMetric, MsSsimParams

        params = MsSsimParams(win_size=11 if full else 3)
        metric = MsSsimMetric(params, device=device)

        def bare(batch):
            x = tensors(decoded([o for o, _ in batch]), 255.0).to(device)
            y = tensors(decoded([c for _, c in batch]), 255.0).to(device)
            with torch.inference_mode():
                return library(x, y, data_range=255, size_average=False, win_size=params.win_size)

        return pairs_case("ms-ssim", metric, params, bare)

    def learned(name, metric_class, params, pixels) -> dict:
        """LPIPS, DISTS, DreamSim: the bare side calls the library's model object that
        semcomp built (the libraries download weights in their constructors; random weights
        need semcomp's loader), on tensors stacked by hand."""
        metric = metric_class(params, device=device, batch_size=size)

        def bare(batch):
            x = pixels(decoded([o for o, _ in batch]))
            y = pixels(decoded([c for _, c in batch]))
            with torch.inference_mode():
                return metric.distances(x.to(metric.device), y.to(metric.device)).cpu()

        return pairs_case(name, metric, params, bare)

    def lpips() -> dict:
        from semcomp.metrics.lpips import Lpips, LpipsParams

        return learned(
            "lpips", Lpips, LpipsParams(weights="random"), lambda im: tensors(im, 2.0, -1.0)
        )

    def dists() -> dict:
        from semcomp.metrics.dists import Dists, DistsParams

        return learned("dists", Dists, DistsParams(weights="random"), tensors)

    def dreamsim() -> dict:
        from semcomp.metrics.dreamsim import IMAGE_SIZE, DreamSim, DreamSimParams

        def pixels(images):
            side = (IMAGE_SIZE, IMAGE_SIZE)
            return tensors([im.resize(side, Image.Resampling.BICUBIC) for im in images])

        params = DreamSimParams(weights="random" if full else "tiny")
        return learned("dreamsim", DreamSim, params, pixels)

    def fid() -> dict:
        from semcomp.metrics.fid import Fid, FidParams

        params = FidParams(weights="random" if full else "tiny")
        metric = Fid(params, device=device)

        def bare(batch):
            images = decoded([path for pair in batch for path in pair])
            pixels = torch.stack([torch.from_numpy(np.array(im)) for im in images])
            with torch.inference_mode():
                return metric.model(pixels.permute(0, 3, 1, 2).contiguous().to(metric.device))

        # a batch of pairs is twice as many images: the engine's batches hold both
        return {
            "unit": "images/s",
            "factory": factory("fid", params, 2 * size),
            "task": ExtractFeatures(),
            "item": lambda pair: pair,
            "flatten": True,
            "bare": bare,
            "close": metric.close,
        }

    def clip_model() -> str:
        from semcomp.tiny_models import write_tiny_open_clip

        return write_tiny_open_clip(folder / "clip", full_size=full)

    def clip() -> dict:
        from semcomp.config import EmbedderConfig
        from semcomp.metrics.clip import ClipMetric

        config = EmbedderConfig(model=clip_model(), random_weights=True)
        metric = ClipMetric(config, device=device, batch_size=2 * size)
        embedder = metric.embedder

        def bare(batch):
            images = decoded([path for pair in batch for path in pair])
            pixels = torch.stack([metric.preprocess(im) for im in images])
            with torch.inference_mode():
                pixels = pixels.to(embedder.device, embedder.dtype)
                features = embedder.model.encode_image(pixels).float()
                return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()

        return {
            "unit": "images/s",
            "factory": factory("clip", config, 2 * size),
            "task": EmbedImages(),
            "item": lambda pair: pair,
            "flatten": True,
            "bare": bare,
            "close": metric.close,
        }

    def zero_shot() -> dict:
        from semcomp.metrics.zeroshot import ZeroShotMetric, ZeroShotParams

        classes = tuple(f"class {i}" for i in range(10))
        params = ZeroShotParams(model=clip_model(), random_weights=True, classes=classes)
        metric = ZeroShotMetric(params, device=device, batch_size=size)
        embedder = metric.embedder
        text = torch.from_numpy(metric.class_embeddings).float()
        label = {}  # candidate file → its class, as the stage hands it over

        def bare(batch):
            candidates = [c for _, c in batch]
            pixels = torch.stack([embedder.preprocess(im) for im in decoded(candidates)])
            with torch.inference_mode():
                pixels = pixels.to(embedder.device, embedder.dtype)
                features = embedder.model.encode_image(pixels).float().cpu()
            predicted = (torch.nn.functional.normalize(features, dim=-1) @ text.T).argmax(1)
            truth = torch.tensor([classes.index(label[c]) for c in candidates])
            return (predicted == truth).float()

        def item(pair):
            label.setdefault(pair[1], classes[len(label) % len(classes)])
            return (pair[1], label[pair[1]], False)

        return {
            "unit": "pairs/s",
            "factory": factory("zero-shot", params),
            "task": ClassifyCandidates(),
            "item": item,
            "bare": bare,
            "close": metric.close,
        }

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


def engine_run(case: dict, chunks: list[list], prefetch: int) -> tuple[float, float]:
    """Wall and CPU seconds of the local engine over ``chunks`` as the score stage runs the
    metric, model building and closing left out (:func:`common.engine_seconds`)."""
    from semcomp.engines import LocalEngine

    engine = LocalEngine(prefetch=prefetch)
    wall, cpu, outcomes = engine_seconds(engine, case["factory"], case["task"], chunks)
    for outcome in outcomes:
        if any(isinstance(result, Exception) for result in outcome.results):
            raise next(r for r in outcome.results if isinstance(r, Exception))
    return wall, cpu


def measure(name: str, build: Callable[[], dict], pairs: list, args) -> dict:
    case = build()
    chunks = batches(pairs, args.batch_size)
    item = case["item"]
    if case.get("flatten"):  # images, not pairs: both files of each pair, one batch
        engine_chunks = [[path for pair in chunk for path in pair] for chunk in chunks]
    else:
        engine_chunks = [[item(pair) for pair in chunk] for chunk in chunks]
    case["bare"](chunks[0])  # warm-up: lazy imports, first-call allocations

    def bare() -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        for chunk in chunks:
            case["bare"](chunk)
        return time.perf_counter() - started, time.process_time() - cpu

    semcomp, in_turn, bare_runs = [], [], []
    for _ in range(args.repeats):  # alternate, so that all three see the same load
        semcomp.append(engine_run(case, engine_chunks, prefetch=2))
        in_turn.append(engine_run(case, engine_chunks, prefetch=0))
        bare_runs.append(bare())
    case["close"]()
    # the best wall time and, apart, the least CPU time of each (load inflates both)
    semcomp_s, in_turn_s, bare_s = (
        min(w for w, _ in runs) for runs in (semcomp, in_turn, bare_runs)
    )
    semcomp_cpu, bare_cpu = (min(c for _, c in runs) for runs in (semcomp, bare_runs))
    items = len(pairs) * (2 if case["unit"] == "images/s" else 1)
    return {
        "metric": name,
        "unit": case["unit"],
        "items": items,
        "semcomp_per_s": items / semcomp_s,
        "in_turn_per_s": items / in_turn_s,
        "bare_per_s": items / bare_s,
        "ratio": bare_s / semcomp_s,
        "in_turn_ratio": bare_s / in_turn_s,
        "semcomp_cpu_s": semcomp_cpu,
        "bare_cpu_s": bare_cpu,
        "cpu_ratio": bare_cpu / semcomp_cpu,
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
    say(
        f"\n{'metric':<10} {'unit':<9} {'semcomp':>9} {'in turn':>9} {'bare':>9} "
        f"{'ratio':>6} {'in turn':>8} {'cpu s':>7} {'bare cpu':>8} {'cpu ratio':>9}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (original, candidate) in enumerate(pairs):  # as a study stores them
            paths = (Path(tmp) / f"{i:04d}.png", Path(tmp) / f"{i:04d}-candidate.png")
            original.save(paths[0])
            candidate.save(paths[1])
            files.append(paths)
        builders = cases(args, Path(tmp))
        for name in chosen:
            row = measure(name, builders[name], files, args)
            rows.append(row)
            say(
                f"{name:<10} {row['unit']:<9} {row['semcomp_per_s']:9.1f} "
                f"{row['in_turn_per_s']:9.1f} {row['bare_per_s']:9.1f} {row['ratio']:6.2f} "
                f"{row['in_turn_ratio']:8.2f} {row['semcomp_cpu_s']:7.2f} "
                f"{row['bare_cpu_s']:8.2f} {row['cpu_ratio']:9.2f}"
            )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
