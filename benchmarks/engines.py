"""Local vs Ray engine on the same small study: identical rows, wall and CPU time of each.

    python benchmarks/engines.py [--images 8] [--replicates 2] [--cpus 2] [--rounds 1]

A study of photo-like originals with a BLIP → Stable Diffusion textual method
(tiny random-weight models), a JPEG method and a tiny CLIP is run from the same
study file with the local engine, then with ``--engine ray`` on a single-node Ray
started by the run (``--cpus`` CPUs), ``--rounds`` times, alternating. Each run is a
fresh Python process, as ``semcomp run`` is: both pay the imports of torch and the model
libraries (in the driver, or in Ray's model actor), and the Ray run its start. It checks
that captions, reconstructed images (artifact hashes), embeddings and scores are
identical row for row, and prints per round the wall seconds of each process (and of
its stages, and of starting Ray and the engine) and its CPU seconds (user + system: the
process and its children, and for Ray every process of the Ray it started), the best
round's ratios, and the seconds of each model stage on both engines. On one node the
difference is Ray's overhead: its start, the model actor's start-up (a process
importing torch and the model libraries, once per run) and a remote call per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import machine, photo, timed, write_tiny_study
from semcomp.study import Study

#: per table, the columns that must match (run ids and times differ by design)
TABLES = {
    "captions": "id, text, meta",
    "reconstructions": "key, seed, artifact_hash",
    "candidates": "id, seed, artifact_hash",
    # not embedder_id: the tiny CLIP lies inside the local study's folder, so that study
    # names it by a relative path and the Ray study (another folder) by an absolute one,
    # and the embedder's identity records the path as the study sees it
    "embeddings": "artifact_hash, vector",
    "scores": "candidate_id, metric, value",
}


def table_rows(root: Path) -> dict[str, list[tuple]]:
    with Study.open(root, read_only=True) as study:
        return {
            name: sorted(
                tuple(row) for row in study.store.conn.execute(f"SELECT {columns} FROM {name}")
            )
            for name, columns in TABLES.items()
        }


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds of this process, its reaped children and the live
    processes ``pids`` (Ray's processes: GCS, raylet, workers, the model actor)."""
    import resource

    import psutil

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:  # exited before this look: counted with its parent, if reaped
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def ray_processes() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)}


def child(name: str, root: Path, cpus: int) -> None:
    """One run of the study at ``root`` on engine ``name`` in this (fresh) process: prints a
    JSON line of its seconds, CPU seconds and stages."""
    from semcomp.engines import make_engine
    from semcomp.study import Study

    cpu = cpu_seconds(set())
    if name == "local":
        start_s, engine = 0.0, make_engine("local")
    else:
        import ray

        def start_ray() -> Any:
            """Ray, then the engine (which starts its model actor when entered)."""
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=256 * 1024**2,
                log_to_driver=False,
            )
            return make_engine("ray").__enter__()

        start_s, engine = timed(start_ray)
    with engine, Study.open(root) as study:
        seconds, summary = timed(lambda: study.run(progress=False, engine=engine))
        used = cpu_seconds(ray_processes() if name == "ray" else set()) - cpu
    stages = [
        {"stage": s.stage, "items": s.items, "seconds": s.seconds, "phases": s.phases}
        for s in summary.stages
    ]
    print(json.dumps({"start": start_s, "run": seconds, "cpu": used, "stages": stages}))


