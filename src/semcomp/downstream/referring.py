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

Both models run through an engine (:mod:`semcomp.engines`: this process, or
Ray actors), one after the other: SAM over every image whose masks are not
cached (images batched through its image encoder, point prompts batched per
``points_per_batch``), then it is freed and CLIP embeds every region and every
expression not cached. Batches run on CUDA when there is one (fp16 weights, as
the other batch stages), halved on out-of-memory.

Annotations (:func:`read_refs`), as researchers have them:

- the ``refer`` toolkit's folder (``refcoco/``: ``refs(unc).p`` and
  ``instances.json``), or its ``refs(*).p`` file (with ``instances.json``
  beside it or given): the pickle is read with an unpickler that refuses every
  class, so only plain lists, dicts, strings and numbers load;
- a JSON file with the same records: a list of refs, or an object with a
  ``refs`` list (and optionally COCO ``images`` / ``annotations`` lists);
- the Hugging Face ``lmms-lab/RefCOCO`` layout (RefCOCO+, RefCOCOg alike): a
  folder of Parquet shards (``data/val-00000-of-00004.parquet``) or one shard,
  a row per referred object with its image embedded, ``answer`` (its
  expressions), ``bbox`` ``[x, y, w, h]``, ``segmentation`` and ``file_name``.

A ref needs ``image_id`` and ``sentences`` (a list of ``{"sent": text}`` or of
strings) and the target as ``bbox`` ``[x, y, w, h]``, or ``segmentation``
polygons, or an ``ann_id`` found in the ``annotations`` list (or in
``--instances``). The image file is the ``images`` entry's ``file_name``,
else the ref's ``file_name`` (the refer toolkit's
``COCO_train2014_<image>_<ann>.jpg`` has its ``_<ann>`` dropped when that file
is not there). A malformed ref (no expression, no usable target, ...) is a
recorded failure with its reason; the others are evaluated.

Outputs in ``out``:

- ``accuracy.csv``: one row per codec: bits per region (mean), bits per image
  (all of an image's regions sent), bits per pixel of those, bits per
  dimension, expressions, images, correct, accuracy with its 95 % bootstrap
  interval (images resampled);
- ``choices.csv``: one row per expression: ref, image, sentence, target box,
  then per codec the chosen region, its box, cosine, IoU and whether correct;
- ``accuracy.png`` / ``.pdf``: accuracy against bits per region and per image;
- ``examples.png`` / ``.pdf``: the paper's Fig. 8 for ``examples`` expressions
  (:func:`examples_figure`);
- ``failures.csv`` (step, item, reason) and ``eval.json``: settings, model
  identities, region counts, the proposal recall (the share of expressions
  with some region at IoU ≥ 0.5: the accuracy's upper bound), the failures and
  each step's time split (``--profile``).

Every codec is scored on the same expressions. SAM masks are cached under
``out/cache/masks`` by the image's content and SAM's identity and settings,
region embeddings under ``cache/regions`` by those masks and CLIP's identity,
expression embeddings under ``cache/texts`` by CLIP's identity, each written
as soon as it is computed: a rerun, or one with other codecs, loads no model,
and a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcomp.engines import BatchTask, Engine, LocalEngine, PluginFactory, phase
from semcomp.errors import ConfigError, ImageError

log = logging.getLogger(__name__)

#: the paper's criterion: the chosen region's box overlaps the target's with IoU ≥ 0.5
IOU_THRESHOLD = 0.5
#: what surrounds a region in its crop (mid grey)
BACKGROUND = (128, 128, 128)
#: what the steps are called in failures and in the profile
STEPS = ("annotations", "images", "sam", "clip", "codecs")


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
    #: the image itself where the annotations carry it (a Parquet cell), else None: the file
    #: is ``file_name`` in the images folder
    image: Any = None


@dataclass
class Annotations:
    """The refs read, the malformed records left out (item, reason) and what was read."""

    refs: list[Ref]
    failures: list[tuple[str, str]]
    layout: str
    source: Path
    splits: list[str] = field(default_factory=list)


class _PlainData(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numbers only: any class or function is refused
    (the refer toolkit's pickles hold nothing else; DESIGN.md: nothing untrusted unpickled)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (plain data only)")


def _read_pickle(path: Path) -> Any:
    for encoding in ("utf-8", "latin1"):  # Python 2 pickles (the refer toolkit's) hold bytes
        try:
            with path.open("rb") as handle:
                return _PlainData(handle, encoding=encoding).load()
        except UnicodeDecodeError:
            continue
        except Exception as exc:  # pickle raises many kinds
            raise ConfigError(f"{path} is not a readable refs pickle: {exc}") from None
    raise ConfigError(f"{path} is not a readable refs pickle: text in an unknown encoding")


def _load_annotation_file(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"no referring-expression annotation file at {path}")
    if path.suffix in (".p", ".pkl", ".pickle"):
        return _read_pickle(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a JSON annotation file: {exc}") from None


def _polygon_box(segmentation: Any) -> tuple[float, float, float, float] | None:
    """The box of COCO polygons: a list of flat ``[x1, y1, x2, y2, ...]`` lists, or one."""
    try:
        if len(segmentation) and not hasattr(segmentation[0], "__len__"):
            segmentation = [segmentation]  # one flat polygon (the Hugging Face layout)
        points = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in segmentation])
    except (TypeError, ValueError):
        return None
    if points.size == 0 or not np.isfinite(points).all():
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1]))


