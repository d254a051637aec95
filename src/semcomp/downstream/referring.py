"""``semcomp referring eval``: referring-object identification from (compressed) region
features (the PQVAE paper's §4.6 (b), Fig. 8).

SAM segments each image into candidate regions; each region, cut out on a
neutral grey background, is embedded with CLIP; each region embedding is
encoded into its real byte stream and decoded by each embedding codec; the
region whose decoded embedding has the highest cosine with the CLIP text
embedding of the referring expression is the prediction. It is correct when
the chosen region's box has IoU ≥ 0.5 with the target box.

Regions come from a grid of point prompts run through ``SamModel`` directly
(SAM's automatic mask generation without its multi-crop pass): each point
gives SAM's three candidate masks, the one with the highest predicted IoU is
kept if it passes ``pred_iou_threshold`` and ``stability_threshold`` and
covers at least ``min_area`` of the image, and near-duplicates (mask IoU ≥
``nms_iou``) are dropped, the better-scored kept.

Annotations (:func:`read_refs`): a RefCOCO ``refs(unc).p`` pickle from the
``refer`` toolkit, or a JSON file with the same records: a list of refs, or an
object with a ``refs`` list (and optionally COCO ``images`` / ``annotations``
lists, as in ``instances.json``). Each ref needs ``image_id`` and
``sentences`` (a list of ``{"sent": text}`` or of strings) and the target as
``bbox`` ``[x, y, w, h]``, or ``segmentation`` polygons, or an ``ann_id`` found
in the ``annotations`` list (or in ``--instances``). The image file is the
``images`` entry's ``file_name``, else the ref's ``file_name`` (the refer
toolkit's ``COCO_train2014_<image>_<ann>.jpg`` has its ``_<ann>`` dropped when
that file is not there). ``ref_id`` and ``split`` are optional.

Outputs in ``out``:

- ``accuracy.csv``: one row per codec: bits per region (mean), bits per image
  (all of an image's regions sent), bits per dimension, expressions, correct,
  accuracy;
- ``choices.csv``: one row per expression: ref, image, sentence, target box,
  then per codec the chosen region, its box, cosine, IoU and whether correct;
- ``examples.png``: the paper's Fig. 8 for the first ``examples`` expressions
  (:func:`draw_examples`);
- ``eval.json``: settings, region counts, the proposal recall (the share of
  expressions with some region at IoU ≥ 0.5: the accuracy's upper bound) and
  the images left out, each with its reason (missing, unreadable, no region).

Every codec is scored on the same expressions. SAM masks and region
embeddings are cached under ``out/cache`` keyed by the image's content and the
model's identity and settings, so a rerun (or one with other codecs) skips
them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcomp.errors import ConfigError

log = logging.getLogger(__name__)

#: the paper's criterion: the chosen region's box overlaps the target's with IoU ≥ 0.5
IOU_THRESHOLD = 0.5
#: what surrounds a region in its crop (mid grey)
BACKGROUND = (128, 128, 128)


# ---- annotations ------------------------------------------------------------------------------


@dataclass
class Ref:
    """One referred object: its image, its expressions and its target box (x, y, w, h)."""

    ref_id: Any
    image_id: Any
    file_name: str
    sentences: list[str]
    bbox: tuple[float, float, float, float]
    split: str | None = None


def _load_annotation_file(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"no referring-expression annotation file at {path}")
    if path.suffix in (".p", ".pkl", ".pickle"):
        try:
            with path.open("rb") as handle:
                return pickle.load(handle)  # the refer toolkit's format: trusted files only
        except Exception as exc:  # pickle raises many kinds
            raise ConfigError(f"{path} is not a readable pickle: {exc}") from None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a JSON annotation file: {exc}") from None


def _polygon_box(segmentation: Any) -> tuple[float, float, float, float] | None:
    try:
        points = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in segmentation])
    except (TypeError, ValueError):
        return None
    if points.size == 0:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1]))


def _box(value: Any) -> tuple[float, float, float, float] | None:
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(box) != 4 or box[2] < 0 or box[3] < 0 or not all(np.isfinite(box)):
        return None
    return box  # type: ignore[return-value]


def read_refs(path: Path, *, instances: Path | None = None, split: str | None = None) -> list[Ref]:
    """The refs of ``path`` (layout in the module docstring), in file order; with ``split``,
    only that split's. A malformed record is a :class:`ConfigError` naming it."""
    path = Path(path)
    data = _load_annotation_file(path)
    images: dict[Any, str] = {}
    annotations: dict[Any, dict] = {}
    sources = [data] if isinstance(data, dict) else []
    if instances is not None:
        extra = _load_annotation_file(Path(instances))
        if not isinstance(extra, dict):
            raise ConfigError(f"{instances} is not a COCO instances file (an object)")
        sources.append(extra)
    for source in sources:
        for record in source.get("images") or []:
            if isinstance(record, dict) and "id" in record and "file_name" in record:
                images[record["id"]] = str(record["file_name"])
        for record in source.get("annotations") or []:
            if isinstance(record, dict) and "id" in record:
                annotations[record["id"]] = record
    records = data.get("refs") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ConfigError(f"{path} holds no list of refs (a list, or an object with 'refs')")
    refs = []
    for number, record in enumerate(records):
        where = f"{path}: refs[{number}]"
        if not isinstance(record, dict):
            raise ConfigError(f"{where} is not a record (got {type(record).__name__})")
        if record.get("image_id") is None:
            raise ConfigError(f"{where} has no 'image_id'")
        if split is not None and record.get("split") != split:
            continue
        sentences = record.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise ConfigError(f"{where} has no 'sentences' list")
        texts = []
        for sentence in sentences:
            text = (
                sentence.get("sent", sentence.get("raw"))
                if isinstance(sentence, dict)
                else sentence
            )
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{where} has a sentence without text: {sentence!r:.100}")
            texts.append(text.strip())
        target = annotations.get(record.get("ann_id"), {})
        box = None
        if "bbox" in record:
            box = _box(record["bbox"])
        elif "segmentation" in record:
            box = _polygon_box(record["segmentation"])
        elif "bbox" in target:
            box = _box(target["bbox"])
        if box is None:
            raise ConfigError(
                f"{where} has no usable target: a 'bbox' [x, y, w, h], 'segmentation' polygons, "
                "or an 'ann_id' in the annotations (--instances)"
            )
        file_name = images.get(record["image_id"]) or record.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise ConfigError(f"{where} has no image file name (no 'file_name', no 'images' entry)")
        refs.append(
            Ref(
                ref_id=record.get("ref_id", number),
                image_id=record["image_id"],
                file_name=file_name,
                sentences=texts,
                bbox=box,
                split=record.get("split"),
            )
        )
    return refs


