"""Accuracy against rate of embedding codecs, from ``semcomp pqvae eval``/``sweep`` files.

Where they are found: every ``results.csv`` written by ``semcomp pqvae sweep``
and every evaluation JSON written by ``semcomp pqvae eval --out`` under the
study's ``pqvae/`` folder (any depth), plus files named explicitly
(``semcomp report/app --pqvae-results PATH``). A file that is not such a table
is reported with its reason, not fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: the study sub-folder searched for PQVAE evaluation files
PQVAE_FOLDER = "pqvae"
#: columns an evaluation must have (see semcomp.codecs.pqvae.evaluate.Evaluation)
REQUIRED = ("method", "bpd")
VALUES = ("top1", "top5", "raw_top1", "cosine", "coder", "d_sub", "codebook_size", "embeddings")


@dataclass
class EmbeddingResults:
    table: pd.DataFrame
    files: list[Path]
    problems: list[tuple[Path, str]] = field(default_factory=list)


def find_result_files(study_root: Path, extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """``results.csv`` and ``*.json`` evaluations under ``STUDY/pqvae/`` and the ``extra`` paths."""
    folder = Path(study_root) / PQVAE_FOLDER
    found = []
    if folder.is_dir():
        found += sorted(folder.rglob("results.csv"))
        found += sorted(p for p in folder.rglob("*.json") if p.name != "sweep.json")
    for path in map(Path, extra):
        found += sorted(path.rglob("results.csv")) if path.is_dir() else [path]
    return list(dict.fromkeys(found))


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".json":
        payload = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame(payload if isinstance(payload, list) else [payload])
    else:
        frame = pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"not a PQVAE evaluation (no column {', '.join(missing)})")
    if "top1" not in frame.columns and "cosine" not in frame.columns:
        raise ValueError("not a PQVAE evaluation (neither top1 nor cosine)")
    return frame


def load_embedding_results(paths: list[Path]) -> EmbeddingResults:
    """One row per evaluated codec: method, bpd, top-1 (and raw top-1), cosine, source file."""
    frames, used, problems = [], [], []
    for path in paths:
        try:
            frame = _read(path)
        except FileNotFoundError:
            problems.append((path, "file not found"))
            continue
        except (ValueError, json.JSONDecodeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            problems.append((path, str(exc)))
            continue
        frame = frame[[c for c in (*REQUIRED, *VALUES) if c in frame.columns]].copy()
        frame["source"] = str(path)
        frames.append(frame)
        used.append(path)
    columns = [*REQUIRED, *VALUES, "source"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return EmbeddingResults(
        table=table.sort_values(["method", "bpd"]), files=used, problems=problems
    )
