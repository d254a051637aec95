"""Stage 4: pixel payloads decode into candidate images.

The payload of a pixel codec is itself the decodable image file, so the
candidate artifact *is* the payload: decoding here checks it, and storing a PNG
of the same pixels would only double the disk use. Codecs that run a model
(``compressai``) send a bitstream instead; their decoded pixels are stored as a
PNG candidate (see :mod:`semcomp.stages.batch_codecs`).
"""

from __future__ import annotations

from sqlite3 import Row

from semcomp.engines import prefetched
from semcomp.methods import PixelMethod
from semcomp.stages import StageContext, batch_codecs, store_candidate
from semcomp.stages.encode import codec_for


def run(ctx: StageContext) -> None:
    methods = {}
    for method in ctx.methods(PixelMethod):
        if batch_codecs.is_batched(method):  # a bitstream: decoded pixels become a PNG
            batch_codecs.decode(ctx, method)
        else:
            methods[method.method_id] = method
    if not methods:
        return
    store = ctx.store
    ids = list(methods)
    pending = store.conn.execute(  # the payload's file looked up only when not decoded
        "SELECT r.id, r.method_id, r.payload_hash, a.relpath FROM representations r "
        "LEFT JOIN candidates c ON c.representation_id = r.id AND c.replicate = 0 "
        "CROSS JOIN artifacts a ON a.hash = r.payload_hash "
        f"WHERE c.id IS NULL AND r.method_id IN ({', '.join('?' for _ in ids)})",
        ids,
    ).fetchall()
    settled = ctx.settled()
    todo = [row for row in pending if row["id"] not in settled]
    ctx.report.skipped += len(pending) - len(todo)
    codecs = {method_id: codec_for(method) for method_id, method in methods.items()}
    chunks = [todo[start : start + CHUNK] for start in range(0, len(todo), CHUNK)]

    def problems(index: int) -> list[Exception | None]:
        """Decode the payloads of ``chunks[index]`` (in the prefetch thread while this one
        writes the chunk before): None for each that decodes, else why it does not."""
        found: list[Exception | None] = []
        for row in chunks[index]:
            try:
                codecs[row["method_id"]].decode(store.artifact_path(row["relpath"]).read_bytes())
            except (OSError, ValueError, SyntaxError) as exc:
                found.append(exc)
            else:
                found.append(None)
        return found

    checked = prefetched(problems, len(chunks))
    try:
        with ctx.bar(len(todo), "img") as bar:
            # a transaction per chunk, not per image: a killed run redoes at most one chunk
            for chunk, chunk_problems in zip(chunks, checked, strict=True):
                with store.transaction():
                    for row, problem in zip(chunk, chunk_problems, strict=True):
                        decoder = codecs[row["method_id"]].name
                        _record(ctx, row, problem, decoder)
                        bar.update()
    finally:
        checked.close()  # stops the decoding thread if the stage stops early


#: candidates written per transaction
CHUNK = 64


def _record(ctx: StageContext, row: Row, problem: Exception | None, decoder: str) -> None:
    """The candidate of a payload that decoded, or the failure of one that did not."""
    if problem is not None:
        ctx.fail(
            row["id"],
            f"cannot decode: {problem}",
            retryable=False,
            detail={"method_id": row["method_id"]},
        )
        return
    store_candidate(
        ctx,
        representation_id=row["id"],
        replicate=0,
        seed=None,
        artifact_hash=row["payload_hash"],
        meta={"decoder": decoder},
    )
    ctx.clear(row["id"])
    ctx.report.done += 1
