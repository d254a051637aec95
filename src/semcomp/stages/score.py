"""Stage 8: every configured metric scores every candidate against its original.

Each ``[[metrics]]`` entry (and each ``[[similarity.models]]`` CLIP model) is one step,
run by its kind (:mod:`semcomp.metrics.base`):

- ``embedding``: cosine of the vectors the embed stage cached (no model is loaded here);
- ``pairwise``: (original, candidate) images through the metric, in batches on the engine;
- ``task``: each candidate classified by the metric, its original's class the truth
  (a manifest's ``label``, else the category); an embedding codec's decoded embeddings
  are classified directly when they are of the metric's CLIP model;
- ``set``: one value per method × operating point (:mod:`semcomp.stages.set_scores`).

A step registers its scores in the ``metrics`` table (display name, direction, range,
identity); scores written under another identity (other parameters, another class list)
are stale and are computed again. Pending work is the candidates without every score of
the step, less the settled failures, so a killed run resumes without computing a score
twice. Decoded embeddings are not images: image metrics leave them out (no failure).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.engines import BatchTask, phase
from semcomp.errors import ConfigError, ImageError
from semcomp.images import (
    DEFAULT_MAX_PIXELS,
    UNCATEGORISED,
    SourceImage,
    decode_image,
)
from semcomp.metrics.clip import clip_metrics, cosine
from semcomp.metrics.embedder import on_preprocessed
from semcomp.stages import StageContext
from semcomp.stages.embed import GuardedPreprocess, metric_factory, settled
from semcomp.stages.embedding_codecs import EMBEDDING_MEDIA_TYPE
from semcomp.stages.set_scores import run_set_metric
from semcomp.store import to_json, utc_now


def run(ctx: StageContext) -> None:
    metrics = ctx.config.metric_entries
    for metric in metrics:
        if metric.kind == "embedding":
            score_embeddings(ctx, metric)
        elif metric.kind == "pairwise":
            score_pairs(ctx, metric)
        elif metric.kind == "task":
            score_task(ctx, metric)
        elif metric.kind == "set":
            run_set_metric(ctx, metric)
        else:
            raise ConfigError(f"metric {metric.label!r} has an unknown kind {metric.kind!r}")


# ---- the metrics table ------------------------------------------------------------------


def register_metric(
    ctx: StageContext,
    metric: Any,
    specs: Sequence[Any],
    identity: dict[str, Any],
    *,
    embedder_id: str | None = None,
) -> None:
    """Upsert each score's row of the ``metrics`` table (kind, display, direction, range,
    identity). Scores written under another recorded identity are deleted first (stale);
    rows without an identity (stores made before metrics had one) are adopted."""
    store = ctx.store
    identity_json = to_json(ctx.portable(identity))
    keys = [spec.key for spec in specs]
    recorded = {
        row["name"]: row["identity"]
        for row in store.conn.execute(
            f"SELECT name, identity FROM metrics WHERE name IN ({', '.join('?' for _ in keys)})",
            keys,
        )
    }
    stale = [k for k in keys if recorded.get(k) is not None and recorded[k] != identity_json]
    if (
        embedder_id is not None
        and not store.conn.execute(
            "SELECT 1 FROM embedders WHERE id = ?", (embedder_id,)
        ).fetchone()
    ):
        embedder_id = None  # nothing embedded yet: a later run fills it in
    formulas = (
        {m.name: m.formula for m in clip_metrics(metric.validated)}
        if metric.metric == "clip"
        else {}
    )
    with store.transaction():
        if stale:
            store.conn.execute(
                f"DELETE FROM scores WHERE metric IN ({', '.join('?' for _ in stale)})", stale
            )
        store.put_metrics(
            specs,
            kind=metric.kind,
            formulas={spec.key: formulas.get(spec.key, metric.metric) for spec in specs},
            identity_json=identity_json,
            embedder_id=embedder_id,
        )


def write_scores(ctx: StageContext, candidate_id: str, values: dict[str, float]) -> None:
    """One candidate's values (call inside a transaction)."""
    write_score_rows(ctx, ((candidate_id, key, value) for key, value in values.items()))


