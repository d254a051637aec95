"""The pipeline's stages, in order. Each module has ``run(ctx)``.

Every stage works out what is pending from the store alone (so a finished study
re-runs with no model work), writes each batch of results in one transaction
(so a killed run resumes with nothing lost or duplicated), and loads at most
one model at a time, freeing it before the next.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from semcomp.config import StudyConfig
from semcomp.engines import (
    BatchOutcome,
    BatchTask,
    Engine,
    LocalEngine,
    PluginFactory,
    prefetched,
)
from semcomp.errors import ImageError, StoreError
from semcomp.images import decode_image
from semcomp.params import portable_value
from semcomp.store import Store, content_key, to_json, utc_now

#: stage name → module under ``semcomp.stages``, in pipeline order
STAGES = (
    "ingest",
    "encode",
    "caption",
    "decode",
    "reconstruct",
    "embed",
    "embedding_codecs",
    "score",
)

M = TypeVar("M")


@dataclass
class StageReport:
    """What one stage did in one run."""

    stage: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    models_loaded: list[str] = field(default_factory=list)
    #: items that went through a model, and seconds per phase (decode, preprocess, model,
    #: write) summed over batches; with several actors they add up to more than ``seconds``
    items: int = 0
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class StageContext:
    """What a stage works with: the store, the validated config, this run, its report."""

    store: Store
    config: StudyConfig
    run_id: int
    progress: bool
    report: StageReport
    #: where batch stages run their models (the local engine unless ``--engine ray``)
    engine: Engine = field(default_factory=LocalEngine)
    #: this stage's items with a failure row, read at the first :meth:`clear` (None
    #: before): an item outside it has no row to delete
    _failing: set[str] | None = field(default=None, init=False, repr=False)

    def fail(
        self, item: str, reason: str, *, retryable: bool = True, detail: dict | None = None
    ) -> None:
        """Record that ``item`` failed in this stage; ``retryable=False`` settles it."""
        self.store.record_failure(
            self.report.stage,
            item,
            reason,
            retryable=retryable,
            run_id=self.run_id,
            detail=detail,
        )
        if self._failing is not None:
            self._failing.add(item)
        self.report.failed += 1

    def clear(self, item: str) -> None:
        """Forget ``item``'s failure in this stage, if it has one: the stage's failing items
        are read once, so a stage writing many items issues a DELETE only for those. A
        cleared item stays in the set (a DELETE too many is harmless; one missed after a
        rolled-back transaction would leave a stale failure)."""
        if self._failing is None:
            rows = self.store.tuples(
                "SELECT item FROM failures WHERE stage = ?", [self.report.stage]
            )
            self._failing = {failed for (failed,) in rows}
        if item in self._failing:
            self.store.clear_failure(self.report.stage, item)

    def clear_prefix(self, prefix: str) -> None:
        """Forget this stage's failures whose item starts with ``prefix`` (a re-read file)."""
        self.store.conn.execute(
            "DELETE FROM failures WHERE stage = ? AND substr(item, 1, ?) = ?",
            (self.report.stage, len(prefix), prefix),
        )

    def settled(self) -> set[str]:
        return self.store.settled_failures(self.report.stage)

    def portable(self, value: Any) -> Any:
        """``value`` (JSON) with paths inside the study folder relative to it, as stored."""
        return portable_value(value, self.store.root)

    def bar(self, total: int, unit: str) -> Any:
        from tqdm.auto import tqdm  # lazily: `semcomp status` opens a context, draws no bar

        return tqdm(
            total=total,
            desc=f"{self.report.stage:<11}",
            unit=unit,
            disable=not self.progress or total == 0,
        )

    def methods(self, kind: type[M]) -> list[M]:
        return [m for m in self.config.methods if isinstance(m, kind)]

    def method_filter(self, column: str) -> tuple[str, list[str]]:
        """SQL restricting ``column`` to the configured methods' ids, and its parameters."""
        ids = [m.method_id for m in self.config.methods]
        return f"{column} IN ({', '.join('?' for _ in ids)})", ids

    def originals(self) -> list[sqlite3.Row]:
        return self.store.conn.execute(
            "SELECT id, name, category, source_path, file_bytes, pixels, artifact_hash "
            "FROM originals WHERE id IN (SELECT original_id FROM sources) ORDER BY id"
        ).fetchall()

    def artifact_files(self, hashes: Sequence[str]) -> dict[str, Path]:
        """Where the artifact store keeps each of ``hashes`` (workers read them there)."""
        wanted = set(hashes)
        return {
            r["hash"]: self.store.artifact_path(r["relpath"])
            for r in self.store.conn.execute("SELECT hash, relpath FROM artifacts")
            if r["hash"] in wanted
        }

    def run_batches(
        self, factory: PluginFactory, task: BatchTask, batches: Sequence[Sequence[Any]], unit: str
    ) -> Iterator[tuple[Sequence[Any], BatchOutcome]]:
        """Run ``batches`` through the engine; yield each with its outcome for the caller to write.

        Plugins that are not ``scalable`` (API clients) run in this process
        whatever the engine. The time the caller spends on a batch before asking
        for the next is the ``write`` phase of the profile.
        """
        local = isinstance(self.engine, LocalEngine)
        engine = self.engine if factory.scalable or local else LocalEngine()
        if batches:
            self.report.models_loaded.append(factory.label or factory.name)
        phases = self.report.phases
        with self.bar(sum(len(b) for b in batches), unit) as bar:
            for outcome in engine.run(factory, task, batches):
                batch = batches[outcome.index]
                for name, seconds in outcome.seconds.items():
                    phases[name] = phases.get(name, 0.0) + seconds
                started = time.perf_counter()
                yield batch, outcome
                phases["write"] = phases.get("write", 0.0) + time.perf_counter() - started
                self.report.items += len(batch)
                bar.update(len(batch))

    def original_images(
        self, originals: Sequence[sqlite3.Row]
    ) -> Iterator[Image.Image | ImageError]:
        """Each of ``originals`` decoded to RGB, or the :class:`ImageError` that says why it
        cannot be, in order; the next one decodes in a background thread (:func:`prefetched`)
        while the caller codes this one (at most three decoded originals are held at once).
        Close the iterator when stopping early."""
        paths = self.artifact_files([o["artifact_hash"] for o in originals])
        max_pixels = self.config.images.max_pixels

        def decoded(index: int) -> Image.Image | ImageError:
            digest = originals[index]["artifact_hash"]
            if digest not in paths:
                raise StoreError(f"artifact {digest} is not in the store")
            try:
                return decode_image(paths[digest].read_bytes(), max_pixels).rgb
            except ImageError as exc:
                return exc

        return prefetched(decoded, len(originals), depth=1)


