"""Stage 1: originals from a folder or manifest (id = SHA-256 of the file)."""

from __future__ import annotations

import os
from typing import Any

from semcomp.errors import ImageError, PixelLimitError
from semcomp.images import (
    SourceImage,
    SourceProblem,
    decode_image,
    read_image_file,
    sha256_hex,
)
from semcomp.stages import StageContext
from semcomp.store import utc_now


def run(ctx: StageContext) -> None:
    store = ctx.store
    known = {
        r["path"]: (r["size"], r["mtime_ns"], r["original_id"])
        for r in store.conn.execute("SELECT path, size, mtime_ns, original_id FROM sources")
    }
    settled = ctx.settled()
    source = ctx.config.images.source
    found = list(ctx.config.images.find_sources())
    if ctx.config.images.dataset is not None:  # the file list is checked afresh
        from semcomp.datasets.originals import problem_prefix

        ctx.clear_prefix(problem_prefix(ctx.config.images.dataset.dataset))
    elif source.is_file():  # the manifest is read afresh: its old row problems are replaced
        ctx.clear_prefix(f"{source}:")
    named = {ctx.config.stored_path(s.path) if s.path else s.item for s in found}
    with ctx.bar(len(found), "img") as bar:
        for source in found:
            bar.update()
            if isinstance(source, SourceProblem):
                item = ctx.config.stored_path(source.path) if source.path else source.item
                with store.transaction():  # a known file that became a FIFO, a broken link, ...
                    store.conn.execute("DELETE FROM sources WHERE path = ?", (item,))
                    ctx.fail(item, source.reason, retryable=False)
                continue
            key = ctx.config.stored_path(source.path)
            try:
                stat = source.path.stat()
            except FileNotFoundError:
                if key in known:
                    mark_gone(ctx, key)
                else:
                    ctx.fail(key, "cannot read: No such file or directory")
                continue
            except OSError as exc:
                ctx.fail(key, f"cannot read: {exc.strerror}")
                continue
            seen = known.get(key)
            unchanged = seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns)
            if unchanged and (seen[2] is not None or key in settled):
                ctx.report.skipped += 1
                continue
            if seen is not None and seen[2] is not None and same_content(source, seen, stat):
                # copied without its times (`cp -r`): the same original, nothing to redo
                with store.transaction():
                    store.conn.execute(
                        "UPDATE sources SET mtime_ns = ? WHERE path = ?", (stat.st_mtime_ns, key)
                    )
                ctx.report.skipped += 1
                continue
            ingest_one(ctx, source, stat)
    if ctx.config.images.source_exists():  # a missing source is one problem, not all gone
        for key in sorted(set(known) - named):
            if not os.path.lexists(ctx.config.stored_file(key)):
                mark_gone(ctx, key)
            elif ctx.config.images.dataset is not None:
                # outside the dataset's subset now (split, per_class or limit changed): out of
                # scope like a removed operating point; its results stay in the store
                with store.transaction():
                    store.conn.execute("DELETE FROM sources WHERE path = ?", (key,))


def mark_gone(ctx: StageContext, key: str) -> None:
    """A source file that was ingested and is no longer there leaves the study's scope.

    Its row in ``sources`` goes, so later stages and ``status`` count it neither done
    nor pending; its original and every result stay in the store (ids are content
    hashes), so putting the file back costs one read and no model work.
    """
    with ctx.store.transaction():
        ctx.store.conn.execute("DELETE FROM sources WHERE path = ?", (key,))
        ctx.fail(
            key,
            "gone: the file was removed or moved after it was ingested; its results stay "
            "in the store and come back if the file does",
            retryable=False,
        )


def same_content(source: SourceImage, seen: tuple, stat: os.stat_result) -> bool:
    """Whether a file whose time changed still holds the original it was ingested as."""
    if seen[0] != stat.st_size:
        return False
    try:
        return sha256_hex(source.path.read_bytes()) == seen[2]
    except OSError:
        return False


def ingest_one(ctx: StageContext, source: SourceImage, stat: os.stat_result) -> None:
    store, images = ctx.store, ctx.config.images
    key = ctx.config.stored_path(source.path)
    source_row: dict[str, Any] = {
        "path": key,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "category": source.category,
        "name": source.name,
        "original_id": None,
    }
    if images.categories is not None and source.category not in images.categories:
        ctx.fail(key, f"category {source.category!r} is not one of {images.categories}")
        return
    try:
        data = read_image_file(source.path)
        decoded = decode_image(data, images.max_pixels)
    except (OSError, ImageError) as exc:
        with store.transaction():
            store.upsert("sources", source_row, key=("path",))
            # over the pixel limit: settled only until the limit is raised
            ctx.fail(key, str(exc), retryable=isinstance(exc, PixelLimitError))
        return
    with store.transaction():
        digest = store.put_artifact(
            data, suffix=source.path.suffix.lower(), media_type=f"image/{decoded.format.lower()}"
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
                "run_id": ctx.run_id,
                "created_at": utc_now(),
            },
            key=("id",),
        )
        store.upsert("sources", source_row | {"original_id": digest}, key=("path",))
        ctx.clear(key)
    ctx.report.done += 1
