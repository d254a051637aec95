"""Diffusers throughput: batched prompts vs one prompt at a time.

    python benchmarks/diffusers_batching.py [--model PATH_OR_ID] [--prompts 16] [--batch 8]
        [--steps 25] [--size 512] [--random-sd15]

Without ``--model`` it builds the tiny random-weight Stable Diffusion (CPU-sized,
64x64, 2 steps). ``--random-sd15`` builds a full-size SD 1.5 architecture with
random weights (UNet 860 M parameters) for GPU measurements without downloads.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine, timed
from semcomp.reconstructors.diffusers import DiffusersParams, DiffusersReconstructor


def random_sd15(folder: Path) -> Path:
    """SD 1.5's architecture (UNet, VAE, CLIP ViT-L/14 text encoder) with random weights."""
    from semcomp.tiny_models import write_tiny_stable_diffusion

    return write_tiny_stable_diffusion(folder / "sd15-random", full_size=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--random-sd15", action="store_true")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.random_sd15:
            model, steps, size = random_sd15(Path(tmp)), args.steps or 25, args.size or 512
        elif args.model:
            model, steps, size = args.model, args.steps or 25, args.size or 512
        else:
            from semcomp.tiny_models import write_tiny_stable_diffusion

            model = write_tiny_stable_diffusion(Path(tmp) / "tiny-sd")
            steps, size = args.steps or 2, args.size or 64
        prompts = [f"a photo of object number {i} on a table" for i in range(args.prompts)]
        seeds = list(range(args.prompts))
        params = DiffusersParams(model=str(model), steps=steps, width=size, height=size)
        rates = {}
        for batch in (1, args.batch):
            reconstructor = DiffusersReconstructor(params, device=args.device, batch_size=batch)
            reconstructor.reconstruct(prompts[:batch], seeds[:batch])  # warm-up
            seconds, _ = timed(lambda r=reconstructor: r.reconstruct(prompts, seeds))
            rates[batch] = args.prompts / seconds
            device = reconstructor.torch_device
            reconstructor.close()
    print(f"machine: {machine()}, device: {device}")
    print(f"model: {'random SD 1.5' if args.random_sd15 else model}, {size}x{size}, {steps} steps")
    for batch, rate in rates.items():
        print(f"batch {batch:>2}: {rate:7.2f} images/s")
    print(f"batched / one at a time: {rates[args.batch] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
