"""Referring-object identification from (compressed) SAM-region CLIP features (issue #14).

A tiny random SamModel and the tiny CLIP on generated images with known shapes,
in the RefCOCO refs layout (pickle and JSON).
"""

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from semcomp.cli import main
from semcomp.config import EmbedderConfig
from semcomp.downstream import referring
from semcomp.downstream.clipcap import open_codec
from semcomp.downstream.referring import (
    BACKGROUND,
    ImageRegions,
    Ref,
    SamSettings,
    box_iou,
    choose_region,
    evaluate_referring,
    mask_box,
    read_refs,
    region_crop,
    score_codec,
)
from semcomp.errors import ConfigError

#: what the tiny random SAM is run with: every mask kept that is not a near-duplicate
LOOSE = {"pred_iou_threshold": -1.0, "stability_threshold": 0.0, "points_per_side": 3}


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_sam

    return write_tiny_sam(tmp_path_factory.mktemp("models") / "tiny-sam")


def refcoco(root: Path) -> tuple[Path, Path]:
    """Three 80×60 images, each a white background with one red box and one blue disc,
    and refs to them in the refer toolkit's layout (one ref names a missing image)."""
    images = root / "images"
    images.mkdir(parents=True)
    refs = []
    for i, (x, y) in enumerate(((5, 5), (40, 20), (10, 30))):
        image = Image.new("RGB", (80, 60), "white")
        draw = ImageDraw.Draw(image)
        draw.rectangle((x, y, x + 24, y + 19), fill="red")
        draw.ellipse((60 - x // 2, 5, 75 - x // 2, 20), fill="blue")
        image.save(images / f"COCO_train2014_{i:012d}.jpg")
        refs.append(
            {
                "ref_id": i,
                "ann_id": 500 + i,
                "image_id": i,
                "split": "val" if i < 2 else "testA",
                "file_name": f"COCO_train2014_{i:012d}_{500 + i}.jpg",
                "sentences": [{"sent": "the red box", "raw": "The red box."}, {"sent": "left"}],
                "bbox": [x, y, 25, 20],
            }
        )
    refs.append(
        {
            "ref_id": 9,
            "image_id": 9,
            "file_name": "gone.jpg",
            "sentences": ["x"],
            "bbox": [0, 0, 4, 4],
        }
    )
    path = root / "refs(unc).p"
    path.write_bytes(pickle.dumps(refs))
    return path, images


def small_pqvae(path: Path, dim: int) -> Path:
    import torch

    from semcomp.codecs.pqvae.checkpoint import Checkpoint
    from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig

    torch.manual_seed(0)
    config = PQVAEConfig(
        input_dim=dim, channels=16, d_sub=8, codebook_size=4, hidden=(32, 16),
        residual_hidden=8, residual_layers=1,
    )  # fmt: skip
    model = EmbeddingCodecModel(config).eval()
    return Checkpoint(config, model, np.ones(4), np.ones((config.symbols, 4)), {}).save(path)


# ---- selection, geometry, rates (no models) ---------------------------------------------------


def test_the_region_with_the_highest_cosine_is_chosen_whatever_its_norm():
    regions = np.array([[10.0, 0.0, 0.0], [0.0, 0.1, 0.0], [3.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    assert choose_region(regions, np.array([0.0, 1.0, 0.0])) == (1, pytest.approx(1.0))
    index, cosine = choose_region(regions, np.array([1.0, 1.2, 0.0]))
    assert index == 2 and cosine == pytest.approx(2.2 / np.sqrt(2) / np.linalg.norm([1, 1.2]))


def test_box_iou_and_mask_boxes():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    mask = np.zeros((20, 30), bool)
    mask[4:9, 10:13] = True
    assert mask_box(mask) == (10.0, 4.0, 3.0, 5.0)


def test_a_region_crop_is_the_masked_box_on_grey_padded_square():
    image = Image.new("RGB", (30, 20), "red")
    mask = np.zeros((20, 30), bool)
    mask[2:6, 5:15] = True
    mask[2, 5] = False
    crop = np.asarray(region_crop(image, mask))
    assert crop.shape == (10, 10, 3)
    assert (crop[:3] == BACKGROUND).all() and (crop[7:] == BACKGROUND).all()  # the padding
    assert tuple(crop[3, 0]) == BACKGROUND  # outside the mask, inside the box
    assert tuple(crop[3, 1]) == (255, 0, 0) and tuple(crop[6, 9]) == (255, 0, 0)


def test_scoring_picks_the_argmax_region_counts_iou_and_bits():
    """Fixed region embeddings, independent of SAM: expression k matches region k exactly."""
    dim = 8
    eye = np.eye(dim, dtype=np.float32)
    boxes = np.array([[0, 0, 10, 10], [20, 0, 10, 10], [0, 20, 10, 10]], np.float64)
    regions = {
        "a": ImageRegions(np.zeros((3, 1, 1), bool), np.zeros(3), boxes, eye[:3]),
        "b": ImageRegions(np.zeros((2, 1, 1), bool), np.zeros(2), boxes[:2], eye[3:5]),
    }
    ref_a = Ref(1, "a", "a.jpg", ["s"], (20.0, 0.0, 10.0, 12.0))  # IoU 10/12 with region 1
    ref_b = Ref(2, "b", "b.jpg", ["s"], (0.0, 0.0, 10.0, 30.0))  # IoU 1/3 with region 0
    expressions = [(ref_a, "first"), (ref_b, "second"), (ref_a, "third")]
    texts = np.stack([eye[1] + 0.1 * eye[0], eye[3], eye[2]])
    result = score_codec("float32", open_codec("float32", dim).codec, regions, expressions, texts)
    assert [c[0] for c in result.choices] == [1, 0, 2]
    assert [c[2] for c in result.choices] == pytest.approx([10 / 12, 1 / 3, 0.0])
    assert [c[3] for c in result.choices] == [True, False, False]
    assert result.correct == 1 and result.accuracy == pytest.approx(1 / 3)
    assert result.bits_per_region == 32 * dim and result.bpd == 32
    assert result.bits_per_image == pytest.approx(32 * dim * (3 + 2) / 2)
    half = score_codec("float16", open_codec("float16", dim).codec, regions, expressions, texts)
    assert half.bits_per_region == 16 * dim and half.bits_per_image == 16 * dim * 2.5
    assert [c[0] for c in half.choices] == [1, 0, 2]
    assert referring.proposal_recall(regions, expressions) == pytest.approx(2 / 3)


# ---- annotations ------------------------------------------------------------------------------


def test_pickle_and_json_refs_read_the_same(tmp_path):
    path, _ = refcoco(tmp_path)
    refs = read_refs(path).refs
    as_json = tmp_path / "refs.json"
    as_json.write_text(json.dumps({"refs": pickle.loads(path.read_bytes())}))
    assert read_refs(as_json).refs == refs
    assert refs[0].sentences == ["the red box", "left"] and refs[0].bbox == (5.0, 5.0, 25.0, 20.0)
    assert [r.ref_id for r in read_refs(path, split="val").refs] == [0, 1]
    assert read_refs(path).splits == ["val", "testA"]


def test_targets_from_instances_and_polygons(tmp_path):
    refs = tmp_path / "refs.json"
    refs.write_text(
        json.dumps(
            [
                {"image_id": 1, "ann_id": 7, "sentences": ["a"]},
                {"image_id": 1, "sentences": ["b"], "segmentation": [[2, 3, 12, 3, 12, 9, 2, 9]]},
            ]
        )
    )
    instances = tmp_path / "instances.json"
    instances.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "one.jpg"}],
                "annotations": [{"id": 7, "image_id": 1, "bbox": [1, 2, 3, 4]}],
            }
        )
    )
    first, second = read_refs(refs, instances=instances).refs
    assert first.bbox == (1.0, 2.0, 3.0, 4.0) and first.file_name == "one.jpg"
    assert second.bbox == (2.0, 3.0, 10.0, 6.0)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{}", "no list of refs"),
        ("not json", "not a JSON annotation file"),
    ],
)
def test_an_unreadable_annotation_file_is_an_error_naming_it(tmp_path, content, match):
    path = tmp_path / "refs.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        read_refs(path)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("x", "not a record"),
        ({"sentences": ["a"], "bbox": [0, 0, 1, 1]}, "no 'image_id'"),
        ({"image_id": 1, "bbox": [0, 0, 1, 1], "file_name": "a"}, "no 'sentences'"),
        ({"image_id": 1, "sentences": [{"x": 1}], "file_name": "a"}, "sentence without"),
        ({"image_id": 1, "sentences": ["a"], "file_name": "a"}, "no usable target"),
        ({"image_id": 1, "sentences": ["a"], "bbox": [0, 0, -1, 1]}, "no usable target"),
        ({"image_id": 1, "sentences": ["a"], "bbox": [0, 0, 0, 5]}, "no usable target"),
        ({"image_id": 1, "sentences": ["a"], "bbox": [0, 0, 1, 1]}, "no image file name"),
    ],
)
def test_a_malformed_ref_is_a_failure_and_the_others_are_read(tmp_path, record, reason):
    good = {"image_id": 2, "sentences": ["b"], "bbox": [0, 0, 2, 2], "file_name": "b.jpg"}
    path = tmp_path / "refs.json"
    path.write_text(json.dumps([good, record, good | {"ref_id": 7}]))
    read = read_refs(path)
    assert [r.ref_id for r in read.refs] == [0, 7]
    assert len(read.failures) == 1
    item, why = read.failures[0]
    assert item.startswith("refs[1]") and reason in why


