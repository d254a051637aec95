"""Shared set-up for the benchmarks: offline mode, a tiny CLIP, photo-like images, an
engine's run timed as the bare loops beside it are."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus sensor-like noise: compresses like a photograph."""
    rng = np.random.default_rng(seed)
    small = rng.integers(
        0, 256, size=(max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8
    )
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))
    noise = rng.normal(scale=6, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def machine() -> str:
    """The CPU, Python and torch; with a visible GPU, its name, CUDA and driver versions."""
    import torch

    text = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    if not torch.cuda.is_available():
        return text + ", no GPU"
    text += f", GPU {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"]
        driver = subprocess.run(query, capture_output=True, text=True, check=False).stdout
        text += f", driver {driver.strip() or 'unknown'}"
    return text


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def engine_seconds(
    engine: Any,
    factory: Callable[[], Any],
    task: Any,
    batches: list,
    on_start: Callable[[], object] | None = None,
) -> tuple[float, float, list]:
    """Wall and CPU seconds (the process's, every thread) of ``engine`` running ``batches``,
    and its outcomes, after an untimed run of the first batch alone (lazy imports,
    first-call allocations, autotuning).

    The clock starts once the model is built (``on_start`` is called then) and stops at the
    last outcome: building and closing the model are left out, as the bare loops compared
    with it hold a built model, and every batch the engine loads is inside the clock (a
    timed warm-up batch inside the same run would let the prefetch thread load the next
    ones before the clock starts).
    """
    for _ in engine.run(factory, task, batches[:1]):
        pass
    started: list[float] = []

    def built() -> Any:
        model = factory()
        started.extend((time.perf_counter(), time.process_time()))
        if on_start is not None:
            on_start()
        return model

    outcomes: list = []
    wall = cpu = 0.0
    for outcome in engine.run(built, task, batches):
        outcomes.append(outcome)
        if len(outcomes) == len(batches):  # before the engine closes the model
            wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    return wall, cpu, outcomes


def write_tiny_study(root: Path, images: Path, methods: str) -> Path:
    from semcomp.tiny_models import write_tiny_open_clip

    model = write_tiny_open_clip(root / "models" / "tiny-clip")
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(
        f'name = "bench"\n[images]\nsource = "{images.as_posix()}"\n\n{methods}\n'
        f"[similarity]\nbatch_size = 32\n\n[[similarity.models]]\nmodel = '{model}'\n"
        "name = 'tiny'\nrandom_weights = true\n"
    )
    return root
