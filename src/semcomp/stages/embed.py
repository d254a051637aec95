"""Stage 6: CLIP embeddings of every original and every candidate, cached by artifact."""

from __future__ import annotations

from typing import Any

from semcomp.analysis import EMBEDDERS
from semcomp.errors import ImageError
from semcomp.images import decode_image
from semcomp.stages import StageContext
from semcomp.store import to_json, utc_now


def artifacts_to_score(ctx: StageContext) -> list[str]:
    """Artifacts similarity needs: every original and every configured method's candidate."""
    where, ids = ctx.method_filter("r.method_id")
    current = "IN (SELECT original_id FROM sources)"
    rows = ctx.store.conn.execute(
        f"SELECT artifact_hash FROM originals WHERE id {current} UNION "
        "SELECT c.artifact_hash FROM candidates c "
        "JOIN representations r ON r.id = c.representation_id "
        "JOIN artifacts a ON a.hash = c.artifact_hash "
        f"WHERE {where} AND r.original_id {current} AND a.media_type LIKE 'image/%'",
        ids,
    )
    return sorted(r[0] for r in rows)


def run(ctx: StageContext) -> None:
    store, similarity = ctx.store, ctx.config.similarity
    needed = artifacts_to_score(ctx)
    for embedder_config in similarity.models:
        embedder_id = embedder_config.embedder_id
        have = {
            r[0]
            for r in store.conn.execute(
                "SELECT artifact_hash FROM embeddings WHERE embedder_id = ?", (embedder_id,)
            )
        }
        settled = {item.split("|")[0] for item in ctx.settled() if item.endswith(f"|{embedder_id}")}
        pending = [a for a in needed if a not in have and a not in settled]
        ctx.report.skipped += len(needed) - len(pending)
        if not pending:
            continue
        embedder = EMBEDDERS.get(embedder_config.kind)(
            embedder_config, device=similarity.device, batch_size=similarity.batch_size
        )
        ctx.report.models_loaded.append(embedder_config.label)
        try:
            identity = embedder.identity()
            with store.transaction():
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
            embed_pending(ctx, embedder, embedder_id, pending)
        finally:
            embedder.close()


def embed_pending(ctx: StageContext, embedder: Any, embedder_id: str, pending: list[str]) -> None:
    store = ctx.store
    chunk = max(1, ctx.config.similarity.batch_size)
    with ctx.bar(len(pending), "img") as bar:
        for start in range(0, len(pending), chunk):
            hashes, images = [], []
            for digest in pending[start : start + chunk]:
                try:
                    data = store.read_artifact(digest)
                    images.append(decode_image(data, ctx.config.images.max_pixels).rgb)
                    hashes.append(digest)
                except ImageError as exc:
                    ctx.fail(f"{digest}|{embedder_id}", str(exc), retryable=False)
            vectors = embedder.embed(images) if images else []
            with store.transaction():
                store.put_embeddings(embedder_id, zip(hashes, vectors, strict=True), ctx.run_id)
            ctx.report.done += len(hashes)
            bar.update(len(pending[start : start + chunk]))