def refer_folder(root: Path) -> tuple[Path, Path]:
    """The refer toolkit's real layout: ``refcoco/refs(unc).p`` (Python 2 pickle, protocol 2,
    refs with no box: only ``ann_id``) and ``refcoco/instances.json`` (COCO images and
    annotations), the images as ``COCO_train2014_<id>.jpg``."""
    annotations, images = refcoco(root)
    refs = pickle.loads(annotations.read_bytes())
    folder = root / "refcoco"
    folder.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "box"}]}
    for ref in refs[:3]:
        box = ref.pop("bbox")
        ref["sentences"] = [
            {"tokens": s["sent"].split(), "raw": s.get("raw", s["sent"]), "sent_id": n,
             "sent": s["sent"]}
            if isinstance(s, dict) else s
            for n, s in enumerate(ref["sentences"])
        ]  # fmt: skip
        coco["images"].append(
            {"id": ref["image_id"], "file_name": f"COCO_train2014_{ref['image_id']:012d}.jpg",
             "width": 80, "height": 60}
        )  # fmt: skip
        coco["annotations"].append(
            {"id": ref["ann_id"], "image_id": ref["image_id"], "bbox": box, "category_id": 1,
             "segmentation": [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2],
                               box[1] + box[3]]], "area": box[2] * box[3], "iscrowd": 0}
        )  # fmt: skip
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs[:3], protocol=2))
    (folder / "instances.json").write_text(json.dumps(coco))
    return folder, images


