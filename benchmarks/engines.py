"""Local vs Ray engine on the same small study: identical rows, wall and CPU time of each.

    python benchmarks/engines.py [--images 8] [--replicates 2] [--cpus 2] [--rounds 1]

A study of photo-like originals with a BLIP → Stable Diffusion textual method
(tiny random-weight models), a JPEG method and a tiny CLIP is run from the same
study file with the local engine, then with ``--engine ray`` on a single-node Ray
started here (``--cpus`` CPUs), ``--rounds`` times, alternating. It checks that
captions, reconstructed images (artifact hashes), embeddings and scores are
identical row for row, and prints per round the wall and CPU seconds (user + system:
this process, and for Ray every process of the Ray it started) of each run and of
starting Ray and the engine, the best round's ratio, and the seconds of each model
stage on both engines. On one node the difference is Ray's overhead: its start, the
model actor's start-up (a process importing torch and the model libraries, once per
run) and a remote call per batch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import machine, photo, timed, write_tiny_study
from semcomp.engines import make_engine
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=1, help="local then Ray this many times (best of each)"
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # as the engine does for a Ray it starts: workers at the driver's priority, not Ray's
    # default niceness 15 (on a shared machine that alone makes Ray several times slower)
    os.environ.setdefault("RAY_worker_niceness", "0")
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
            cpu = cpu_seconds(set())
            with Study.open(roots["local"]) as study:
                seconds, summary = timed(lambda s=study: s.run(progress=False))
            runs["local"].append(
                {"wall": seconds, "cpu": cpu_seconds(set()) - cpu, "summary": summary}
            )
            import ray

            def start_ray() -> Any:
                """Ray, then the engine (which starts its model actor when entered)."""
                ray.init(
                    num_cpus=args.cpus,
                    include_dashboard=False,
                    object_store_memory=256 * 1024**2,
                    log_to_driver=False,
                )
                return make_engine("ray").__enter__()

            cpu = cpu_seconds(set())
            start_s, engine = timed(start_ray)
            with engine, Study.open(roots["ray"]) as study:
                seconds, summary = timed(lambda s=study, e=engine: s.run(progress=False, engine=e))
                used = cpu_seconds(ray_processes()) - cpu
            ray.shutdown()
            runs["ray"].append({"wall": seconds, "start": start_s, "cpu": used, "summary": summary})
            expected, got = table_rows(roots["local"]), table_rows(roots["ray"])
            differences.append([name for name in TABLES if got[name] != expected[name]])

    print(f"machine: {machine()}; Ray: single node, {args.cpus} CPUs")
    print(f"study: {args.images} originals, BLIP -> SD x {args.replicates} seeds, JPEG x 2, CLIP")
    for name in TABLES:
        same = "DIFFERENT" if any(name in found for found in differences) else "identical"
        print(f"  {name:<16} {len(expected[name]):>4} rows local, {len(got[name]):>4} ray: {same}")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for round_, (local, remote) in enumerate(zip(runs["local"], runs["ray"], strict=True)):
        print(
            f"round {round_ + 1}: local {local['wall']:6.1f} s wall {local['cpu']:6.1f} s cpu;"
            f" ray {remote['wall']:6.1f} s wall (+ {remote['start']:.1f} s start)"
            f" {remote['cpu']:6.1f} s cpu (start included)"
        )
    local = min(runs["local"], key=lambda r: r["wall"])
    remote = min(runs["ray"], key=lambda r: r["wall"])
    print(f"best of {args.rounds}:")
    print(f"  local engine:        {local['wall']:7.1f} s  cpu {local['cpu']:6.1f} s")
    print(
        f"  ray engine:          {remote['wall']:7.1f} s  (+ {remote['start']:.1f} s to start Ray)"
        f"  cpu {remote['cpu']:6.1f} s (Ray's processes and start included)"
    )
    print(f"  ray / local:         {remote['wall'] / local['wall']:7.2f}x")
    print(f"  (ray + start) / local: {(remote['wall'] + remote['start']) / local['wall']:5.2f}x")
    seconds = {s.stage: s.seconds for s in local["summary"].stages}
    for stage in remote["summary"].stages:
        if stage.items:
            phases = " ".join(
                f"{phase} {value:5.1f}" for phase, value in sorted(stage.phases.items())
            )
            print(
                f"  {stage.stage:<12} {stage.items:>4} items  local {seconds[stage.stage]:6.1f} s"
                f"  ray {stage.seconds:6.1f} s  (ray phases: {phases})"
            )
    if any(differences):
        sys.exit("the engines wrote different rows")


if __name__ == "__main__":
    main()
