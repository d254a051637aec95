"""The encode and decode stages' batch path, for pixel codecs that run a model (``compressai``).

Per-image codecs (JPEG, WebP) encode in the encode stage's own loop; a codec
with ``batched = True`` is a batch plugin instead: built once per stage by a
:class:`~semcomp.engines.PluginFactory` (in this process or a Ray actor), fed
batches of one quality at a time (so each quality's network loads once), its
results written one transaction per batch. Decoding stores the decoded pixels
as a PNG candidate: the payload is a bitstream, not an image file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcomp.codecs import CODECS, OperatingPoint
from semcomp.engines import BatchTask, PluginFactory
from semcomp.errors import ImageError
from semcomp.images import DEFAULT_MAX_PIXELS, decode_image
from semcomp.methods import PixelMethod
from semcomp.stages import StageContext, store_candidate, store_representation


@dataclass(frozen=True)
class Job:
    """One image (or one payload) at one quality."""

    #: the stage's item key (failures are recorded under it)
    key: str
    #: "original · method · operating point", for failure lists
    label: str
    path: str
    quality: int
    original_id: str = ""
    point: OperatingPoint | None = None


def is_batched(method: PixelMethod) -> bool:
    return bool(getattr(CODECS.get(method.codec), "batched", False))


def codec_factory(method: PixelMethod) -> PluginFactory:
    codec_class = CODECS.get(method.codec)
    params = codec_class.Params.model_validate(method.params)
    batch_size = method.batch_size or codec_class.default_batch_size
    model = method.params.get("model")
    return PluginFactory(
        "codec",
        method.codec,
        params,
        {"device": method.device, "batch_size": batch_size},
        label=f"{method.codec} {model}" if model else method.codec,
    )


def quality_batches(jobs: list[Job], chunk: int) -> list[list[Job]]:
    """Batches of one quality each, qualities in order, so each network loads once."""
    batches = []
    for quality in sorted({job.quality for job in jobs}):
        same = [job for job in jobs if job.quality == quality]
        batches += [same[start : start + chunk] for start in range(0, len(same), chunk)]
    return batches


@dataclass(frozen=True)
class EncodeImages(BatchTask):
    """Original files → bitstreams at the batch's quality (a problem per unreadable file)."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    def load(self, batch: Sequence[Job], context: Any) -> tuple[int, list[Any]]:
        loaded: list[Any] = []
        for job in batch:
            try:
                loaded.append(decode_image(Path(job.path).read_bytes(), self.max_pixels).rgb)
            except (ImageError, OSError) as exc:
                loaded.append(exc)
        return batch[0].quality, loaded

    def infer(self, model: Any, loaded: tuple[int, list[Any]], context: Any) -> list[Any]:
        quality, items = loaded
        return model_results(items, lambda good: model.encode_batch(good, quality))


@dataclass(frozen=True)
class DecodePayloads(BatchTask):
    """Payload files → decoded images as PNG bytes (a problem per unreadable file)."""

    def load(self, batch: Sequence[Job], context: Any) -> tuple[int, list[Any]]:
        loaded: list[Any] = []
        for job in batch:
            try:
                loaded.append(Path(job.path).read_bytes())
            except OSError as exc:
                loaded.append(exc)
        return batch[0].quality, loaded

    def infer(self, model: Any, loaded: tuple[int, list[Any]], context: Any) -> list[Any]:
        from semcomp.codecs.learned import png_bytes

        quality, items = loaded
        results = model_results(items, lambda good: model.decode_batch(good, quality))
        return [r if isinstance(r, Exception) else png_bytes(r) for r in results]


def model_results(loaded: list[Any], run: Callable[[list[Any]], list[Any]]) -> list[Any]:
    """``run`` over the loaded items that are not problems; problems keep their place."""
    good = [item for item in loaded if not isinstance(item, Exception)]
    results = iter(run(good) if good else [])
    return [item if isinstance(item, Exception) else next(results) for item in loaded]