def image_path(folder: Path, file_name: str) -> Path | None:
    """The image of ``file_name`` in ``folder``; the refer toolkit's per-ref names
    (``..._<image>_<ann>.jpg``) fall back to the image's own name."""
    path = Path(folder) / file_name
    if path.is_file():
        return path
    stripped = re.sub(r"_\d+(\.\w+)$", r"\1", file_name)
    if stripped != file_name and (Path(folder) / stripped).is_file():
        return Path(folder) / stripped
    return None


# ---- geometry and selection -------------------------------------------------------------------


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    width = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    height = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = width * height
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """The (x, y, w, h) box of a boolean mask's pixels (pixel edges, so one pixel is 1×1)."""
    ys, xs = np.nonzero(mask)
    return (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    )


def choose_region(regions: np.ndarray, text: np.ndarray) -> tuple[int, float]:
    """The region (row of ``regions``) whose embedding has the highest cosine with ``text``,
    and that cosine. Rows need not be normalised (decoded embeddings are not)."""
    regions = np.asarray(regions, dtype=np.float64)
    norms = np.linalg.norm(regions, axis=1)
    norms[norms == 0] = 1.0
    cosines = regions @ (np.asarray(text, np.float64) / max(np.linalg.norm(text), 1e-12)) / norms
    best = int(np.argmax(cosines))
    return best, float(cosines[best])