def measured(name: str, root: Path, cpus: int) -> dict:
    """:func:`child` in a process of its own, with the process's wall seconds."""
    command = [sys.executable, __file__, "--child", name, str(root), "--cpus", str(cpus)]
    wall, done = timed(lambda: subprocess.run(command, capture_output=True, text=True, check=False))
    if done.returncode:
        sys.exit(f"the {name} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=1, help="local then Ray this many times (best of each)"
    )
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "STUDY"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # as the engine does for a Ray it starts: workers at the driver's priority, not Ray's
    # default niceness 15 (on a shared machine that alone makes Ray several times slower)
    os.environ.setdefault("RAY_worker_niceness", "0")
    if args.child:
        child(args.child[0], Path(args.child[1]), args.cpus)
        return
    from semcomp.tiny_models import write_tiny_blip, write_tiny_stable_diffusion

    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = folder / "images" / "all"
        images.mkdir(parents=True)
        for i in range(args.images):
            photo(320, 240, seed=i).save(images / f"{i:03d}.png")
        blip = write_tiny_blip(folder / "models" / "blip")
        sd = write_tiny_stable_diffusion(folder / "models" / "sd")
        methods = f"""
[[methods]]
name = "blip"
captioner = "blip"
captioner_params = {{ model = "{blip}", max_new_tokens = 10 }}
reconstructor_params = {{ model = "{sd}", steps = 2, width = 64, height = 64 }}
replicates = {args.replicates}
batch_size = 4

[[methods]]
name = "jpeg"
codec = "jpeg"
quality = [30, 70]
"""
        template = write_tiny_study(folder / "template", folder / "images", methods)
        differences = []
        for round_ in range(args.rounds):
            roots = {}
            for name in ("local", "ray"):
                roots[name] = folder / f"{name}-{round_}"
                roots[name].mkdir()
                shutil.copy(template / "study.toml", roots[name] / "study.toml")
                runs[name].append(measured(name, roots[name], args.cpus))
            expected, got = table_rows(roots["local"]), table_rows(roots["ray"])
            differences.append([name for name in TABLES if got[name] != expected[name]])

    print(f"machine: {machine()}; Ray: single node, {args.cpus} CPUs")
    print(f"study: {args.images} originals, BLIP -> SD x {args.replicates} seeds, JPEG x 2, CLIP")
    for name in TABLES:
        same = "DIFFERENT" if any(name in found for found in differences) else "identical"
        print(f"  {name:<16} {len(expected[name]):>4} rows local, {len(got[name]):>4} ray: {same}")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("each run a fresh process (wall: the whole process; run: its stages)")
    for round_, (local, remote) in enumerate(zip(runs["local"], runs["ray"], strict=True)):
        print(
            f"round {round_ + 1}: local {local['wall']:6.1f} s wall (run {local['run']:.1f} s)"
            f" {local['cpu']:6.1f} s cpu; ray {remote['wall']:6.1f} s wall (start"
            f" {remote['start']:.1f} s, run {remote['run']:.1f} s) {remote['cpu']:6.1f} s cpu"
        )
    local = min(runs["local"], key=lambda r: r["wall"])
    remote = min(runs["ray"], key=lambda r: r["wall"])
    print(f"best of {args.rounds}:")
    print(
        f"  local engine:  {local['wall']:7.1f} s  (run {local['run']:.1f} s)"
        f"  cpu {local['cpu']:6.1f} s"
    )
    print(
        f"  ray engine:    {remote['wall']:7.1f} s  (start {remote['start']:.1f} s, run"
        f" {remote['run']:.1f} s)  cpu {remote['cpu']:6.1f} s (Ray's processes included)"
    )
    whole, stages = remote["wall"] / local["wall"], remote["run"] / local["run"]
    print(f"  ray / local, whole processes (Ray's start included): {whole:.2f}x")
    print(f"  ray / local, the stages alone:                       {stages:.2f}x")
    seconds = {s["stage"]: s["seconds"] for s in local["stages"]}
    for stage in remote["stages"]:
        if stage["items"]:
            phases = " ".join(
                f"{phase} {value:5.1f}" for phase, value in sorted(stage["phases"].items())
            )
            print(
                f"  {stage['stage']:<12} {stage['items']:>4} items  local"
                f" {seconds[stage['stage']]:6.1f} s  ray {stage['seconds']:6.1f} s  (ray phases:"
                f" {phases})"
            )
    if any(differences):
        sys.exit("the engines wrote different rows")


if __name__ == "__main__":
    main()
