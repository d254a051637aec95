"""Pixel-codec stages (encode + decode) vs a bare Pillow open → encode → decode loop.

    python benchmarks/pixel_codecs.py [--images 48] [--size 512] [--quality 30,70]
        [--codecs jpeg,webp] [--repeats 3]

Both sides code the same PNG photos with the same codecs and qualities: the bare side
opens each file with Pillow, converts it to RGB, encodes it at every quality and decodes
each payload to RGB pixels, all in memory. The stage side is ``semcomp run --stages
encode,decode`` on a study that has ingested the same files: it also reads the originals
from the artifact store, hashes and writes the payloads, and records the rows. Ingest is
not timed. The stages decode the next original (and the next payloads) in a background
thread while they encode and write, so with a free core their wall time gains on the
bare loop's; the CPU seconds (every thread's) show the work itself. The two sides
alternate ``--repeats`` times and the best time of each is kept (the machine may be
shared).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from common import machine, photo, timed, write_tiny_study


def bare_loop(files: list[Path], codecs: list[str], qualities: list[int]) -> int:
    """Open, encode at every quality and decode each file; the payloads' total bytes."""
    from semcomp.codecs import CODECS

    options = {}
    for name in codecs:
        codec_class = CODECS.get(name)
        codec = codec_class(codec_class.Params())
        options[name] = (codec.pillow_format, codec.save_options())
    total = 0
    for path in files:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        for name in codecs:
            pillow_format, save_options = options[name]
            for quality in qualities:
                buffer = io.BytesIO()
                image.save(buffer, format=pillow_format, quality=quality, **save_options)
                payload = buffer.getvalue()
                total += len(payload)
                with Image.open(io.BytesIO(payload)) as decoded:
                    decoded.convert("RGB")
    return total


def cpu_timed(work: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and CPU seconds of ``work`` (CPU time varies less on a shared machine)."""
    cpu = time.process_time()
    seconds, result = timed(work)
    return seconds, time.process_time() - cpu, result


def stage_run(folder: Path, methods: str) -> tuple[float, float, object, int]:
    """A fresh study of ``folder``: wall and CPU seconds of its encode + decode stages, the
    summary, and the bytes of its representations."""
    from semcomp.study import Study

    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_study(Path(tmp) / "study", folder.parent, methods)
        with Study.open(root) as study:
            study.run(progress=False, stages=["ingest"])
            seconds, cpu, summary = cpu_timed(
                lambda: study.run(progress=False, stages=["encode", "decode"])
            )
            stage_bytes = study.store.conn.execute(
                "SELECT SUM(rate_bits) / 8 FROM representations"
            ).fetchone()[0]
    return seconds, cpu, summary, stage_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--quality", default="30,70")
    parser.add_argument("--codecs", default="jpeg,webp")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    qualities = [int(q) for q in args.quality.split(",")]
    codecs = args.codecs.split(",")
    methods = "".join(
        f'[[methods]]\nname = "{codec}"\ncodec = "{codec}"\nquality = {qualities}\n\n'
        for codec in codecs
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images" / "photos"
        folder.mkdir(parents=True)
        files = []
        for index in range(args.images):
            files.append(folder / f"{index:04d}.png")
            photo(args.size, args.size * 3 // 4, seed=index).save(files[-1])
        stage_runs, bare_runs = [], []
        for _ in range(args.repeats):  # interleaved, best of each: the machine may be shared
            stage_runs.append(stage_run(folder, methods))
            bare_runs.append(cpu_timed(lambda: bare_loop(files, codecs, qualities)))
    stage_s, _, summary, stage_bytes = min(stage_runs, key=lambda run: run[0])
    bare_s, _, bare_bytes = min(bare_runs, key=lambda run: run[0])
    stage_cpu, bare_cpu = min(r[1] for r in stage_runs), min(r[1] for r in bare_runs)
    done = {stage.stage: stage.done for stage in summary.stages}
    items = args.images * len(codecs) * len(qualities)
    stage_rate, bare_rate = items / stage_s, items / bare_s
    print(f"machine: {machine()}")
    print(
        f"{args.images} PNG photos of {args.size}x{args.size * 3 // 4}, codecs {codecs} at "
        f"qualities {qualities}: {items} encodes + decodes, best of {args.repeats} interleaved "
        "runs each"
    )
    print(
        f"stages (encode + decode)  {stage_s:7.2f} s  {stage_rate:8.1f} payloads/s  "
        f"CPU {stage_cpu:6.2f} s  {done}"
    )
    bare = f"{bare_s:7.2f} s  {bare_rate:8.1f} payloads/s  CPU {bare_cpu:6.2f} s"
    print(f"bare Pillow loop          {bare}")
    print(f"bytes: stages {stage_bytes:,}, bare {bare_bytes:,}")
    ratio = stage_rate / bare_rate
    met = "met" if ratio >= 0.8 else "not met"
    print(f"ratio stages / bare: {ratio:.2f}x (target >= 0.8x: {met})")
    print(f"ratio of CPU seconds, bare / stages: {bare_cpu / stage_cpu:.2f}x")


if __name__ == "__main__":
    main()
