"""A study: a folder with ``study.toml``, ``study.db`` and ``artifacts/``.

:meth:`Study.run` runs the fixed sequence of idempotent stages

1. ``ingest``  originals (id = content hash)
2. ``encode``  every original with every method at every operating point
3. ``decode``  representations into candidate images
4. ``embed``   originals and candidates with every similarity model
5. ``score``   candidate–original similarity

Each stage works out what is pending from the store alone, so a finished study
re-runs without loading any model, and a killed run resumes where it stopped.
Each stage holds at most one model, loaded once and freed before the next.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from semcomp import __version__
from semcomp.analysis.similarity import clip_metrics
from semcomp.config import STUDY_FILE, StudyConfig, load_config
from semcomp.engines import Engine, LocalEngine
from semcomp.errors import ConfigError, StoreError
from semcomp.filenames import path_text
from semcomp.images import SourceProblem, find_sources
from semcomp.methods import TextualMethod
from semcomp.stages import STAGES, StageContext, StageReport, failure_label
from semcomp.stages.embed import artifacts_to_score
from semcomp.store import (
    DB_NAME,
    SchemaOutdatedError,
    Store,
    is_writable,
    read_writer,
    to_json,
    utc_now,
)

PROVENANCE_PACKAGES = (
    "semcomp",
    "torch",
    "open_clip_torch",
    "pillow",
    "numpy",
    "pandas",
    "scipy",
    "pydantic",
    "safetensors",
)


def package_versions() -> dict[str, str]:
    """Versions of the packages (and Pillow's codec libraries) that shape the numbers."""
    versions: dict[str, str] = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    from PIL import features

    for codec in ("jpg", "webp"):
        versions[f"lib{codec}"] = str(features.version(codec))
    return versions


@dataclass
class RunSummary:
    run_id: int
    status: str
    stages: list[StageReport]
    #: (stage, item, reason) for every failure this run recorded
    failures: list[tuple[str, str, str]]

    @property
    def models_loaded(self) -> list[str]:
        return [m for s in self.stages for m in s.models_loaded]


@dataclass(frozen=True)
class StatusRow:
    what: str
    done: int
    pending: int
    failed: int


class Study:
    """Open with :meth:`open`; run with :meth:`run`; inspect with :meth:`status`."""

    def __init__(self, root: Path, config: StudyConfig, store: Store):
        self.root = root
        self.config = config
        self.store = store

    # ---- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, *, read_only: bool = False) -> Study:
        """Open to write (holding the study's writer lock until closed) or ``read_only``."""
        root = Path(root).resolve()
        config = load_config(root)
        return cls(root, config, Store(root, read_only=read_only))

    @classmethod
    def open_to_read(cls, root: Path | str) -> Study:
        """Open for reading, never waiting for a writer.

        Reading needs a store at the current schema: one that does not exist yet, or is
        older, is created or migrated first, under the writer lock (refused at once, naming
        the writer, if another process holds it).
        """
        root = Path(root).resolve()
        config = load_config(root)
        if (root / DB_NAME).exists():
            try:
                return cls(root, config, Store(root, read_only=True))
            except SchemaOutdatedError:
                pass
        elif not is_writable(root):
            raise StoreError(f"{root} has no results yet (no {DB_NAME}) and is read-only")
        return cls(root, config, Store(root))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def random_weights(self) -> bool:
        return any(m.random_weights for m in self.config.similarity.models) or any(
            m.random_weights for m in self.config.methods
        )

    # ---- running ---------------------------------------------------------------------

    def run(
        self,
        *,
        progress: bool = True,
        command: str = "semcomp run",
        stages: Iterable[str] | None = None,
        engine: Engine | None = None,
    ) -> RunSummary:
        """Run the pending work of every stage (or of ``stages`` only, in pipeline order).

        Batch stages run their models on ``engine`` (default: this process; see
        :mod:`semcomp.engines`); the results are the same either way. Failures
        of single items are recorded, not raised.
        """
        engine = engine or LocalEngine()
        selected = set(STAGES if stages is None else stages)
        unknown = selected - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        run_id = self.store.start_run(
            command=command,
            semcomp_version=__version__,
            packages=package_versions(),
            config=self.config.model_dump(mode="json"),
            seed=self.config.seed,
        )
        with self.store.transaction():
            self.store.set_info("name", self.config.name)
            self.store.set_info("random_weights", self.random_weights)
        self._register_methods()
        reports: list[StageReport] = []
        status = "failed"
        try:
            for stage in STAGES:
                if stage not in selected:
                    continue
                report = StageReport(stage)
                context = StageContext(self.store, self.config, run_id, progress, report, engine)
                started = time.perf_counter()
                importlib.import_module(f"semcomp.stages.{stage}").run(context)
                report.seconds = time.perf_counter() - started
                reports.append(report)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            failures = [
                (r["stage"], failure_label(r["item"], r["detail"]), r["reason"])
                for r in self.store.conn.execute(
                    "SELECT stage, item, reason, detail FROM failures WHERE run_id = ? "
                    "ORDER BY stage, item",
                    (run_id,),
                )
            ]
            self.store.finish_run(
                run_id,
                status=status,
                summary={
                    "stages": [vars(s) for s in reports],
                    "failures": len(failures),
                    "engine": engine.name,
                },
            )
        return RunSummary(run_id=run_id, status=status, stages=reports, failures=failures)

    def scope(self) -> dict[str, tuple[list[str], int]]:
        """What the study file asks for: method id → (operating point labels, replicates)."""
        return {
            m.method_id: (m.operating_point_labels(), getattr(m, "replicates", 1))
            for m in self.config.methods
        }

    def _register_methods(self) -> None:
        with self.store.transaction():
            for method in self.config.methods:
                described = method.model_dump(mode="json", exclude={"name", "random_weights"})
                self.store.upsert(
                    "methods",
                    {
                        "id": method.method_id,
                        "name": method.name,
                        "kind": method.kind,
                        "codec": method.payload_codec,
                        "params": to_json(described),
                        "created_at": utc_now(),
                    },
                    key=("id",),
                )

    # ---- status ----------------------------------------------------------------------

    def status(self) -> list[StatusRow]:
        """Done / pending / failed counts per stage and method, from the store alone."""
        conn = self.store.conn

        def scalar(sql: str, params: Iterable = ()) -> int:
            return int(conn.execute(sql, list(params)).fetchone()[0])

        def failed(stages: tuple[str, ...], field: str, values: list[str]) -> int:
            return scalar(
                f"SELECT COUNT(*) FROM failures WHERE stage IN ({', '.join('?' for _ in stages)}) "
                f"AND json_extract(detail, '$.{field}') IN ({', '.join('?' for _ in values)})",
                [*stages, *values],
            )

        originals = int(
            conn.execute("SELECT COUNT(DISTINCT original_id) FROM sources").fetchone()[0]
        )
        ingested = {r[0] for r in conn.execute("SELECT path FROM sources")}
        failed_paths = {
            r[0] for r in conn.execute("SELECT item FROM failures WHERE stage = 'ingest'")
        }
        waiting = sum(
            1
            for s in find_sources(self.config.images.source)
            if not isinstance(s, SourceProblem)
            and path_text(s.path) not in ingested
            and path_text(s.path) not in failed_paths
        )
        rows = [StatusRow("ingest: originals", originals, waiting, len(failed_paths))]
        for method in self.config.methods:
            method_id = method.method_id
            represented = scalar(
                "SELECT COUNT(*) FROM representations WHERE method_id = ?", [method_id]
            )
            not_represented = failed(("encode", "caption"), "method_id", [method_id])
            if isinstance(method, TextualMethod):
                keys = [p.captioner_key for p in method.caption_points()]
                not_represented += failed(("caption",), "captioner_key", keys)
            expected = originals * len(method.operating_point_labels())
            rows.append(
                StatusRow(
                    f"represent: {method.name}",
                    represented,
                    max(0, expected - represented - not_represented),
                    not_represented,
                )
            )
            candidates = scalar(
                "SELECT COUNT(*) FROM candidates c JOIN representations r "
                "ON r.id = c.representation_id WHERE r.method_id = ?",
                [method_id],
            )
            no_candidate = failed(("decode", "reconstruct"), "method_id", [method_id])
            replicates = getattr(method, "replicates", 1)
            rows.append(
                StatusRow(
                    f"candidates: {method.name}",
                    candidates,
                    max(0, represented * replicates - candidates - no_candidate),
                    no_candidate,
                )
            )
        context = StageContext(self.store, self.config, 0, False, StageReport("status"))
        needed = artifacts_to_score(context)
        all_candidates = sum(r.done for r in rows if r.what.startswith("candidates:"))
        for embedder in self.config.similarity.models:
            have = len(self.store.embeddings(embedder.embedder_id, needed))
            unreadable = scalar(
                "SELECT COUNT(*) FROM failures WHERE stage = 'embed' AND item LIKE ?",
                [f"%|{embedder.embedder_id}"],
            )
            rows.append(
                StatusRow(
                    f"embed: {embedder.label}", have, len(needed) - have - unreadable, unreadable
                )
            )
            metric = clip_metrics(embedder)[-1].name
            where, ids = context.method_filter("r.method_id")
            scored = scalar(
                "SELECT COUNT(*) FROM scores s JOIN candidates c ON c.id = s.candidate_id "
                "JOIN representations r ON r.id = c.representation_id "
                f"WHERE s.metric = ? AND {where}",
                [metric, *ids],
            )
            rows.append(StatusRow(f"score: {metric}", scored, all_candidates - scored, 0))
        return rows

    def unfinished_runs(self, limit: int = 5) -> list[str]:
        """One line for each of the latest ``limit`` runs that did not finish (interrupted,
        failed, or still ``running``), newest first."""
        rows = self.store.conn.execute(
            "SELECT id, status, command, started_at FROM runs WHERE status != 'finished' "
            "ORDER BY id DESC"
        ).fetchall()
        writer = read_writer(self.root)
        lines = []
        for row in rows[:limit]:
            what = f"`{row['command']}`, started {row['started_at']}"
            if row["status"] != "running":
                lines.append(f"run {row['id']} {row['status']} ({what})")
            elif writer is not None and writer.alive is not False:
                lines.append(f"run {row['id']} running ({what}): {writer.describe()}")
            else:  # only a writer can tell for certain; it marks the run on opening
                lines.append(
                    f"run {row['id']} stopped without finishing ({what}); the next run marks "
                    "it interrupted"
                )
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} earlier run(s) that did not finish")
        return lines

    def failures(self) -> list[tuple[str, str, str]]:
        """Every recorded failure as (stage, item label, reason), stages in pipeline order."""
        order = {stage: i for i, stage in enumerate(STAGES)}
        rows = self.store.conn.execute(
            "SELECT stage, item, reason, detail FROM failures ORDER BY stage, item"
        ).fetchall()
        rows.sort(key=lambda r: order.get(r["stage"], len(order)))
        return [(r["stage"], failure_label(r["item"], r["detail"]), r["reason"]) for r in rows]


