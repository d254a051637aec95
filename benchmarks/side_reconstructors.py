"""Reconstructions/s with side information: ControlNet (an edge sketch) and img2img (a
thumbnail) vs plain text-to-image, at the same model, size, steps and batch, in one run.

    python benchmarks/side_reconstructors.py [--prompts 16] [--batch 8] [--steps 4]
        [--size 64] [--repeats 3] [--model PATH_OR_ID --controlnet PATH_OR_ID]

Without ``--model`` it builds the tiny random-weight Stable Diffusion and ControlNet
(semcomp.tiny_models, the tests' and the offline demo's). img2img runs at strength 1.0
(the same denoising steps as text-to-image: the pipelines' own cost compared) and at
0.5 (half of them run, as ``steps × strength`` says). Each rate is the best of
``--repeats`` timed passes after a warm-up (the cases take turns in each pass),
through semcomp's reconstructors (the production path: decoded side images in, PNG
bytes out), per wall-clock second and per CPU second of this process (on a CPU shared
with other work, the CPU-second rates are the ones to compare; on a GPU, the wall-clock
ones).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import machine, photo, timed
from semcomp.codecs.side import (
    EdgesParams,
    ThumbnailParams,
    decode_side,
    encode_side,
)
from semcomp.reconstructors.diffusers import (
    ControlNetParams,
    ControlNetReconstructor,
    DiffusersParams,
    DiffusersReconstructor,
    Img2ImgParams,
    Img2ImgReconstructor,
)


def reconstruct(reconstructor, sides, prompts: list[str], seeds: list[int]) -> list:
    """Reconstructions of ``prompts`` (with their side images, if any); raises on a failure."""
    if sides is None:
        made = reconstructor.reconstruct(prompts, seeds)
    else:
        made = reconstructor.reconstruct_with_side(prompts, seeds, sides[: len(prompts)])
    problems = [m for m in made if isinstance(m, Exception)]
    if problems:
        raise problems[0]
    return made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--controlnet")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if bool(args.model) != bool(args.controlnet):
        parser.error("--model and --controlnet go together")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model, controlnet = args.model, args.controlnet
        else:
            from semcomp.tiny_models import write_tiny_controlnet, write_tiny_stable_diffusion

            model = str(write_tiny_stable_diffusion(Path(tmp) / "tiny-sd"))
            controlnet = str(write_tiny_controlnet(Path(tmp) / "tiny-controlnet"))
        prompts = [f"a photo of object number {i} on a table" for i in range(args.prompts)]
        seeds = list(range(args.prompts))
        originals = [photo(160, 120, seed) for seed in seeds]
        sketches = [
            decode_side(encode_side("edges", EdgesParams(size=[96]), image, 96).data)
            for image in originals
        ]
        thumbnail = ThumbnailParams(size=[32], quality=50)
        thumbnails = [
            decode_side(encode_side("thumbnail", thumbnail, image, 32).data) for image in originals
        ]
        shared = {"model": model, "steps": args.steps, "width": args.size, "height": args.size}
        cases = {
            "text-to-image": (DiffusersReconstructor, DiffusersParams(**shared), None),
            "controlnet (edges)": (
                ControlNetReconstructor,
                ControlNetParams(**shared, controlnet=controlnet),
                sketches,
            ),
            "img2img strength 1.0": (
                Img2ImgReconstructor,
                Img2ImgParams(**shared, strength=1.0),
                thumbnails,
            ),
            "img2img strength 0.5": (
                Img2ImgReconstructor,
                Img2ImgParams(**shared, strength=0.5),
                thumbnails,
            ),
        }
        runs = {}
        for label, (cls, params, sides) in cases.items():
            reconstructor = cls(params, device=args.device, batch_size=args.batch)
            runs[label] = (reconstructor, sides)
            reconstruct(reconstructor, sides, prompts[: args.batch], seeds[: args.batch])  # warm
        # the cases take turns in each pass, so a busy machine slows them alike
        seconds: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
        for _ in range(args.repeats):
            for label, (reconstructor, sides) in runs.items():
                cpu = time.process_time()
                elapsed, _ = timed(
                    lambda r=reconstructor, s=sides: reconstruct(r, s, prompts, seeds)
                )
                seconds[label].append((elapsed, time.process_time() - cpu))
        rates = {
            label: (
                args.prompts / min(wall for wall, _ in times),
                args.prompts / min(cpu for _, cpu in times),
            )
            for label, times in seconds.items()
        }
        device = next(iter(runs.values()))[0].torch_device
        for reconstructor, _ in runs.values():
            reconstructor.close()
    print(f"machine: {machine()}, device: {device}")
    print(
        f"model: {model if args.model else 'tiny random-weight SD + ControlNet'}, "
        f"{args.size}x{args.size}, {args.steps} steps, batch {args.batch}, "
        f"{args.prompts} prompts, best of {args.repeats}"
    )
    print(
        f"{'':<22} {'per wall s':>10} {'ratio':>6}   {'per CPU s':>10} {'ratio':>6}"
        "   (reconstructions; ratio to text-to-image)"
    )
    base_wall, base_cpu = rates["text-to-image"]
    for label, (wall, cpu) in rates.items():
        wall_ratio, cpu_ratio = wall / base_wall, cpu / base_cpu
        print(f"{label:<22} {wall:10.2f} {wall_ratio:5.2f}x   {cpu:10.2f} {cpu_ratio:5.2f}x")


if __name__ == "__main__":
    main()
