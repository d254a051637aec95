"""Stage 5: textual methods reconstruct images from their captions; external ones are imported.

Reconstructions are cached by (reconstructor and parameters, prompt, seed), so
methods that differ only in text codec share their images, and a re-run loads
no model. Seeds derive from (study seed, original, caption source and
reconstructor, replicate) and are stored with every candidate.

Best-of-N (a method's ``select``, :mod:`semcomp.selection`): each replicate's N
candidates are reconstructed (through the same cache, so a larger N reuses a
smaller N's images), scored against the original with the ``select`` metric, and
the best becomes the replicate's candidate; the others stay in the artifact
store, listed in its meta with their seeds and values.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from semcomp.codecs.side import decode_side, unpack
from semcomp.engines import BatchTask, PluginFactory
from semcomp.errors import ImageError
from semcomp.images import decode_image, sha256_hex
from semcomp.methods import ExternalMethod, TextualMethod
from semcomp.reconstructors import RECONSTRUCTORS
from semcomp.reconstructors.base import Reconstructor
from semcomp.selection import best_index, candidate_replicate
from semcomp.stages import StageContext, store_candidate
from semcomp.stages.caption import MEDIA_TYPES, external_file, text_codec_for
from semcomp.stages.embed import settled
from semcomp.store import content_key, to_json, utc_now


def derive_seed(study_seed: int, original_id: str, reconstruction_key: str, replicate: int) -> int:
    """A 32-bit seed from its inputs: reproducible anywhere, distinct per replicate."""
    digest = hashlib.sha256(
        to_json([study_seed, original_id, reconstruction_key, replicate]).encode()
    ).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Job:
    method_id: str
    representation_id: str
    label: str
    prompt: str
    seed: int | None
    replicate: int
    cache_key: str
    #: the side payload sent with the caption (None: the caption alone)
    side: bytes | None = None
    #: best-of-N: which of the replicate's candidates this is (None: no selection)
    candidate: int | None = None


def run(ctx: StageContext) -> None:
    textual = ctx.methods(TextualMethod)
    if textual:
        jobs = reconstruct_pending(ctx, textual)
        select_best(ctx, textual, jobs)
    for method in ctx.methods(ExternalMethod):
        import_external(ctx, method)


def pending_jobs(ctx: StageContext, method: TextualMethod) -> list[Job]:
    store = ctx.store
    codec = text_codec_for(method.text_codec, method.text_codec_params)
    reconstructor = RECONSTRUCTORS.get(method.reconstructor)
    points = {p.label: p for p in method.caption_points()}
    settled = ctx.settled()
    done = {
        (r[0], r[1])
        for r in store.conn.execute(
            "SELECT c.representation_id, c.replicate FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id WHERE r.method_id = ?",
            (method.method_id,),
        )
    }
    jobs = []
    for row in store.conn.execute(
        "SELECT r.id, r.original_id, r.operating_point, r.payload_hash, o.name "
        "FROM representations r JOIN originals o ON o.id = r.original_id "
        "WHERE r.method_id = ? ORDER BY r.id",
        (method.method_id,),
    ).fetchall():
        point = points.get(row["operating_point"])
        if point is None:
            continue
        prompt: str | None = None
        side: bytes | None = None
        for replicate in range(method.replicates):
            if (row["id"], replicate) in done or f"{row['id']}|{replicate}" in settled:
                ctx.report.skipped += 1
                continue
            if prompt is None:  # the decoder reads what was sent, not the stored caption
                try:
                    payload = store.read_artifact(row["payload_hash"])
                    if method.side is not None:
                        container = unpack(payload)
                        payload, side = container.caption, container.side
                    prompt = codec.decode(payload)
                except Exception as exc:  # e.g. a zstd dictionary that no longer matches
                    what = "caption + side container" if method.side else method.text_codec
                    ctx.fail(
                        f"{row['id']}|{replicate}",
                        f"{what} payload does not decode: {exc}",
                        detail={"method_id": method.method_id},
                    )
                    break
            # best-of-N: candidate k uses the seed of replicate index r + k·R (k = 0: r's own)
            candidates = [None] if point.select_n is None else list(range(point.select_n))
            for candidate in candidates:
                seed = derive_seed(
                    ctx.config.seed,
                    row["original_id"],
                    method.reconstruction_key(point),
                    candidate_replicate(replicate, candidate or 0, method.replicates),
                )
                seed_or_none = seed if reconstructor.seeded else None
                jobs.append(
                    Job(
                        method_id=method.method_id,
                        representation_id=row["id"],
                        label=f"{row['name']} · {method.name} · {row['operating_point']}",
                        prompt=prompt,
                        seed=seed_or_none,
                        replicate=replicate,
                        cache_key=content_key(
                            "reconstruction",
                            method.reconstructor_key,
                            prompt,
                            seed_or_none if reconstructor.seeded else replicate,
                            *([] if side is None else [sha256_hex(side)]),
                        ),
                        side=side,
                        candidate=candidate,
                    )
                )
    return jobs


def reconstruct_pending(ctx: StageContext, methods: list[TextualMethod]) -> list[Job]:
    """Reconstruct what is pending; the jobs it was (best-of-N selects among theirs)."""
    store = ctx.store
    groups: dict[str, tuple[TextualMethod, list[Job]]] = {}
    every: list[Job] = []
    for method in methods:
        jobs = pending_jobs(ctx, method)
        every.extend(jobs)
        if jobs:
            groups.setdefault(method.reconstructor_key, (method, []))[1].extend(jobs)
    for reconstructor_key, (method, jobs) in groups.items():
        cached = {
            r["key"]: r["artifact_hash"]
            for r in store.conn.execute(
                "SELECT key, artifact_hash FROM reconstructions WHERE reconstructor_key = ?",
                (reconstructor_key,),
            )
        }
        with store.transaction():
            for job in jobs:
                if job.cache_key in cached:
                    link(ctx, job, cached[job.cache_key], {"cached": True})
        remaining = [job for job in jobs if job.cache_key not in cached]
        unique: dict[str, list[Job]] = defaultdict(list)
        for job in remaining:
            unique[job.cache_key].append(job)
        if not unique:
            continue
        reconstructor_class = RECONSTRUCTORS.get(method.reconstructor)
        factory = PluginFactory(
            "reconstructor",
            method.reconstructor,
            reconstructor_class.Params.model_validate(method.reconstructor_params),
            {"device": method.device, "batch_size": method.batch_size},
            label=method.reconstructor,
        )
        run_reconstructor(ctx, factory, reconstructor_key, unique)
    return every


class ReconstructPrompts(BatchTask):
    """Jobs (prompt and seed) → reconstructions; nothing to load beforehand."""

    loads = False

    def load(self, batch: Sequence[Job], context: Any) -> Sequence[Job]:
        return batch

    def infer(self, model: Reconstructor, loaded: Sequence[Job], context: Any) -> list[Any]:
        prompts, seeds = [job.prompt for job in loaded], [job.seed for job in loaded]
        if not model.side_kinds:
            return model.reconstruct(prompts, seeds)
        results: list[Any] = []
        for job in loaded:  # a side payload that does not decode fails its item only
            try:
                results.append(decode_side(job.side or b""))
            except Exception as exc:
                results.append(ImageError(f"side information does not decode: {exc}"))
        good = [i for i, result in enumerate(results) if not isinstance(result, Exception)]
        if good:
            made = model.reconstruct_with_side(
                [prompts[i] for i in good], [seeds[i] for i in good], [results[i] for i in good]
            )
            for position, result in zip(good, made, strict=True):
                results[position] = result
        return results


def run_reconstructor(
    ctx: StageContext,
    factory: PluginFactory,
    reconstructor_key: str,
    unique: dict[str, list[Job]],
) -> None:
    store = ctx.store
    keys = list(unique)
    chunk = factory.chunk()
    batches = [
        [unique[key][0] for key in keys[start : start + chunk]]
        for start in range(0, len(keys), chunk)
    ]
    for batch, outcome in ctx.run_batches(factory, ReconstructPrompts(), batches, "img"):
        with store.transaction():
            for job, result in zip(batch, outcome.results, strict=True):
                waiting = unique[job.cache_key]
                if isinstance(result, Exception):
                    for each in waiting:
                        ctx.fail(
                            f"{each.representation_id}|{each.replicate}",
                            str(result),
                            retryable=getattr(result, "retryable", True),
                            detail={"label": each.label, "method_id": each.method_id},
                        )
                    continue
                digest = store.put_artifact(result.png, suffix=".png", media_type="image/png")
                store.upsert(
                    "reconstructions",
                    {
                        "key": job.cache_key,
                        "reconstructor_key": reconstructor_key,
                        "prompt": job.prompt,
                        "seed": job.seed,
                        "replicate": job.replicate,
                        "artifact_hash": digest,
                        "meta": to_json(ctx.portable(outcome.identity | result.meta)),
                        "run_id": ctx.run_id,
                        "created_at": utc_now(),
                    },
                    key=("key",),
                )
                for each in waiting:
                    link(ctx, each, digest, result.meta)


def link(ctx: StageContext, job: Job, artifact_hash: str, meta: dict) -> None:
    if job.candidate is not None:  # best-of-N: select_best links the chosen one
        return
    store_candidate(
        ctx,
        representation_id=job.representation_id,
        replicate=job.replicate,
        seed=job.seed,
        artifact_hash=artifact_hash,
        meta=meta,
    )
    ctx.clear(f"{job.representation_id}|{job.replicate}")
    ctx.report.done += 1


@dataclass
class Selection:
    """One best-of-N replicate whose N candidates all reconstructed: what selection scores."""

    method: TextualMethod
    representation_id: str
    replicate: int
    jobs: list[Job]
    #: the candidates' artifacts, in candidate order, and the original's
    hashes: list[str]
    original_hash: str
    metas: list[dict[str, Any]]


def select_best(ctx: StageContext, methods: list[TextualMethod], jobs: list[Job]) -> None:
    """Each pending best-of-N replicate whose N candidates all reconstructed: score them
    against the original with the ``select`` metric and link the best as its candidate.

    The metric is the study's own (:meth:`~semcomp.config.StudyConfig.select_metric`), run
    as the score stage runs it: an embedding metric embeds the original and candidates
    through the embed stage's cache (so the score stage finds them embedded), a pairwise
    metric compares (original, candidate) files in batches on the engine. Each metric is
    loaded once for every method that selects by it, after the reconstructors are freed,
    and freed before the next.
    """
    store = ctx.store
    items: dict[str, dict[tuple[str, int], list[Job]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        if job.candidate is not None:
            items[job.method_id][job.representation_id, job.replicate].append(job)
    by_metric: dict[str, list[Selection]] = defaultdict(list)
    for method in methods:
        if method.select is None or method.method_id not in items:
            continue
        made = {
            r["key"]: (r["artifact_hash"], json.loads(r["meta"] or "{}"))
            for r in store.conn.execute(
                "SELECT key, artifact_hash, meta FROM reconstructions WHERE reconstructor_key = ?",
                (method.reconstructor_key,),
            )
        }
        metric = method.select.metric
        key = to_json([metric.metric, metric.params, metric.name, metric.device, metric.batch_size])
        for (representation, replicate), group in items[method.method_id].items():
            if any(job.cache_key not in made for job in group):
                continue  # a candidate failed to reconstruct: its failure is recorded
            by_metric[key].append(
                Selection(
                    method,
                    representation,
                    replicate,
                    group,
                    [made[job.cache_key][0] for job in group],
                    original_hash(ctx, representation),
                    [made[job.cache_key][1] for job in group],
                )
            )
    for selections in by_metric.values():
        metric = selections[0].method.select.metric
        pairs = list(dict.fromkeys((s.original_hash, h) for s in selections for h in s.hashes))
        values = candidate_values(ctx, metric, pairs)
        for selection in selections:
            link_best(ctx, selection, values)


def link_best(ctx: StageContext, selection: Selection, values: dict[tuple[str, str], Any]) -> None:
    """Link the best of a replicate's candidates, or record why it cannot be chosen."""
    select = selection.method.select
    spec = select.score_spec
    item = f"{selection.representation_id}|{selection.replicate}"
    results = [values[selection.original_hash, h] for h in selection.hashes]
    problems = [result for result in results if isinstance(result, Exception)]
    try:
        if problems:
            raise problems[0]
        scored = [result.get(spec.key) for result in results]
        chosen = best_index(scored, spec.higher_is_better)
    except Exception as exc:  # an unreadable image, a metric that fails
        ctx.fail(
            item,
            f"best-of-{len(selection.jobs)} selection by {spec.key}: {exc}",
            retryable=not settled(exc),
            detail={"label": selection.jobs[0].label, "method_id": selection.method.method_id},
        )
        return
    metric = select.metric
    with ctx.store.transaction():
        store_candidate(
            ctx,
            representation_id=selection.representation_id,
            replicate=selection.replicate,
            seed=selection.jobs[chosen].seed,
            artifact_hash=selection.hashes[chosen],
            meta=selection.metas[chosen]
            | {
                "select_index": chosen,
                "select_by": spec.key,
                "select_values": scored,
                "select_seeds": [job.seed for job in selection.jobs],
                "select_candidates": selection.hashes,
                "select_metric": {"label": metric.label, **metric.identity()},
            },
        )
        ctx.clear(item)
    ctx.report.done += 1


