"""The set-metric step of the score stage: one value per method × operating point (FID, KID).

Two parts, both resumable:

1. per-image features of every original and every image candidate, with the
   metric's feature extractor through the engine (batched, local or Ray), cached
   per artifact in the store's ``embeddings`` table under the extractor's
   ``embedders`` row (so FID and KID on one Inception share them). Embedding
   candidates (decoded CLIP vectors) have no pixels and are left out;
2. for each method and operating point, the metric over its candidates against the
   originals they came from, from the cache alone, written to ``set_scores`` with
   ``n`` (how many originals) and ``originals_key`` (a content key of their sorted
   ids): a value is recomputed only when that set changes.

Features that fail are recorded per artifact (``<artifact hash>|<features id>``), a
value that cannot be computed per score, method and operating point
(``<score key>|<method id>|<operating point>``); the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from semcomp.engines import PluginFactory
from semcomp.metrics import METRICS
from semcomp.metrics.base import SetMetric
from semcomp.stages import StageContext
from semcomp.stages.embed import (
    EmbedImages,
    LoadedImages,
    artifacts_to_score,
    embed_pending,
    not_embedded,
    register_embedder,
)
from semcomp.store import content_key, to_json, utc_now


@dataclass(frozen=True)
class ExtractFeatures(EmbedImages):
    """Image files → a set metric's per-image features (one float32 row or an exception per
    file); reads and decodes like :class:`EmbedImages`, the metric preprocesses."""

    def context(self, model: Any) -> Any:
        return None

    def infer(self, model: Any, loaded: LoadedImages, context: Any) -> list[Any]:
        rows = iter(model.features(loaded.images) if loaded.images else [])
        return [next(rows) if problem is None else problem for problem in loaded.problems]


def run_set_metric(ctx: StageContext, metric_config: Any) -> None:
    """Features, then one value per method × operating point, for one ``[[metrics]]`` entry
    (``.metric``, ``.validated`` (its Params), ``.device``, ``.batch_size``) of a set metric."""
    metric_cls = METRICS.get(metric_config.metric)
    if not issubclass(metric_cls, SetMetric):
        raise TypeError(f"metric {metric_config.metric!r} is not a set metric")
    params = metric_config.validated
    features_id = metric_cls.features_id(params)
    needed = artifacts_to_score(ctx)
    if not len(needed):
        return
    pending = not_embedded(ctx, needed, features_id)
    if pending:
        batch_size = metric_config.batch_size or metric_cls.default_batch_size
        factory = PluginFactory(
            "metric",
            metric_config.metric,
            params,
            {"device": metric_config.device, "batch_size": batch_size},
            label=metric_cls.scores(params)[0].display,
        )
        embed_pending(
            ctx,
            factory,
            features_id,
            pending,
            task=ExtractFeatures(ctx.config.images.max_pixels),
            chunk=factory.chunk(),
            identity=metric_cls.feature_identity(params),
        )
    write_set_scores(ctx, metric_cls, params, features_id)


def write_set_scores(
    ctx: StageContext, metric_cls: type[SetMetric], params: Any, features_id: str
) -> None:
    """Each method × operating point's values from the cached features (no model)."""
    store = ctx.store
    specs = metric_cls.scores(params)
    feature_identity = metric_cls.feature_identity(params)
    identity = {
        **metric_cls.identity_of(params),
        "random_weights": feature_identity["random_weights"],
    }
    with store.transaction():
        register_embedder(ctx, features_id, feature_identity)
        for spec in specs:  # values of another identity (other parameters) are recomputed
            stored = store.conn.execute(
                "SELECT identity FROM metrics WHERE name = ?", (spec.key,)
            ).fetchone()
            if stored is not None and stored[0] != to_json(ctx.portable(identity)):
                store.conn.execute("DELETE FROM set_scores WHERE metric = ?", (spec.key,))
        store.put_metrics(
            specs,
            kind="set",
            formulas=metric_cls.name,
            identity_json=to_json(ctx.portable(identity)),
            embedder_id=features_id,
        )
    where, ids = ctx.method_filter("r.method_id")
    rows = store.conn.execute(
        "SELECT r.method_id, r.operating_point, r.original_id, "
        "o.artifact_hash AS original_hash, c.artifact_hash AS candidate_hash "
        "FROM candidates c JOIN representations r ON r.id = c.representation_id "
        "JOIN originals o ON o.id = r.original_id "
        "JOIN artifacts a ON a.hash = c.artifact_hash "
        f"WHERE {where} AND r.original_id IN (SELECT original_id FROM sources) "
        "AND a.media_type LIKE 'image/%' "
        "ORDER BY r.method_id, r.operating_point, r.original_id, c.replicate, r.variant",
        ids,
    ).fetchall()
    vectors = store.embeddings(
        features_id, [r["original_hash"] for r in rows] + [r["candidate_hash"] for r in rows]
    )
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        if row["original_hash"] in vectors and row["candidate_hash"] in vectors:
            groups.setdefault((row["method_id"], row["operating_point"]), []).append(row)
    names = {m.method_id: m.name for m in ctx.config.methods}
    for (method_id, point), members in groups.items():
        original_ids = sorted({r["original_id"] for r in members})
        originals_key = content_key("originals", original_ids)
        current = {
            r["metric"]
            for r in store.conn.execute(
                "SELECT metric FROM set_scores WHERE method_id = ? AND operating_point = ? "
                "AND originals_key = ?",
                (method_id, point, originals_key),
            )
        }
        if all(spec.key in current for spec in specs):
            ctx.report.skipped += 1
            continue
        hashes = {r["original_id"]: r["original_hash"] for r in members}
        originals = np.stack([vectors[hashes[i]] for i in original_ids])
        candidates = np.stack([vectors[r["candidate_hash"]] for r in members])
        row_of = {original_id: i for i, original_id in enumerate(original_ids)}
        origin = np.asarray([row_of[r["original_id"]] for r in members])
        label = f"{names.get(method_id, method_id)} at {point}"
        try:
            if len(original_ids) < metric_cls.min_images:
                raise ValueError(
                    f"{len(original_ids)} original(s) with features; it needs at least "
                    f"{metric_cls.min_images}"
                )
            values = metric_cls.compare_sets(
                params, originals, candidates, seed=ctx.config.seed, origin=origin
            )
        except (ValueError, np.linalg.LinAlgError) as exc:
            with store.transaction():
                for spec in specs:  # a value over another set of originals is stale
                    store.conn.execute(
                        "DELETE FROM set_scores WHERE metric = ? AND method_id = ? "
                        "AND operating_point = ?",
                        (spec.key, method_id, point),
                    )
                    ctx.fail(
                        f"{spec.key}|{method_id}|{point}",
                        f"{spec.display} of {label}: {exc}",
                        detail={"label": f"{spec.display}: {label}"},
                    )
            continue
        now = utc_now()
        with store.transaction():
            for spec in specs:
                value, low, high = values[spec.key]
                store.upsert(
                    "set_scores",
                    {
                        "metric": spec.key,
                        "method_id": method_id,
                        "operating_point": point,
                        "originals_key": originals_key,
                        "n": len(original_ids),
                        "value": value,
                        "ci_low": low,
                        "ci_high": high,
                        "run_id": ctx.run_id,
                        "created_at": now,
                    },
                    key=("metric", "method_id", "operating_point"),
                )
                ctx.clear(f"{spec.key}|{method_id}|{point}")
        ctx.report.done += 1
