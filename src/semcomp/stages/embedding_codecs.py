"""Stage 7: embedding codecs (PQVAE-shared, or a plugin) compress each original's CLIP
embedding.

Runs after ``embed``, which computed the originals' embeddings under the CLIP
model the codec was made for. Each original's embedding becomes a payload (its
exact bytes are the rate), the payload is decoded, and the
decoded embedding is stored as the candidate: an artifact of float32 bytes
with its embedding row, so the score stage compares it with the original like
any other candidate.
"""

from __future__ import annotations

import numpy as np

from semcomp.methods import EmbeddingMethod
from semcomp.stages import StageContext, store_candidate, store_representation

EMBEDDING_MEDIA_TYPE = "application/x-semcomp-embedding-f32"


def run(ctx: StageContext) -> None:
    for method in ctx.methods(EmbeddingMethod):
        compress(ctx, method)


def compress(ctx: StageContext, method: EmbeddingMethod) -> None:
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
    codec = method.codec_class(method.validated)
    originals = np.stack([vectors[o["artifact_hash"]] for o in ready])  # L2-normalised
    try:
        encoded = codec.encode(originals)
        decoded = codec.decode([e.payload for e in encoded])  # what the receiver gets
        if len(encoded) != len(ready) or np.shape(decoded) != originals.shape:
            raise ValueError(
                f"{len(ready)} embeddings of shape {originals.shape} came back as "
                f"{len(encoded)} payloads decoding to shape {np.shape(decoded)}"
            )
    except Exception as exc:  # a codec's error is every item's failure, with its reason
        for original in ready:
            ctx.fail(
                f"{original['id']}|{method.method_id}",
                f"embedding codec {method.codec}: {type(exc).__name__}: {exc}",
                detail={"label": original["name"], "method_id": method.method_id},
            )
        return
    label = method.operating_point_labels()[0]
    dim = originals.shape[1]
    with ctx.bar(len(ready), "emb") as bar, store.transaction():
        for original, sent, vector in zip(ready, encoded, decoded, strict=True):
            representation = store_representation(
                ctx,
                original_id=original["id"],
                method_id=method.method_id,
                label=label,
                variant=0,
                payload=sent.payload,
                suffix=".bin",
                media_type=codec.media_type,
                rate_bits=8 * len(sent.payload),
                meta={"bpd": 8 * len(sent.payload) / dim} | sent.meta,
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
