"""Stage 3: textual methods caption every original, then pack each caption as a payload.

All pending originals are captioned by one captioner (loaded once, freed after)
before the next; captions are cached by (original, captioner and parameters),
so two methods that differ only in text codec or reconstructor never caption
twice. External methods get their representations here too (their captions,
if given, come from a CSV).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcomp.captioners import CAPTIONERS
from semcomp.captioners.base import Captioner, CaptionFailure, OriginalRef
from semcomp.captioners.human import match_captions, read_caption_rows, reference_owners
from semcomp.codecs import TEXT_CODECS
from semcomp.codecs.side import (
    SIDE_PARAMS,
    SidePayload,
    encode_side,
    pack,
    require_edges_backend,
)
from semcomp.codecs.text import TextCodec, Utf8Codec, normalise_caption
from semcomp.engines import BatchTask, PluginFactory, phase
from semcomp.errors import ImageError
from semcomp.images import IMAGE_SUFFIXES, decode_image
from semcomp.methods import ANY_IMAGE_EXTENSION, ExternalMethod, TextualMethod
from semcomp.reconstructors import RECONSTRUCTORS
from semcomp.selection import index_bytes, select_bits
from semcomp.stages import StageContext, representation_id, store_representation
from semcomp.store import content_key, to_json, utc_now


def run(ctx: StageContext) -> None:
    textual = ctx.methods(TextualMethod)
    if textual:
        caption_pending(ctx, textual)
        for method in textual:
            represent_captions(ctx, method)
    for method in ctx.methods(ExternalMethod):
        represent_external(ctx, method)


def text_codec_for(name: str, params: dict[str, Any]) -> TextCodec:
    codec_class = TEXT_CODECS.get(name)
    return codec_class(codec_class.Params.model_validate(params))


def original_ref(row: sqlite3.Row) -> OriginalRef:
    return OriginalRef(
        id=row["id"], name=row["name"], category=row["category"], source_path=row["source_path"]
    )


# ---- captions -----------------------------------------------------------------------------


def caption_pending(ctx: StageContext, methods: list[TextualMethod]) -> None:
    """Caption every original that lacks a caption from each captioner configuration."""
    store = ctx.store
    configurations: dict[str, tuple[TextualMethod, dict[str, Any]]] = {}
    for method in methods:
        for point in method.caption_points():
            configurations.setdefault(point.captioner_key, (method, point.captioner_params))
    have = {
        (r[0], r[1])
        for r in store.conn.execute("SELECT DISTINCT original_id, captioner_key FROM captions")
    }
    settled = ctx.settled()
    originals = ctx.originals()
    for key, (method, params) in configurations.items():
        pending = [
            o for o in originals if (o["id"], key) not in have and f"{o['id']}|{key}" not in settled
        ]
        ctx.report.skipped += len(originals) - len(pending)
        if not pending:
            continue
        captioner_class = CAPTIONERS.get(method.captioner)
        factory = PluginFactory(
            "captioner",
            method.captioner,
            captioner_class.Params.model_validate(params),
            {"device": method.device, "batch_size": method.batch_size},
            label=method.captioner,
        )
        if not factory.scalable:
            prepare_inputs(ctx, factory(), originals)
        caption_with(ctx, factory, key, params, pending)


def prepare_inputs(ctx: StageContext, captioner: Captioner, originals: list[sqlite3.Row]) -> None:
    """Record the problems of a captioner's own inputs (malformed rows of a captions CSV).

    Only plugins that run in this process read such inputs; this instance reads
    them for their problems and is closed (the working instance reads them again
    in :meth:`CaptionOriginals.context`; a CSV is cheap to read twice).
    """
    try:
        captioner.prepare([original_ref(o) for o in originals])
        with ctx.store.transaction():
            csv_path = getattr(captioner.params, "csv", None)
            if csv_path is not None:
                ctx.clear_prefix(f"{csv_path}:")
            for item, reason in captioner.problems():
                ctx.fail(item, reason, retryable=False)
    finally:
        captioner.close()


@dataclass(frozen=True)
class CaptionOriginals(BatchTask):
    """(original, image file) pairs → captions; an unreadable image fails its item only.

    An image that does not decode is a settled failure; a file that cannot be
    read (missing, unmounted, a network file system's hiccup) is retried by the
    next run. Loading also runs the captioner's image preprocessing when it has
    one: ``loader_preprocess()`` beside the model (local engine, DataLoader
    workers), ``loader_preprocess_for(params)`` without it (Ray CPU tasks).
    """

    needs_images: bool
    max_pixels: int
    #: every current original, for captioners that look captions up (human CSV)
    originals: tuple[OriginalRef, ...] = ()

    def context(self, model: Captioner) -> Any:
        model.prepare(list(self.originals))
        loader_preprocess = getattr(model, "loader_preprocess", None)
        return loader_preprocess() if loader_preprocess is not None else None

    def remote_context(self, factory: PluginFactory) -> Any:
        preprocess_for = getattr(factory.plugin_class, "loader_preprocess_for", None)
        if not self.needs_images or preprocess_for is None:
            return None
        return preprocess_for(factory.config)

    def load(self, batch: Sequence[tuple[OriginalRef, Path]], context: Any) -> list[Any]:
        loaded: list[Any] = []
        for ref, path in batch:
            if not self.needs_images:
                loaded.append((ref, None))
                continue
            try:
                image: Any = decode_image(Path(path).read_bytes(), self.max_pixels).rgb
            except (OSError, ImageError) as exc:
                loaded.append((ref, exc))
                continue
            if context is not None:
                with phase("preprocess"):
                    image = context(image)
            loaded.append((ref, image))
        return loaded

    def infer(self, model: Captioner, loaded: list[Any], context: Any) -> list[Any]:
        good = [i for i, (_, image) in enumerate(loaded) if not isinstance(image, Exception)]
        results: list[Any] = [
            CaptionFailure(str(image), retryable=not isinstance(image, ImageError))
            if isinstance(image, Exception)
            else None
            for _, image in loaded
        ]
        if good:
            captions = model.caption([loaded[i][0] for i in good], [loaded[i][1] for i in good])
            for position, result in zip(good, captions, strict=True):
                results[position] = result
        return results


def caption_with(
    ctx: StageContext,
    factory: PluginFactory,
    key: str,
    params: dict[str, Any],
    pending: list[sqlite3.Row],
) -> None:
    store = ctx.store
    captioner_class = factory.plugin_class
    chunk = factory.chunk()
    files = ctx.artifact_files([row["artifact_hash"] for row in pending])
    rows = [pending[i : i + chunk] for i in range(0, len(pending), chunk)]
    batches = [[(original_ref(r), files[r["artifact_hash"]]) for r in batch] for batch in rows]
    task = CaptionOriginals(
        needs_images=captioner_class.needs_images,
        max_pixels=ctx.config.images.max_pixels,
        originals=tuple(original_ref(o) for o in ctx.originals()),
    )
    for _, outcome in ctx.run_batches(factory, task, batches, "img"):
        with store.transaction():
            for row, result in zip(rows[outcome.index], outcome.results, strict=True):
                item = f"{row['id']}|{key}"
                if isinstance(result, Exception):
                    ctx.fail(
                        item,
                        str(result),
                        retryable=getattr(result, "retryable", True),
                        detail=getattr(result, "detail", {})
                        | {"label": row["name"], "captioner_key": key},
                    )
                    continue
                for variant, caption in enumerate(result):
                    store.upsert(
                        "captions",
                        {
                            "id": content_key("caption", row["id"], key, variant),
                            "original_id": row["id"],
                            "captioner_key": key,
                            "captioner": factory.name,
                            "params": to_json(ctx.portable(params)),
                            "variant": variant,
                            "text": caption.text,
                            "author": caption.author,
                            "meta": to_json(ctx.portable(outcome.identity | caption.meta)),
                            "run_id": ctx.run_id,
                            "created_at": utc_now(),
                        },
                        key=("id",),
                    )
                ctx.clear(item)
                ctx.report.done += 1


# ---- payloads -----------------------------------------------------------------------------


def payload_meta(
    codec: TextCodec, caption: str, read_prompt: Callable[[str], Any] | None
) -> dict[str, Any]:
    """What a caption payload records: the text, its codec, and what the decoder reads of it."""
    text = normalise_caption(caption)
    meta: dict[str, Any] = {
        "caption": text,
        "caption_chars": len(text),
        "caption_utf8_bytes": len(text.encode("utf-8")),
        "text_codec": codec.name,
    }
    side = codec.side_information()
    if side:
        meta["side_information"] = side
    if read_prompt is not None:
        use = read_prompt(text)
        consumed = text[: use.consumed_chars]
        meta |= {
            "prompt_tokens": use.tokens,
            "prompt_token_limit": use.limit,
            "consumed_chars": use.consumed_chars,
            "consumed_utf8_bytes": len(consumed.encode("utf-8")),
            "truncated": use.truncated,
        }
    return meta


#: the file suffix of a caption + side information container (semcomp.codecs.side)
CONTAINER_SUFFIX = ".semcomp-side"


class SideEncoder:
    """A method's side payload of each original at each size, encoded once per run."""

    def __init__(self, ctx: StageContext, method: TextualMethod):
        if method.side == "edges":
            require_edges_backend()
        self.ctx = ctx
        self.kind = str(method.side)
        self.params = SIDE_PARAMS[self.kind].model_validate(method.side_params)
        self.originals = {o["id"]: o for o in ctx.originals()}
        self.images: dict[str, Any] = {}
        self.payloads: dict[tuple[str, int], SidePayload] = {}
        #: the HED network for ``side = "hed"`` (one clear error when its weights are missing)
        self.model: Any = None
        if self.kind == "hed":
            from semcomp.codecs.hed import load_hed
            from semcomp.models import select_device

            self.model = load_hed(self.params.weights, select_device(method.device))

    def __call__(self, original_id: str, size: int | None) -> SidePayload:
        assert size is not None
        if (original_id, size) not in self.payloads:
            if original_id not in self.images:
                data = self.ctx.store.read_artifact(self.originals[original_id]["artifact_hash"])
                max_pixels = self.ctx.config.images.max_pixels
                self.images[original_id] = decode_image(data, max_pixels).rgb
            self.payloads[original_id, size] = encode_side(
                self.kind, self.params, self.images[original_id], size, self.model
            )
        return self.payloads[original_id, size]


def represent_captions(ctx: StageContext, method: TextualMethod) -> None:
    """Pack every new caption of ``method`` with its text codec into a representation."""
    store = ctx.store
    codec = text_codec_for(method.text_codec, method.text_codec_params)
    read_prompt: Callable[[str], Any] | None = None
    prompt_reader_loaded = False
    settled = ctx.settled()
    sides = SideEncoder(ctx, method) if method.side is not None else None
    for point in method.caption_points():
        existing = {
            (r[0], r[1])
            for r in store.conn.execute(
                "SELECT original_id, variant FROM representations "
                "WHERE method_id = ? AND operating_point = ?",
                (method.method_id, point.label),
            )
        }
        captions = store.conn.execute(
            "SELECT c.original_id, c.variant, c.text, c.id, o.name FROM captions c "
            "JOIN originals o ON o.id = c.original_id WHERE c.captioner_key = ? "
            "ORDER BY c.original_id, c.variant",
            (point.captioner_key,),
        ).fetchall()
        pending = [c for c in captions if (c["original_id"], c["variant"]) not in existing]
        ctx.report.skipped += len(captions) - len(pending)
        if not pending:
            continue
        if not prompt_reader_loaded:
            reconstructor = RECONSTRUCTORS.get(method.reconstructor)
            params = reconstructor.Params.model_validate(method.reconstructor_params)
            read_prompt = reconstructor.prompt_reader(params)
            prompt_reader_loaded = True
        with store.transaction():
            for caption in pending:
                item = representation_id(
                    caption["original_id"], method.method_id, point.label, caption["variant"]
                )
                if item in settled:
                    continue
                payload = codec.encode(caption["text"])
                if codec.decode(payload) != normalise_caption(caption["text"]):
                    ctx.fail(
                        item,
                        f"{codec.name} payload does not decode to the caption",
                        retryable=False,
                        detail={"method_id": method.method_id},
                    )
                    continue
                meta = payload_meta(codec, caption["text"], read_prompt)
                suffix = ".txt" if isinstance(codec, Utf8Codec) else f".{codec.name}"
                media_type = (
                    "text/plain; charset=utf-8"
                    if isinstance(codec, Utf8Codec)
                    else "application/octet-stream"
                )
                if method.side is not None:
                    try:
                        side = sides(caption["original_id"], point.side_size)
                    except Exception as exc:  # an unmet byte budget, an unreadable original
                        ctx.fail(
                            item,
                            f"side information ({method.side}): {exc}",
                            retryable=isinstance(exc, OSError),
                            detail={"method_id": method.method_id},
                        )
                        continue
                    caption_bytes = len(payload)
                    payload = pack(payload, side.data)
                    meta |= side.meta | {
                        "side": method.side,
                        "side_size": point.side_size,
                        "caption_bytes": caption_bytes,
                        "side_bytes": len(side.data),
                        "header_bytes": len(payload) - caption_bytes - len(side.data),
                        "side_artifact": store.put_artifact(
                            side.data, suffix=side.suffix, media_type=side.media_type
                        ),
                    }
                    suffix, media_type = CONTAINER_SUFFIX, "application/octet-stream"
                # best-of-N: the index the encoder sends is chosen at reconstruction (per
                # replicate, in the candidate's meta); its bytes count here
                sent_bytes = len(payload)
                if point.select_n is not None:
                    assert method.select is not None
                    sent_bytes += index_bytes(point.select_n)
                    meta |= {
                        "select_n": point.select_n,
                        "select_by": method.select.score_spec.key,
                        "select_bits": select_bits(point.select_n),
                        "index_bytes": index_bytes(point.select_n),
                    }
                store_representation(
                    ctx,
                    original_id=caption["original_id"],
                    method_id=method.method_id,
                    label=point.label,
                    variant=caption["variant"],
                    payload=payload,
                    suffix=suffix,
                    media_type=media_type,
                    rate_bits=8 * sent_bytes,
                    meta=meta | {"caption_id": caption["id"]},
                )
                ctx.report.done += 1


def pattern_values(name: str, original_id: str, source_path: str) -> dict[str, str]:
    """What each placeholder of an external method's pattern stands for, for one original."""
    stem = Path(source_path).stem
    return {"name": stem, "stem": stem, "id": name, "sha256": original_id}


def external_file(method: ExternalMethod, name: str, original_id: str, source_path: str) -> Path:
    """Where ``method``'s folder holds one original's file (its pattern with ``.*`` kept)."""
    return method.folder / method.pattern.format(**pattern_values(name, original_id, source_path))


@dataclass
class ExternalFiles:
    """An external method's folder against the originals: who has which files, and strays."""

    #: original id → the files its pattern matches (more than one is ambiguous)
    matches: dict[str, list[Path]]
    #: files of the pattern's shape that belong to no current original
    unmatched: list[Path]


def _listing_key(relative: str, any_extension: bool) -> str | None:
    """How a file is looked up: its lower-cased relative path, less an image extension
    when the pattern ends in ``.*`` (None: not an image, so no ``.*`` match)."""
    key = relative.lower()
    if not any_extension:
        return key
    stem, dot, suffix = key.rpartition(".")
    return stem if dot and f".{suffix}" in IMAGE_SUFFIXES else None


def find_external_files(method: ExternalMethod, originals: Sequence[sqlite3.Row]) -> ExternalFiles:
    """Match ``method``'s pattern against its folder, case-insensitively, for every original.

    A trailing ``.*`` matches any image extension. A file that has the pattern's
    shape (each placeholder standing for any text) but is claimed by no original
    is listed in ``unmatched``, so that a missing original is never silent.
    """
    import re
    import string

    any_extension = method.pattern.endswith(ANY_IMAGE_EXTENSION)
    body = method.pattern.removesuffix(ANY_IMAGE_EXTENSION) if any_extension else method.pattern
    depth = body.count("/") + 1
    files: dict[str, list[Path]] = defaultdict(list)
    if method.folder.is_dir():
        for path in sorted(method.folder.glob("/".join(["*"] * depth))):
            relative = path.relative_to(method.folder).as_posix()
            if path.name.startswith(".") or not path.is_file():
                continue
            key = _listing_key(relative, any_extension)
            if key is not None:
                files[key].append(path)
    matches: dict[str, list[Path]] = {}
    claimed: set[str] = set()
    for original in originals:
        values = pattern_values(original["name"], original["id"], original["source_path"])
        key = body.format(**values).lower()
        if key in files:
            matches[original["id"]] = files[key]
            claimed.add(key)
    shape = "".join(
        re.escape(literal) + (".+" if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(body.lower())
    )
    unmatched = [
        path
        for key, paths in files.items()
        if key not in claimed and re.fullmatch(shape, key, flags=re.IGNORECASE)
        for path in paths
    ]
    return ExternalFiles(matches=matches, unmatched=unmatched)


def unmatched_prefix(method: ExternalMethod) -> str:
    """The failure items that list ``method``'s files that match no original."""
    return f"unmatched|{method.method_id}|"


def record_unmatched(ctx: StageContext, method: ExternalMethod, found: ExternalFiles) -> None:
    """List (as this run's failures, re-listed on every run) files that match no original."""
    ctx.clear_prefix(unmatched_prefix(method))
    for path in found.unmatched:
        relative = path.relative_to(method.folder).as_posix()
        ctx.fail(
            f"{unmatched_prefix(method)}{relative}",
            f"{relative} has the shape of pattern {method.pattern!r} but matches no original "
            "(not imported; is its original missing from the images?)",
            retryable=False,
            detail={"label": f"{method.name} · {relative}", "unmatched_file": str(path)},
        )


#: media types of the files an external method imports, by suffix
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".bmp": "image/bmp",
}


def represent_external(ctx: StageContext, method: ExternalMethod) -> None:
    """One representation per original that has a file of ``method``'s pattern in its folder.

    With ``rate = "file"`` the payload is the file itself and the rate its bytes;
    with ``captions`` the payload is the caption under the text codec; with
    ``none`` there is no rate. An original without a file, or with several, is a
    failure naming the pattern; a file that matches no original is listed.
    """
    store = ctx.store
    codec = text_codec_for(method.text_codec, method.text_codec_params)
    label = str(method.operating_point)
    captions: dict[str, list] = {}
    if method.captions is not None:
        captions, problems = read_caption_rows(method.captions)
        with store.transaction():
            ctx.clear_prefix(f"{method.captions}:")
            for item, reason in problems:
                ctx.fail(item, reason, retryable=False)
    existing = {
        r[0]
        for r in store.conn.execute(
            "SELECT original_id FROM representations WHERE method_id = ? AND operating_point = ?",
            (method.method_id, label),
        )
    }
    originals = ctx.originals()
    found = find_external_files(method, originals)
    owners = reference_owners([original_ref(o) for o in originals])
    with store.transaction():
        record_unmatched(ctx, method, found)
        for original in originals:
            if original["id"] in existing:
                ctx.report.skipped += 1
                continue
            item = representation_id(original["id"], method.method_id, label, 0)
            detail = {"label": f"{original['name']} · {method.name}", "method_id": method.method_id}
            paths = found.matches.get(original["id"], [])
            if len(paths) != 1:
                expected = external_file(
                    method, original["name"], original["id"], original["source_path"]
                )
                reason = (
                    f"no file matching pattern {method.pattern!r} ({expected.name}) "
                    f"in {method.folder}"
                    if not paths
                    else f"{len(paths)} files match pattern {method.pattern!r}: "
                    f"{', '.join(p.name for p in paths)} (keep one)"
                )
                ctx.fail(item, reason, detail=detail)
                continue
            (path,) = paths
            meta: dict[str, Any] = {"file": str(path), "pattern": method.pattern}
            if method.rate == "file":
                try:
                    payload = path.read_bytes()
                except OSError as exc:
                    ctx.fail(item, f"cannot read {path.name}: {exc.strerror}", detail=detail)
                    continue
                suffix = path.suffix.lower()
                media_type = MEDIA_TYPES.get(suffix, "application/octet-stream")
                rate_bits: int | None = 8 * len(payload)
            else:
                texts, ambiguous = match_captions(captions, original_ref(original), owners)
                if not texts and ambiguous:
                    ctx.fail(
                        item,
                        f"{method.captions.name} names {ambiguous[0]!r}, which matches several "
                        "originals; name this one by its id or a unique name",
                        detail={"label": original["name"], "method_id": method.method_id},
                    )
                    continue
                text = texts[0].text if texts else None
                payload = codec.encode(text) if text is not None else b""
                if text is not None:
                    meta |= payload_meta(codec, text, None)
                suffix, media_type = ".txt", "application/octet-stream"
                rate_bits = (
                    8 * len(payload) if text is not None and method.rate == "captions" else None
                )
            store_representation(
                ctx,
                original_id=original["id"],
                method_id=method.method_id,
                label=label,
                variant=0,
                payload=payload,
                suffix=suffix,
                media_type=media_type,
                rate_bits=rate_bits,
                meta=meta | {"rate_source": method.rate},
            )
            ctx.clear(item)
            ctx.report.done += 1
