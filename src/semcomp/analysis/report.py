"""``semcomp report``: the tables, JSON and figures of a study, written to ``report/``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from semcomp.analysis.figures import RANDOM_WEIGHTS_NOTE, rd_figure
from semcomp.analysis.rd import compressai_results, rd_points, summarise
from semcomp.study import Study


@dataclass
class ReportFiles:
    folder: Path
    rd_csv: Path
    summary_csv: Path
    method_json: list[Path]
    figures: list[Path]
    failures_csv: Path
    rows: int


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "method"


def write_report(study: Study, out: Path | None = None, *, rate: str = "bpp") -> ReportFiles:
    """Write ``rd.csv``, ``summary.csv``, CompressAI-style JSON per method, ``rd.png/pdf``."""
    folder = Path(out) if out else study.root / "report"
    (folder / "methods").mkdir(parents=True, exist_ok=True)
    config = study.config
    random_weights = study.random_weights
    points = rd_points(study.store, study.scope())
    summary = summarise(points, seed=config.seed)
    rd_csv, summary_csv = folder / "rd.csv", folder / "summary.csv"
    points.drop(columns=["candidate_id"], errors="ignore").to_csv(rd_csv, index=False)
    summary.to_csv(summary_csv, index=False)
    method_json = []
    for method in config.methods:
        description = method.describe()
        if random_weights:
            description += f"; {RANDOM_WEIGHTS_NOTE}"
        path = folder / "methods" / f"{_file_name(method.name)}.json"
        payload = (
            compressai_results(summary, method.name, description)
            if not summary.empty
            else {"name": method.name, "description": description, "results": {}}
        )
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        method_json.append(path)
    figures = rd_figure(
        points, summary, folder / "rd", rate=rate, title=config.name, random_weights=random_weights
    )
    failures = study.store.failures()
    failures_csv = folder / "failures.csv"
    failures.to_csv(failures_csv, index=False)
    notes = [f"study: {config.name}", f"candidates: {len(points)}", f"failures: {len(failures)}"]
    if random_weights:
        notes.insert(1, f"WARNING: {RANDOM_WEIGHTS_NOTE}")
    (folder / "README.txt").write_text("\n".join(notes) + "\n", encoding="utf-8")
    return ReportFiles(
        folder=folder,
        rd_csv=rd_csv,
        summary_csv=summary_csv,
        method_json=method_json,
        figures=figures,
        failures_csv=failures_csv,
        rows=len(points),
    )