def write_score_rows(ctx: StageContext, rows: Iterable[tuple[str, str, float]]) -> None:
    """(candidate, score key, value) rows, in one statement (call inside a transaction)."""
    now, run_id = utc_now(), ctx.run_id
    ctx.store.upsert_scores(
        (candidate, key, float(value), run_id, now) for candidate, key, value in rows
    )


def pending_candidates(ctx: StageContext, keys: Sequence[str]) -> list[sqlite3.Row]:
    """The configured methods' candidates without every one of ``keys``, with what a step
    needs to know of them (artifact, media type, original, method)."""
    where, ids = ctx.method_filter("r.method_id")
    marks = ", ".join("?" for _ in keys)
    return ctx.store.conn.execute(
        "SELECT c.id, c.artifact_hash, a.media_type, r.method_id, r.operating_point, "
        "o.id AS original_id, o.artifact_hash AS original_hash, o.name AS original_name "
        "FROM candidates c JOIN representations r ON r.id = c.representation_id "
        "JOIN originals o ON o.id = r.original_id JOIN artifacts a ON a.hash = c.artifact_hash "
        f"WHERE {where} AND (SELECT COUNT(*) FROM scores s WHERE s.candidate_id = c.id "
        f"AND s.metric IN ({marks})) < ? ORDER BY c.id",
        [*ids, *keys, len(keys)],
    ).fetchall()


def is_image(row: sqlite3.Row) -> bool:
    return str(row["media_type"]).startswith("image/")


def failure_item(candidate_id: str, metric: Any) -> str:
    return f"{candidate_id}|{metric.label}"


def failure_detail(ctx: StageContext, row: sqlite3.Row, metric: Any) -> dict[str, Any]:
    names = {m.method_id: m.name for m in ctx.config.methods}
    method = names.get(row["method_id"], row["method_id"])
    return {
        "label": f"{row['original_name']} / {method} {row['operating_point']} ({metric.label})",
        "method_id": row["method_id"],
        "metric": metric.label,
    }


def record_outcome(
    ctx: StageContext, metric: Any, row: sqlite3.Row, result: Any, keys: dict[str, str]
) -> bool:
    """Write one item's values (its class's keys mapped to the entry's) or its failure
    (call inside a transaction); whether it was scored."""
    item = failure_item(row["id"], metric)
    if isinstance(result, Exception):
        detail = failure_detail(ctx, row, metric)
        ctx.fail(
            item, str(result) or type(result).__name__, retryable=not settled(result), detail=detail
        )
        return False
    ctx.clear(item)
    write_scores(ctx, row["id"], {keys[key]: value for key, value in result.items()})
    return True


