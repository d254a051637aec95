"""Re-running a finished study: time of the no-op run next to the first run, 100 images.

    python benchmarks/noop_rerun.py [--images 100]

The no-op run must load no model and, for 100 images, finish in under 3 s (in
process and through the CLI, which includes interpreter start-up).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine, photo, timed, write_tiny_study

METHODS = """
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]
quality = [30, 70]

[[methods]]
name = "webp"
codec = "webp"
reduction = [0.8, 0.9]
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    from semcomp.study import Study

    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        for index in range(args.images):
            folder = images / f"category_{index % 5}"
            folder.mkdir(parents=True, exist_ok=True)
            photo(320, 240, seed=index).save(folder / f"{index:04d}.png")
        root = write_tiny_study(Path(tmp) / "study", images, METHODS)
        with Study.open(root) as study:
            first_s, first = timed(lambda: study.run(progress=False))
        with Study.open(root) as study:
            noop_s, noop = timed(lambda: study.run(progress=False))
        cli = [sys.executable, "-m", "semcomp", "run", str(root), "--no-progress"]
        cli_s, _ = timed(lambda: subprocess.run(cli, capture_output=True, check=True))
        work = sum(stage.done for stage in noop.stages)
        candidates = sum(s.done for s in first.stages if s.stage == "decode")
    print(f"machine: {machine()}")
    print(f"images: {args.images}, candidates: {candidates}")
    print(f"first run            {first_s:8.2f} s  models loaded: {first.models_loaded}")
    print(
        f"no-op run (library)  {noop_s:8.3f} s  models loaded: {noop.models_loaded}, "
        f"items done: {work}"
    )
    print(f"no-op run (CLI)      {cli_s:8.3f} s  (includes Python start-up and imports)")
    print(f"ratio first / no-op (library): {first_s / noop_s:6.1f}x")
    print(f"under 3 s: library {'yes' if noop_s < 3 else 'NO'}, CLI {'yes' if cli_s < 3 else 'NO'}")


if __name__ == "__main__":
    main()