def representation_id(original_id: str, method_id: str, label: str, variant: int) -> str:
    return content_key("representation", original_id, method_id, label, variant)


def store_representation(
    ctx: StageContext,
    *,
    original_id: str,
    method_id: str,
    label: str,
    variant: int,
    payload: bytes,
    suffix: str,
    media_type: str,
    rate_bits: int | None,
    meta: dict[str, Any],
) -> str:
    """Write a payload artifact and its representation row (call inside a transaction)."""
    payload_hash = ctx.store.put_artifact(payload, suffix=suffix, media_type=media_type)
    rid = representation_id(original_id, method_id, label, variant)
    ctx.store.upsert(
        "representations",
        {
            "id": rid,
            "original_id": original_id,
            "method_id": method_id,
            "operating_point": label,
            "variant": variant,
            "payload_hash": payload_hash,
            "rate_bits": rate_bits,
            "meta": to_json(ctx.portable(meta)),
            "run_id": ctx.run_id,
            "created_at": utc_now(),
        },
        key=("id",),
    )
    return rid


def store_candidate(
    ctx: StageContext,
    *,
    representation_id: str,
    replicate: int,
    seed: int | None,
    artifact_hash: str,
    meta: dict[str, Any],
) -> None:
    """Write a candidate row (call inside a transaction)."""
    ctx.store.upsert(
        "candidates",
        {
            "id": content_key("candidate", representation_id, replicate),
            "representation_id": representation_id,
            "replicate": replicate,
            "seed": seed,
            "artifact_hash": artifact_hash,
            "meta": to_json(ctx.portable(meta)),
            "run_id": ctx.run_id,
            "created_at": utc_now(),
        },
        key=("id",),
    )


def failure_label(item: str, detail_json: str | None) -> str:
    """The human-readable name a failure row carries in its detail, else its item key."""
    detail = json.loads(detail_json or "{}")
    return str(detail.get("label", item))


__all__ = [
    "STAGES",
    "StageContext",
    "StageReport",
    "failure_label",
    "representation_id",
    "store_candidate",
    "store_representation",
]