def not_settled(ctx: StageContext, metric: Any, rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
    done = ctx.settled()
    kept = [row for row in rows if failure_item(row["id"], metric) not in done]
    ctx.report.skipped += len(rows) - len(kept)
    return kept


def key_map(metric: Any, params: Any) -> dict[str, str]:
    """The metric class's score keys → the entry's (a ``name`` relabels them)."""
    plain = metric.metric_class.scores(params)
    return {a.key: b.key for a, b in zip(plain, metric.scores(params), strict=True)}


# ---- embedding metrics: cosine of cached vectors -------------------------------------------


def score_embeddings(ctx: StageContext, metric: Any) -> None:
    store, params = ctx.store, metric.validated
    specs = metric.scores()
    keys = key_map(metric, params)
    register_metric(ctx, metric, specs, metric.identity(), embedder_id=metric.embedder_id)
    pending = pending_candidates(ctx, [spec.key for spec in specs])
    if not pending:
        return
    vectors = store.embeddings(
        metric.embedder_id,
        [r["artifact_hash"] for r in pending] + [r["original_hash"] for r in pending],
    )
    scored = [r for r in pending if r["original_hash"] in vectors and r["artifact_hash"] in vectors]
    ctx.report.skipped += len(pending) - len(scored)  # the embed stage recorded why
    values = metric.metric_class.values
    with store.transaction():  # every candidate's values in one statement
        write_score_rows(
            ctx,
            (
                (row["id"], keys[key], value)
                for row in scored
                for key, value in values(
                    params, cosine(vectors[row["original_hash"]], vectors[row["artifact_hash"]])
                ).items()
            ),
        )
    ctx.report.done += len(scored)


# ---- pairwise metrics: (original, candidate) images ----------------------------------------


@dataclass
class LoadedPairs:
    """One batch's decoded pairs (RGB images) and, per item, its problem or None; with
    ``prepared``, the readable pairs already turned into the metric's model input."""

    originals: list[Any]
    candidates: list[Any]
    problems: list[Exception | None]
    prepared: Any = None


@dataclass(frozen=True)
class ComparePairs(BatchTask):
    """(original file, candidate file) → the metric's values, or an exception, per pair.

    A file that does not decode is an :class:`ImageError` (settled); one that cannot be
    read, its ``OSError`` (retried). A metric with a model-free ``prepare_pairs`` (the
    learned ones: tensors grouped by shape) has it run while the batch loads, ahead of
    the model, and scores the prepared pairs with ``compare_prepared``."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    def context(self, model: Any) -> Any:
        return getattr(model, "prepare_pairs", None)

    def load(self, batch: Sequence[tuple[Path, Path]], context: Any) -> LoadedPairs:
        loaded = LoadedPairs([], [], [])
        for original, candidate in batch:
            try:
                images = [
                    decode_image(Path(path).read_bytes(), self.max_pixels).rgb
                    for path in (original, candidate)
                ]
            except (ImageError, OSError) as exc:
                loaded.problems.append(exc)
                continue
            loaded.originals.append(images[0])
            loaded.candidates.append(images[1])
            loaded.problems.append(None)
        if context is not None and loaded.originals:
            loaded.prepared = context(loaded.originals, loaded.candidates)
            loaded.originals, loaded.candidates = [], []  # the model needs only the tensors
        return loaded

    def infer(self, model: Any, loaded: LoadedPairs, context: Any) -> list[Any]:
        if loaded.prepared is not None:
            values = iter(model.compare_prepared(loaded.prepared))
        else:
            values = iter(
                model.compare(loaded.originals, loaded.candidates) if loaded.originals else []
            )
        return [next(values) if problem is None else problem for problem in loaded.problems]


def score_pairs(ctx: StageContext, metric: Any) -> None:
    params = metric.validated
    specs = metric.scores()
    register_metric(ctx, metric, specs, metric.identity())
    rows = pending_candidates(ctx, [spec.key for spec in specs])
    images = [row for row in rows if is_image(row)]
    ctx.report.skipped += len(rows) - len(images)  # decoded embeddings: not images
    run_items(ctx, metric, params, not_settled(ctx, metric, images), pair_items, ComparePairs)


def pair_items(ctx: StageContext, rows: list[sqlite3.Row]) -> list[tuple[Path, Path]]:
    files = ctx.artifact_files([h for r in rows for h in (r["original_hash"], r["artifact_hash"])])
    return [(files[r["original_hash"]], files[r["artifact_hash"]]) for r in rows]


def run_items(
    ctx: StageContext,
    metric: Any,
    params: Any,
    rows: list[sqlite3.Row],
    items: Any,
    task_class: type,
) -> None:
    """Run ``rows`` through the metric in batches on the engine and write each batch."""
    if not rows:
        return
    factory = metric_factory(metric, params)
    chunk = factory.chunk()
    row_batches = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
    batches = [items(ctx, batch) for batch in row_batches]
    keys = key_map(metric, params)
    task = task_class(ctx.config.images.max_pixels)
    for _, outcome in ctx.run_batches(factory, task, batches, "img"):
        with ctx.store.transaction():
            for row, result in zip(row_batches[outcome.index], outcome.results, strict=True):
                ctx.report.done += record_outcome(ctx, metric, row, result, keys)


# ---- task metrics: a prediction on each candidate ------------------------------------------


def original_classes(ctx: StageContext) -> dict[str, str | None]:
    """Each original's class: its manifest ``label``, else its category (None when it has
    neither: a folder image outside category folders, a manifest row without both)."""
    store, images = ctx.store, ctx.config.images
    labels: dict[str, str] = {}
    if images.dataset is not None or images.source.is_file():
        for found in images.find_sources():
            if isinstance(found, SourceImage) and found.label:
                labels[ctx.config.stored_path(found.path)] = found.label
    by_original = {
        r["original_id"]: labels[r["path"]]
        for r in store.conn.execute("SELECT path, original_id FROM sources")
        if r["original_id"] is not None and r["path"] in labels
    }
    return {
        r["id"]: by_original.get(r["id"])
        or (r["category"] if r["category"] != UNCATEGORISED else None)
        for r in store.conn.execute("SELECT id, category FROM originals")
    }


@dataclass
class LoadedCandidates:
    """One batch's candidates: RGB images (or, ``preprocessed``, the model's input tensors)
    or decoded embeddings (float32 vectors)."""

    items: list[Any]
    labels: list[str]
    problems: list[Exception | None]
    preprocessed: bool = False


@dataclass(frozen=True)
class ClassifyCandidates(BatchTask):
    """(candidate file, true label, whether it is a decoded embedding) → the metric's
    values, or an exception, per candidate.

    A metric with a model-free ``preprocess`` and ``predict_preprocessed`` (zero-shot
    CLIP) has its images preprocessed while the batch loads, ahead of the model."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    def context(self, model: Any) -> Any:
        if getattr(model, "preprocess", None) is None or not hasattr(model, "predict_preprocessed"):
            return None
        return GuardedPreprocess(
            model.preprocess, getattr(model, "preprocess_cfg", {}), self.max_pixels
        )

    def load(self, batch: Sequence[tuple[Path, str, bool]], context: Any) -> LoadedCandidates:
        loaded = LoadedCandidates([], [], [], preprocessed=context is not None)
        for path, label, vector in batch:
            try:
                data = Path(path).read_bytes()
                if vector:
                    item = np.frombuffer(data, dtype=np.float32).copy()
                else:
                    item = decode_image(data, self.max_pixels).rgb
                    if context is not None:
                        with phase("preprocess"):
                            item = context(item)
            except (ImageError, OSError) as exc:
                loaded.problems.append(exc)
                continue
            loaded.items.append(item)
            loaded.labels.append(label)
            loaded.problems.append(None)
        return loaded

    def infer(self, model: Any, loaded: LoadedCandidates, context: Any) -> list[Any]:
        vectors = [i for i, item in enumerate(loaded.items) if isinstance(item, np.ndarray)]
        images = [i for i, item in enumerate(loaded.items) if not isinstance(item, np.ndarray)]
        results: dict[int, Any] = {}
        if images:
            labels = [loaded.labels[i] for i in images]
            if loaded.preprocessed:
                import torch

                pixels = torch.stack([loaded.items[i] for i in images])
                predicted = model.predict_preprocessed(pixels, labels)
            elif context is not None:  # loaded without the model's transform (Ray's tasks)
                predicted = on_preprocessed(
                    context,
                    [loaded.items[i] for i in images],
                    lambda pixels, kept: model.predict_preprocessed(
                        pixels, [labels[i] for i in kept]
                    ),
                )
            else:
                predicted = model.predict([loaded.items[i] for i in images], labels)
            results.update(zip(images, predicted, strict=True))
        if vectors:
            predicted = model.predict_embeddings(
                np.stack([loaded.items[i] for i in vectors]), [loaded.labels[i] for i in vectors]
            )
            if predicted is None:
                problem = ValueError(f"{model.name} cannot classify decoded embeddings")
                predicted = [problem] * len(vectors)
            results.update(zip(vectors, predicted, strict=True))
        done = iter(results[i] for i in range(len(loaded.items)))
        return [next(done) if problem is None else problem for problem in loaded.problems]


