"""Ingest throughput for 20-megapixel photos, next to a bare Pillow decode.

    python benchmarks/ingest.py [--photos 8]

Ingest reads, hashes, fully decodes and normalises each file, copies it into the
content-addressed store and writes its rows; the ratio shows what that costs on
top of decoding alone.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from common import machine, photo, timed
from semcomp.study import Study

WIDTH, HEIGHT = 5472, 3648  # 19.96 MP, a common 20 MP sensor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images" / "photos"
        images.mkdir(parents=True)
        for index in range(args.photos):
            photo(WIDTH, HEIGHT, seed=index).save(images / f"{index:03d}.jpg", quality=92)
        total_mb = sum(p.stat().st_size for p in images.iterdir()) / 1e6

        def bare_decode() -> None:
            for path in sorted(images.iterdir()):
                with Image.open(path) as image:
                    image.convert("RGB").load()

        decode_s, _ = timed(bare_decode)
        root = Path(tmp) / "study"
        root.mkdir()
        (root / "study.toml").write_text(
            f'[images]\nsource = "{images.parent.as_posix()}"\n'
            '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n'
        )
        with Study.open(root) as study:
            ingest_s, summary = timed(lambda: study.run(progress=False, stages=["ingest"]))
        (report,) = summary.stages
    megapixels = args.photos * WIDTH * HEIGHT / 1e6
    print(f"machine: {machine()}")
    print(
        f"{args.photos} JPEG photos of {WIDTH}x{HEIGHT} ({megapixels / args.photos:.1f} MP), "
        f"{total_mb:.1f} MB"
    )
    print(
        f"bare Pillow decode  {decode_s:7.2f} s  {args.photos / decode_s:6.2f} photos/s  "
        f"{megapixels / decode_s:7.1f} MP/s"
    )
    print(
        f"semcomp ingest      {ingest_s:7.2f} s  {args.photos / ingest_s:6.2f} photos/s  "
        f"{megapixels / ingest_s:7.1f} MP/s  ({report.done} ingested, {report.failed} failed)"
    )
    print(f"ratio ingest / bare decode: {ingest_s / decode_s:.2f}x")


if __name__ == "__main__":
    main()
