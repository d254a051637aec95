"""Importing a 200,000-row MTurk batch-results file: time and peak memory, and the ratio
to parsing the same file with ``pandas.read_csv`` in the same run.

    python benchmarks/mturk_import.py [--rows 200000] [--assignments-per-hit N]

A study of 15 photos (5 categories × 3) with JPEG at two qualities (30 candidates);
`survey make` for Survey A (5 items per HIT, one of them an attention check: 8 HITs);
then a results file in MTurk's exact format with ``--rows`` assignments (workers × 8 HITs,
about 2 % of workers failing the check, 1 % of assignments rejected, random work times,
every assignment its own accept and submit times). With ``--assignments-per-hit N``, as a
large batch is published instead: ``rows / N`` HITs of their own, each showing four of the
survey's items and one of its checks drawn at random, each answered by N workers (a worker
answers 8 HITs in a row, so some see a pair twice); the file is written
in the default ``Answer.taskAnswers`` layout and in the flattened layout. Each import
runs in its own process so that its peak resident memory is its own. Printed side by
side: parsing the same file with ``pandas.read_csv`` (a floor: reading only), the import
of each layout, and importing the same file again (idempotent: adds nothing). Each
time is of the call alone (``pandas.read_csv``, ``import_ratings``), not of starting
Python and importing the libraries (pyarrow, and pandas, which pyarrow imports, are
imported before an import is timed: :func:`import_libraries`), in wall and in CPU seconds (a
shared machine's other work inflates the first only). The parse and the first import run
``--repeats`` times, interleaved (each import into a fresh copy of the study), and the best
of each is shown; ``--compare-src DIR`` adds the import of the semcomp package under
``DIR`` (say, an export of the code before a change) to each round.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from common import machine, photo

STANDARD = {
    "HITTypeId": "3XYZTYPE0000000000000000000000",
    "Title": "How similar is the feeling or meaning of these images?",
    "Description": "Rate five pairs of images on a scale of 1 to 10",
    "Keywords": "image, similarity, rating, survey",
    "Reward": "$0.25",
    "CreationTime": "Fri Jun 08 09:00:00 PDT 2012",
    "MaxAssignments": "25000",
    "RequesterAnnotation": "BatchId:1234567;OriginalHitTemplateId:98765;",
    "AssignmentDurationInSeconds": "3600",
    "AutoApprovalDelayInSeconds": "259200",
    "Expiration": "Fri Jun 15 09:00:00 PDT 2012",
    "NumberOfSimilarHITs": "",
    "LifetimeInSeconds": "",
}
TAIL = ["AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback"]
START = datetime(2012, 6, 9, 10, 0, 0)
MTURK_TIME = "%a %b %d %H:%M:%S PDT %Y"


def surveyed_study(root: Path):
    """:func:`build_study` under ``root``, and Survey A made of it (5 items per HIT) under
    ``root / "survey"``: what ``make_survey`` returns."""
    from semcomp.store import Store
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.make import make_survey

    build_study(root)
    with Store(root / "study") as store:
        return make_survey(
            store,
            load_survey("A"),
            base_url="https://bucket.example.org/semcomp-survey-a",
            out=root / "survey",
            items_per_hit=5,
        )


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_study(root: Path) -> None:
    from semcomp.study import Study

    images = root / "images"
    for index in range(15):
        folder = images / f"category_{index % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        photo(256, 192, seed=index).save(folder / f"{index:02d}.png")
    (root / "study").mkdir()
    (root / "study" / "study.toml").write_text(
        f'name = "bench"\n[images]\nsource = "{images.as_posix()}"\n\n'
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [30, 70]\n'
    )
    with Study.open(root / "study") as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])


def write_results(
    hits_csv: Path, items_csv: Path, out: Path, rows: int, layout: str, per_hit: int = 0
) -> None:
    """``rows`` assignments over the HITs of ``hits_csv`` in MTurk's batch-results format.

    ``per_hit`` > 0: as a large batch is published, ``rows / per_hit`` HITs of their own
    (their own ids and inputs), each answered by ``per_hit`` workers: a HIT shows four of
    the survey's items and one of its attention checks, drawn at random, in a random order.
    """
    rng = random.Random(0)
    with hits_csv.open(newline="") as handle:
        hits = list(csv.DictReader(handle))
    with items_csv.open(newline="") as handle:
        items = list(csv.DictReader(handle))
    checks = {row["item_id"] for row in items if row["check"] == "1"}
    if per_hit:
        pairs = {row["item_id"]: (row["original_id"], row["candidate_id"]) for row in items}
        hits = drawn_hits(hits, checks, pairs, -(-rows // per_hit), rng)
    slots = [k[len("item") : -len("_id")] for k in hits[0] if k.endswith("_id")]
    answer_names = [f"item{s}__similarity" for s in slots]
    inputs = list(hits[0])
    if layout == "json":
        answer_columns = ["Answer.taskAnswers"]
    else:
        answer_columns = [f"Answer.{name}" for name in answer_names]
    header = ["HITId", *STANDARD, "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime",
              "SubmitTime", *TAIL, "WorkTimeInSeconds", "LifetimeApprovalRate",
              "Last30DaysApprovalRate", "Last7DaysApprovalRate", *[f"Input.{c}" for c in inputs],
              *answer_columns, "Approve", "Reject"]  # fmt: skip
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for number in range(rows):
            if per_hit:  # a HIT's workers one after another, each worker in 8 HITs in a row
                hit_index = number // per_hit
                worker_index = hit_index // 8 * per_hit + number % per_hit
            else:
                hit_index, worker_index = number % len(hits), number // len(hits)
            hit = hits[hit_index]
            careless = worker_index % 50 == 0
            answers = {}
            for slot, name in zip(slots, answer_names, strict=True):
                is_check = hit[f"item{slot}_id"] in checks
                value = (2 if careless else 10) if is_check else rng.randint(1, 10)
                answers[name] = str(value)
            # every assignment its own times, as in a real batch (spread over days)
            accepted = START + timedelta(seconds=3 * number)
            work = rng.randint(10, 400)
            submitted = accepted + timedelta(seconds=work)
            row = {
                "HITId": f"3HIT{hit_index:026d}",
                **STANDARD,
                **({"MaxAssignments": str(per_hit)} if per_hit else {}),
                "AssignmentId": f"3ASG{number:026d}",
                "WorkerId": f"A{worker_index:013d}",
                "AssignmentStatus": "Rejected" if number % 100 == 7 else "Approved",
                "AcceptTime": accepted.strftime(MTURK_TIME),
                "SubmitTime": submitted.strftime(MTURK_TIME),
                "WorkTimeInSeconds": str(work),
                "LifetimeApprovalRate": "99% (990/1000)",
                "Last30DaysApprovalRate": "100% (30/30)",
                "Last7DaysApprovalRate": "100% (7/7)",
                **{f"Input.{c}": hit[c] for c in inputs},
            }
            if layout == "json":
                row["Answer.taskAnswers"] = json.dumps([answers])
            else:
                row |= {f"Answer.{k}": v for k, v in answers.items()}
            writer.writerow([row.get(c, "") for c in header])


def drawn_hits(
    hits: list[dict],
    checks: set[str],
    pairs: dict[str, tuple[str, str]],
    count: int,
    rng: random.Random,
) -> list[dict]:
    """``count`` HITs like ``hits`` (the input rows `survey make` wrote), each of four of
    their items showing four different pairs (``pairs``: item → original and candidate)
    and one of their attention checks, drawn at random, in a random order."""
    slots = [k[: -len("_id")] for k in hits[0] if k.endswith("_id")]
    shown = {
        hit[f"{slot}_id"]: {part: hit[f"{slot}_{part}"] for part in ("left_url", "right_url")}
        for hit in hits
        for slot in slots
    }
    by_pair: dict[tuple[str, str], list[str]] = {}
    for item in sorted(set(shown) - checks):
        by_pair.setdefault(pairs[item], []).append(item)
    gold = sorted(checks & set(shown))
    drawn = []
    for _ in range(count):
        items = [rng.choice(by_pair[pair]) for pair in rng.sample(sorted(by_pair), len(slots) - 1)]
        chosen = [*items, rng.choice(gold)]
        rng.shuffle(chosen)
        drawn.append(
            {
                f"{slot}_{part}": value
                for slot, item in zip(slots, chosen, strict=True)
                for part, value in {"id": item, **shown[item]}.items()
            }
        )
    return drawn


def import_libraries() -> None:
    """Import the libraries an import uses before it is timed, as ``pandas`` is before its
    parse: pyarrow's parser and compute functions, and pandas, which pyarrow imports on its
    first conversion of a Python or numpy value (0.27-0.38 CPU s together; a command pays
    them once per process)."""
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.csv

    pa.array([0])


def child(kind: str, study: str, results: str) -> None:
    """One measurement in this process: prints a JSON line."""
    if kind == "pandas":
        import pandas as pd

        started, cpu = time.perf_counter(), time.process_time()
        frame = pd.read_csv(results, dtype=str, keep_default_na=False)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        outcome = {"rows": len(frame)}
    else:
        from semcomp.store import Store
        from semcomp.surveys.definitions import load_survey
        from semcomp.surveys.importer import import_ratings

        survey = load_survey("A")
        import_libraries()
        with Store(Path(study)) as store:
            started, cpu = time.perf_counter(), time.process_time()
            summary = import_ratings(store, Path(results), survey, min_work_seconds=30)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            outcome = {
                "rows": summary.rows,
                "new": summary.ratings_new,
                "kept": summary.kept,
                "excluded": summary.excluded,
                "failed": len(summary.failed),
                "scores": summary.scores_written,
            }
    outcome |= {"seconds": seconds, "cpu": cpu, "peak_mib": peak_mib()}
    print(json.dumps(outcome))


def measure(kind: str, study: Path, results: Path, src: str | None = None) -> dict:
    """One measurement in a child process; ``src``: import semcomp from that folder."""
    command = [sys.executable, __file__, "--child", kind, str(study), str(results)]
    env = None
    if src:
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
        }
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_import(root: Path, layout: str, results: Path, src: str | None = None) -> dict:
    """The import of ``results`` into a fresh copy of the study (as built, no ratings); the
    other source's in a copy of its own (the same file imported again reads this code's)."""
    study = root / f"study-{layout}-{'other' if src else 'run'}"
    shutil.rmtree(study, ignore_errors=True)
    shutil.copytree(root / "study", study)
    return measure("import", study, results, src)


def best(runs: list[dict]) -> dict:
    """The run of least CPU time, with the least wall time of all runs beside it."""
    chosen = dict(min(runs, key=lambda r: r["cpu"]))
    chosen["seconds"] = min(r["seconds"] for r in runs)
    return chosen


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """``--rows`` and ``--assignments-per-hit``: the batch :func:`write_results` writes."""
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--assignments-per-hit",
        type=int,
        default=0,
        help="publish rows / N HITs of their own, each answered by N workers (default: the "
        "survey's 8 HITs, each answered by rows / 8 workers)",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    add_batch_options(parser)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "STUDY", "RESULTS"))
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved runs of the parse and the import"
    )
    parser.add_argument(
        "--compare-src",
        help="also time the import of another semcomp source folder (e.g. an export of the "
        "code before a change), interleaved with the others",
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = surveyed_study(root)
        files = {}
        for layout in ("json", "flat"):
            files[layout] = root / f"results-{layout}.csv"
            started = time.perf_counter()
            items_csv = root / "survey" / "items.csv"
            write_results(
                made.hits_csv, items_csv, files[layout], args.rows, layout, args.assignments_per_hit
            )
            size = files[layout].stat().st_size / 2**20
            print(f"wrote {layout} layout: {size:.0f} MiB in {time.perf_counter() - started:.1f} s")
            shutil.copytree(root / "study", root / f"study-{layout}")
        # interleaved: each round parses, imports (and with --compare-src imports with the
        # other code) one after another, so that the machine's load weighs on all alike
        floors, firsts, others = [], [], []
        for _ in range(args.repeats):
            floors.append(measure("pandas", root / "study", files["json"]))
            firsts.append(fresh_import(root, "json", files["json"]))
            if args.compare_src:
                others.append(fresh_import(root, "json", files["json"], args.compare_src))
        floor, first = best(floors), best(firsts)
        again = measure("import", root / "study-json-run", files["json"])
        flat = measure("import", root / "study-flat", files["flat"])
    print(f"machine: {machine()}")
    hits = (
        f"{-(-args.rows // args.assignments_per_hit)} HITs of {args.assignments_per_hit} "
        f"assignments drawn from the survey's {made.items} items"
        if args.assignments_per_hit
        else f"{made.hits} HITs"
    )
    print(
        f"{args.rows} assignments x {made.items // made.hits} items ({hits}, "
        "1 attention check each); QC: rejected, work time < 30 s, failed checks, repeats"
    )
    print(f"{'what':<34} {'seconds':>8} {'CPU s':>7} {'rows/s':>9} {'peak MiB':>9}  outcome")
    for label, result in (
        ("pandas.read_csv (parse only)", floor),
        ("import, taskAnswers JSON layout", first),
        ("import again (same file)", again),
        ("import, flattened layout", flat),
    ):
        outcome = {
            k: v for k, v in result.items() if k not in ("seconds", "cpu", "peak_mib", "rows")
        }
        print(
            f"{label:<34} {result['seconds']:8.1f} {result['cpu']:7.1f} "
            f"{result['rows'] / result['seconds']:9.0f} "
            f"{result['peak_mib']:9.0f}  {outcome}"
        )
    print(
        f"best of {args.repeats} interleaved runs (CPU s): pandas "
        + ", ".join(f"{r['cpu']:.1f}" for r in floors)
        + "; import "
        + ", ".join(f"{r['cpu']:.1f}" for r in firsts)
    )
    if others:
        other = best(others)
        print(
            f"{'import, ' + args.compare_src:<34} {other['seconds']:8.1f} {other['cpu']:7.1f} "
            f"{other['rows'] / other['seconds']:9.0f} {other['peak_mib']:9.0f}  (runs: "
            + ", ".join(f"{r['cpu']:.1f}" for r in others)
            + " CPU s)"
        )
        print(
            f"ratio of CPU seconds, {args.compare_src} import / pandas parse: "
            f"{other['cpu'] / floor['cpu']:.1f}x; this import / that one: "
            f"{first['cpu'] / other['cpu']:.2f}x"
        )
    ratio = first["seconds"] / floor["seconds"]
    met = "met" if ratio <= 2 else "not met"
    print(f"ratio import / pandas parse: {ratio:.1f}x (target <= 2x: {met})")
    cpu_ratio = first["cpu"] / floor["cpu"]
    print(
        f"ratio of CPU seconds, import / pandas parse: {cpu_ratio:.1f}x "
        f"(target <= 2x: {'met' if cpu_ratio <= 2 else 'not met'}; the machine's other work "
        "does not count in it)"
    )
    print(f"ratio flattened / JSON layout: {flat['seconds'] / first['seconds']:.2f}x")
    print(f"ratio re-import / first import: {again['seconds'] / first['seconds']:.2f}x")


if __name__ == "__main__":
    main()