def original_hash(ctx: StageContext, representation_id: str) -> str:
    row = ctx.store.conn.execute(
        "SELECT o.artifact_hash FROM representations r JOIN originals o ON o.id = r.original_id "
        "WHERE r.id = ?",
        (representation_id,),
    ).fetchone()
    return str(row[0])


def candidate_values(
    ctx: StageContext, metric: Any, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """Each (original, candidate) artifact pair's scores by ``metric`` (a
    :class:`~semcomp.config.MetricConfig`), keyed as the study writes them, or the exception
    that stopped it."""
    from semcomp.metrics.clip import cosine
    from semcomp.stages.embed import embed_pending, metric_factory
    from semcomp.stages.score import ComparePairs, key_map

    params = metric.validated
    keys = key_map(metric, params)  # the metric class's keys → the entry's
    values: dict[tuple[str, str], Any] = {}
    if metric.kind == "embedding":
        embedder_id = metric.embedder_id
        wanted = list(dict.fromkeys(h for pair in pairs for h in pair))
        missing = [h for h in wanted if h not in ctx.store.embeddings(embedder_id, wanted)]
        done = ctx.report.done  # embeddings are not this stage's items
        embed_pending(ctx, metric_factory(metric), embedder_id, missing)
        ctx.report.done = done
        vectors = ctx.store.embeddings(embedder_id, wanted)
        for pair in pairs:
            original, candidate = (vectors.get(h) for h in pair)
            if original is None or candidate is None:
                values[pair] = ImageError(f"no {metric.label} embedding (its failure is recorded)")
                continue
            scored = metric.metric_class.values(params, cosine(original, candidate))
            values[pair] = {keys[k]: v for k, v in scored.items()}
        return values
    factory = metric_factory(metric)
    chunk = factory.chunk()
    files = ctx.artifact_files([h for pair in pairs for h in pair])
    batches = [pairs[start : start + chunk] for start in range(0, len(pairs), chunk)]
    task = ComparePairs(ctx.config.images.max_pixels)
    paths = [[(files[o], files[c]) for o, c in batch] for batch in batches]
    for _, outcome in ctx.run_batches(factory, task, paths, "pair"):
        for pair, result in zip(batches[outcome.index], outcome.results, strict=True):
            if isinstance(result, Exception):
                values[pair] = result
            else:
                values[pair] = {keys[k]: v for k, v in result.items()}
    return values


def import_external(ctx: StageContext, method: ExternalMethod) -> None:
    """Each external file becomes the method's candidate once it decodes.

    With ``rate = "file"`` the candidate is the payload itself, as for semcomp's own
    pixel codecs (the file is what was sent; scoring decodes it); otherwise the file
    (a reconstruction) is copied into the artifact store.
    """
    store = ctx.store
    pending = store.conn.execute(
        "SELECT r.id, r.payload_hash, r.meta, o.id AS original_id, o.name, o.source_path "
        "FROM representations r JOIN originals o ON o.id = r.original_id "
        "LEFT JOIN candidates c ON c.representation_id = r.id "
        "WHERE r.method_id = ? AND r.operating_point = ? AND c.id IS NULL",
        (method.method_id, str(method.operating_point)),
    ).fetchall()
    for row in pending:
        item = f"{row['id']}|0"
        recorded = json.loads(row["meta"]).get("file")
        path = (
            ctx.config.stored_file(recorded)  # stored relative to the study folder when inside
            if recorded
            else external_file(method, row["name"], row["original_id"], row["source_path"])
        )
        detail = {"label": f"{row['name']} · {method.name}", "method_id": method.method_id}
        try:
            data = (
                store.read_artifact(row["payload_hash"])
                if method.rate == "file"
                else path.read_bytes()
            )
            decode_image(data)
        except (OSError, ImageError) as exc:
            ctx.fail(item, f"{path.name}: {exc}", detail=detail)
            continue
        with store.transaction():
            if method.rate == "file":
                digest = row["payload_hash"]
            else:
                digest = store.put_artifact(
                    data,
                    suffix=path.suffix.lower(),
                    media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                )
            store_candidate(
                ctx,
                representation_id=row["id"],
                replicate=0,
                seed=None,
                artifact_hash=digest,
                meta={"file": str(path)},
            )
            ctx.clear(item)
        ctx.report.done += 1