def region_crop(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The region's box cut from ``image``, pixels outside the mask grey, padded (grey) to a
    square so CLIP's centre crop keeps all of it."""
    x, y, w, h = (int(v) for v in mask_box(mask))
    rgb = np.asarray(image.convert("RGB"))[y : y + h, x : x + w].copy()
    rgb[~mask[y : y + h, x : x + w]] = BACKGROUND
    side = max(w, h)
    square = np.empty((side, side, 3), np.uint8)
    square[:] = BACKGROUND
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = rgb
    return Image.fromarray(square)


# ---- SAM region proposals ---------------------------------------------------------------------


@dataclass(frozen=True)
class SamSettings:
    model: str = "facebook/sam-vit-base"
    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_threshold: float = 0.88
    stability_threshold: float = 0.95
    stability_offset: float = 1.0
    min_area: float = 0.001
    nms_iou: float = 0.7
    max_regions: int = 64

    def identity(self) -> dict[str, Any]:
        return {"sam": self.__dict__.copy() | {"points_per_batch": None}}


def point_grid(width: int, height: int, per_side: int) -> list[list[float]]:
    """``per_side``² points at the centres of a regular grid over the image (SAM's layout)."""
    offsets = (np.arange(per_side) + 0.5) / per_side
    return [[float(x * width), float(y * height)] for y in offsets for x in offsets]


def select_masks(
    masks: np.ndarray, scores: np.ndarray, stability: np.ndarray, settings: SamSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Filter one image's per-point masks (P×H×W bool) by score, stability and area, then drop
    near-duplicates (mask IoU ≥ ``nms_iou``), best-scored first; at most ``max_regions``."""
    area = masks.reshape(len(masks), -1).sum(axis=1)
    keep = (
        (scores >= settings.pred_iou_threshold)
        & (stability >= settings.stability_threshold)
        & (area >= max(1.0, settings.min_area * masks[0].size if len(masks) else 1.0))
    )
    chosen: list[int] = []
    flat = masks.reshape(len(masks), -1)
    for index in np.argsort(-scores, kind="stable"):
        if not keep[index]:
            continue
        duplicate = False
        for other in chosen:
            inter = np.logical_and(flat[index], flat[other]).sum()
            union = np.logical_or(flat[index], flat[other]).sum()
            if union and inter / union >= settings.nms_iou:
                duplicate = True
                break
        if not duplicate:
            chosen.append(int(index))
        if len(chosen) == settings.max_regions:
            break
    return masks[chosen], scores[chosen]


class SamRegions:
    """SAM (``SamModel`` + ``SamProcessor``) proposing regions from a grid of point prompts."""

    def __init__(self, settings: SamSettings, device: str = "cpu"):
        from transformers import SamModel, SamProcessor

        from semcomp.models import load_cached_or_download, quiet_hf_libraries

        quiet_hf_libraries()
        self.settings = settings
        self.device = device

        def load() -> tuple[Any, Any]:
            return (
                SamModel.from_pretrained(settings.model).to(device).eval(),
                SamProcessor.from_pretrained(settings.model),
            )

        self.model, self.processor = load_cached_or_download(
            load,
            what=f"SAM {settings.model}",
            fetch_hint="download it on a connected machine (or copy its Hugging Face cache "
            "here), or pass --sam with a local folder",
        )

    def regions(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks (R×H×W) and predicted IoUs (R) of ``image``'s regions."""
        import torch

        s = self.settings
        image = image.convert("RGB")
        points = point_grid(image.width, image.height, s.points_per_side)
        inputs = self.processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        masks, scores, stability = [], [], []
        for start in range(0, len(points), s.points_per_batch):
            batch = [[p] for p in points[start : start + s.points_per_batch]]
            prompts = self.processor(images=image, input_points=[batch], return_tensors="pt")
            with torch.inference_mode():
                out = self.model(
                    image_embeddings=embeddings,
                    input_points=prompts["input_points"].to(self.device),
                    multimask_output=True,
                )
            logits = self.processor.image_processor.post_process_masks(
                out.pred_masks.float().cpu(),
                prompts["original_sizes"],
                prompts["reshaped_input_sizes"],
                binarize=False,
            )[0]  # P × 3 × H × W
            iou = out.iou_scores[0].float().cpu()  # P × 3
            best = iou.argmax(dim=1)
            rows = torch.arange(len(best))
            chosen = logits[rows, best]
            high = (chosen > s.stability_offset).flatten(1).sum(1).float()
            low = (chosen > -s.stability_offset).flatten(1).sum(1).float()
            stability.append(torch.where(low > 0, high / low.clamp(min=1), 0.0).numpy())
            masks.append((chosen > 0).numpy())
            scores.append(iou[rows, best].numpy())
        return select_masks(
            np.concatenate(masks), np.concatenate(scores), np.concatenate(stability), s
        )

    def close(self) -> None:
        from semcomp.models import release

        self.model = None
        release()


# ---- the cache --------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:24]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


@dataclass
class ImageRegions:
    masks: np.ndarray  # R × H × W bool
    scores: np.ndarray
    boxes: np.ndarray  # R × 4 (x, y, w, h)
    embeddings: np.ndarray | None = None  # R × D


def _mask_key(content: str, settings: SamSettings) -> str:
    return _digest({"image": content, **settings.identity()})


# ---- the evaluation ---------------------------------------------------------------------------


@dataclass
class CodecAccuracy:
    name: str
    bits_per_region: float
    bits_per_image: float
    bpd: float
    expressions: int
    correct: int
    #: per expression: (region, cosine, IoU, correct)
    choices: list[tuple[int, float, float, bool]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.expressions if self.expressions else float("nan")


def score_codec(
    name: str,
    codec: Any,
    regions: dict[Any, ImageRegions],
    expressions: list[tuple[Ref, str]],
    texts: np.ndarray,
) -> CodecAccuracy:
    """Encode every region embedding with ``codec``, decode it, and pick each expression's
    region (:func:`choose_region`) among its image's decoded regions."""
    keys = list(regions)
    stacked = np.concatenate([regions[k].embeddings for k in keys])
    encoded = codec.encode_batch(stacked)
    decoded = codec.decode(encoded.streams)
    bits = np.asarray(encoded.bits, dtype=np.float64)
    per_image, offsets, start = [], {}, 0
    for key in keys:
        count = len(regions[key].embeddings)
        offsets[key] = (start, start + count)
        per_image.append(bits[start : start + count].sum())
        start += count
    result = CodecAccuracy(
        name,
        float(bits.mean()),
        float(np.mean(per_image)),
        float(bits.mean()) / stacked.shape[1],
        len(expressions),
        0,
    )
    for (ref, _), text in zip(expressions, texts, strict=True):
        low, high = offsets[ref.image_id]
        region, cosine = choose_region(decoded[low:high], text)
        iou = box_iou(regions[ref.image_id].boxes[region], ref.bbox)
        correct = iou >= IOU_THRESHOLD
        result.correct += int(correct)
        result.choices.append((region, cosine, iou, correct))
    return result


#: an example panel's height (images are scaled to it) and its caption band
PANEL_HEIGHT = 192
CAPTION_HEIGHT = 28


def draw_examples(
    paths: dict[Any, Path],
    regions: dict[Any, ImageRegions],
    expressions: list[tuple[Ref, str]],
    results: Sequence[CodecAccuracy],
    count: int,
) -> Image.Image:
    """The paper's Fig. 8 for the first ``count`` expressions: one row each, one panel per
    codec: the image, the chosen region tinted and boxed (green when correct, red when not),
    the target box in white, the expression and the codec's name and bits per region."""
    from PIL import ImageDraw

    rows = []
    for number, (ref, sentence) in enumerate(expressions[:count]):
        with Image.open(paths[ref.image_id]) as opened:
            image = opened.convert("RGB")
        scale = PANEL_HEIGHT / image.height
        width = max(1, round(image.width * scale))
        panels = []
        for result in results:
            region, _cosine, _iou, correct = result.choices[number]
            colour = (0, 200, 0) if correct else (220, 0, 0)
            pixels = np.asarray(image, dtype=np.float32).copy()
            mask = regions[ref.image_id].masks[region]
            pixels[mask] = 0.5 * pixels[mask] + 0.5 * np.array(colour, np.float32)
            panel = Image.fromarray(pixels.astype(np.uint8)).resize((width, PANEL_HEIGHT))
            canvas = Image.new("RGB", (width, PANEL_HEIGHT + CAPTION_HEIGHT), "white")
            canvas.paste(panel, (0, 0))
            draw = ImageDraw.Draw(canvas)
            for box, fill in (
                (ref.bbox, (255, 255, 255)),
                (regions[ref.image_id].boxes[region], colour),
            ):
                x, y, w, h = (v * scale for v in box)
                draw.rectangle((x, y, x + w - 1, y + h - 1), outline=fill, width=2)
            draw.text((2, PANEL_HEIGHT + 1), sentence[:60], fill="black")
            draw.text(
                (2, PANEL_HEIGHT + 14),
                f"{result.name[:40]}: {result.bits_per_region:.0f} bits/region",
                fill="black",
            )
            panels.append(canvas)
        row = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
        left = 0
        for panel in panels:
            row.paste(panel, (left, 0))
            left += panel.width
        rows.append(row)
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        figure.paste(row, (0, top))
        top += row.height
    return figure


def proposal_recall(regions: dict[Any, ImageRegions], expressions: list[tuple[Ref, str]]) -> float:
    """The share of expressions whose image has some region with IoU ≥ 0.5 with the target:
    the accuracy a perfect matcher would reach on these proposals (an upper bound)."""
    hits = [
        any(box_iou(box, ref.bbox) >= IOU_THRESHOLD for box in regions[ref.image_id].boxes)
        for ref, _ in expressions
    ]
    return float(np.mean(hits)) if hits else float("nan")


def evaluate_referring(
    annotations: Path,
    images: Path,
    out: Path,
    *,
    clip: Any,
    codecs: Sequence[str] = (),
    coder: str | None = None,
    sam: SamSettings | None = None,
    instances: Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    examples: int = 4,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = True,
    log_line: Callable[[str], None] = log.info,
) -> tuple[list[CodecAccuracy], dict[str, Any]]:
    """Run SAM, CLIP and each codec over the refs; write the CSVs and ``eval.json``.

    ``clip``: a :class:`semcomp.config.EmbedderConfig`. Models run one at a time: SAM over
    every image (masks cached), then CLIP over every region and expression (cached).
    """
    from tqdm.auto import tqdm

    from semcomp.downstream.caption_eval import write_csv
    from semcomp.downstream.clipcap import open_codec
    from semcomp.metrics.clip import OpenClipEmbedder

    sam = sam or SamSettings()
    refs = read_refs(annotations, instances=instances, split=split)
    if limit is not None:
        refs = refs[:limit]
    if not refs:
        raise ConfigError(f"{annotations} has no refs" + (f" in split {split!r}" if split else ""))
    out = Path(out)
    cache = out / "cache"
    left_out: list[dict[str, Any]] = []
    paths: dict[Any, Path] = {}
    for ref in refs:
        if ref.image_id in paths:
            continue
        path = image_path(images, ref.file_name)
        if path is None:
            left_out.append({"image_id": ref.image_id, "reason": f"no image {ref.file_name}"})
        else:
            paths[ref.image_id] = path
    contents = {image_id: file_digest(path) for image_id, path in paths.items()}
    regions: dict[Any, ImageRegions] = {}

    # SAM: masks per image, cached by content + settings
    todo = [
        i for i in paths if not (cache / "masks" / f"{_mask_key(contents[i], sam)}.npz").is_file()
    ]
    if todo:
        segmenter = SamRegions(sam, device)
        try:
            for image_id in tqdm(todo, desc="SAM regions", disable=not progress):
                try:
                    with Image.open(paths[image_id]) as opened:
                        masks, scores = segmenter.regions(opened)
                except OSError as exc:
                    reason = f"unreadable image {paths.pop(image_id)}: {exc}"
                    left_out.append({"image_id": image_id, "reason": reason})
                    log_line(reason)
                    continue
                shape = np.array(masks.shape)
                _save_npz(
                    cache / "masks" / f"{_mask_key(contents[image_id], sam)}.npz",
                    packed=np.packbits(masks.reshape(-1)),
                    shape=shape,
                    scores=scores.astype(np.float32),
                )
        finally:
            segmenter.close()
    for image_id in paths:
        with np.load(cache / "masks" / f"{_mask_key(contents[image_id], sam)}.npz") as stored:
            shape = tuple(int(v) for v in stored["shape"])
            count = int(np.prod(shape))
            masks = np.unpackbits(stored["packed"], count=count).astype(bool).reshape(shape)
            scores = stored["scores"]
        if len(masks) == 0:
            left_out.append({"image_id": image_id, "reason": "SAM proposed no region"})
            continue
        boxes = np.array([mask_box(m) for m in masks], dtype=np.float64)
        regions[image_id] = ImageRegions(masks, scores, boxes)

    # CLIP: region embeddings per image, cached by masks + embedder identity; then texts
    expressions = [(r, s) for r in refs if r.image_id in regions for s in r.sentences]
    if not expressions:
        raise ConfigError(f"no expression left to evaluate: {left_out[:5]}")
    embedder = OpenClipEmbedder(clip, device=device, batch_size=batch_size)
    try:
        clip_key = _digest(embedder.identity())
        for image_id in tqdm(list(regions), desc="region embeddings", disable=not progress):
            key = _digest([_mask_key(contents[image_id], sam), clip_key])
            stored = cache / "regions" / f"{key}.npz"
            if stored.is_file():
                with np.load(stored) as data:
                    regions[image_id].embeddings = data["embeddings"]
                continue
            with Image.open(paths[image_id]) as opened:
                image = opened.convert("RGB")
            crops = [region_crop(image, mask) for mask in regions[image_id].masks]
            embeddings = embedder.embed(crops)
            _save_npz(stored, embeddings=embeddings)
            regions[image_id].embeddings = embeddings
        texts = embedder.embed_texts([sentence for _, sentence in expressions])
        dim = embedder.dim
    finally:
        embedder.close()

    specs = ["float32", *[c for c in codecs if c != "float32"]]
    named = [open_codec(spec, dim, coder) for spec in specs]
    names = [n.name for n in named]
    if len(set(names)) != len(names):
        raise ConfigError(f"two codecs have the same name: {names}")
    results = [
        score_codec(item.name, item.codec, regions, expressions, texts)
        for item in tqdm(named, desc="codecs", disable=not progress)
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / "accuracy.csv",
        ["codec", "bits_per_region", "bits_per_image", "bpd", "expressions", "correct", "accuracy"],
        [
            [
                r.name,
                r.bits_per_region,
                r.bits_per_image,
                r.bpd,
                r.expressions,
                r.correct,
                r.accuracy,
            ]
            for r in results
        ],
    )
    header = ["ref_id", "image_id", "sentence", "target_box", "regions"]
    for r in results:
        header += [
            f"{column}: {r.name}" for column in ("region", "box", "cosine", "iou", "correct")
        ]
    rows = []
    for number, (ref, sentence) in enumerate(expressions):
        row: list[Any] = [
            ref.ref_id,
            ref.image_id,
            sentence,
            json.dumps(list(ref.bbox)),
            len(regions[ref.image_id].boxes),
        ]
        for r in results:
            region, cosine, iou, correct = r.choices[number]
            box = [float(v) for v in regions[ref.image_id].boxes[region]]
            row += [region, json.dumps(box), round(cosine, 6), round(iou, 6), int(correct)]
        rows.append(row)
    write_csv(out / "choices.csv", header, rows)
    if examples:
        draw_examples(paths, regions, expressions, results, examples).save(out / "examples.png")
    summary = {
        "annotations": str(Path(annotations).resolve()),
        "images": str(Path(images).resolve()),
        "split": split,
        "sam": sam.__dict__,
        "sam_prompts": "point grid through SamModel (no multi-crop automatic mask generation)",
        "clip": embedder.identity(),
        "codecs": names,
        "iou_threshold": IOU_THRESHOLD,
        "refs": len(refs),
        "expressions": len(expressions),
        "images_evaluated": len(regions),
        "regions": int(sum(len(r.boxes) for r in regions.values())),
        "proposal_recall": proposal_recall(regions, expressions),
        "left_out": left_out,
    }
    (out / "eval.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return results, summary
