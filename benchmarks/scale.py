"""Whole-study cost against size: `semcomp status`, `semcomp report`, the app's first read and
a re-run of the finished study.

    python benchmarks/scale.py [--sizes 1000,5000,10000] [--keep DIR]

Each size is a synthetic study written through the store by ``app_render.build_study``
(25 candidates and 4 score rows per original: the default CLIP metric's two scores and
Survey A's median and mean rating; every stage of `semcomp run` done). Each measurement
runs in a fresh process and prints its wall time, its CPU time (user + system, every
thread, and of the report's figure-writing worker process), the user part of it, and its
peak resident memory (and the worker's, ``+`` after it):

- ``semcomp status STUDY`` (the command, imports included);
- ``semcomp report STUDY --no-progress`` (the command, imports included);
- the app's first read: what ``load_study`` reads (``read_consistently(..., _read_study)``)
  and then the rate–distortion page's summary (``cached_summary``'s curve coverage and
  bootstrap CIs), both uncached, after the imports;
- ``semcomp run STUDY --no-progress`` on the finished study (the command, imports included):
  every stage plans its work from the store and the source folder and finds it done, so
  nothing but the planning is timed (the work per image grows linearly by construction).

Then, per pair of sizes, the growth against linear, (t2 / t1) / (n2 / n1): 1.0 grows
linearly, the target is at most 1.2. Targets (issue #16, two cores): status ≤ 1 s at
10,000 originals; report under 10 s at 1,000 and under 60 s at 10,000; under 2 GB.
On a shared machine wall time counts the waits for a core: the CPU column is the work.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEASURES = ("status", "report", "app read", "run")
TARGETS = {("status", 10_000): 1.0, ("report", 1_000): 10.0, ("report", 10_000): 60.0}


def measure(what: str, root: Path, out: Path) -> dict[str, float]:
    """Run ``what`` on the study at ``root`` in this process; wall, CPU (this process's and
    its children's: the report's figure worker), user CPU, and peak memory of each."""
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if what in ("status", "report", "run"):
        from semcomp.cli import main

        args = [what, str(root)]
        if what == "report":
            args += ["--out", str(out)]
        if what in ("report", "run"):
            args += ["--no-progress"]
        stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the command's listing
        try:
            main(args)
        except SystemExit as exit_:
            if exit_.code:
                raise
        finally:
            sys.stdout.close()
            sys.stdout = stdout
    else:
        from semcomp.analysis.coverage import curve_coverage
        from semcomp.analysis.rd import summarise
        from semcomp.app.data import _read_study, read_consistently, signature

        started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        data = read_consistently(root, signature(root), _read_study)
        curves = curve_coverage(data.points)
        summarise(curves.points, seed=data.seed, image_set=curves.image_set)
    wall = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = (now.ru_utime - cpu.ru_utime) + (waited.ru_utime - children.ru_utime)
    system = (now.ru_stime - cpu.ru_stime) + (waited.ru_stime - children.ru_stime)
    return {
        "wall": wall,
        "cpu": user + system,
        "user": user,
        "worker_cpu": (waited.ru_utime - children.ru_utime) + (waited.ru_stime - children.ru_stime),
        "rss_mb": peak_mb(now),
        "worker_rss_mb": waited.ru_maxrss / 1024 if waited.ru_maxrss > children.ru_maxrss else 0,
    }


def peak_mb(usage: resource.struct_rusage) -> float:
    """This process's peak resident memory: Linux's VmHWM (``ru_maxrss`` would also count
    the parent's peak, which a child inherits across fork and exec)."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return usage.ru_maxrss / 1024


def measured(what: str, root: Path, out: Path) -> dict[str, float]:
    """:func:`measure` in a fresh process (its own imports, caches and peak memory)."""
    result = subprocess.run(
        [sys.executable, __file__, "--measure", what, str(root), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,5000,10000", help="originals per study, comma-separated"
    )
    parser.add_argument("--keep", type=Path, help="build the studies here and reuse them")
    parser.add_argument(
        "--measure", nargs=3, metavar=("WHAT", "STUDY", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        what, root, out = args.measure
        print(json.dumps(measure(what, Path(root), Path(out))))
        return
    sys.path.insert(0, str(HERE))
    from app_render import build_study
    from common import machine

    sizes = sorted(int(size) for size in args.sizes.split(","))
    print(f"machine: {machine()}")
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        results: dict[tuple[str, int], dict[str, float]] = {}
        for size in sizes:
            root = base / f"study-{size}"
            if not (root / "study.db").exists():
                started = time.perf_counter()
                rows = build_study(root, size)
                print(
                    f"{size:,} originals: {rows:,} score rows built in "
                    f"{time.perf_counter() - started:.1f} s",
                    flush=True,
                )
            for what in MEASURES:
                results[(what, size)] = measured(what, root, Path(scratch) / f"report-{size}")
                r = results[(what, size)]
                target = TARGETS.get((what, size))
                verdict = (
                    ""
                    if target is None
                    else (f"  target < {target:g} s: {'met' if r['wall'] < target else 'NOT met'}")
                )
                worker = f" + {r['worker_rss_mb']:4.0f}" if r["worker_rss_mb"] else "       "
                if r["worker_cpu"]:
                    verdict = f"  (worker cpu {r['worker_cpu']:.2f} s){verdict}"
                print(
                    f"{size:>7,} originals  {what:<9} wall {r['wall']:7.2f} s  "
                    f"cpu {r['cpu']:7.2f} s  user {r['user']:7.2f} s  "
                    f"peak {r['rss_mb']:5.0f}{worker} MB{verdict}",
                    flush=True,
                )
        print("growth against linear, (t2/t1)/(n2/n1), target <= 1.2:")
        for small, large in itertools.pairwise(sizes):
            for what in MEASURES:
                a, b = results[(what, small)], results[(what, large)]
                factor = large / small
                wall, cpu = b["wall"] / a["wall"] / factor, b["cpu"] / a["cpu"] / factor
                print(f"  {what:<9} {small:>6,} -> {large:>6,}: wall {wall:5.2f}  cpu {cpu:5.2f}")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
