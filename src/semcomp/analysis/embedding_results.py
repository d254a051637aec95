"""Accuracy against rate of embedding codecs, from ``semcomp pqvae eval``/``sweep`` files.

Where they are found: every ``results.csv`` written by ``semcomp pqvae sweep``
and every evaluation JSON written by ``semcomp pqvae eval --out`` under the
study's ``pqvae/`` folder (any depth), plus the files and folders named
explicitly (``semcomp report/app --pqvae-results PATH``; a folder is searched as
``pqvae/`` is). A sweep's own bookkeeping — ``sweep.json`` and everything in its
``runs/`` (per-configuration ``train_state.json`` and checkpoints) — is not looked
at. A named file that is not such a table is reported with its reason, not fatal;
a JSON file found by searching that is not an evaluation is passed over silently
(any JSON may sit there), while one that cannot be read at all is reported.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: the study sub-folder searched for PQVAE evaluation files
PQVAE_FOLDER = "pqvae"
#: what ``semcomp pqvae sweep`` writes besides its results: the sweep's settings and, per
#: configuration, a training run (``runs/<config>/``, with train.py's ``train_state.json``)
SWEEP_SETTINGS, RUNS_FOLDER, TRAIN_STATE = "sweep.json", "runs", "train_state.json"
#: columns an evaluation must have (see semcomp.codecs.pqvae.evaluate.Evaluation)
REQUIRED = ("method", "bpd")
VALUES = ("top1", "top5", "raw_top1", "cosine", "coder", "d_sub", "codebook_size", "embeddings")


class NotAnEvaluation(ValueError):
    """A readable file that holds no PQVAE evaluation."""


@dataclass
class EmbeddingResults:
    table: pd.DataFrame
    files: list[Path]
    problems: list[tuple[Path, str]] = field(default_factory=list)


def search_folder(folder: Path) -> list[Path]:
    """``results.csv`` and ``*.json`` evaluations under ``folder``, not a sweep's own files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        inside = path.relative_to(folder).parts[:-1]
        if RUNS_FOLDER in inside or not path.is_file():
            continue
        if path.name == "results.csv" or (
            path.suffix == ".json" and path.name not in (SWEEP_SETTINGS, TRAIN_STATE)
        ):
            found.append(path)
    return found


def _find(study_root: Path, extra: list[Path] | tuple[Path, ...]) -> tuple[list[Path], list[Path]]:
    named, searched = [], search_folder(Path(study_root) / PQVAE_FOLDER)
    for path in map(Path, extra):
        if path.is_dir():
            searched += search_folder(path)
        else:
            named.append(path)
    return named, searched


def embedding_results(
    study_root: Path, extra: list[Path] | tuple[Path, ...] = ()
) -> EmbeddingResults:
    """The evaluations under ``STUDY/pqvae/`` and in ``extra`` (files, or folders to search)."""
    named, searched = _find(study_root, extra)
    paths = list(dict.fromkeys([*named, *searched]))
    return load_embedding_results(paths, searched=set(searched) - set(named))


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".json":
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, (dict, list)) or not all(
            isinstance(item, dict) for item in (payload if isinstance(payload, list) else [payload])
        ):
            raise NotAnEvaluation("not a PQVAE evaluation (not a JSON object or list of objects)")
        frame = pd.DataFrame(payload if isinstance(payload, list) else [payload])
    else:
        frame = pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise NotAnEvaluation(f"not a PQVAE evaluation (no column {', '.join(missing)})")
    if "top1" not in frame.columns and "cosine" not in frame.columns:
        raise NotAnEvaluation("not a PQVAE evaluation (neither top1 nor cosine)")
    return frame


def load_embedding_results(
    paths: list[Path], *, searched: Collection[Path] = ()
) -> EmbeddingResults:
    """One row per evaluated codec: method, bpd, top-1 (and raw top-1), cosine, source file.

    ``searched``: paths found by searching a folder rather than named; of those, a
    JSON file that is not an evaluation is skipped without a problem.
    """
    frames, used, problems = [], [], []
    for path in paths:
        try:
            frame = _read(path)
        except FileNotFoundError:
            problems.append((path, "file not found"))
            continue
        except NotAnEvaluation as exc:
            if not (path in searched and path.suffix == ".json"):
                problems.append((path, str(exc)))
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