def _box(value: Any) -> tuple[float, float, float, float] | None:
    try:
        box = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0 or not all(np.isfinite(box)):
        return None
    return box  # type: ignore[return-value]


def _sentences(value: Any) -> list[str] | str:
    """The expressions of a ref, or why there are none."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        return "no 'sentences' list"
    texts = []
    for sentence in value:
        text = sentence.get("sent", sentence.get("raw")) if isinstance(sentence, dict) else sentence
        if not isinstance(text, str) or not text.strip():
            return f"a sentence without text: {sentence!r:.100}"
        texts.append(text.strip())
    return texts


def _ref(
    record: Any, number: int, images: dict[Any, str], annotations: dict[Any, dict]
) -> Ref | str:
    """A ref of the refer toolkit's layout, or why the record is not one."""
    if not isinstance(record, dict):
        return f"not a record (got {type(record).__name__})"
    if record.get("image_id") is None:
        return "no 'image_id'"
    texts = _sentences(record.get("sentences"))
    if isinstance(texts, str):
        return texts
    target = annotations.get(record.get("ann_id"), {})
    box = None
    if "bbox" in record:
        box = _box(record["bbox"])
    elif "segmentation" in record:
        box = _polygon_box(record["segmentation"])
    elif "bbox" in target:
        box = _box(target["bbox"])
    if box is None:
        return (
            "no usable target: a 'bbox' [x, y, w, h] of positive size, 'segmentation' "
            "polygons, or an 'ann_id' in the annotations (--instances)"
        )
    file_name = images.get(record["image_id"]) or record.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        return "no image file name (no 'file_name', no 'images' entry)"
    return Ref(
        ref_id=record.get("ref_id", number),
        image_id=record["image_id"],
        file_name=file_name,
        sentences=texts,
        bbox=box,
        split=record.get("split"),
    )


def _refer_files(folder: Path) -> tuple[Path, Path | None]:
    """The refs pickle (or JSON) of a refer toolkit folder, and its ``instances.json``."""
    found = sorted(folder.glob("refs(*).p")) or sorted(folder.glob("refs*.json"))
    if len(found) != 1:
        named = ", ".join(p.name for p in found) or "none"
        raise ConfigError(
            f"{folder}: expected one refs(<split-by>).p file (the refer toolkit's layout) or "
            f"Parquet shards (lmms-lab/RefCOCO's); found {named}: name the file"
        )
    instances = folder / "instances.json"
    return found[0], instances if instances.is_file() else None


def _read_refer(path: Path, instances: Path | None, split: str | None, layout: str) -> Annotations:
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
    refs, failures, splits = [], [], []
    for number, record in enumerate(records):
        if isinstance(record, dict):
            if record.get("split") not in splits and record.get("split") is not None:
                splits.append(record["split"])
            if split is not None and record.get("split") != split:
                continue
        ref = _ref(record, number, images, annotations)
        if isinstance(ref, str):
            named = record.get("ref_id") if isinstance(record, dict) else None
            item = f"refs[{number}]" + (f" (ref_id {named})" if named is not None else "")
            failures.append((item, ref))
        else:
            refs.append(ref)
    return Annotations(refs, failures, layout, path, splits)


def _read_parquet(root: Path, split: str | None) -> Annotations:
    """The Hugging Face ``lmms-lab/RefCOCO`` layout: a row per referred object."""
    import pyarrow.parquet as pq

    from semcomp.datasets import parquet_split
    from semcomp.datasets.sources import ParquetImage

    shards = [root] if root.is_file() else sorted(
        p for p in root.rglob("*.parquet") if not p.name.startswith(".")
    )  # fmt: skip
    by_split: dict[str, list[Path]] = {}
    for shard in shards:
        by_split.setdefault(
            parquet_split(shard, root if root.is_dir() else root.parent), []
        ).append(shard)
    names = sorted(by_split)
    if split is None and len(names) > 1:
        raise ConfigError(f"{root} holds the splits {', '.join(names)}: choose one with --split")
    chosen = split if split is not None else names[0]
    if chosen not in by_split:
        raise ConfigError(f"{root} has no split {chosen!r} (it has {', '.join(names)})")
    refs, failures = [], []
    wanted = ("question_id", "answer", "bbox", "segmentation", "file_name", "image_id")
    for shard in by_split[chosen]:
        schema = pq.read_schema(shard).names
        image_column = next((c for c in ("image", "img") if c in schema), None)
        if image_column is None or "answer" not in schema:
            raise ConfigError(
                f"{shard}: a RefCOCO shard needs an 'image' and an 'answer' column "
                f"(columns: {', '.join(schema)})"
            )
        table = pq.read_table(shard, columns=[c for c in wanted if c in schema]).to_pylist()
        for row, record in enumerate(table):
            item = f"{shard.name}#{row}"
            texts = _sentences(record.get("answer"))
            box = _box(record["bbox"]) if record.get("bbox") is not None else None
            if box is None and record.get("segmentation") is not None:
                box = _polygon_box(record["segmentation"])
            if isinstance(texts, str):
                failures.append((item, texts.replace("'sentences'", "'answer'")))
                continue
            if box is None:
                failures.append((item, "no usable target: 'bbox' [x, y, w, h] or 'segmentation'"))
                continue
            name = record.get("file_name") or item
            refs.append(
                Ref(
                    ref_id=record.get("question_id", item),
                    image_id=record.get("image_id", name),
                    file_name=str(name),
                    sentences=texts,
                    bbox=box,
                    split=chosen,
                    image=ParquetImage(shard.resolve(), row, image_column),
                )
            )
    return Annotations(refs, failures, "hf-parquet", root, names)


