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

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from semcomp import __version__
from semcomp.analysis.similarity import clip_metrics, cosine
from semcomp.codecs import CODECS, ImageCodec, OriginalFacts
from semcomp.config import STUDY_FILE, MethodConfig, StudyConfig, load_config
from semcomp.errors import ConfigError, ImageError
from semcomp.images import SourceProblem, decode_image, find_sources
from semcomp.store import Store, content_key, to_json, utc_now

STAGES = ("ingest", "encode", "decode", "embed", "score")
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
class StageReport:
    """What one stage did in one run."""

    stage: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    models_loaded: list[str] = field(default_factory=list)


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
        root = Path(root).resolve()
        config = load_config(root)
        return cls(root, config, Store(root, read_only=read_only))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def random_weights(self) -> bool:
        return any(m.random_weights for m in self.config.similarity.models)

    # ---- running ---------------------------------------------------------------------

    def run(
        self,
        *,
        progress: bool = True,
        command: str = "semcomp run",
        stages: Iterable[str] | None = None,
    ) -> RunSummary:
        """Run the pending work of every stage (or of ``stages`` only, in pipeline order).

        Failures of single items are recorded, not raised.
        """
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
        reports: list[StageReport] = []
        status = "failed"
        try:
            for stage, work in (
                ("ingest", self._ingest),
                ("encode", self._encode),
                ("decode", self._decode),
                ("embed", self._embed),
                ("score", self._score),
            ):
                if stage not in selected:
                    continue
                report = StageReport(stage)
                started = time.perf_counter()
                work(run_id, report, progress)
                report.seconds = time.perf_counter() - started
                reports.append(report)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            failures = [
                (r["stage"], self._failure_label(r["item"], r["detail"]), r["reason"])
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
                },
            )
        return RunSummary(run_id=run_id, status=status, stages=reports, failures=failures)

    @staticmethod
    def _failure_label(item: str, detail_json: str) -> str:
        detail = json.loads(detail_json or "{}")
        return str(detail.get("label", item))

    def _bar(self, progress: bool, total: int, stage: str, unit: str) -> Any:
        return tqdm(total=total, desc=f"{stage:<6}", unit=unit, disable=not progress or total == 0)

    # ---- 1. ingest -------------------------------------------------------------------

    def _ingest(self, run_id: int, report: StageReport, progress: bool) -> None:
        store, images = self.store, self.config.images
        known = {
            r["path"]: (r["size"], r["mtime_ns"], r["original_id"])
            for r in store.conn.execute("SELECT path, size, mtime_ns, original_id FROM sources")
        }
        settled = store.settled_failures("ingest")
        found = list(find_sources(images.source))
        with self._bar(progress, len(found), "ingest", "img") as bar:
            for source in found:
                bar.update()
                if isinstance(source, SourceProblem):
                    self._fail(
                        "ingest", source.item, source.reason, run_id, report, retryable=False
                    )
                    continue
                key = str(source.path)
                try:
                    stat = source.path.stat()
                except OSError as exc:
                    self._fail("ingest", key, f"cannot read: {exc.strerror}", run_id, report)
                    continue
                seen = known.get(key)
                unchanged = seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns)
                if unchanged and (seen[2] is not None or key in settled):
                    report.skipped += 1
                    continue
                self._ingest_one(source, stat, run_id, report)

    def _ingest_one(self, source: Any, stat: Any, run_id: int, report: StageReport) -> None:
        store, images = self.store, self.config.images
        key = str(source.path)
        source_row = {
            "path": key,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "category": source.category,
            "name": source.name,
            "original_id": None,
        }
        if images.categories is not None and source.category not in images.categories:
            reason = f"category {source.category!r} is not one of {images.categories}"
            self._fail("ingest", key, reason, run_id, report, retryable=True)
            return
        try:
            data = source.path.read_bytes()
            decoded = decode_image(data, images.max_pixels)
        except (OSError, ImageError) as exc:
            with store.transaction():
                store.upsert("sources", source_row, key=("path",))
                self._fail("ingest", key, str(exc), run_id, report, retryable=False)
            return
        with store.transaction():
            digest = store.put_artifact(
                data,
                suffix=source.path.suffix.lower(),
                media_type=f"image/{decoded.format.lower()}",
            )
            store.upsert(
                "originals",
                {
                    "id": digest,
                    "name": source.name,
                    "category": source.category,
                    "source_path": key,
                    "width": decoded.width,
                    "height": decoded.height,
                    "pixels": decoded.pixels,
                    "file_bytes": len(data),
                    "format": decoded.format,
                    "source_mode": decoded.source_mode,
                    "frames": decoded.frames,
                    "artifact_hash": digest,
                    "run_id": run_id,
                    "created_at": utc_now(),
                },
                key=("id",),
            )
            store.upsert("sources", source_row | {"original_id": digest}, key=("path",))
            store.clear_failure("ingest", key)
        report.done += 1

    # ---- 2. encode -------------------------------------------------------------------

    def _codec(self, method: MethodConfig) -> ImageCodec:
        codec_class = CODECS.get(method.codec)
        return codec_class(codec_class.Params.model_validate(method.params))

    def _register_methods(self) -> None:
        with self.store.transaction():
            for method in self.config.methods:
                self.store.upsert(
                    "methods",
                    {
                        "id": method.method_id,
                        "name": method.name,
                        "codec": method.codec,
                        "params": to_json(method.params),
                        "created_at": utc_now(),
                    },
                    key=("id",),
                )

    def _encode(self, run_id: int, report: StageReport, progress: bool) -> None:
        store = self.store
        self._register_methods()
        existing = {
            (r[0], r[1], r[2])
            for r in store.conn.execute(
                "SELECT original_id, method_id, operating_point FROM representations"
            )
        }
        settled = store.settled_failures("encode")
        originals = store.conn.execute(
            "SELECT id, name, file_bytes, pixels, artifact_hash FROM originals ORDER BY id"
        ).fetchall()
        plan: dict[str, list[tuple[MethodConfig, list[Any]]]] = defaultdict(list)
        total = 0
        for original in originals:
            for method in self.config.methods:
                points = [
                    p
                    for p in method.operating_points()
                    if (original["id"], method.method_id, p.label) not in existing
                    and _encode_item(original["id"], method, p.label) not in settled
                ]
                report.skipped += len(method.operating_points()) - len(points)
                if points:
                    plan[original["id"]].append((method, points))
                    total += len(points)
        codecs = {m.name: self._codec(m) for m in self.config.methods}
        by_id = {o["id"]: o for o in originals}
        with self._bar(progress, total, "encode", "rep") as bar:
            for original_id, work in plan.items():
                original = by_id[original_id]
                facts = OriginalFacts(file_bytes=original["file_bytes"], pixels=original["pixels"])
                try:
                    image = decode_image(store.read_artifact(original["artifact_hash"])).rgb
                except ImageError as exc:
                    for method, points in work:
                        for point in points:
                            self._fail_encode(
                                original, method, point.label, str(exc), run_id, report
                            )
                    bar.update(sum(len(points) for _, points in work))
                    continue
                for method, points in work:
                    results = codecs[method.name].encode(image, points, facts)
                    with store.transaction():
                        for point, result in zip(points, results, strict=True):
                            if isinstance(result, Exception):
                                detail = getattr(result, "closest", {})
                                self._fail_encode(
                                    original,
                                    method,
                                    point.label,
                                    str(result),
                                    run_id,
                                    report,
                                    detail,
                                )
                                continue
                            self._put_representation(original_id, method, point, result, run_id)
                            report.done += 1
                    bar.update(len(points))

    def _put_representation(
        self, original_id: str, method: MethodConfig, point: Any, result: Any, run_id: int
    ) -> None:
        store = self.store
        codec = CODECS.get(method.codec)
        payload_hash = store.put_artifact(
            result.payload, suffix=codec.suffix, media_type=codec.media_type
        )
        store.upsert(
            "representations",
            {
                "id": content_key(original_id, method.method_id, point.label),
                "original_id": original_id,
                "method_id": method.method_id,
                "operating_point": point.label,
                "payload_hash": payload_hash,
                "rate_bits": result.rate_bits,
                "meta": to_json(result.meta | {"target": point.kind, "target_value": point.value}),
                "run_id": run_id,
                "created_at": utc_now(),
            },
            key=("id",),
        )
        store.clear_failure("encode", _encode_item(original_id, method, point.label))

    def _fail_encode(
        self,
        original: Any,
        method: MethodConfig,
        label: str,
        reason: str,
        run_id: int,
        report: StageReport,
        detail: dict | None = None,
    ) -> None:
        self._fail(
            "encode",
            _encode_item(original["id"], method, label),
            reason,
            run_id,
            report,
            retryable=False,
            detail=(detail or {}) | {"label": f"{original['name']} · {method.name} · {label}"},
        )

    # ---- 3. decode -------------------------------------------------------------------

    def _configured_method_ids(self) -> list[str]:
        return [m.method_id for m in self.config.methods]

    def _in_methods(self, column: str) -> tuple[str, list[str]]:
        ids = self._configured_method_ids()
        return f"{column} IN ({', '.join('?' for _ in ids)})", ids

    def _decode(self, run_id: int, report: StageReport, progress: bool) -> None:
        store = self.store
        where, ids = self._in_methods("r.method_id")
        pending = store.conn.execute(
            "SELECT r.id, r.payload_hash, m.name FROM representations r "
            "JOIN methods m ON m.id = r.method_id "
            "LEFT JOIN candidates c ON c.representation_id = r.id AND c.replicate = 0 "
            f"WHERE c.id IS NULL AND {where}",
            ids,
        ).fetchall()
        methods = {m.name: m for m in self.config.methods}
        settled = store.settled_failures("decode")
        with self._bar(progress, len(pending), "decode", "img") as bar:
            for row in pending:
                bar.update()
                if row["id"] in settled:
                    report.skipped += 1
                    continue
                codec = self._codec(methods[row["name"]])
                try:
                    # The payload of a pixel codec is itself the decodable image file, so the
                    # candidate artifact is the payload: decoding here checks it, storing a PNG
                    # of the same pixels would only double the disk use.
                    codec.decode(store.read_artifact(row["payload_hash"]))
                except (OSError, ValueError, SyntaxError) as exc:
                    self._fail("decode", row["id"], f"cannot decode: {exc}", run_id, report)
                    continue
                with store.transaction():
                    store.upsert(
                        "candidates",
                        {
                            "id": content_key(row["id"], 0),
                            "representation_id": row["id"],
                            "replicate": 0,
                            "seed": None,
                            "artifact_hash": row["payload_hash"],
                            "meta": to_json({"decoder": codec.name}),
                            "run_id": run_id,
                            "created_at": utc_now(),
                        },
                        key=("id",),
                    )
                    store.clear_failure("decode", row["id"])
                report.done += 1

    # ---- 4. embed --------------------------------------------------------------------

    def _artifacts_to_score(self) -> list[str]:
        """Artifacts that similarity needs: every original and every configured candidate."""
        where, ids = self._in_methods("r.method_id")
        rows = self.store.conn.execute(
            "SELECT artifact_hash FROM originals UNION "
            "SELECT c.artifact_hash FROM candidates c "
            f"JOIN representations r ON r.id = c.representation_id WHERE {where}",
            ids,
        )
        return sorted(r[0] for r in rows)

    def _embed(self, run_id: int, report: StageReport, progress: bool) -> None:
        store, similarity = self.store, self.config.similarity
        needed = self._artifacts_to_score()
        for embedder_config in similarity.models:
            embedder_id = embedder_config.embedder_id
            have = {
                r[0]
                for r in store.conn.execute(
                    "SELECT artifact_hash FROM embeddings WHERE embedder_id = ?", (embedder_id,)
                )
            }
            settled = {
                item.split("|")[0]
                for item in store.settled_failures("embed")
                if item.endswith(f"|{embedder_id}")
            }
            pending = [a for a in needed if a not in have and a not in settled]
            report.skipped += len(needed) - len(pending)
            if not pending:
                continue
            from semcomp.analysis import EMBEDDERS

            embedder = EMBEDDERS.get(embedder_config.kind)(
                embedder_config, device=similarity.device, batch_size=similarity.batch_size
            )
            report.models_loaded.append(embedder_config.label)
            try:
                with store.transaction():
                    identity = embedder.identity()
                    store.upsert(
                        "embedders",
                        {
                            "id": embedder_id,
                            "kind": identity["kind"],
                            "model": identity["model"],
                            "pretrained": identity["pretrained"],
                            "preprocess": to_json(identity["preprocess"]),
                            "weights": identity["weights"],
                            "random_weights": int(identity["random_weights"]),
                            "created_at": utc_now(),
                        },
                        key=("id",),
                    )
                self._embed_pending(embedder, embedder_id, pending, run_id, report, progress)
            finally:
                embedder.close()

    def _embed_pending(
        self,
        embedder: Any,
        embedder_id: str,
        pending: list[str],
        run_id: int,
        report: StageReport,
        progress: bool,
    ) -> None:
        store = self.store
        chunk = max(1, self.config.similarity.batch_size)
        with self._bar(progress, len(pending), "embed", "img") as bar:
            for start in range(0, len(pending), chunk):
                hashes, images = [], []
                for digest in pending[start : start + chunk]:
                    try:
                        images.append(decode_image(store.read_artifact(digest)).rgb)
                        hashes.append(digest)
                    except ImageError as exc:
                        item = f"{digest}|{embedder_id}"
                        self._fail("embed", item, str(exc), run_id, report, retryable=False)
                vectors = embedder.embed(images) if images else []
                with store.transaction():
                    store.put_embeddings(embedder_id, zip(hashes, vectors, strict=True), run_id)
                report.done += len(hashes)
                bar.update(len(pending[start : start + chunk]))

    # ---- 5. score --------------------------------------------------------------------

    def _score(self, run_id: int, report: StageReport, progress: bool) -> None:
        store = self.store
        where, ids = self._in_methods("r.method_id")
        for embedder_config in self.config.similarity.models:
            metrics = clip_metrics(embedder_config)
            pending = store.conn.execute(
                "SELECT c.id, c.artifact_hash, o.artifact_hash AS original_hash FROM candidates c "
                "JOIN representations r ON r.id = c.representation_id "
                "JOIN originals o ON o.id = r.original_id "
                f"WHERE {where} AND NOT EXISTS (SELECT 1 FROM scores s "
                "WHERE s.candidate_id = c.id AND s.metric = ?)",
                [*ids, metrics[-1].name],
            ).fetchall()
            if not pending:
                continue
            with store.transaction():
                for metric in metrics:
                    store.upsert(
                        "metrics",
                        {
                            "name": metric.name,
                            "embedder_id": embedder_config.embedder_id,
                            "formula": metric.formula,
                            "description": metric.description,
                        },
                        key=("name",),
                    )
            vectors = store.embeddings(
                embedder_config.embedder_id,
                [r["artifact_hash"] for r in pending] + [r["original_hash"] for r in pending],
            )
            now = utc_now()
            with store.transaction():
                for row in pending:
                    original = vectors.get(row["original_hash"])
                    candidate = vectors.get(row["artifact_hash"])
                    if original is None or candidate is None:
                        report.skipped += 1
                        continue
                    value = cosine(original, candidate)
                    for metric in metrics:
                        store.upsert(
                            "scores",
                            {
                                "candidate_id": row["id"],
                                "metric": metric.name,
                                "value": metric.value(value),
                                "run_id": run_id,
                                "created_at": now,
                            },
                            key=("candidate_id", "metric"),
                        )
                    report.done += 1

    # ---- failures --------------------------------------------------------------------

    def _fail(
        self,
        stage: str,
        item: str,
        reason: str,
        run_id: int,
        report: StageReport,
        *,
        retryable: bool = True,
        detail: dict | None = None,
    ) -> None:
        self.store.record_failure(
            stage, item, reason, retryable=retryable, run_id=run_id, detail=detail
        )
        report.failed += 1

    # ---- status ----------------------------------------------------------------------

    def status(self) -> list[StatusRow]:
        """Done / pending / failed counts per stage and method, from the store alone."""
        store = self.store
        conn = store.conn
        rows: list[StatusRow] = []
        sources = list(find_sources(self.config.images.source))
        ingest_failed = conn.execute(
            "SELECT COUNT(*) FROM failures WHERE stage = 'ingest'"
        ).fetchone()[0]
        originals = store.count("originals")
        ingested_paths = {
            r[0] for r in conn.execute("SELECT path FROM sources WHERE original_id IS NOT NULL")
        }
        failed_paths = {
            r[0] for r in conn.execute("SELECT item FROM failures WHERE stage='ingest'")
        }
        pending_sources = sum(
            1
            for s in sources
            if not isinstance(s, SourceProblem)
            and str(s.path) not in ingested_paths
            and str(s.path) not in failed_paths
        )
        rows.append(StatusRow("ingest: originals", originals, pending_sources, ingest_failed))
        for method in self.config.methods:
            points = len(method.operating_points())
            done = conn.execute(
                "SELECT COUNT(*) FROM representations WHERE method_id = ?", (method.method_id,)
            ).fetchone()[0]
            failed = conn.execute(
                "SELECT COUNT(*) FROM failures WHERE stage = 'encode' AND item LIKE ?",
                (f"%|{method.method_id}|%",),
            ).fetchone()[0]
            pending = max(0, originals * points - done - failed)
            rows.append(StatusRow(f"encode: {method.name}", done, pending, failed))
        where, ids = self._in_methods("r.method_id")
        representations = conn.execute(
            f"SELECT COUNT(*) FROM representations r WHERE {where}", ids
        ).fetchone()[0]
        candidates = conn.execute(
            "SELECT COUNT(*) FROM candidates c JOIN representations r "
            f"ON r.id = c.representation_id WHERE {where}",
            ids,
        ).fetchone()[0]
        decode_failed = conn.execute(
            "SELECT COUNT(*) FROM failures WHERE stage='decode'"
        ).fetchone()[0]
        rows.append(
            StatusRow(
                "decode: candidates",
                candidates,
                max(0, representations - candidates - decode_failed),
                decode_failed,
            )
        )
        needed = self._artifacts_to_score()
        for embedder in self.config.similarity.models:
            have = set(store.embeddings(embedder.embedder_id, needed))
            failed = conn.execute(
                "SELECT COUNT(*) FROM failures WHERE stage = 'embed' AND item LIKE ?",
                (f"%|{embedder.embedder_id}",),
            ).fetchone()[0]
            rows.append(
                StatusRow(
                    f"embed: {embedder.label}", len(have), len(needed) - len(have) - failed, failed
                )
            )
            metric = clip_metrics(embedder)[-1].name
            scored = conn.execute(
                "SELECT COUNT(*) FROM scores s JOIN candidates c ON c.id = s.candidate_id "
                "JOIN representations r ON r.id = c.representation_id "
                f"WHERE s.metric = ? AND {where}",
                [metric, *ids],
            ).fetchone()[0]
            rows.append(StatusRow(f"score: {metric}", scored, candidates - scored, 0))
        return rows

    def failures(self) -> list[tuple[str, str, str]]:
        """Every recorded failure as (stage, item label, reason)."""
        return [
            (r["stage"], self._failure_label(r["item"], r["detail"]), r["reason"])
            for r in self.store.conn.execute(
                "SELECT stage, item, reason, detail FROM failures ORDER BY stage, item"
            )
        ]


def _encode_item(original_id: str, method: MethodConfig, label: str) -> str:
    return f"{original_id}|{method.method_id}|{label}"


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
    text = f'name = "{name}"\nseed = 0\n\n[images]\nsource = "{source}"\n\n{methods_toml.strip()}\n'
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
    write_study_file(root, images, name=name or root.name, methods_toml=DEFAULT_METHODS_TOML)
    return Study.open(root)


def summarise_failures(failures: Iterable[tuple[str, str, str]], limit: int = 20) -> list[str]:
    """One line per failure, at most ``limit`` lines plus a count of the rest."""
    failures = list(failures)
    lines = [f"  {stage:<6} {item}: {reason}" for stage, item, reason in failures[:limit]]
    if len(failures) > limit:
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
