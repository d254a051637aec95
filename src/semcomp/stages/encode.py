"""Stage 2: pixel codecs encode every original at every operating point."""

from __future__ import annotations

from collections import defaultdict

from PIL import Image

from semcomp.codecs import CODECS, ImageCodec, OperatingPoint, OriginalFacts
from semcomp.errors import DiskFullError, ImageError
from semcomp.methods import PixelMethod
from semcomp.stages import StageContext, store_representation


def codec_for(method: PixelMethod) -> ImageCodec:
    codec_class = CODECS.get(method.codec)
    return codec_class(codec_class.Params.model_validate(method.params))


def item_key(original_id: str, method: PixelMethod, label: str) -> str:
    return f"{original_id}|{method.method_id}|{label}"


def run(ctx: StageContext) -> None:
    from semcomp.stages import batch_codecs

    methods = []
    for method in ctx.methods(PixelMethod):
        if batch_codecs.is_batched(method):  # a model: batches through the engine
            batch_codecs.encode(ctx, method)
        else:
            methods.append(method)
    if not methods:
        return
    store = ctx.store
    existing = {
        (r[0], r[1], r[2])
        for r in store.conn.execute(
            "SELECT original_id, method_id, operating_point FROM representations"
        )
    }
    settled = ctx.settled()
    originals = ctx.originals()
    plan: dict[str, list[tuple[PixelMethod, list[OperatingPoint]]]] = defaultdict(list)
    total = 0
    points_of_method = {m.method_id: m.operating_points() for m in methods}
    for original in originals:
        for method in methods:
            all_points = points_of_method[method.method_id]
            points = [
                p
                for p in all_points
                if (original["id"], method.method_id, p.label) not in existing
                and item_key(original["id"], method, p.label) not in settled
            ]
            ctx.report.skipped += len(all_points) - len(points)
            if points:
                plan[original["id"]].append((method, points))
                total += len(points)
    codecs = {m.method_id: codec_for(m) for m in methods}
    by_id = {o["id"]: o for o in originals}
    work = list(plan.items())
    if not work:
        return
    images = ctx.original_images([by_id[original_id] for original_id, _ in work])
    try:
        with ctx.bar(total, "rep") as bar:
            # a transaction per chunk of originals: a killed run redoes at most one chunk
            for start in range(0, len(work), CHUNK):
                with store.transaction():
                    for (original_id, points_of), image in zip(
                        work[start : start + CHUNK], images, strict=False
                    ):
                        _encode(ctx, by_id[original_id], image, points_of, codecs)
                        bar.update(sum(len(points) for _, points in points_of))
    finally:
        images.close()  # stops the decoding thread if the stage stops early


#: originals encoded per transaction
CHUNK = 16


def _encode(
    ctx: StageContext,
    original: dict,
    image: Image.Image | ImageError,
    work: list[tuple[PixelMethod, list[OperatingPoint]]],
    codecs: dict[str, ImageCodec],
) -> None:
    """Code one original at its pending points of each method; write the payloads and rows
    (inside the caller's transaction)."""
    if isinstance(image, ImageError):
        for method, points in work:
            for point in points:
                fail(ctx, original, method, point.label, str(image))
        return
    facts = OriginalFacts(file_bytes=original["file_bytes"], pixels=original["pixels"])
    for method, points in work:
        codec = codecs[method.method_id]
        try:
            results = codec.encode(image, points, facts)
        except (DiskFullError, MemoryError):  # the machine's trouble, not the image's
            raise
        except Exception as exc:  # any codec error settles this image's points
            for point in points:
                reason = f"{codec.name} cannot encode it: {type(exc).__name__}: {exc}"
                fail(ctx, original, method, point.label, reason)
            continue
        for point, result in zip(points, results, strict=True):
            if isinstance(result, Exception):
                detail = getattr(result, "closest", {})
                fail(ctx, original, method, point.label, str(result), detail)
                continue
            store_representation(
                ctx,
                original_id=original["id"],
                method_id=method.method_id,
                label=point.label,
                variant=0,
                payload=result.payload,
                suffix=codec.suffix,
                media_type=codec.media_type,
                rate_bits=result.rate_bits,
                meta=result.meta | {"target": point.kind, "target_value": point.value},
            )
            ctx.clear(item_key(original["id"], method, point.label))
            ctx.report.done += 1


def fail(
    ctx: StageContext,
    original: dict,
    method: PixelMethod,
    label: str,
    reason: str,
    detail: dict | None = None,
) -> None:
    ctx.fail(
        item_key(original["id"], method, label),
        reason,
        retryable=False,
        detail=(detail or {})
        | {"label": f"{original['name']} · {method.name} · {label}", "method_id": method.method_id},
    )
