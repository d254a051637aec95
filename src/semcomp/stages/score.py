"""Stage 7: similarity of every candidate to its original, from cached embeddings."""

from __future__ import annotations

from semcomp.metrics.clip import clip_metrics, cosine
from semcomp.stages import StageContext
from semcomp.store import utc_now


def run(ctx: StageContext) -> None:
    store = ctx.store
    where, ids = ctx.method_filter("r.method_id")
    for embedder_config in ctx.config.similarity.models:
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
                    ctx.report.skipped += 1
                    continue
                value = cosine(original, candidate)
                for metric in metrics:
                    store.upsert(
                        "scores",
                        {
                            "candidate_id": row["id"],
                            "metric": metric.name,
                            "value": metric.value(value),
                            "run_id": ctx.run_id,
                            "created_at": now,
                        },
                        key=("candidate_id", "metric"),
                    )
                ctx.report.done += 1
