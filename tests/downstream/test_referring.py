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
    refs = read_refs(path)
    as_json = tmp_path / "refs.json"
    as_json.write_text(json.dumps({"refs": pickle.loads(path.read_bytes())}))
    assert read_refs(as_json) == refs
    assert refs[0].sentences == ["the red box", "left"] and refs[0].bbox == (5.0, 5.0, 25.0, 20.0)
    assert [r.ref_id for r in read_refs(path, split="val")] == [0, 1]


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
    first, second = read_refs(refs, instances=instances)
    assert first.bbox == (1.0, 2.0, 3.0, 4.0) and first.file_name == "one.jpg"
    assert second.bbox == (2.0, 3.0, 10.0, 6.0)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{}", "no list of refs"),
        ('["x"]', r"refs\[0\] is not a record"),
        ('[{"sentences": ["a"], "bbox": [0, 0, 1, 1]}]', r"refs\[0\] has no 'image_id'"),
        ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "file_name": "a"}]', "no 'sentences'"),
        ('[{"image_id": 1, "sentences": [{"x": 1}], "file_name": "a"}]', "sentence without"),
        ('[{"image_id": 1, "sentences": ["a"], "file_name": "a"}]', "no usable target"),
        ('[{"image_id": 1, "sentences": ["a"], "bbox": [0, 0, -1, 1]}]', "no usable target"),
        ('[{"image_id": 1, "sentences": ["a"], "bbox": [0, 0, 1, 1]}]', "no image file name"),
        ("not json", "not a JSON annotation file"),
    ],
)
def test_a_malformed_annotation_names_the_file_and_the_record(tmp_path, content, match):
    path = tmp_path / "refs.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        read_refs(path)


# ---- the whole path: tiny SAM, tiny CLIP ------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_eval_end_to_end_with_codecs_and_resume(tmp_path, tiny_sam, tiny_clip, monkeypatch):
    annotations, images = refcoco(tmp_path)
    pq = small_pqvae(tmp_path / "pq.safetensors", 32)
    out = tmp_path / "out"
    kwargs = {
        "clip": EmbedderConfig(model=tiny_clip),
        "codecs": ["float16", str(pq)],
        "sam": SamSettings(model=str(tiny_sam), points_per_batch=4, **LOOSE),
        "batch_size": 4,
        "progress": False,
    }
    results, summary = evaluate_referring(annotations, images, out, **kwargs)
    assert [r.name for r in results][:2] == ["float32", "float16"]
    assert results[2].name.endswith("[pq]")
    assert summary["left_out"] == [{"image_id": 9, "reason": "no image gone.jpg"}]
    assert summary["expressions"] == 6 and summary["images_evaluated"] == 3
    assert 0 <= summary["proposal_recall"] <= 1
    assert json.loads((out / "eval.json").read_text())["proposal_recall"] == pytest.approx(
        summary["proposal_recall"]
    )
    accuracy = read_csv(out / "accuracy.csv")
    assert [float(row["bits_per_region"]) for row in accuracy[:2]] == [32 * 32, 16 * 32]
    assert float(accuracy[2]["bits_per_region"]) < 16 * 32
    for row, result in zip(accuracy, results, strict=True):
        assert int(row["expressions"]) == 6 and int(row["correct"]) == result.correct
    choices = read_csv(out / "choices.csv")
    assert len(choices) == 6 and choices[0]["sentence"] == "the red box"
    for row in choices:
        for result in results:
            box = json.loads(row[f"box: {result.name}"])
            iou = box_iou(box, json.loads(row["target_box"]))
            assert float(row[f"iou: {result.name}"]) == pytest.approx(iou, abs=1e-6)
            assert row[f"correct: {result.name}"] == str(int(iou >= 0.5))
    figure = Image.open(out / "examples.png")
    assert figure.height == 4 * (referring.PANEL_HEIGHT + referring.CAPTION_HEIGHT)
    assert figure.width == 3 * round(80 * referring.PANEL_HEIGHT / 60)  # three codecs
    first = np.asarray(figure)[: referring.PANEL_HEIGHT, : figure.width // 3]
    box = [v * referring.PANEL_HEIGHT / 60 for v in json.loads(choices[0]["box: float32"])]
    colour = (0, 200, 0) if choices[0]["correct: float32"] == "1" else (220, 0, 0)
    assert tuple(first[round(box[1]) + 1, round(box[0] + box[2] / 2)]) == colour  # top edge
    assert len(list((out / "cache" / "masks").glob("*.npz"))) == 3
    assert len(list((out / "cache" / "regions").glob("*.npz"))) == 3

    # resume: masks and region embeddings come from the cache, SAM is not loaded again
    def no_sam(*_args, **_kwargs):
        raise AssertionError("SAM was loaded although every image's masks are cached")

    monkeypatch.setattr(referring, "SamRegions", no_sam)
    before = (out / "choices.csv").read_text()
    again, _ = evaluate_referring(annotations, images, out, **kwargs)
    assert (out / "choices.csv").read_text() == before
    assert [r.correct for r in again] == [r.correct for r in results]
    # other SAM settings are another cache entry, so SAM runs again
    with pytest.raises(AssertionError, match="SAM was loaded"):
        evaluate_referring(
            annotations, images, out, **(kwargs | {"sam": SamSettings(str(tiny_sam), nms_iou=0.5)})
        )


def test_the_command_line_writes_accuracy(tmp_path, tiny_sam, tiny_clip, capsys):
    annotations, images = refcoco(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        main(
            [
                "referring", "eval", str(annotations), str(images), "--out", str(out),
                "--codec", "float16", "--sam", str(tiny_sam), "--model", tiny_clip,
                "--points-per-side", "2", "--pred-iou-threshold", "-1",
                "--stability-threshold", "0", "--split", "val", "--device", "cpu",
                "--no-progress",
            ]
        )  # fmt: skip
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert "4 expressions on 2 images" in printed and "float16: 512.0 bits/region" in printed
    assert [row["codec"] for row in read_csv(out / "accuracy.csv")] == ["float32", "float16"]


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
        def __init__(self, settings, device):
            self.settings = settings

        def regions(self, image):
            return red(image)[None], np.ones(1, np.float32)

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
    refs = read_refs(annotations)[:3]
    expected = [
        box_iou(mask_box(red(Image.open(images / f"COCO_train2014_{i:012d}.jpg"))), ref.bbox)
        for i, ref in enumerate(refs)
        for _ in ref.sentences
    ]
    for result in results:
        assert [c[2] for c in result.choices] == pytest.approx(expected)
    assert not (tmp_path / "out" / "examples.png").exists()
