"""CompressAI codec throughput: semcomp's encode + decode stages vs a bare compressai loop.

    python benchmarks/compressai_codec.py [--model mbt2018-mean] [--images 16] [--size 256]
        [--quality 1] [--batch-size 4] [--device auto] [--repeats 2]

Both sides code the same images with the same network (random weights, built the
same way: offline, so the rates mean nothing but the work is the real work) and
count the same things: padding to 64, ``compress()``, ``decompress()``, cropping.
The stage side also reads the originals from the artifact store, writes the
bitstreams and PNG candidates and their rows; the bare side keeps everything in
memory, one image at a time, as a researcher's script would. Ingest is not timed.
The two sides alternate ``--repeats`` times and the best time of each is kept.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine, photo, timed, write_tiny_study


def bare_loop(images: list, model: str, quality: int, device: str) -> int:
    """Compress and decompress each image on its own with the zoo network; total bytes."""
    import torch

    from semcomp.codecs.learned import (
        CompressaiParams,
        crop_padding,
        load_zoo_model,
        pad_to_multiple,
        to_images,
        to_tensor,
    )
    from semcomp.models import select_device

    device = select_device(device)
    net = load_zoo_model(CompressaiParams(model=model, weights="random"), quality, device)
    total = 0
    with torch.inference_mode():
        for image in images:
            x, _ = pad_to_multiple(to_tensor([image]))
            coded = net.compress(x.to(device))
            total += sum(len(s[0]) for s in coded["strings"])
            x_hat = net.decompress(coded["strings"], coded["shape"])["x_hat"]
            to_images(crop_padding(x_hat, (image.height, image.width)))
    return total


def stage_run(pictures: list, method: str) -> tuple[float, object, int]:
    """A fresh study of the pictures: seconds of its encode + decode stages, the summary,
    and the bytes of its representations."""
    from semcomp.study import Study

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images" / "photos"
        folder.mkdir(parents=True)
        for index, picture in enumerate(pictures):
            picture.save(folder / f"{index:04d}.png")
        root = write_tiny_study(Path(tmp) / "study", folder.parent, method)
        with Study.open(root) as study:
            study.run(progress=False, stages=["ingest"])
            seconds, summary = timed(lambda: study.run(progress=False, stages=["encode", "decode"]))
            stage_bytes = study.store.conn.execute(
                "SELECT SUM(rate_bits) / 8 FROM representations"
            ).fetchone()[0]
    return seconds, summary, stage_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mbt2018-mean")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quality", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    pictures = [photo(args.size, args.size * 3 // 4, seed=i) for i in range(args.images)]
    method = (
        f'[[methods]]\nname = "learned"\ncodec = "compressai"\nquality = [{args.quality}]\n'
        f'random_weights = true\nbatch_size = {args.batch_size}\ndevice = "{args.device}"\n'
        f'params = {{ model = "{args.model}", weights = "random" }}\n'
    )
    stage_runs, bare_runs = [], []
    for _ in range(args.repeats):  # interleaved, best of each: the machine may be shared
        stage_runs.append(stage_run(pictures, method))
        bare_runs.append(timed(lambda: bare_loop(pictures, args.model, args.quality, args.device)))
    stage_s, summary, stage_bytes = min(stage_runs, key=lambda run: run[0])
    bare_s, bare_bytes = min(bare_runs, key=lambda run: run[0])
    done = {stage.stage: stage.done for stage in summary.stages}
    phases = {
        stage.stage: {name: round(seconds, 1) for name, seconds in stage.phases.items()}
        for stage in summary.stages
    }
    stage_rate, bare_rate = args.images / stage_s, args.images / bare_s
    print(f"machine: {machine()}")
    print(
        f"{args.images} images of {args.size}x{args.size * 3 // 4}, {args.model} quality "
        f"{args.quality} (random weights), stage batch size {args.batch_size}, "
        f"best of {args.repeats} interleaved runs each"
    )
    print(f"stage (encode + decode)  {stage_s:7.2f} s  {stage_rate:7.2f} images/s  {done}")
    print(f"bare compressai loop     {bare_s:7.2f} s  {bare_rate:7.2f} images/s")
    print(f"stage seconds per phase (best run): {phases}")
    print(f"ratio stage / bare: {stage_rate / bare_rate:.2f}x")
    print(
        f"bytes: stage {stage_bytes:,} (strings + container), bare strings {bare_bytes:,} "
        f"(container overhead {stage_bytes - bare_bytes:,} B over {args.images} images)"
    )


if __name__ == "__main__":
    main()