def write_study_file(
    root: Path, images: Path, *, name: str, methods_toml: str, similarity_toml: str = ""
) -> Path:
    """Write a ``study.toml`` (refusing to overwrite one) and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / STUDY_FILE
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it or choose another folder")
    try:
        source = images.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        source = images.resolve().as_posix()
    # JSON strings are valid TOML basic strings: quotes and backslashes come out escaped
    head = f"name = {json.dumps(name)}\nseed = 0\n\n[images]\nsource = {json.dumps(source)}\n\n"
    text = head + f"{methods_toml.strip()}\n"
    if similarity_toml:
        text += f"\n{similarity_toml.strip()}\n"
    path.write_text(text, encoding="utf-8")
    return path


#: The textual-transform paper's JPEG operating points (~80 % and ~90 % smaller files),
#: and the same for WebP.
DEFAULT_METHODS_TOML = """
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]

[[methods]]
name = "webp"
codec = "webp"
reduction = [0.8, 0.9]
"""


def init_study(root: Path, images: Path, *, name: str | None = None) -> Study:
    """Create a study folder with a default ``study.toml`` and an empty store."""
    if not images.exists():
        raise ConfigError(f"images source {images} does not exist")
    store = Store(root.resolve())  # the writer lock first: no study file beside a run's
    try:
        write_study_file(root, images, name=name or root.name, methods_toml=DEFAULT_METHODS_TOML)
        return Study(root.resolve(), load_config(root.resolve()), store)
    except BaseException:
        store.close()
        raise


def summarise_failures(
    failures: Iterable[tuple[str, str, str]], limit: int | None = 20
) -> list[str]:
    """One line per failure, at most ``limit`` lines (None: all) plus a count of the rest."""
    failures = list(failures)
    lines = [f"  {stage:<6} {item}: {reason}" for stage, item, reason in failures[:limit]]
    if limit is not None and len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more (see `semcomp status`)")
    return lines


__all__ = [
    "STAGES",
    "RunSummary",
    "StageReport",
    "StatusRow",
    "Study",
    "init_study",
    "summarise_failures",
    "write_study_file",
]