def encode(ctx: StageContext, method: PixelMethod) -> None:
    """Encode every original at every pending quality of ``method`` through the engine."""
    from semcomp.stages.encode import item_key

    store = ctx.store
    existing = {
        (r[0], r[1])
        for r in store.conn.execute(
            "SELECT original_id, operating_point FROM representations WHERE method_id = ?",
            (method.method_id,),
        )
    }
    settled = ctx.settled()
    originals = sorted(ctx.originals(), key=lambda o: (o["pixels"], o["id"]))
    paths = ctx.artifact_files([o["artifact_hash"] for o in originals])
    jobs = []
    for original in originals:
        for point in method.operating_points():
            key = item_key(original["id"], method, point.label)
            if (original["id"], point.label) in existing or key in settled:
                ctx.report.skipped += 1
                continue
            jobs.append(
                Job(
                    key=key,
                    label=f"{original['name']} · {method.name} · {point.label}",
                    path=str(paths[original["artifact_hash"]]),
                    quality=int(point.value),
                    original_id=original["id"],
                    point=point,
                )
            )
    if not jobs:
        return
    factory = codec_factory(method)
    codec_class = CODECS.get(method.codec)
    task = EncodeImages(ctx.config.images.max_pixels)
    batches = quality_batches(jobs, factory.chunk())
    for batch, outcome in ctx.run_batches(factory, task, batches, "rep"):
        with store.transaction():
            for job, result in zip(batch, outcome.results, strict=True):
                if isinstance(result, Exception):  # a read error may pass; the rest is settled
                    detail = {"label": job.label, "method_id": method.method_id}
                    retryable = isinstance(result, OSError)
                    ctx.fail(job.key, str(result), retryable=retryable, detail=detail)
                    continue
                assert job.point is not None
                store_representation(
                    ctx,
                    original_id=job.original_id,
                    method_id=method.method_id,
                    label=job.point.label,
                    variant=0,
                    payload=result.payload,
                    suffix=codec_class.suffix,
                    media_type=codec_class.media_type,
                    rate_bits=result.rate_bits,
                    meta=result.meta | {"target": job.point.kind, "target_value": job.point.value},
                )
                ctx.clear(job.key)
                ctx.report.done += 1


def decode(ctx: StageContext, method: PixelMethod) -> None:
    """Decode every pending payload of ``method`` into a PNG candidate through the engine."""
    store = ctx.store
    rows = store.conn.execute(
        "SELECT r.id, r.payload_hash, r.operating_point, o.name FROM representations r "
        "JOIN originals o ON o.id = r.original_id "
        "LEFT JOIN candidates c ON c.representation_id = r.id AND c.replicate = 0 "
        "WHERE c.id IS NULL AND r.method_id = ? ORDER BY r.id",
        (method.method_id,),
    ).fetchall()
    settled = ctx.settled()
    qualities = {p.label: int(p.value) for p in method.operating_points()}
    pending = [r for r in rows if r["id"] not in settled and r["operating_point"] in qualities]
    ctx.report.skipped += len(rows) - len(pending)
    if not pending:
        return
    paths = ctx.artifact_files([r["payload_hash"] for r in pending])
    jobs = [
        Job(
            key=r["id"],
            label=f"{r['name']} · {method.name} · {r['operating_point']}",
            path=str(paths[r["payload_hash"]]),
            quality=qualities[r["operating_point"]],
        )
        for r in pending
    ]
    factory = codec_factory(method)
    batches = quality_batches(jobs, factory.chunk())
    for batch, outcome in ctx.run_batches(factory, DecodePayloads(), batches, "img"):
        with store.transaction():
            for job, result in zip(batch, outcome.results, strict=True):
                detail = {"label": job.label, "method_id": method.method_id}
                if isinstance(result, Exception):
                    retryable = isinstance(result, OSError)
                    reason = str(result) if retryable else f"cannot decode: {result}"
                    ctx.fail(job.key, reason, retryable=retryable, detail=detail)
                    continue
                digest = store.put_artifact(result, suffix=".png", media_type="image/png")
                store_candidate(
                    ctx,
                    representation_id=job.key,
                    replicate=0,
                    seed=None,
                    artifact_hash=digest,
                    meta={"decoder": method.codec, "model": method.params.get("model")},
                )
                ctx.clear(job.key)
                ctx.report.done += 1
