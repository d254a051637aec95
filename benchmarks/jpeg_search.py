"""Encodes per rate target for the JPEG/WebP quality search, next to a linear scan.

    python benchmarks/jpeg_search.py

A linear scan from the top quality down needs up to 100 encodes per target; the
binary search needs at most 7, and targets on one image share encodes.
"""

from __future__ import annotations

import io
import statistics
import time

from common import machine, photo
from semcomp.codecs import CODECS, OperatingPoint, OriginalFacts

SIZES = [(320, 240), (1024, 768), (2048, 1536)]
TARGETS = [
    OperatingPoint("reduction", 0.8),
    OperatingPoint("reduction", 0.9),
    OperatingPoint("bpp", 0.25),
    OperatingPoint("bpp", 1.0),
]


def linear_scan_encodes(codec, image, max_bytes: int) -> int:
    low, high = codec.quality_range
    for count, quality in enumerate(range(high, low - 1, -1), start=1):
        if len(codec.encode_at_quality(image, quality)) <= max_bytes:
            return count
    return high - low + 1


def main() -> None:
    print(f"machine: {machine()}")
    print(
        f"{'codec':<5} {'size':>10} {'targets':>7} {'encodes/target':>15} {'max':>4} "
        f"{'linear scan':>12} {'ratio':>6} {'search s':>9} {'scan s':>8}"
    )
    for name in ("jpeg", "webp"):
        codec_class = CODECS.get(name)
        codec = codec_class(codec_class.Params())
        for width, height in SIZES:
            image = photo(width, height, seed=width)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            original = OriginalFacts(file_bytes=len(buffer.getvalue()), pixels=width * height)
            # one target at a time: no sharing, the worst case per target
            per_target, search_s = [], 0.0
            for point in TARGETS:
                started = time.perf_counter()
                (result,) = codec.encode(image, [point], original)
                seconds = time.perf_counter() - started
                search_s += seconds
                per_target.append(
                    result.meta["encodes"] if not isinstance(result, Exception) else 7
                )
            started = time.perf_counter()
            scans = [linear_scan_encodes(codec, image, p.max_bytes(original)) for p in TARGETS]
            scan_s = time.perf_counter() - started
            mean = statistics.mean(per_target)
            print(
                f"{name:<5} {f'{width}x{height}':>10} {len(TARGETS):>7} {mean:>15.2f} "
                f"{max(per_target):>4} {statistics.mean(scans):>12.1f} "
                f"{statistics.mean(scans) / mean:>5.1f}x {search_s:>9.2f} {scan_s:>8.2f}"
            )
            shared = codec.encode(image, TARGETS, original)
            total = sum(r.meta["encodes"] for r in shared if not isinstance(r, Exception))
            print(
                f"{'':<5} {'':>10} all {len(TARGETS)} targets on one image together: "
                f"{total} encodes ({total / len(TARGETS):.2f} per target)"
            )


if __name__ == "__main__":
    main()
