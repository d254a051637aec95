"""ClipCap captioning throughput: `semcomp clipcap eval`'s captioning against a bare loop.

    python benchmarks/clipcap_captioning.py [--embeddings 512] [--batch-size 64] [--tokens 20]

A ClipCap checkpoint (MLP mapper, prefix of 10) on a tiny random-weight GPT-2 (the test
suite's, 2 layers of width 32) and random 64-d embeddings. Side by side, best of 3
interleaved runs each, on CPU:

- semcomp: the evaluation's captioning step (``caption_eval.caption_embeddings``): the
  checkpoint loaded through the engine (local), the embeddings in batches through the
  mapper and ``generate``, each batch's captions appended to the resumable cache;
- bare: the same model already in memory, the same prefixes computed beforehand, a plain
  loop of ``GPT2LMHeadModel.generate(inputs_embeds=...)`` and ``batch_decode``.

It checks that both give the same captions and prints captions/s of each, the ratio
semcomp / bare on the wall time and on the engine's model phase alone (without loading
the checkpoint and writing the cache).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import machine, timed
from semcomp.downstream.caption_eval import (
    CaptionCache,
    CaptionerSettings,
    caption_embeddings,
    clipcap_factory,
)
from semcomp.downstream.clipcap import ClipCap, ClipCapConfig, build_model, load_gpt
from semcomp.engines import LocalEngine
from semcomp.tiny_models import write_tiny_gpt2

DIM = 64


def bare_loop(captioner: ClipCap, prefixes: list, tokens: int) -> list[str]:
    import torch

    gpt, tokenizer = captioner.model.gpt, captioner.tokenizer
    out: list[str] = []
    with torch.no_grad():
        for prefix in prefixes:
            generated = gpt.generate(
                inputs_embeds=prefix,
                attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
                max_new_tokens=tokens,
                num_beams=1,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
            out += [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embeddings", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=20, help="new tokens per caption")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    embeddings = np.random.default_rng(0).normal(size=(args.embeddings, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gpt_dir = write_tiny_gpt2(folder / "gpt2")
        config = ClipCapConfig(gpt=str(gpt_dir), clip_dim=DIM, prefix_length=10)
        gpt, tokenizer = load_gpt(str(gpt_dir))
        captioner = ClipCap(config, build_model(config, gpt).eval(), tokenizer, {}, {})
        captioner.save(folder / "run")
        settings = CaptionerSettings(str(folder / "run"), max_new_tokens=args.tokens)
        factory = clipcap_factory(settings, device="cpu", batch_size=args.batch_size)
        with torch.no_grad():
            prefixes = [
                captioner.model.prefix(torch.from_numpy(embeddings[i : i + args.batch_size]))
                for i in range(0, len(embeddings), args.batch_size)
            ]
        semcomp_s, model_s, bare_s = [], [], []
        for run in range(args.runs):
            cache = CaptionCache(folder / f"cache-{run}.jsonl")
            seconds, timing = timed(
                lambda cache=cache: caption_embeddings(
                    LocalEngine(), factory, cache, embeddings, batch_size=args.batch_size
                )
            )
            semcomp_s.append(seconds)
            model_s.append(timing.phases["model"])
            seconds, bare = timed(lambda: bare_loop(captioner, prefixes, args.tokens))
            bare_s.append(seconds)
        from semcomp.downstream.caption_eval import embedding_key

        ours = [cache.captions[embedding_key(v)] for v in embeddings]
        if ours != bare:
            sys.exit("the two loops gave different captions")
    n = args.embeddings
    print(f"machine: {machine()}")
    print(
        f"{n} embeddings of {DIM}-d, tiny GPT-2 (2 layers, width 32), prefix 10, "
        f"{args.tokens} new tokens, batches of {args.batch_size}, best of {args.runs} "
        "interleaved runs"
    )
    best, model, plain = min(semcomp_s), min(model_s), min(bare_s)
    print(f"semcomp caption step  {best:6.2f} s  {n / best:8.1f} captions/s (load + cache incl.)")
    print(f"  of which model      {model:6.2f} s  {n / model:8.1f} captions/s")
    print(f"bare generate loop    {plain:6.2f} s  {n / plain:8.1f} captions/s")
    ratios = f"wall {plain / best:.2f}x, model phase {plain / model:.2f}x"
    print(f"ratio semcomp / bare (captions/s): {ratios}")
    print("captions identical: yes")


if __name__ == "__main__":
    main()
