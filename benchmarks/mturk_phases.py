"""Where an MTurk import's CPU time goes: the CPU seconds of each phase of one import of
the file ``mturk_import.py`` writes (JSON layout), each import in a process of its own.

    python benchmarks/mturk_phases.py [--rows 200000] [--rounds 2] [--compare-src DIR]
        [--assignments-per-hit N]

Phases: the header and encoding; the line scan, pyarrow's parse and the times
(``mturk.columnar_chunks``); the file's SHA-256; the writes (``_flush``); quality control;
the human scores; the file's counts for the summary; and the rest (reading the rows into
assignments and answer rows, the index rebuilt, the import's own statements). With
``--compare-src``, the semcomp package under ``DIR`` (say, a worktree of the code before
a change) runs alternately with this one, round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from mturk_import import add_batch_options, import_libraries, surveyed_study, write_results

PHASES = {
    ("importer", "read_batch_results"): "header + encoding",
    ("mturk", "columnar_chunks"): "scan + parse + times",
    ("importer", "file_sha256"): "sha256",
    ("importer", "_flush"): "writes",
    ("importer", "apply_quality_control"): "quality control",
    ("importer", "write_human_scores"): "human scores",
    ("importer", "_file_counts"): "file counts",
}


def child(study: Path, results: Path) -> None:
    from semcomp.store import Store
    from semcomp.surveys import importer, mturk
    from semcomp.surveys.definitions import load_survey

    spent: dict[str, float] = defaultdict(float)
    modules = {"importer": importer, "mturk": mturk}

    def timed(function, label):
        def wrapper(*args, **kwargs):
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - started

        return wrapper

    for (module, name), label in PHASES.items():
        setattr(modules[module], name, timed(getattr(modules[module], name), label))
    survey = load_survey("A")
    import_libraries()
    with Store(study) as store:
        started = time.process_time()
        importer.import_ratings(store, results, survey, min_work_seconds=30)
        total = time.process_time() - started
    print(json.dumps({"total": total, **spent, "rest": total - sum(spent.values())}))


def main() -> None:
    parser = argparse.ArgumentParser()
    add_batch_options(parser)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare-src")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(*map(Path, args.child))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = surveyed_study(root)
        results = root / "results.csv"
        items = root / "survey" / "items.csv"
        write_results(made.hits_csv, items, results, args.rows, "json", args.assignments_per_hit)
        sources = {"this": None} | (
            {args.compare_src: args.compare_src} if args.compare_src else {}
        )
        for number in range(args.rounds):
            for label, src in sources.items():
                study = root / "import"
                shutil.rmtree(study, ignore_errors=True)
                shutil.copytree(root / "study", study)
                env = os.environ.copy()
                if src:
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(study), str(results)],
                    capture_output=True, text=True, check=True, env=env,
                )  # fmt: skip
                phases = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"round {number + 1}, {label}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                )


if __name__ == "__main__":
    main()
