"""Per-stage throughput of the batch stages (embed, caption, reconstruct) at several batch sizes.

    python benchmarks/stage_throughput.py [--device cpu|cuda] [--full-size]
        [--batch-sizes 1,4,16] [--images 32] [--workers 0] [--stages embed,caption,reconstruct]
        [--repeats 3]

Each stage's work goes through the local engine exactly as ``semcomp run``
does it (plugin factory, load/infer task; with ``--workers 0``, ``semcomp run``'s
default, the next batches load in the engine's prefetch thread, else in that many
DataLoader processes), on photo-like 512×384 PNG files. Reported per stage and
batch size: images per second (after an untimed run of one batch; from the built model to
the last batch's outcome), the profile's time split (decode, preprocess, model), and on CUDA
the fraction of that time the GPU was busy (utilisation sampled every 100 ms through NVML, i.e.
``pip install "semcomp[bench]"``, else ``nvidia-smi -lms 100``; "n/a" and the
reason under the table when neither works).

The embed stage is then measured beside two bare loops over the same files and
batches, with the same model object, alternately ``--repeats`` times (best of each):
"bare loop" reads, decodes (Pillow), applies the CLIP transform, stacks and runs the
forward pass under ``torch.inference_mode``, one batch after the other; "forward
only" runs just the forward pass on batches preprocessed beforehand (the most a
stage could reach if reading and preprocessing cost nothing). Ratios are the
stage's images per second over each.

Without ``--full-size`` the models are the tiny random-weight ones (CPU-sized;
SD at 64×64 with 2 steps). ``--full-size`` builds random-weight models at the
real sizes from configs, without downloads: CLIP ViT-L/14@336px, BLIP-large,
SD 1.5 at 512×512 with 25 steps (see ``semcomp.tiny_models``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import engine_seconds, machine, photo
from semcomp.config import EmbedderConfig
from semcomp.engines import PREFETCH, LocalEngine, PluginFactory
from semcomp.tiny_models import write_tiny_blip, write_tiny_open_clip, write_tiny_stable_diffusion


class GpuBusy:
    """Samples the GPU's utilisation in the background from :meth:`start` to :meth:`stop`.

    NVML through torch (needs ``nvidia-ml-py``), else ``nvidia-smi`` in a subprocess;
    :attr:`reason` says why there are no samples.
    """

    def __init__(self, device: str, interval: float = 0.1):
        self.device, self.interval = device, interval
        self.samples: list[int] = []
        self.reason = "" if device.startswith("cuda") else "not a CUDA device"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._smi: subprocess.Popen | None = None

    def start(self) -> None:
        if self.reason or self._thread is not None:
            return
        import torch

        try:
            torch.cuda.utilization()
            target = self._sample_nvml
        except Exception as exc:  # no pynvml, or NVML cannot start
            if shutil.which("nvidia-smi") is None:
                self.reason = f"no NVML ({type(exc).__name__}: {exc}) and no nvidia-smi"
                return
            index = self.device.split(":")[1] if ":" in self.device else "0"
            self._smi = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"-lms={int(self.interval * 1000)}",
                    f"-i={index}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            target = self._read_smi
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def _sample_nvml(self) -> None:
        import torch

        while not self._stop.is_set():
            self.samples.append(torch.cuda.utilization())
            time.sleep(self.interval)

    def _read_smi(self) -> None:
        for line in self._smi.stdout:
            if line.strip().isdigit():
                self.samples.append(int(line))

    def stop(self) -> None:
        self._stop.set()
        if self._smi is not None:
            self._smi.terminate()
            self._smi.wait()
        if self._thread is not None:
            self._thread.join()
        if not self.samples and not self.reason:
            self.reason = "no utilisation sample came back"

    @property
    def busy(self) -> str:
        if not self.samples:
            return "n/a"
        return f"{sum(self.samples) / len(self.samples) / 100:.2f}"


def stage_setup(stage: str, models: Path, images: list[Path], full: bool, device: str, batch: int):
    """(factory, task, items) for one stage, built like the stage builds them."""
    from semcomp.captioners.base import OriginalRef
    from semcomp.captioners.blip import BlipParams
    from semcomp.images import DEFAULT_MAX_PIXELS
    from semcomp.reconstructors.diffusers import DiffusersParams
    from semcomp.stages.caption import CaptionOriginals
    from semcomp.stages.embed import EmbedImages, embedder_factory
    from semcomp.stages.reconstruct import Job, ReconstructPrompts

    options = {"device": device, "batch_size": batch}
    size = "full" if full else "tiny"
    if stage == "embed":
        clip = write_tiny_open_clip(models / f"clip-{size}", full_size=full)
        factory = embedder_factory(EmbedderConfig(model=clip), device=device, batch_size=batch)
        return factory, EmbedImages(), list(images)
    if stage == "caption":
        blip = write_tiny_blip(models / f"blip-{size}", full_size=full)
        params = BlipParams(model=str(blip), max_new_tokens=20 if full else 10)
        factory = PluginFactory("captioner", "blip", params, options, label="blip")
        refs = [
            OriginalRef(id=p.stem, name=p.stem, category="", source_path=str(p)) for p in images
        ]
        task = CaptionOriginals(needs_images=True, max_pixels=DEFAULT_MAX_PIXELS)
        return factory, task, list(zip(refs, images, strict=True))
    sd = write_tiny_stable_diffusion(models / f"sd-{size}", full_size=full)
    side, steps = (512, 25) if full else (64, 2)
    params = DiffusersParams(model=str(sd), steps=steps, width=side, height=side)
    factory = PluginFactory("reconstructor", "diffusers", params, options, label="diffusers")
    jobs = [
        Job("m", f"r{i}", f"r{i}", f"a photo of object number {i} on a table", i, 0, f"k{i}")
        for i in range(len(images))
    ]
    return factory, ReconstructPrompts(), jobs


def measure(
    factory: PluginFactory,
    task: Any,
    items: list,
    batch: int,
    workers: int,
    device: str,
    prefetch: int = PREFETCH,
):
    """Images/s, the phase split, and the GPU busy fraction (with the reason when it is not
    known), after an untimed run of one batch; model building and closing are left out of
    all three, every load is inside them (:func:`common.engine_seconds`)."""
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    phases: dict[str, float] = {}
    gpu = GpuBusy(device)
    try:
        engine = LocalEngine(workers=workers, prefetch=prefetch)
        wall, _, outcomes = engine_seconds(engine, factory, task, batches, on_start=gpu.start)
    finally:
        gpu.stop()
    for outcome in outcomes:
        for name, seconds in outcome.seconds.items():
            phases[name] = phases.get(name, 0.0) + seconds
    return len(items) / wall, phases, gpu.busy, gpu.reason


def embed_beside_bare(
    folder: Path, images: list[Path], full: bool, device: str, batch: int, workers: int, repeats
) -> tuple[float, float, float, float]:
    """Images/s of the embed stage (local engine), of the stage loading each batch in turn
    (``prefetch=0``: the engine before its prefetch thread), of a bare sequential loop (read,
    decode, transform, forward) and of the forward pass alone, on the same files and
    batches; best of ``repeats`` alternating timings, each after an untimed batch."""
    import torch
    from PIL import Image

    factory, task, items = stage_setup("embed", folder / "models", images, full, device, batch)
    model = factory()
    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]

    def pixels_of(paths: list[Path]) -> Any:
        pixels = []
        for path in paths:
            with Image.open(path) as image:
                pixels.append(model.preprocess(image.convert("RGB")))
        return torch.stack(pixels)

    def bare_batch(paths: list[Path]) -> Any:
        return model.embed_pixels(pixels_of(paths))

    preprocessed = [pixels_of(chunk) for chunk in chunks]

    def bare() -> float:
        bare_batch(chunks[0])  # warm-up
        started = time.perf_counter()
        for chunk in chunks:
            bare_batch(chunk)
        return len(items) / (time.perf_counter() - started)

    def forward() -> float:
        model.embed_pixels(preprocessed[0])
        started = time.perf_counter()
        for pixels in preprocessed:
            model.embed_pixels(pixels)
        return len(items) / (time.perf_counter() - started)

    best = [0.0, 0.0, 0.0, 0.0]
    for _ in range(repeats):
        stage = measure(factory, task, items, batch, workers, device)[0]
        in_turn = measure(factory, task, items, batch, workers, device, prefetch=0)[0]
        rates = (stage, in_turn, bare(), forward())
        best = [max(b, r) for b, r in zip(best, rates, strict=True)]
    model.close()
    return best[0], best[1], best[2], best[3]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--stages", default="embed,caption,reconstruct")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = []
        for i in range(args.images):
            path = folder / "images" / f"{i:05d}.png"
            path.parent.mkdir(exist_ok=True)
            photo(512, 384, seed=i).save(path)
            images.append(path)
        print(f"machine: {machine()}, device: {args.device}, workers: {args.workers}")
        if args.device.startswith("cuda"):
            from semcomp.models import inference_dtype

            print(f"dtype: {inference_dtype(args.device)} (weights cast, no autocast)")
        print(f"models: {'full-size random weights' if args.full_size else 'tiny random weights'}")
        print(f"{args.images} photo-like 512x384 PNGs (prompts for reconstruct)\n")
        header = f"{'stage':<12} {'batch':>5} {'images/s':>9} {'decode':>7} {'preproc':>7} "
        print(header + f"{'model':>7} {'gpu busy':>8}")
        reasons = set()
        for stage in args.stages.split(","):
            rates = {}
            for batch in sizes:
                factory, task, items = stage_setup(
                    stage, folder / "models", images, args.full_size, args.device, batch
                )
                rate, phases, busy, reason = measure(
                    factory, task, items, batch, args.workers, args.device
                )
                reasons |= {reason} - {""}
                rates[batch] = rate
                total = sum(phases.values()) or 1.0
                split = " ".join(
                    f"{100 * phases.get(p, 0.0) / total:6.0f}%"
                    for p in ("decode", "preprocess", "model")
                )
                print(f"{stage:<12} {batch:>5} {rate:>9.2f} {split} {busy:>8}")
            best = max(rates, key=rates.get)
            print(
                f"{stage:<12} batch {best} / batch {sizes[0]}: {rates[best] / rates[sizes[0]]:.2f}x"
            )
        for reason in sorted(reasons) if args.device.startswith("cuda") else []:
            print(f"gpu busy n/a: {reason}")
        if "embed" not in args.stages.split(","):
            return
        print(f"\nembed stage beside bare loops, same model and files, best of {args.repeats}")
        print(
            f"{'batch':>5} {'stage':>9} {'in turn':>9} {'bare loop':>9} {'forward':>9} "
            f"{'stage/bare':>10} {'in turn/bare':>12} {'stage/forward':>13}"
        )
        for batch in sizes:
            stage, in_turn, bare, forward = embed_beside_bare(
                folder, images, args.full_size, args.device, batch, args.workers, args.repeats
            )
            print(
                f"{batch:>5} {stage:>9.2f} {in_turn:>9.2f} {bare:>9.2f} {forward:>9.2f} "
                f"{stage / bare:>9.2f}x {in_turn / bare:>11.2f}x {stage / forward:>12.2f}x"
            )
        print(
            "(images/s; 'in turn': the stage loading each batch just before its turn, as "
            "before the prefetch thread; target: stage >= 0.8x the bare loop)"
        )


if __name__ == "__main__":
    main()