def read_refs(
    path: Path, *, instances: Path | None = None, split: str | None = None
) -> Annotations:
    """The refs of ``path`` (layouts in the module docstring), in file order; with ``split``,
    only that split's. A malformed record is a failure (item, reason) and is left out; a file
    that cannot be read at all is a :class:`ConfigError`."""
    path = Path(path)
    if path.is_dir():
        if any(path.rglob("*.parquet")):
            return _read_parquet(path, split)
        refs_file, found = _refer_files(path)
        return _read_refer(refs_file, instances or found, split, "refer")
    if path.suffix == ".parquet":
        return _read_parquet(path, split)
    if instances is None and path.suffix in (".p", ".pkl", ".pickle"):
        beside = path.parent / "instances.json"
        instances = beside if beside.is_file() else None
    return _read_refer(path, instances, split, "refer" if path.suffix != ".json" else "json")


def image_path(folder: Path, file_name: str) -> Path | None:
    """The image of ``file_name`` in ``folder``; the refer toolkit's per-ref names
    (``..._<image>_<ann>.jpg``) fall back to the image's own name. A name that leads out of
    ``folder`` (``../``, an absolute path) finds nothing."""
    inside = Path(folder).resolve()
    stripped = re.sub(r"_\d+(\.\w+)$", r"\1", file_name)
    for name in dict.fromkeys((file_name, stripped)):
        path = Path(folder) / name
        if path.is_file() and path.resolve().is_relative_to(inside):
            return path
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
        """What the masks depend on (not how many prompts share a forward pass)."""
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
    """SAM (``SamModel`` + ``SamProcessor``) proposing regions from a grid of point prompts;
    an engine plugin (built by :func:`sam_factory`, here or in a Ray actor).

    ``batch_size`` images go through the image encoder at once (halved on out-of-memory);
    their ``points_per_batch`` prompts at a time through the mask decoder, all images of the
    batch together. On CUDA the weights are fp16, as every batch stage's.
    """

    scalable = True

    def __init__(self, settings: SamSettings, *, device: str = "auto", batch_size: int = 4):
        from transformers import SamModel, SamProcessor

        from semcomp.models import inference_dtype, load_pretrained, select_device

        self.settings = settings
        self.device = select_device(device)
        self.dtype = inference_dtype(self.device)
        self.batch_size = max(1, batch_size)

        def load() -> tuple[Any, Any]:
            return (
                SamModel.from_pretrained(settings.model).to(self.device, self.dtype).eval(),
                SamProcessor.from_pretrained(settings.model),
            )

        self.model, self.processor = load_pretrained(load, settings.model, what="SAM")

    def identity(self) -> dict[str, Any]:
        return {**self.settings.identity(), "dtype": str(self.dtype).removeprefix("torch.")}

    def propose(self, images: Sequence[Image.Image]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: boolean masks (R×H×W) and predicted IoUs (R) of its regions."""
        from functools import partial

        from semcomp.models import batches_with_backoff

        keep = partial(setattr, self, "batch_size")
        return [
            found
            for _, part in batches_with_backoff(list(images), self.batch_size, self._batch, keep)
            for found in part
        ]

    def regions(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks (R×H×W) and predicted IoUs (R) of ``image``'s regions."""
        return self.propose([image.convert("RGB")])[0]

    def _batch(self, images: Sequence[Image.Image]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        s = self.settings
        with phase("preprocess"):
            inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        resized = inputs["reshaped_input_sizes"]  # (height, width) in SAM's input frame
        # the grid at the centres of per_side² cells, in each image's resized frame (the
        # original grid scaled as SamProcessor scales points)
        offsets = (torch.arange(s.points_per_side, dtype=torch.float32) + 0.5) / s.points_per_side
        grids = torch.stack(
            [
                torch.stack(
                    [
                        offsets.repeat(s.points_per_side) * float(width),
                        offsets.repeat_interleave(s.points_per_side) * float(height),
                    ],
                    dim=-1,
                )
                for height, width in resized.tolist()
            ]
        )  # B × P × 2
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(pixels)
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        for start in range(0, grids.shape[1], s.points_per_batch):
            points = grids[:, start : start + s.points_per_batch, None, :]  # B × p × 1 × 2
            with torch.inference_mode():
                out = self.model(
                    image_embeddings=embeddings,
                    input_points=points.to(self.device, self.dtype),
                    multimask_output=True,
                )
            iou = out.iou_scores.float().cpu()  # B × p × 3
            best = iou.argmax(dim=2)  # the best of SAM's three masks per point
            low = torch.gather(
                out.pred_masks.float().cpu(),
                2,
                best[:, :, None, None, None].expand(-1, -1, 1, *out.pred_masks.shape[-2:]),
            )  # B × p × 1 × h × w
            with phase("preprocess"):  # upsampling to the image is SAM's post-processing
                logits = self.processor.image_processor.post_process_masks(
                    low, inputs["original_sizes"], resized, binarize=False
                )
            for number, image_logits in enumerate(logits):
                chosen = image_logits[:, 0]  # p × H × W
                high = (chosen > s.stability_offset).flatten(1).sum(1).float()
                wide = (chosen > -s.stability_offset).flatten(1).sum(1).float()
                stability = torch.where(wide > 0, high / wide.clamp(min=1), 0.0)
                scores = torch.gather(iou[number], 1, best[number][:, None])[:, 0]
                found[number].append(((chosen > 0).numpy(), scores.numpy(), stability.numpy()))
        return [
            select_masks(
                np.concatenate([m for m, _, _ in parts]),
                np.concatenate([c for _, c, _ in parts]),
                np.concatenate([t for _, _, t in parts]),
                s,
            )
            for parts in found
        ]

    def close(self) -> None:
        from semcomp.models import drop_model

        drop_model(self)


@dataclass(frozen=True)
class SamFactory(PluginFactory):
    """Builds :class:`SamRegions` wherever the engine runs it (picklable, for Ray actors)."""

    @property
    def plugin_class(self) -> Any:
        return SamRegions


def sam_factory(settings: SamSettings, *, device: str, batch_size: int) -> SamFactory:
    return SamFactory(
        "segmenter",
        "sam",
        settings,
        {"device": device, "batch_size": batch_size},
        label=f"SAM {settings.model}",
    )


# ---- the engine's tasks -----------------------------------------------------------------------


@dataclass(frozen=True)
class RefImage:
    """One image to segment (``masks`` None) or whose regions to embed (``masks``: the
    cached masks file): where its bytes are (a path, or a Parquet cell)."""

    image_id: Any
    source: Any
    masks: Path | None = None


@dataclass(frozen=True)
class Sentence:
    """A referring expression, as the item of a text batch."""

    text: str


def _decode(item: RefImage, max_pixels: int) -> Image.Image:
    from semcomp.images import decode_image

    source = item.source if hasattr(item.source, "read_bytes") else Path(item.source)
    return decode_image(source.read_bytes(), max_pixels).rgb


@dataclass(frozen=True)
class ProposeRegions(BatchTask):
    """Images → SAM's regions (masks, scores), or the image's problem."""

    max_pixels: int

    def load(self, batch: Sequence[RefImage], context: Any) -> list[Any]:
        loaded: list[Any] = []
        for item in batch:
            try:
                loaded.append(_decode(item, self.max_pixels))
            except (ImageError, OSError) as exc:
                loaded.append(exc)
        return loaded

    def infer(self, model: Any, loaded: list[Any], context: Any) -> list[Any]:
        images = [item for item in loaded if not isinstance(item, Exception)]
        found = iter(model.propose(images) if images else [])
        return [item if isinstance(item, Exception) else next(found) for item in loaded]


def read_masks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Masks (R×H×W bool) and scores of a cached masks file."""
    with np.load(path) as stored:
        shape = tuple(int(v) for v in stored["shape"])
        masks = np.unpackbits(stored["packed"], count=int(np.prod(shape))).astype(bool)
        return masks.reshape(shape), stored["scores"]


@dataclass
class LoadedRegions:
    #: per item: its crops' pixels (a list of tensors), its expressions, or its problem
    items: list[Any]


@dataclass(frozen=True)
class EmbedRegions(BatchTask):
    """Region crops (:class:`RefImage` items with masks) and expressions (:class:`Sentence`
    items) on one CLIP model: an R×D array of L2-normalised rows per image, one row per
    expression. Crops are cut and preprocessed while loading (DataLoader workers with
    ``--workers``), so the model only runs forward passes."""

    max_pixels: int

    def context(self, model: Any) -> Any:
        return getattr(model, "preprocess", None)

    def load(self, batch: Sequence[Any], context: Any) -> LoadedRegions:
        if batch and isinstance(batch[0], Sentence):
            return LoadedRegions([item.text for item in batch])
        items: list[Any] = []
        for item in batch:
            try:
                image = _decode(item, self.max_pixels)
                masks, _ = read_masks(item.masks)
                if masks.shape[1:] != (image.height, image.width):
                    raise ImageError(
                        f"the cached masks are {masks.shape[2]}×{masks.shape[1]}, "
                        f"the image {image.width}×{image.height}"
                    )
                with phase("preprocess"):
                    crops = [region_crop(image, mask) for mask in masks]
                    items.append([context(c) for c in crops] if context is not None else crops)
            except (ImageError, OSError) as exc:
                items.append(exc)
        return LoadedRegions(items)

    def infer(self, model: Any, loaded: LoadedRegions, context: Any) -> list[Any]:
        if loaded.items and isinstance(loaded.items[0], str):
            return list(model.embed_texts(list(loaded.items)))
        crops = [c for item in loaded.items if not isinstance(item, Exception) for c in item]
        if not crops:
            vectors = np.zeros((0, 0), np.float32)
        elif isinstance(crops[0], Image.Image):  # loaded without the model's transform (Ray)
            vectors = model.embed(crops)
        else:
            vectors = model.embed_preprocessed(crops)
        results, start = [], 0
        for item in loaded.items:
            if isinstance(item, Exception):
                results.append(item)
            else:
                results.append(vectors[start : start + len(item)])
                start += len(item)
        return results


# ---- the cache --------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


def content_digest(source: Any) -> str:
    """The digest of an image's bytes (a path or a Parquet cell): the cache's image key."""
    source = source if hasattr(source, "read_bytes") else Path(source)
    return hashlib.sha256(source.read_bytes()).hexdigest()[:24]


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
    #: the image's pixel count (for bits per pixel); 0 when unknown
    pixels: int = 0


def _mask_key(content: str, settings: SamSettings) -> str:
    return _digest({"image": content, **settings.identity()})


def _text_cache(folder: Path) -> dict[str, np.ndarray]:
    """Expression → embedding, from every batch file written under ``folder``."""
    found: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        with np.load(path) as stored:
            found.update(zip(stored["sentences"].tolist(), stored["embeddings"], strict=True))
    return found


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
    #: mean over images of (bits of all the image's regions) / (the image's pixels)
    bpp: float = float("nan")
    images: int = 0
    #: 95 % percentile bootstrap interval of the accuracy, images resampled
    interval: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def accuracy(self) -> float:
        return self.correct / self.expressions if self.expressions else float("nan")


def accuracy_interval(
    correct: np.ndarray, counts: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy (pooled over expressions), resampling
    images (the units: an image's expressions share its regions)."""
    from semcomp.analysis.stats import percentile_interval, resample_counts

    if len(counts) < 2:
        return float("nan"), float("nan")
    drawn = resample_counts(len(counts), seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        return percentile_interval((drawn @ correct) / (drawn @ counts))


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
    per_image, per_pixel, offsets, start = [], [], {}, 0
    for key in keys:
        count = len(regions[key].embeddings)
        offsets[key] = (start, start + count)
        per_image.append(bits[start : start + count].sum())
        if regions[key].pixels:
            per_pixel.append(per_image[-1] / regions[key].pixels)
        start += count
    result = CodecAccuracy(
        name,
        float(bits.mean()),
        float(np.mean(per_image)),
        float(bits.mean()) / stacked.shape[1],
        len(expressions),
        0,
        bpp=float(np.mean(per_pixel)) if len(per_pixel) == len(keys) else float("nan"),
        images=len({ref.image_id for ref, _ in expressions}),
    )
    correct_per_image: dict[Any, int] = dict.fromkeys(keys, 0)
    count_per_image: dict[Any, int] = dict.fromkeys(keys, 0)
    for (ref, _), text in zip(expressions, texts, strict=True):
        low, high = offsets[ref.image_id]
        region, cosine = choose_region(decoded[low:high], text)
        iou = box_iou(regions[ref.image_id].boxes[region], ref.bbox)
        correct = iou >= IOU_THRESHOLD
        result.correct += int(correct)
        correct_per_image[ref.image_id] += int(correct)
        count_per_image[ref.image_id] += 1
        result.choices.append((region, cosine, iou, correct))
    used = [k for k in keys if count_per_image[k]]
    result.interval = accuracy_interval(
        np.array([correct_per_image[k] for k in used], np.float64),
        np.array([count_per_image[k] for k in used], np.float64),
    )
    return result


def proposal_recall(regions: dict[Any, ImageRegions], expressions: list[tuple[Ref, str]]) -> float:
    """The share of expressions whose image has some region with IoU ≥ 0.5 with the target:
    the accuracy a perfect matcher would reach on these proposals (an upper bound)."""
    hits = [
        any(box_iou(box, ref.bbox) >= IOU_THRESHOLD for box in regions[ref.image_id].boxes)
        for ref, _ in expressions
    ]
    return float(np.mean(hits)) if hits else float("nan")


# ---- figures ----------------------------------------------------------------------------------


def accuracy_figure(results: Sequence[CodecAccuracy], recall: float | None = None) -> Any:
    """Accuracy against bits per region and against bits per image (every region's feature
    sent), one marker per codec with its bootstrap interval; the proposal recall (the
    accuracy's upper bound on these regions) as a dashed line."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from semcomp.analysis.figures import _pyplot, colour_map, figure_width, place_legend

    plt = _pyplot()
    width = figure_width()
    figure, axes = plt.subplots(1, 2, figsize=(width, width * 0.4), layout="constrained")
    colours = colour_map([r.name for r in results])
    for axis, (attribute, label) in zip(
        axes,
        (("bits_per_region", "bits per region"), ("bits_per_image", "bits per image")),
        strict=True,
    ):
        for result in results:
            low, high = result.interval
            error = None
            if np.isfinite(low) and np.isfinite(high):
                error = [[result.accuracy - low], [high - result.accuracy]]
            axis.errorbar(
                getattr(result, attribute),
                result.accuracy,
                yerr=error,
                fmt="o",
                ms=4,
                capsize=2,
                color=colours[result.name],
                label=result.name,
            )
        if recall is not None and np.isfinite(recall):
            axis.axhline(recall, color="grey", ls="--", lw=0.8, label="proposal recall")
        axis.set_xscale("log")
        # plain numbers at 1, 2 and 5 of each decade over a short span, else at each decade
        # (minor labels would crowd)
        bits = [getattr(r, attribute) for r in results if getattr(r, attribute) > 0]
        span = np.log10(max(bits) / min(bits)) if bits else 0.0
        axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if span < 2 else (1.0,)))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: compact(value)))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(f"{label} (log)")
        axis.set_ylabel(f"accuracy (IoU ≥ {IOU_THRESHOLD})")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(True, alpha=0.3)
    if results:
        axes[0].set_title(
            f"n = {results[0].expressions} expressions, {results[0].images} images",
            fontsize="small",
        )
    place_legend(figure)
    return figure


def compact(value: float) -> str:
    """A tick label of a bit count: 500, 2k, 50k, 1.5M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def pick_examples(expressions: list[tuple[Ref, str]], count: int) -> list[int]:
    """``count`` expressions to draw: the first of each image first (distinct images), then
    the next ones in order."""
    first, seen = [], set()
    for number, (ref, _) in enumerate(expressions):
        if ref.image_id not in seen:
            seen.add(ref.image_id)
            first.append(number)
    rest = [n for n in range(len(expressions)) if n not in set(first)]
    return (first + rest)[:count]


def examples_figure(
    images: dict[Any, Image.Image],
    regions: dict[Any, ImageRegions],
    expressions: list[tuple[Ref, str]],
    results: Sequence[CodecAccuracy],
    chosen: Sequence[int],
) -> Any:
    """The paper's Fig. 8: one row per expression (the expression on its left), one column per
    codec (its name and bits per region on top): the image with the chosen region's outline
    (green when correct, red when not) and the target box dashed in white."""
    from semcomp.analysis.figures import _pyplot, figure_width

    plt = _pyplot()
    width = figure_width()
    columns = len(results)
    panel = width / max(columns, 1)
    figure, axes = plt.subplots(
        len(chosen), columns, figsize=(width, panel * 0.8 * len(chosen)), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for row, number in enumerate(chosen):
        ref, sentence = expressions[number]
        image = images[ref.image_id]
        for column, result in enumerate(results):
            axis = axes[row][column]
            region, _cosine, iou, correct = result.choices[number]
            colour = "#009E73" if correct else "#D55E00"
            axis.imshow(image)
            axis.contour(regions[ref.image_id].masks[region], levels=[0.5], colors=[colour],
                         linewidths=1.5)  # fmt: skip
            x, y, w, h = ref.bbox
            axis.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="white", ls="--", lw=1.0))
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(f"IoU {iou:.2f}", fontsize="x-small", color=colour)
            if row == 0:
                axis.set_title(f"{result.name}\n{result.bits_per_region:.0f} bits/region",
                               fontsize="x-small")  # fmt: skip
            if column == 0:
                axis.set_ylabel(_wrap(sentence), fontsize="x-small")
    return figure


def _wrap(text: str, width: int = 24) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(f"“{text}”", width)[:4])


# ---- running the steps ------------------------------------------------------------------------


def _run_step(
    engine: Engine,
    factory: PluginFactory,
    task: BatchTask,
    batches: Sequence[Sequence[Any]],
    report: Any,
    *,
    items: Callable[[Sequence[Any], Any], int],
    progress: bool,
) -> Iterator[tuple[Sequence[Any], Any]]:
    """``batches`` through ``engine``; each batch with its outcome for the caller to write
    (its time is the profile's ``write`` phase), the phases summed in ``report``."""
    from tqdm.auto import tqdm

    if not batches:
        return
    report.models_loaded.append(factory.label or factory.name)
    started = time.perf_counter()
    with tqdm(total=len(batches), desc=report.stage, unit="batch", disable=not progress) as bar:
        for outcome in engine.run(factory, task, batches):
            batch = batches[outcome.index]
            for name, seconds in outcome.seconds.items():
                report.phases[name] = report.phases.get(name, 0.0) + seconds
            writing = time.perf_counter()
            yield batch, outcome
            report.phases["write"] = report.phases.get("write", 0.0) + time.perf_counter() - writing
            report.items += items(batch, outcome)
            bar.update()
    report.seconds += time.perf_counter() - started


def _region_batches(items: list[RefImage], counts: dict[Any, int], size: int) -> list[list]:
    """Images grouped so each batch holds about ``size`` regions (at least one image)."""
    batches: list[list[RefImage]] = []
    current: list[RefImage] = []
    total = 0
    for item in items:
        current.append(item)
        total += counts[item.image_id]
        if total >= size:
            batches.append(current)
            current, total = [], 0
    if current:
        batches.append(current)
    return batches


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def evaluate_referring(
    annotations: Path,
    images: Path | None,
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
    sam_batch_size: int = 4,
    device: str = "cpu",
    engine: Engine | None = None,
    max_pixels: int | None = None,
    figures: bool = True,
    progress: bool = True,
    log_line: Callable[[str], None] = log.info,
) -> tuple[list[CodecAccuracy], dict[str, Any]]:
    """Run SAM, CLIP and each codec over the refs; write the CSVs, figures and ``eval.json``.

    ``clip``: a :class:`semcomp.config.EmbedderConfig`. ``images``: the folder of the image
    files (None when the annotations carry their images). Models run one at a time through
    ``engine`` (default: this process): SAM over every image whose masks are not cached, then
    CLIP over every region and expression not cached. Returns the per-codec results and the
    summary written to ``eval.json`` (its ``failures`` name every ref, image or region left
    out, its ``steps`` each step's items and time split). ``figures`` False skips the PNG/PDF
    figures (``accuracy``, ``examples``).
    """
    from semcomp.downstream.caption_eval import write_csv
    from semcomp.downstream.clipcap import open_codec
    from semcomp.images import DEFAULT_MAX_PIXELS
    from semcomp.stages import StageReport
    from semcomp.stages.embed import embedder_factory

    sam = sam or SamSettings()
    engine = engine or LocalEngine()
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    read = read_refs(annotations, instances=instances, split=split)
    refs = read.refs[:limit] if limit is not None else read.refs
    failures: list[tuple[str, str, str]] = [("annotations", i, r) for i, r in read.failures]
    for item, reason in read.failures:
        log_line(f"ref left out: {item}: {reason}")
    if not refs:
        where = f" in split {split!r}" if split else ""
        raise ConfigError(
            f"{annotations} has no usable ref{where} ({len(read.failures)} malformed)"
        )
    out = Path(out)
    cache = out / "cache"
    out.mkdir(parents=True, exist_ok=True)
    steps = {name: StageReport(name) for name in ("sam", "clip", "codecs")}

    def fail(step: str, item: Any, reason: str) -> None:
        failures.append((step, str(item), reason))
        log_line(f"{step}: {item}: {reason}")

    sources: dict[Any, Any] = {}
    for ref in refs:
        if ref.image_id in sources:
            continue
        if ref.image is not None:
            sources[ref.image_id] = ref.image
            continue
        path = image_path(images, ref.file_name) if images is not None else None
        if path is None:
            where = f" in {images}" if images is not None else " (no images folder given)"
            fail("images", ref.image_id, f"no image {ref.file_name}{where}")
        else:
            sources[ref.image_id] = path
    contents: dict[Any, str] = {}
    for image_id, source in list(sources.items()):
        try:
            contents[image_id] = content_digest(source)
        except OSError as exc:
            fail("images", image_id, f"unreadable: {exc}")
            del sources[image_id]
    mask_files = {i: cache / "masks" / f"{_mask_key(contents[i], sam)}.npz" for i in sources}

    # SAM: masks per image, cached by content + SAM identity, written batch by batch
    todo = [RefImage(i, sources[i]) for i in sources if not mask_files[i].is_file()]
    batches = [todo[i : i + sam_batch_size] for i in range(0, len(todo), sam_batch_size)]
    factory = sam_factory(sam, device=device, batch_size=sam_batch_size)
    problems: dict[Any, str] = {}
    for batch, outcome in _run_step(
        engine, factory, ProposeRegions(max_pixels), batches, steps["sam"],
        items=lambda batch, _: len(batch), progress=progress,
    ):  # fmt: skip
        _write_json(cache / f"sam-{_digest(sam.identity())}.json", outcome.identity)
        for item, found in zip(batch, outcome.results, strict=True):
            if isinstance(found, Exception):
                problems[item.image_id] = str(found)  # reported below: no masks cached
                continue
            masks, scores = found
            _save_npz(
                mask_files[item.image_id],
                packed=np.packbits(masks.reshape(-1)),
                shape=np.array(masks.shape),
                scores=scores.astype(np.float32),
            )
            steps["sam"].done += 1
    steps["sam"].skipped = len(sources) - len(todo)
    regions: dict[Any, ImageRegions] = {}
    for image_id in list(sources):
        if not mask_files[image_id].is_file():
            fail("sam", image_id, f"unreadable image: {problems.get(image_id, 'not segmented')}")
            continue
        masks, scores = read_masks(mask_files[image_id])
        if len(masks) == 0:
            fail("sam", image_id, "SAM proposed no region (lower the thresholds?)")
            continue
        boxes = np.array([mask_box(m) for m in masks], dtype=np.float64)
        pixels = int(masks.shape[1] * masks.shape[2])
        regions[image_id] = ImageRegions(masks, scores, boxes, pixels=pixels)

    # CLIP: region embeddings per image (cached by masks + CLIP identity), then expressions
    expressions = [(r, s) for r in refs if r.image_id in regions for s in r.sentences]
    if not expressions:
        raise ConfigError(f"no expression left to evaluate: {failures[:5]}")
    clip_key = _digest(clip.embedder_id)
    region_files = {
        i: cache / "regions" / f"{_digest([mask_files[i].stem, clip_key])}.npz" for i in regions
    }
    pending = [
        RefImage(i, sources[i], mask_files[i]) for i in regions if not region_files[i].is_file()
    ]
    text_folder = cache / "texts" / clip_key
    texts_cached = _text_cache(text_folder)
    sentences = list(dict.fromkeys(s for _, s in expressions if s not in texts_cached))
    batches = _region_batches(pending, {i: len(r.boxes) for i, r in regions.items()}, batch_size)
    batches += [
        [Sentence(t) for t in sentences[i : i + 256]] for i in range(0, len(sentences), 256)
    ]
    factory = embedder_factory(clip, device=device, batch_size=batch_size)

    def embedded(batch: Sequence[Any], _outcome: Any) -> int:
        if batch and isinstance(batch[0], Sentence):
            return len(batch)
        return sum(len(regions[item.image_id].boxes) for item in batch)

    for batch, outcome in _run_step(
        engine, factory, EmbedRegions(max_pixels), batches, steps["clip"],
        items=embedded, progress=progress,
    ):  # fmt: skip
        _write_json(cache / f"clip-{clip_key}.json", outcome.identity)
        if batch and isinstance(batch[0], Sentence):
            rows = np.stack(outcome.results).astype(np.float32)
            words = np.array([item.text for item in batch])
            _save_npz(
                text_folder / f"{_digest(words.tolist())}.npz", sentences=words, embeddings=rows
            )
            texts_cached.update(zip(words.tolist(), rows, strict=True))
            continue
        for item, vectors in zip(batch, outcome.results, strict=True):
            if isinstance(vectors, Exception):
                problems[item.image_id] = str(vectors)
            else:
                _save_npz(region_files[item.image_id], embeddings=vectors)
    steps["clip"].done = len(pending) + len(sentences)
    steps["clip"].skipped = len(regions) - len(pending)
    for image_id in list(regions):
        if not region_files[image_id].is_file():
            fail("clip", image_id, f"unreadable image: {problems.get(image_id, 'not embedded')}")
            del regions[image_id]
            continue
        with np.load(region_files[image_id]) as data:
            regions[image_id].embeddings = data["embeddings"]
    expressions = [(r, s) for r, s in expressions if r.image_id in regions]
    if not expressions:
        raise ConfigError(f"no expression left to evaluate: {failures[:5]}")
    texts = np.stack([texts_cached[s] for _, s in expressions])
    dim = texts.shape[1]

    # codecs: every codec on the same region embeddings and expressions
    specs = ["float32", *[c for c in codecs if c != "float32"]]
    named = [open_codec(spec, dim, coder) for spec in specs]
    names = [n.name for n in named]
    if len(set(names)) != len(names):
        raise ConfigError(f"two codecs have the same name: {names}")
    started = time.perf_counter()
    results = [score_codec(n.name, n.codec, regions, expressions, texts) for n in named]
    steps["codecs"].seconds = time.perf_counter() - started
    steps["codecs"].phases["model"] = steps["codecs"].seconds
    steps["codecs"].items = sum(len(r.boxes) for r in regions.values()) * len(named)
    steps["codecs"].done = len(named)
    write_csv(
        out / "accuracy.csv",
        ["codec", "bits_per_region", "bits_per_image", "bpp", "bpd", "expressions", "images",
         "correct", "accuracy", "accuracy_low", "accuracy_high"],
        [
            [r.name, r.bits_per_region, r.bits_per_image, r.bpp, r.bpd, r.expressions, r.images,
             r.correct, r.accuracy, *r.interval]
            for r in results
        ],
    )  # fmt: skip
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
    write_csv(out / "failures.csv", ["step", "item", "reason"], [list(f) for f in failures])
    recall = proposal_recall(regions, expressions)
    from semcomp.analysis.figures import save_figure

    if figures:
        save_figure(accuracy_figure(results, recall), out / "accuracy")
    if figures and examples:
        chosen = pick_examples(expressions, examples)
        shown = {expressions[n][0].image_id for n in chosen}
        pictures = {i: _decode(RefImage(i, sources[i]), max_pixels) for i in shown}
        save_figure(examples_figure(pictures, regions, expressions, results, chosen),
                    out / "examples")  # fmt: skip

    def identity(path: Path, fallback: Any) -> Any:
        return json.loads(path.read_text()) if path.is_file() else fallback

    summary = {
        "annotations": str(Path(annotations).resolve()),
        "layout": read.layout,
        "images": str(Path(images).resolve()) if images is not None else None,
        "split": split,
        "splits": read.splits,
        "sam": identity(cache / f"sam-{_digest(sam.identity())}.json", sam.identity()),
        "sam_prompts": "point grid through SamModel (no multi-crop automatic mask generation)",
        "clip": identity(cache / f"clip-{clip_key}.json", {"embedder_id": clip.embedder_id}),
        "codecs": names,
        "iou_threshold": IOU_THRESHOLD,
        "refs": len(refs),
        "expressions": len(expressions),
        "images_evaluated": len(regions),
        "regions": int(sum(len(r.boxes) for r in regions.values())),
        "proposal_recall": recall,
        "failures": [{"step": s, "item": i, "reason": r} for s, i, r in failures],
        "steps": [asdict(report) for report in steps.values()],
        "engine": engine.name,
    }
    _write_json(out / "eval.json", summary)
    return results, summary
