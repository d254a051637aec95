"""API captioning throughput: concurrency 1 vs 16 against a loopback server with 200 ms latency.

    python benchmarks/api_captioning.py [--images 64] [--latency 0.2]

The server (tests/fake_openai.py) answers every chat completion after
``latency`` seconds, like a remote vision LLM. The ideal speed-up of 16
concurrent requests is 16x; the target is at least 0.8 of that.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import machine, photo, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_openai import FakeOpenAIServer
from semcomp.captioners.base import OriginalRef
from semcomp.captioners.llm_api import LlmApiCaptioner, LlmApiParams


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    os.environ["BENCH_OPENAI_KEY"] = "sk-benchmark-000000"
    images = [photo(256, 192, seed) for seed in range(args.images)]
    refs = [OriginalRef(str(i), str(i), "c", f"{i}.png") for i in range(args.images)]
    seconds = {}
    with FakeOpenAIServer(latency=args.latency) as server:
        for concurrency in (1, 16):
            params = LlmApiParams(
                base_url=server.base_url,
                model="bench",
                api_key_env="BENCH_OPENAI_KEY",
                concurrency=concurrency,
                max_side=256,
            )
            captioner = LlmApiCaptioner(params, device="cpu", batch_size=8)
            seconds[concurrency], results = timed(lambda c=captioner: c.caption(refs, images))
            assert all(isinstance(r, list) for r in results)
    ideal = args.latency * args.images
    speedup = seconds[1] / seconds[16]
    print(f"machine: {machine()}")
    print(f"{args.images} captions, {args.latency * 1000:.0f} ms server latency")
    for concurrency, value in seconds.items():
        print(
            f"concurrency {concurrency:>2}: {value:6.2f} s  {args.images / value:6.1f} captions/s "
            f"(latency floor {ideal / concurrency:5.2f} s)"
        )
    print(f"speed-up 16 vs 1: {speedup:.1f}x = {speedup / 16:.2f} of the ideal 16x (target >= 0.8)")


if __name__ == "__main__":
    main()
