"""Region scoring for ``semcomp referring eval`` beside a bare SamModel + open_clip loop.

    python benchmarks/referring_regions.py [--images 8] [--size 160x120] [--points 8]
        [--repeats 3] [--device cpu|cuda] [--sam FOLDER] [--clip MODEL]

The same photo-like images go through

- semcomp: :func:`semcomp.downstream.referring.evaluate_referring` into a fresh output
  folder (nothing cached): SAM through the local engine (images batched through the image
  encoder, point prompts batched), then CLIP over every region crop, then the float32
  codec and the choice per expression; figures off;
- the bare loop: per image, ``SamProcessor`` + ``SamModel.get_image_embeddings`` and the
  mask decoder on the same point grid, ``post_process_masks``, the same mask selection,
  the same grey crops, then ``open_clip``'s ``encode_image`` on the crops in batches.

Both load their two models inside the timed run and give the same regions (checked). The
two are timed alternately ``--repeats`` times and the best of each kept (the machine may
be shared); the ratio is semcomp's regions per second over the bare loop's (1.00: no
overhead). Default models: the tests' tiny random-weight SAM (64 px) and CLIP; ``--sam``
and ``--clip`` name others (e.g. a random-weight SAM ViT-B folder on a lent GPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, photo


def bare_loop(paths: list[Path], sam_settings, clip_model: str, device: str, batch: int) -> int:
    """SamModel + open_clip by hand over the images; the number of regions embedded."""
    import torch
    from PIL import Image
    from transformers import SamModel, SamProcessor

    from semcomp.downstream.referring import point_grid, region_crop, select_masks
    from semcomp.metrics.clip import load_open_clip

    s = sam_settings
    model = SamModel.from_pretrained(s.model).to(device).eval()
    processor = SamProcessor.from_pretrained(s.model)
    crops_per_image = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        points = point_grid(image.width, image.height, s.points_per_side)
        inputs = processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            embeddings = model.get_image_embeddings(inputs["pixel_values"].to(device))
        masks, scores, stability = [], [], []
        for start in range(0, len(points), s.points_per_batch):
            prompts = processor(
                images=image,
                input_points=[[[p] for p in points[start : start + s.points_per_batch]]],
                return_tensors="pt",
            )
            with torch.inference_mode():
                out = model(
                    image_embeddings=embeddings,
                    input_points=prompts["input_points"].to(device),
                    multimask_output=True,
                )
            iou = out.iou_scores[0].float().cpu()
            best = iou.argmax(dim=1)
            rows = torch.arange(len(best))
            logits = processor.image_processor.post_process_masks(
                out.pred_masks[0][rows, best][:, None].float().cpu()[None],
                prompts["original_sizes"],
                prompts["reshaped_input_sizes"],
                binarize=False,
            )[0][:, 0]
            high = (logits > s.stability_offset).flatten(1).sum(1).float()
            low = (logits > -s.stability_offset).flatten(1).sum(1).float()
            stability.append(torch.where(low > 0, high / low.clamp(min=1), 0.0).numpy())
            masks.append((logits > 0).numpy())
            scores.append(iou[rows, best].numpy())
        kept, _ = select_masks(
            np.concatenate(masks), np.concatenate(scores), np.concatenate(stability), s
        )
        crops_per_image.append([region_crop(image, mask) for mask in kept])
    del model
    clip = load_open_clip(_config(clip_model), device).eval()
    from open_clip.transform import PreprocessCfg, image_transform_v2

    preprocess = image_transform_v2(PreprocessCfg(**clip.visual.preprocess_cfg), is_train=False)
    crops = [crop for image_crops in crops_per_image for crop in image_crops]
    for start in range(0, len(crops), batch):
        pixels = torch.stack([preprocess(c) for c in crops[start : start + batch]]).to(device)
        with torch.inference_mode():
            torch.nn.functional.normalize(clip.encode_image(pixels).float(), dim=-1).cpu()
    return len(crops)


def _config(model: str):
    from semcomp.config import EmbedderConfig

    return EmbedderConfig(model=model)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--points", type=int, default=8, help="SAM point grid per side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sam", default=None)
    parser.add_argument("--clip", default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    from semcomp.downstream.referring import SamSettings, evaluate_referring
    from semcomp.tiny_models import write_tiny_open_clip, write_tiny_sam

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sam = args.sam or str(write_tiny_sam(folder / "tiny-sam"))
        clip = args.clip or write_tiny_open_clip(folder / "tiny-clip")
        images = folder / "images"
        images.mkdir()
        refs = []
        for number in range(args.images):
            name = f"{number:04d}.png"
            photo(width, height, seed=number).save(images / name)
            refs.append(
                {"image_id": number, "file_name": name, "sentences": ["the thing on the left"],
                 "bbox": [0, 0, width // 2, height // 2]}
            )  # fmt: skip
        annotations = folder / "refs.json"
        import json

        annotations.write_text(json.dumps(refs))
        settings = SamSettings(
            model=sam,
            points_per_side=args.points,
            points_per_batch=64,
            pred_iou_threshold=-1.0,
            stability_threshold=0.0,
        )
        paths = sorted(images.glob("*.png"))
        best = {"semcomp": float("inf"), "bare": float("inf")}
        regions = {}
        for repeat in range(args.repeats):
            started = time.perf_counter()
            _, summary = evaluate_referring(
                annotations, images, folder / f"out{repeat}", clip=_config(clip), sam=settings,
                batch_size=args.batch_size, sam_batch_size=4, device=args.device,
                examples=0, figures=False, progress=False,
            )  # fmt: skip
            best["semcomp"] = min(best["semcomp"], time.perf_counter() - started)
            regions["semcomp"] = summary["regions"]
            started = time.perf_counter()
            regions["bare"] = bare_loop(paths, settings, clip, args.device, args.batch_size)
            best["bare"] = min(best["bare"], time.perf_counter() - started)
        if regions["semcomp"] != regions["bare"]:
            sys.exit(f"the two gave different regions: {regions}")
        rates = {side: regions["bare"] / seconds for side, seconds in best.items()}
        print(machine())
        print(
            f"{args.images} images {args.size}, {args.points}x{args.points} SAM points, "
            f"{regions['bare']} regions, best of {args.repeats}, models loaded in each run"
        )
        for side in ("semcomp", "bare"):
            print(f"{side:<8} {best[side]:7.2f} s  {rates[side]:8.1f} regions/s")
        print(f"ratio semcomp / bare: {rates['semcomp'] / rates['bare']:.2f}x")


if __name__ == "__main__":
    main()
