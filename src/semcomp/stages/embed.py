"""Stage 6: CLIP embeddings of every original and every candidate, cached by artifact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcomp.engines import BatchTask, PluginFactory, phase
from semcomp.errors import ImageError
from semcomp.images import DEFAULT_MAX_PIXELS, decode_image
from semcomp.metrics.embedder import GuardedPreprocess, preprocess_each
from semcomp.stages import StageContext
from semcomp.store import Store, distinct_keys, hex_hashes, keys_among, to_json, utc_now

if TYPE_CHECKING:
    import numpy as np


def artifacts_to_score(ctx: StageContext) -> np.ndarray:
    """Artifacts similarity needs: every original and every configured method's candidate
    (keys of `Store.hash_keys`, sorted)."""
    return needed_artifacts(ctx.store, ctx.method_filter("c.method_id"))


def not_embedded(ctx: StageContext, needed: np.ndarray, embedder_id: str) -> list[str]:
    """The ``needed`` artifacts (keys) that ``embedder_id`` has not embedded and that did
    not fail for it before (settled), as sorted hashes."""
    have = ctx.store.hash_keys(
        "SELECT artifact_hash FROM embeddings WHERE embedder_id = ?", [embedder_id]
    )
    settled = {item.split("|")[0] for item in ctx.settled() if item.endswith(f"|{embedder_id}")}
    missing = hex_hashes(needed[~keys_among(needed, have)])
    return [a for a in missing if a not in settled] if settled else missing


#: representations of originals that have left the sources (few): their candidates are
#: not scored
GONE_REPRESENTATIONS = (
    "SELECT r.id FROM representations r WHERE r.original_id IN "
    "(SELECT o.id FROM originals o WHERE o.id NOT IN "
    "(SELECT original_id FROM sources WHERE original_id IS NOT NULL))"
)
#: stored files that are not images (text payloads, side information, decoded embeddings);
#: the store's partial index ``artifacts_not_images`` has this condition, so the query reads
#: only those few rows
NOT_IMAGES = "SELECT hash FROM artifacts WHERE media_type NOT LIKE 'image/%'"


def needed_artifacts(store: Store, method_filter: tuple[str, list[str]]) -> np.ndarray:
    """The hashes similarity needs (keys of `Store.hash_keys`, sorted): each original still
    in the sources, and each image candidate of the configured methods (``method_filter``
    on ``c.method_id``) whose original still is.

    Read as arrays of hashes, not as a join of each candidate with its artifact row, nor
    as Python sets: the candidates come from their index by method, and the few files
    that are not images are taken away (at 10,000 originals, 250,000 candidates, the join
    took about 1 s of CPU and the sets 0.7 s; ``semcomp status`` and the embed stage both
    count on this)."""
    import numpy as np

    where, ids = method_filter
    candidates = store.hash_keys(
        f"SELECT c.artifact_hash FROM candidates c WHERE {where} "
        f"AND c.representation_id NOT IN ({GONE_REPRESENTATIONS})",
        ids,
    )
    candidates = candidates[~keys_among(candidates, store.hash_keys(NOT_IMAGES))]
    originals = store.hash_keys(
        "SELECT artifact_hash FROM originals WHERE id IN (SELECT original_id FROM sources)"
    )
    return distinct_keys(np.concatenate([candidates, originals]))


@dataclass
class LoadedImages:
    """One batch's readable images (PIL images, or one stacked N×3×H×W tensor once
    preprocessed) and, per item, its problem (None when the item is in ``images``)."""

    images: Any
    problems: list[Exception | None]

    def pin_memory(self) -> LoadedImages:
        """Page-locked pixels, for a DataLoader with ``pin_memory`` (fast copies to the GPU)."""
        pin = getattr(self.images, "pin_memory", None)
        return LoadedImages(pin() if pin is not None else self.images, self.problems)


@dataclass(frozen=True)
class EmbedImages(BatchTask):
    """Image files → L2-normalised embeddings, one float32 row (or an exception) per file.

    Loading reads and decodes each file and, when the model's transform is at
    hand (the local engine, in DataLoader workers or not), preprocesses the batch
    into one tensor; inference preprocesses what is left and runs the embedder.
    A file that does not decode gives an :class:`ImageError` (settled); one that
    cannot be read gives its ``OSError`` (retried: missing, unmounted, a network
    file system's hiccup). Shared by the embed stage and ``features extract``.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS

    def context(self, model: Any) -> Any:
        if getattr(model, "preprocess", None) is None:
            return None  # an embedding metric that preprocesses inside ``embed``
        return GuardedPreprocess(
            model.preprocess, getattr(model, "preprocess_cfg", {}), self.max_pixels
        )

    def load(self, batch: Sequence[Path], context: Any) -> LoadedImages:
        images: list[Any] = []
        problems: list[Exception | None] = []
        for path in batch:
            try:
                source = path if hasattr(path, "read_bytes") else Path(path)  # or a dataset row
                images.append(decode_image(source.read_bytes(), self.max_pixels).rgb)
                problems.append(None)
            except (ImageError, OSError) as exc:
                problems.append(exc)
        if context is None or not images:
            return LoadedImages(images, problems)
        import torch

        with phase("preprocess"):
            pixels = preprocess_each(context, images, problems)
            return LoadedImages(torch.stack(pixels) if pixels else [], problems)

    def infer(self, model: Any, loaded: LoadedImages, context: Any) -> list[Any]:
        import torch

        problems = list(loaded.problems)
        if context is None and not isinstance(loaded.images, torch.Tensor):
            vectors = iter(model.embed(loaded.images) if loaded.images else [])
            return [next(vectors) if problem is None else problem for problem in problems]
        with phase("preprocess"):
            pixels = (
                loaded.images
                if isinstance(loaded.images, torch.Tensor)
                else preprocess_each(context, loaded.images, problems)
            )
        vectors = iter(model.embed_preprocessed(pixels) if len(pixels) else [])
        return [next(vectors) if problem is None else problem for problem in problems]


def settled(problem: Exception) -> bool:
    """Whether an item's problem is final: its content does not decode (not a read error)."""
    return isinstance(problem, ImageError)


def embedder_factory(config: Any, *, device: str, batch_size: int) -> PluginFactory:
    return PluginFactory(
        "embedder",
        config.kind,
        config,
        {"device": device, "batch_size": batch_size},
        label=config.label,
    )


def metric_factory(metric: Any, params: Any = None) -> PluginFactory:
    """Builds a configured metric (a :class:`~semcomp.config.MetricConfig`) with ``params``
    (default: its validated ones), its device and batch size, wherever the engine runs it."""
    return PluginFactory(
        "metric",
        metric.metric,
        metric.validated if params is None else params,
        {"device": metric.device or "auto", "batch_size": metric.batch_size},
        label=metric.label,
    )


def embedding_metrics(config: Any) -> list[Any]:
    """The configured embedding metrics, one per embedder identity (two labels of one CLIP
    model share its vectors)."""
    unique: dict[str, Any] = {}
    for metric in config.metric_entries:
        if metric.kind == "embedding":
            unique.setdefault(metric.embedder_id, metric)
    return list(unique.values())


def run(ctx: StageContext) -> None:
    needed = artifacts_to_score(ctx)
    for metric in embedding_metrics(ctx.config):
        embedder_id = metric.embedder_id
        pending = not_embedded(ctx, needed, embedder_id)
        ctx.report.skipped += len(needed) - len(pending)
        if not pending:
            continue
        embed_pending(ctx, metric_factory(metric), embedder_id, pending)


def register_embedder(ctx: StageContext, embedder_id: str, identity: dict[str, Any]) -> None:
    """The embedder's row: model, weights and preprocessing (call inside a transaction).
    ``identity`` is an embedder's, or an embedding metric's with its ``embedder`` inside."""
    identity = ctx.portable(identity.get("embedder", identity))
    ctx.store.upsert(
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


def embed_pending(
    ctx: StageContext,
    factory: PluginFactory,
    embedder_id: str,
    pending: list[str],
    *,
    task: BatchTask | None = None,
    chunk: int | None = None,
    identity: dict[str, Any] | None = None,
) -> None:
    """Embed ``pending`` artifacts with ``factory``'s model and cache the vectors.

    ``task``, ``chunk`` and ``identity`` (the embedder row) default to the CLIP embed
    stage's; a set metric passes its feature extraction, batch size and extractor.
    """
    store = ctx.store
    chunk = max(1, chunk or factory.chunk())
    files = ctx.artifact_files(pending)
    hashes = [pending[i : i + chunk] for i in range(0, len(pending), chunk)]
    batches = [[files[digest] for digest in batch] for batch in hashes]
    task = task or EmbedImages(ctx.config.images.max_pixels)
    registered = False
    for _, outcome in ctx.run_batches(factory, task, batches, "img"):
        digests = hashes[outcome.index]
        with store.transaction():
            if not registered:
                register_embedder(ctx, embedder_id, identity or outcome.identity)
                registered = True
            embedded = []
            for digest, result in zip(digests, outcome.results, strict=True):
                if isinstance(result, Exception):
                    item = f"{digest}|{embedder_id}"
                    ctx.fail(item, str(result), retryable=not settled(result))
                else:
                    ctx.clear(f"{digest}|{embedder_id}")
                    embedded.append((digest, result))
            store.put_embeddings(embedder_id, embedded, ctx.run_id)
        ctx.report.done += len(embedded)