def score_task(ctx: StageContext, metric: Any) -> None:
    store = ctx.store
    classes = original_classes(ctx)
    in_scope = {r[0] for r in store.conn.execute("SELECT original_id FROM sources")}
    study_classes = sorted({c for o, c in classes.items() if o in in_scope and c is not None})
    templates: list[str] = []
    dataset = ctx.config.images.dataset
    try:
        listed = dataset.originals() if dataset is not None else None
    except ConfigError:  # the dataset is gone (an ingest failure says so): the study's
        listed = None
    if listed is not None and listed.classes:
        # a labelled dataset: all its classes compete (as in its zero-shot protocol), even
        # those a subset of its images leaves out, with its own prompt templates
        study_classes = sorted(set(listed.classes))
        templates = listed.templates
    with_classes = metric.metric_class.with_classes
    # templates only when a dataset gives some: a plugin's with_classes may not take them
    params = (
        with_classes(metric.validated, study_classes, templates)
        if templates
        else with_classes(metric.validated, study_classes)
    )
    specs = metric.scores(params)
    register_metric(ctx, metric, specs, metric.identity(params))
    rows = pending_candidates(ctx, [spec.key for spec in specs])
    vectors_of = metric.metric_class.embedder_for_vectors(params)
    embedders = {
        m.method_id: ctx.config.embedder_for(m) for m in ctx.config.methods if m.kind == "embedding"
    }
    unclassed: list[sqlite3.Row] = []
    foreign: dict[str, int] = {}
    outside: list[sqlite3.Row] = []
    ready: list[sqlite3.Row] = []
    allowed = set(getattr(params, "classes", ()) or study_classes)
    for row in rows:
        label = classes.get(row["original_id"])
        if row["media_type"] == EMBEDDING_MEDIA_TYPE:
            embedder = embedders.get(row["method_id"])
            if vectors_of is None or embedder is None or embedder.embedder_id != vectors_of:
                foreign[row["method_id"]] = foreign.get(row["method_id"], 0) + 1
                continue
        elif not is_image(row):
            ctx.report.skipped += 1
            continue
        if label is None:
            unclassed.append(row)
        elif label not in allowed:
            outside.append(row)
        else:
            ready.append(row)
    summarise_unscored(ctx, metric, unclassed, outside, foreign, allowed)
    labelled = [(row, classes[row["original_id"]]) for row in not_settled(ctx, metric, ready)]
    rows_ready = [row for row, _ in labelled]

    def items(ctx: StageContext, batch: list[sqlite3.Row]) -> list[tuple[Path, str, bool]]:
        files = ctx.artifact_files([r["artifact_hash"] for r in batch])
        return [
            (files[r["artifact_hash"]], str(classes[r["original_id"]]), not is_image(r))
            for r in batch
        ]

    run_items(ctx, metric, params, rows_ready, items, ClassifyCandidates)