def test_the_refer_toolkit_folder_reads_boxes_from_its_instances(tmp_path):
    folder, images = refer_folder(tmp_path)
    assert referring.image_path(images, "../refcoco/instances.json") is None
    assert referring.image_path(images, "COCO_train2014_000000000000_500.jpg").is_file()
    by_folder = read_refs(folder)
    by_file = read_refs(folder / "refs(unc).p")  # instances.json beside it is found
    assert by_folder.refs == by_file.refs and by_folder.layout == "refer"
    assert [r.bbox for r in by_folder.refs] == [(5, 5, 25, 20), (40, 20, 25, 20), (10, 30, 25, 20)]
    assert by_folder.refs[0].file_name == "COCO_train2014_000000000000.jpg"
    (folder / "refs(google).p").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"refs\(google\).p, refs\(unc\).p: name the file"):
        read_refs(folder)


def test_a_pickle_holding_a_class_is_refused(tmp_path):
    import collections

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([collections.OrderedDict(image_id=1)]))
    with pytest.raises(ConfigError, match=r"refused to load collections\.OrderedDict"):
        read_refs(path)


def refcoco_parquet(root: Path) -> Path:
    """The Hugging Face lmms-lab/RefCOCO layout: ``data/<split>-0000N-of-0000M.parquet``, a row
    per referred object with its image embedded; one row malformed (no expressions)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    annotations, images = refcoco(root / "source")
    refs = pickle.loads(annotations.read_bytes())[:3]
    data = root / "RefCOCO" / "data"
    data.mkdir(parents=True)
    rows = []
    for ref in refs:
        path = images / f"COCO_train2014_{ref['image_id']:012d}.jpg"
        x, y, w, h = ref["bbox"]
        rows.append(
            {"question_id": str(ref["ref_id"]), "image": {"bytes": path.read_bytes(), "path": None},
             "question": "Please carefully observe the area circled in the image.",
             "answer": [s["sent"] if isinstance(s, dict) else s for s in ref["sentences"]],
             "segmentation": [x, y, x + w, y, x + w, y + h, x, y + h], "bbox": ref["bbox"],
             "iscrowd": 0, "file_name": path.name}
        )  # fmt: skip
    rows.append(rows[0] | {"question_id": "broken", "answer": []})
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.slice(0, 2), data / "val-00000-of-00002.parquet")
    pq.write_table(table.slice(2), data / "val-00001-of-00002.parquet")
    pq.write_table(table.slice(0, 1), data / "testA-00000-of-00001.parquet")
    assert io  # the images are the JPEG files' bytes
    return root / "RefCOCO"


def test_the_hugging_face_parquet_layout_reads_refs_with_their_images(tmp_path):
    root = refcoco_parquet(tmp_path)
    with pytest.raises(ConfigError, match="holds the splits testA, val: choose one with --split"):
        read_refs(root)
    read = read_refs(root, split="val")
    assert read.layout == "hf-parquet" and read.splits == ["testA", "val"]
    assert [r.ref_id for r in read.refs] == ["0", "1", "2"]
    assert read.refs[1].bbox == (40.0, 20.0, 25.0, 20.0)
    assert read.refs[1].sentences == ["the red box", "left"]
    assert read.refs[1].image.read_bytes()[:2] == b"\xff\xd8"  # the JPEG itself
    assert read.failures == [("val-00001-of-00002.parquet#1", "no 'answer' list")]
    assert [r.ref_id for r in read_refs(root, split="testA").refs] == ["0"]


# ---- the whole path: tiny SAM, tiny CLIP ------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def settings(tiny_sam: Path, **changes) -> SamSettings:
    return SamSettings(model=str(tiny_sam), points_per_batch=4, **(LOOSE | changes))


def run_kwargs(tiny_sam: Path, tiny_clip: str, pq: Path | None = None) -> dict:
    return {
        "clip": EmbedderConfig(model=tiny_clip),
        "codecs": ["float16", *([str(pq)] if pq else [])],
        "sam": settings(tiny_sam),
        "batch_size": 4,
        "sam_batch_size": 2,
        "progress": False,
        "figures": False,  # drawn by the end-to-end test and the command-line ones
    }


def test_eval_end_to_end_with_codecs(tmp_path, tiny_sam, tiny_clip):
    annotations, images = refcoco(tmp_path)
    pq = small_pqvae(tmp_path / "pq.safetensors", 32)
    out = tmp_path / "out"
    results, summary = evaluate_referring(
        annotations, images, out, **(run_kwargs(tiny_sam, tiny_clip, pq) | {"figures": True})
    )
    assert [r.name for r in results][:2] == ["float32", "float16"]
    assert results[2].name.endswith("[pq]")
    assert summary["failures"] == [
        {"step": "images", "item": "9", "reason": f"no image gone.jpg in {images}"}
    ]
    assert summary["expressions"] == 6 and summary["images_evaluated"] == 3
    assert 0 <= summary["proposal_recall"] <= 1
    assert summary["sam"]["dtype"] == "float32" and summary["clip"]["model"] == tiny_clip
    saved = json.loads((out / "eval.json").read_text())
    assert saved["proposal_recall"] == pytest.approx(summary["proposal_recall"])
    steps = {step["stage"]: step for step in saved["steps"]}
    assert steps["sam"]["items"] == 3 and steps["sam"]["done"] == 3
    assert steps["clip"]["items"] == summary["regions"] + 2  # regions, then 2 distinct texts
    assert steps["sam"]["phases"]["model"] > 0 and steps["clip"]["phases"]["model"] > 0
    accuracy = read_csv(out / "accuracy.csv")
    assert [float(row["bits_per_region"]) for row in accuracy[:2]] == [32 * 32, 16 * 32]
    assert float(accuracy[2]["bits_per_region"]) < 16 * 32
    regions_per_image = summary["regions"] / 3
    for row, result in zip(accuracy, results, strict=True):
        assert int(row["expressions"]) == 6 and int(row["correct"]) == result.correct
        assert int(row["images"]) == 3
        bits = float(row["bits_per_region"])
        assert float(row["bits_per_image"]) == pytest.approx(bits * regions_per_image)
        assert float(row["bpp"]) == pytest.approx(bits * regions_per_image / (80 * 60))
        low, high = float(row["accuracy_low"]), float(row["accuracy_high"])
        assert low <= float(row["accuracy"]) <= high
    choices = read_csv(out / "choices.csv")
    assert len(choices) == 6 and choices[0]["sentence"] == "the red box"
    for row in choices:
        for result in results:
            box = json.loads(row[f"box: {result.name}"])
            iou = box_iou(box, json.loads(row["target_box"]))
            assert float(row[f"iou: {result.name}"]) == pytest.approx(iou, abs=1e-6)
            assert row[f"correct: {result.name}"] == str(int(iou >= 0.5))
    assert read_csv(out / "failures.csv") == [
        {"step": "images", "item": "9", "reason": f"no image gone.jpg in {images}"}
    ]
    for stem in ("accuracy", "examples"):
        assert Image.open(out / f"{stem}.png").width > 300
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    assert len(list((out / "cache" / "masks").glob("*.npz"))) == 3
    assert len(list((out / "cache" / "regions").glob("*.npz"))) == 3


def test_examples_are_the_first_expression_of_each_image_first():
    refs = [Ref(i, i // 2, "x", ["a"], (0, 0, 1, 1)) for i in range(4)]
    expressions = [(r, s) for r in refs for s in ("one", "two")]
    assert referring.pick_examples(expressions, 3) == [0, 4, 1]
    assert referring.pick_examples(expressions, 10) == [0, 4, 1, 2, 3, 5, 6, 7]


def test_the_examples_figure_outlines_the_chosen_region_per_codec():
    image = Image.new("RGB", (40, 30), "white")
    masks = np.zeros((2, 30, 40), bool)
    masks[0, 5:15, 5:20] = True
    masks[1, 10:25, 20:35] = True
    regions = {1: ImageRegions(masks, np.ones(2), np.array([mask_box(m) for m in masks]))}
    ref = Ref(1, 1, "x", ["the left one"], (5.0, 5.0, 15.0, 10.0))
    good = referring.CodecAccuracy("float32", 1024, 2048, 32, 1, 1, [(0, 0.9, 1.0, True)])
    bad = referring.CodecAccuracy("pq", 400, 800, 0.5, 1, 0, [(1, 0.5, 0.0, False)])
    figure = referring.examples_figure(
        {1: image}, regions, [(ref, "the left one")], [good, bad], [0]
    )
    axes = figure.axes
    assert [a.get_title() for a in axes] == ["float32\n1024 bits/region", "pq\n400 bits/region"]
    assert "the left one" in axes[0].get_ylabel()
    assert [a.get_xlabel() for a in axes] == ["IoU 1.00", "IoU 0.00"]
    # the outline drawn is the chosen region's boundary, in green / vermillion
    for axis, region, colour in ((axes[0], 0, "#009E73"), (axes[1], 1, "#D55E00")):
        (contour,) = [c for c in axis.collections if hasattr(c, "get_paths")][:1]
        vertices = np.concatenate([p.vertices for p in contour.get_paths()])
        x, y, w, _ = regions[1].boxes[region]
        assert vertices[:, 0].min() == pytest.approx(x - 0.5, abs=0.51)
        assert vertices[:, 0].max() == pytest.approx(x + w - 0.5, abs=0.51)
        assert vertices[:, 1].min() == pytest.approx(y - 0.5, abs=0.51)
        from matplotlib.colors import to_hex

        assert to_hex(contour.get_edgecolor()[0]) == colour.lower()
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_batched_sam_gives_each_image_the_masks_it_gets_alone(tiny_sam):
    sam = referring.SamRegions(settings(tiny_sam), device="cpu", batch_size=3)
    try:
        images = [
            Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))
            for seed, (w, h) in enumerate(((80, 60), (50, 70), (64, 64)))
        ]
        together = sam.propose(images)
        for image, (masks, scores) in zip(images, together, strict=True):
            alone, alone_scores = sam.regions(image)
            assert masks.shape[1:] == (image.height, image.width)
            assert masks.shape == alone.shape
            assert (masks != alone).mean() < 1e-3
            assert scores == pytest.approx(alone_scores, abs=1e-4)
    finally:
        sam.close()


def test_sam_is_freed_before_clip_loads(tmp_path, tiny_sam, tiny_clip, monkeypatch):
    import gc
    import weakref

    from semcomp.metrics.clip import OpenClipEmbedder

    events: list[str] = []
    sam_models: list[weakref.ref] = []
    real_init = referring.SamRegions.__init__

    def sam_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        sam_models.append(weakref.ref(self.model))
        events.append("sam loaded")

    clip_init = OpenClipEmbedder.__init__

    def clip_loaded(self, *args, **kwargs):
        gc.collect()
        events.append("clip loads, sam " + ("alive" if sam_models[0]() else "freed"))
        clip_init(self, *args, **kwargs)

    monkeypatch.setattr(referring.SamRegions, "__init__", sam_init)
    monkeypatch.setattr(OpenClipEmbedder, "__init__", clip_loaded)
    annotations, images = refcoco(tmp_path)
    evaluate_referring(annotations, images, tmp_path / "out", **run_kwargs(tiny_sam, tiny_clip))
    assert events == ["sam loaded", "clip loads, sam freed"]


def test_a_rerun_or_another_codec_loads_no_model(tmp_path, tiny_sam, tiny_clip, monkeypatch):
    from semcomp import engines

    annotations, images = refcoco(tmp_path)
    out = tmp_path / "out"
    kwargs = run_kwargs(tiny_sam, tiny_clip)
    results, _ = evaluate_referring(annotations, images, out, **kwargs)
    before = (out / "choices.csv").read_text()

    def no_model(*_args, **_kwargs):
        raise AssertionError("a model was loaded although everything is cached")

    monkeypatch.setattr(engines.ModelWorker, "__init__", no_model)
    again, _ = evaluate_referring(annotations, images, out, **kwargs)
    assert (out / "choices.csv").read_text() == before
    assert [r.correct for r in again] == [r.correct for r in results]
    pq = small_pqvae(tmp_path / "pq.safetensors", 32)
    more, summary = evaluate_referring(annotations, images, out, **(kwargs | {"codecs": [str(pq)]}))
    assert [r.choices for r in more[:1]] == [results[0].choices]
    assert [s["items"] for s in summary["steps"][:2]] == [0, 0]
    # other SAM settings are another cache entry, so SAM runs again
    with pytest.raises(AssertionError, match="a model was loaded"):
        evaluate_referring(
            annotations, images, out, **(kwargs | {"sam": settings(tiny_sam, nms_iou=0.5)})
        )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_sam, tiny_clip) -> tuple[Path, Path, Path, dict]:
    """A run that was not killed: its annotations, images, output folder and settings."""
    root = tmp_path_factory.mktemp("uninterrupted")
    annotations, images = refcoco(root)
    kwargs = run_kwargs(tiny_sam, tiny_clip) | {"sam_batch_size": 1, "batch_size": 1}
    evaluate_referring(annotations, images, root / "whole", **kwargs)
    return annotations, images, root / "whole", kwargs


@pytest.mark.parametrize("step", ["sam", "clip"])
def test_a_killed_run_resumes_to_the_same_results(tmp_path, uninterrupted, monkeypatch, step):
    annotations, images, whole, kwargs = uninterrupted

    killed = tmp_path / "killed"
    real_save = referring._save_npz
    saved: list[Path] = []

    def save_then_die(path, **arrays):
        real_save(path, **arrays)
        saved.append(path)
        if path.parent.name == {"sam": "masks", "clip": "regions"}[step]:
            raise KeyboardInterrupt  # killed right after the first write of that step

    monkeypatch.setattr(referring, "_save_npz", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        evaluate_referring(annotations, images, killed, **kwargs)
    monkeypatch.setattr(referring, "_save_npz", real_save)
    _, summary = evaluate_referring(annotations, images, killed, **kwargs)
    steps = {s["stage"]: s for s in summary["steps"]}
    if step == "sam":
        assert (steps["sam"]["done"], steps["sam"]["skipped"]) == (2, 1)
    else:
        assert steps["sam"]["done"] == 0 and steps["clip"]["skipped"] == 1
    for name in ("accuracy.csv", "choices.csv", "failures.csv"):
        assert (killed / name).read_text() == (whole / name).read_text()
    for folder in ("masks", "regions"):
        files = sorted(p.name for p in (whole / "cache" / folder).glob("*.npz"))
        assert sorted(p.name for p in (killed / "cache" / folder).glob("*.npz")) == files
        assert not list((killed / "cache" / folder).glob(".*"))  # no half-written file left


def test_the_command_line_writes_accuracy_and_profiles(tmp_path, tiny_sam, tiny_clip, capsys):
    annotations, images = refcoco(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        main(
            [
                "referring", "eval", str(annotations), str(images), "--out", str(out),
                "--codec", "float16", "--sam", str(tiny_sam), "--model", tiny_clip,
                "--points-per-side", "2", "--pred-iou-threshold", "-1",
                "--stability-threshold", "0", "--split", "val", "--device", "cpu",
                "--no-progress", "--profile",
            ]
        )  # fmt: skip
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert "4 expressions on 2 images" in printed and "float16: 512.0 bits/region" in printed
    assert "profile (local engine):" in printed
    lines = {line.split()[0]: line.split() for line in printed.splitlines() if line[:2] == "  "}
    assert lines["sam"][1] == "2" and lines["clip"][1] == str(8 + 2)  # 4 regions per image
    assert [row["codec"] for row in read_csv(out / "accuracy.csv")] == ["float32", "float16"]


def test_malformed_refs_are_named_and_the_run_goes_on(tmp_path, tiny_sam, tiny_clip, capsys):
    root = refcoco_parquet(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        main(
            [
                "referring", "eval", str(root), "--split", "val", "--out", str(out),
                "--sam", str(tiny_sam), "--model", tiny_clip, "--points-per-side", "2",
                "--pred-iou-threshold", "-1", "--stability-threshold", "0", "--device", "cpu",
                "--no-progress", "--examples", "0",
            ]
        )  # fmt: skip
    assert raised.value.code == 1  # finished, with a failure recorded
    printed = capsys.readouterr().out
    assert "6 expressions on 3 images" in printed
    assert "1 failure(s) recorded" in printed
    assert "val-00001-of-00002.parquet#1: no 'answer' list" in printed
    assert read_csv(out / "failures.csv") == [
        {
            "step": "annotations",
            "item": "val-00001-of-00002.parquet#1",
            "reason": "no 'answer' list",
        }
    ]
    assert json.loads((out / "eval.json").read_text())["layout"] == "hf-parquet"
    assert not (out / "examples.png").exists() and (out / "accuracy.png").exists()


def test_an_undecodable_image_is_a_failure_and_the_others_are_scored(tmp_path, tiny_sam, tiny_clip):
    annotations, images = refcoco(tmp_path)
    (images / "COCO_train2014_000000000001.jpg").write_bytes(b"not a jpeg")
    results, summary = evaluate_referring(
        annotations, images, tmp_path / "out", **run_kwargs(tiny_sam, tiny_clip)
    )
    failed = {(f["step"], f["item"]): f["reason"] for f in summary["failures"]}
    assert failed[("sam", "1")].startswith("unreadable image: not an image")
    assert summary["images_evaluated"] == 2 and results[0].expressions == 4


def test_the_readme_referring_command_exists():
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Downstream: referring-object identification")[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    words = block.split()
    assert words[:3] == ["semcomp", "referring", "eval"]
    with pytest.raises(SystemExit) as raised:
        main(["referring", "eval", "--help"])
    assert raised.value.code == 0
    import inspect

    from semcomp.cli import referring_eval

    names = {p.replace("_", "-") for p in inspect.signature(referring_eval).parameters}
    assert {w[2:] for w in words if w.startswith("--")} <= names


def red(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)


def test_a_region_that_is_the_target_counts_as_correct(tmp_path, tiny_clip, monkeypatch):
    """SAM stood in for by the red pixels' mask: the chosen box is the red box's (IoU ≥ 0.5,
    exactly the mask box's IoU with the target)."""

    class RedRegions:
        def __init__(self, settings, device, batch_size):
            self.settings = settings

        def identity(self):
            return {"stand-in": "red pixels"}

        def propose(self, images):
            return [(red(image)[None], np.ones(1, np.float32)) for image in images]

        def close(self):
            pass

    monkeypatch.setattr(referring, "SamRegions", RedRegions)
    annotations, images = refcoco(tmp_path)
    results, summary = evaluate_referring(
        annotations, images, tmp_path / "out", clip=EmbedderConfig(model=tiny_clip),
        codecs=["float16"], examples=0, progress=False,
    )  # fmt: skip
    assert summary["proposal_recall"] == 1.0 and summary["regions"] == 3
    assert [(r.correct, r.expressions) for r in results] == [(6, 6), (6, 6)]
    refs = read_refs(annotations).refs[:3]
    expected = [
        box_iou(mask_box(red(Image.open(images / f"COCO_train2014_{i:012d}.jpg"))), ref.bbox)
        for i, ref in enumerate(refs)
        for _ in ref.sentences
    ]
    for result in results:
        assert [c[2] for c in result.choices] == pytest.approx(expected)
    assert not (tmp_path / "out" / "examples.png").exists()
    assert (tmp_path / "out" / "accuracy.png").exists()


def test_region_crops_embed_alike_with_or_without_the_model_transform(tmp_path, tiny_clip):
    """Loaded beside the model (local engine: crops preprocessed while loading) or without it
    (Ray's CPU tasks: PIL crops, preprocessed by the model), the vectors are the same."""
    from semcomp.metrics.clip import OpenClipEmbedder

    _, images = refcoco(tmp_path)
    path = images / "COCO_train2014_000000000000.jpg"
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 5:25, 5:30] = True
    masks[1, 30:50, 40:70] = True
    stored = tmp_path / "masks.npz"
    referring._save_npz(
        stored, packed=np.packbits(masks.reshape(-1)), shape=np.array(masks.shape),
        scores=np.ones(2, np.float32),
    )  # fmt: skip
    task = referring.EmbedRegions(10**8)
    model = OpenClipEmbedder(EmbedderConfig(model=tiny_clip), device="cpu")
    try:
        item = referring.RefImage(0, path, stored)
        context = task.context(model)
        (here,) = task.infer(model, task.load([item], context), context)
        (remote,) = task.infer(model, task.load([item], None), context)
    finally:
        model.close()
    assert here.shape == (2, 32)
    np.testing.assert_allclose(here, remote, atol=1e-6)


def test_the_accuracy_figure_puts_each_codec_at_its_bits():
    import matplotlib.pyplot as plt

    results = [
        referring.CodecAccuracy("float32", 1024, 8192, 32, 10, 6, interval=(0.3, 0.9)),
        referring.CodecAccuracy("pq", 400, 3200, 0.5, 10, 5, interval=(0.2, 0.8)),
    ]
    figure = referring.accuracy_figure(results, recall=0.8)
    per_region, per_image = figure.axes[:2]
    for axis, attribute in ((per_region, "bits_per_region"), (per_image, "bits_per_image")):
        points = {
            c.get_label(): tuple(c.lines[0].get_xydata()[0])
            for c in axis.containers
        }  # fmt: skip
        assert points == {r.name: (getattr(r, attribute), r.accuracy) for r in results}
        assert [line.get_ydata()[0] for line in axis.lines if line.get_linestyle() == "--"] == [0.8]
    assert per_region.get_title() == "n = 10 expressions, 0 images"
    plt.close(figure)
    assert [referring.compact(v) for v in (500, 2000, 50000, 1.5e6)] == ["500", "2k", "50k", "1.5M"]
