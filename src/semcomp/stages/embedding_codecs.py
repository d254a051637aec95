"""Stage 7: embedding codecs (PQVAE-shared) compress each original's CLIP embedding.

Runs after ``embed``, which computed the originals' embeddings under the CLIP
model the checkpoint was trained for. Each original's embedding becomes a
bitstream (its exact bytes are the rate), the stream is decoded, and the
decoded embedding is stored as the candidate: an artifact of float32 bytes
with its embedding row, so the score stage compares it with the original like
any other candidate.
"""

from __future__ import annotations

import numpy as np

from semcomp.methods import EmbeddingMethod
from semcomp.stages import StageContext, store_candidate, store_representation

EMBEDDING_MEDIA_TYPE = "application/x-semcomp-embedding-f32"
STREAM_MEDIA_TYPE = "application/x-semcomp-pqvae"


def run(ctx: StageContext) -> None:
    for method in ctx.methods(EmbeddingMethod):
        compress(ctx, method)


def compress(ctx: StageContext, method: EmbeddingMethod) -> None:
    from semcomp.codecs.pqvae.checkpoint import load_checkpoint
    from semcomp.codecs.pqvae.codec import EmbeddingCodec

    store = ctx.store
    embedder = ctx.config.embedder_for(method)
    done = {
        r[0]
        for r in store.conn.execute(
            "SELECT original_id FROM representations WHERE method_id = ?", (method.method_id,)
        )
    }
    pending = [o for o in ctx.originals() if o["id"] not in done]
    ctx.report.skipped += len(done)
    if not pending or embedder is None:
        return
    vectors = store.embeddings(embedder.embedder_id, [o["artifact_hash"] for o in pending])
    ready = [o for o in pending if o["artifact_hash"] in vectors]
    for original in pending:
        if original["artifact_hash"] not in vectors:
            ctx.fail(
                f"{original['id']}|{method.method_id}",
                f"no {embedder.label} embedding of the original yet (it failed or was not run)",
                detail={"label": original["name"], "method_id": method.method_id},
            )
    if not ready:
        return
    codec = EmbeddingCodec(load_checkpoint(method.checkpoint), method.entropy_coder)
    originals = np.stack([vectors[o["artifact_hash"]] for o in ready])
    batch = codec.encode_batch(originals)
    decoded = codec.decode(batch.streams)  # what the receiver gets from the bytes
    with ctx.bar(len(ready), "emb") as bar, store.transaction():
        for original, stream, ideal, vector in zip(
            ready, batch.streams, batch.ideal_bits, decoded, strict=True
        ):
            label = method.entropy_coder
            representation = store_representation(
                ctx,
                original_id=original["id"],
                method_id=method.method_id,
                label=label,
                variant=0,
                payload=stream,
                suffix=".bin",
                media_type=STREAM_MEDIA_TYPE,
                rate_bits=8 * len(stream),
                meta={
                    "entropy_coder": codec.coder_name,
                    "bpd": 8 * len(stream) / codec.input_dim,
                    "ideal_bits": float(ideal),
                },
            )
            vector = np.ascontiguousarray(vector, dtype=np.float32)
            artifact = store.put_artifact(
                vector.tobytes(), suffix=".f32", media_type=EMBEDDING_MEDIA_TYPE
            )
            store.put_embeddings(embedder.embedder_id, [(artifact, vector)], ctx.run_id)
            store_candidate(
                ctx,
                representation_id=representation,
                replicate=0,
                seed=None,
                artifact_hash=artifact,
                meta={"decoded_embedding": True},
            )
            ctx.clear(f"{original['id']}|{method.method_id}")
            ctx.report.done += 1
            bar.update()