def summarise_unscored(
    ctx: StageContext,
    metric: Any,
    unclassed: list[sqlite3.Row],
    outside: list[sqlite3.Row],
    foreign: dict[str, int],
    allowed: set[str],
) -> None:
    """One failure line per reason a task metric leaves candidates out (cleared when none
    is left out for it): originals without a class, classes outside a fixed class list,
    decoded embeddings of another CLIP model."""

    def line(reason: str, rows: list[sqlite3.Row], message: str) -> None:
        item = f"{reason}|{metric.label}"
        if not rows:
            with ctx.store.transaction():
                ctx.clear(item)
            return
        names = sorted({r["original_name"] for r in rows})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        with ctx.store.transaction():
            ctx.fail(
                item,
                f"{len(rows)} candidate(s) of {len(names)} original(s) not scored: {message} "
                f"({shown})",
                retryable=True,
                detail={"label": f"{metric.label}: {reason}", "metric": metric.label},
            )

    line(
        "no class",
        unclassed,
        "their originals have no class (give the manifest a 'label' or 'category' column, "
        "or put the images in category folders)",
    )
    line("class not listed", outside, f"their originals' classes are not in {sorted(allowed)}")
    names = {m.method_id: m.name for m in ctx.config.methods}
    embedding_methods = {m.method_id for m in ctx.config.methods if m.kind == "embedding"}
    for method_id in sorted(set(foreign) | embedding_methods):
        name, count = names.get(method_id, method_id), foreign.get(method_id, 0)
        item = f"other embeddings of {name}|{metric.label}"
        with ctx.store.transaction():
            if not count:
                ctx.clear(item)
                continue
            ctx.fail(
                item,
                f"{count} decoded embedding(s) of method {name!r} not classified: they are "
                f"not embeddings of the CLIP model of {metric.label!r}",
                retryable=True,
                detail={"label": f"{metric.label}: {name}", "metric": metric.label},
            )
