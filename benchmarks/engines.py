"""Local vs Ray engine on the same small study: identical rows, wall time of each.

    python benchmarks/engines.py [--images 8] [--replicates 2] [--cpus 2]

A study of photo-like originals with a BLIP → Stable Diffusion textual method
(tiny random-weight models), a JPEG method and a tiny CLIP is run twice from
the same study file: once with the local engine, once with ``--engine ray`` on
a single-node Ray started here (``--cpus`` CPUs). It checks that captions,
reconstructed images (artifact hashes), embeddings and scores are identical
row for row, and prints the wall time of each run and of starting Ray. On one
node the difference is Ray's overhead (actor start-up, which imports torch and
the model libraries once per stage, and the data pipeline).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # as the engine does for a Ray it starts: workers at the driver's priority, not Ray's
    # default niceness 15 (on a shared machine that alone makes Ray several times slower)
    os.environ.setdefault("RAY_worker_niceness", "0")
    from semcomp.tiny_models import write_tiny_blip, write_tiny_stable_diffusion

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
        local = write_tiny_study(folder / "local", folder / "images", methods)
        remote = folder / "ray"
        remote.mkdir()
        shutil.copy(local / "study.toml", remote / "study.toml")

        with Study.open(local) as study:
            local_s, _ = timed(lambda s=study: s.run(progress=False))
        import ray

        start_s, _ = timed(
            lambda: ray.init(
                num_cpus=args.cpus,
                include_dashboard=False,
                object_store_memory=256 * 1024**2,
                log_to_driver=False,
            )
        )
        with make_engine("ray") as engine, Study.open(remote) as study:
            ray_s, summary = timed(lambda s=study: s.run(progress=False, engine=engine))
        ray.shutdown()
        expected, got = table_rows(local), table_rows(remote)

    print(f"machine: {machine()}; Ray: single node, {args.cpus} CPUs, 1 model actor per stage")
    print(f"study: {args.images} originals, BLIP -> SD x {args.replicates} seeds, JPEG x 2, CLIP")
    for name in TABLES:
        same = "identical" if got[name] == expected[name] else "DIFFERENT"
        print(f"  {name:<16} {len(expected[name]):>4} rows local, {len(got[name]):>4} ray: {same}")
    print(f"local engine:        {local_s:7.1f} s")
    print(f"ray engine:          {ray_s:7.1f} s  (+ {start_s:.1f} s to start Ray)")
    print(f"ray / local:         {ray_s / local_s:7.2f}x")
    for stage in summary.stages:
        if stage.items:
            print(f"  ray {stage.stage:<12} {stage.items:>4} items {stage.seconds:6.1f} s")
    if got != expected:
        sys.exit("the engines wrote different rows")


if __name__ == "__main__":
    main()
