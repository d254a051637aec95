"""Stage 4: pixel payloads decode into candidate images.

The payload of a pixel codec is itself the decodable image file, so the
candidate artifact *is* the payload: decoding here checks it, and storing a PNG
of the same pixels would only double the disk use. Codecs that run a model
(``compressai``) send a bitstream instead; their decoded pixels are stored as a
PNG candidate (see :mod:`semcomp.stages.batch_codecs`).
"""

from __future__ import annotations

from sqlite3 import Row

from semcomp.codecs import ImageCodec
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
    pending = store.conn.execute(
        "SELECT r.id, r.method_id, r.payload_hash, a.relpath FROM representations r "
        "JOIN artifacts a ON a.hash = r.payload_hash "
        "LEFT JOIN candidates c ON c.representation_id = r.id AND c.replicate = 0 "
        f"WHERE c.id IS NULL AND r.method_id IN ({', '.join('?' for _ in ids)})",
        ids,
    ).fetchall()
    settled = ctx.settled()
    codecs = {method_id: codec_for(method) for method_id, method in methods.items()}
    with ctx.bar(len(pending), "img") as bar:
        # a transaction per chunk, not per image: a killed run redoes at most one chunk
        for start in range(0, len(pending), CHUNK):
            with store.transaction():
                for row in pending[start : start + CHUNK]:
                    _decode(ctx, row, codecs, settled)
                    bar.update()


#: candidates written per transaction
CHUNK = 64


def _decode(ctx: StageContext, row: Row, codecs: dict[str, ImageCodec], settled: set[str]) -> None:
    if row["id"] in settled:
        ctx.report.skipped += 1
        return
    codec = codecs[row["method_id"]]
    try:
        codec.decode(ctx.store.artifact_path(row["relpath"]).read_bytes())
    except (OSError, ValueError, SyntaxError) as exc:
        ctx.fail(
            row["id"],
            f"cannot decode: {exc}",
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
        meta={"decoder": codec.name},
    )
    ctx.clear(row["id"])
    ctx.report.done += 1
