"""``semcomp clipcap eval``: captions from original and decoded embeddings, scored.

Each codec (``float32`` = the original features, ``float16``, PQVAE
checkpoints) encodes every evaluation embedding into its real byte streams;
the decoded embeddings are captioned by the same ClipCap model. Outputs in
``out``:

- ``captions.csv``: image id, file name, the reference captions (JSON list),
  then per codec its caption and the bits of that image's stream (the
  paper's Fig. 7 as a table);
- ``metrics.csv``: one row per codec (and rate): mean bits per image, bits
  per dimension, BLEU-4, METEOR, ROUGE-L, CIDEr-D (SPICE when asked for);
- ``eval.json``: the settings, the tokenizer used and the metrics skipped, with why.

Scores come from pycocoevalcap (the COCO caption evaluation code): its PTB
tokenizer, ``Bleu(4)``, ``Meteor``, ``Rouge``, ``Cider`` (which is CIDEr-D:
Gaussian length penalty, clipped counts) and ``Spice``. The PTB tokenizer,
METEOR and SPICE run Java; without ``java`` on the PATH, METEOR and SPICE are
skipped (recorded in ``eval.json`` and printed) and captions are tokenised by
:func:`simple_tokenize` (lower case, the PTB tokenizer's punctuation removed),
so BLEU/ROUGE/CIDEr may differ slightly from Java runs; ``eval.json`` names
the tokenizer used.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.errors import ConfigError

log = logging.getLogger(__name__)

#: metric columns, in the order they are written
METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
#: the tokens pycocoevalcap's PTB tokenizer drops
PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ","}
PUNCTUATION |= {":", "-", "--", "...", ";"}


def java_available() -> bool:
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Lower-case words and punctuation split apart, the PTB tokenizer's punctuation dropped."""
    tokens = re.findall(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]+", text.lower())
    return " ".join(t for t in tokens if t not in PUNCTUATION)


@dataclass
class CaptionScores:
    scores: dict[str, float]
    #: metric → why it was not computed
    skipped: dict[str, str] = field(default_factory=dict)
    tokenizer: str = "ptb"


def tokenized(captions: dict[Any, list[str]], java: bool) -> dict[Any, list[str]]:
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize(
            {key: [{"caption": c} for c in value] for key, value in captions.items()}
        )
    return {key: [simple_tokenize(c) for c in value] for key, value in captions.items()}


def score_captions(
    references: dict[Any, list[str]],
    candidates: dict[Any, str],
    *,
    meteor: bool | None = None,
    spice: bool = False,
) -> CaptionScores:
    """BLEU-4, METEOR, ROUGE-L, CIDEr-D (and SPICE) of ``candidates`` against ``references``.

    ``meteor=None``: where Java is present. A metric that needs Java when none
    is found is skipped and says so; one asked for explicitly is an error.
    """
    return score_caption_sets(references, {"": candidates}, meteor=meteor, spice=spice)[""]


def score_caption_sets(
    references: dict[Any, list[str]],
    candidate_sets: dict[str, dict[Any, str]],
    *,
    meteor: bool | None = None,
    spice: bool = False,
) -> dict[str, CaptionScores]:
    """:func:`score_captions` of several candidate sets (one per codec) against the same
    references: the references are tokenised, and METEOR's Java process started, once."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    java = java_available()
    skipped: dict[str, str] = {}
    if meteor and not java:
        raise ConfigError("METEOR needs Java (`java` on the PATH); none was found")
    if spice and not java:
        raise ConfigError("SPICE needs Java (`java` on the PATH); none was found")
    if meteor is None and not java:
        skipped["METEOR"] = "no Java runtime (`java` not on the PATH)"
    elif meteor is False:
        skipped["METEOR"] = "not asked for (--no-meteor)"
    if not spice:
        skipped["SPICE"] = "off (optional; --spice turns it on)"
    gts = tokenized(references, java)
    meteor_scorer = None
    if "METEOR" not in skipped:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor_scorer = Meteor()  # loads its paraphrase tables: tens of seconds
    results = {}
    for name, candidates in candidate_sets.items():
        if set(references) != set(candidates):
            raise ConfigError(f"captions {name!r} and the references cover different images")
        res = tokenized({key: [value] for key, value in candidates.items()}, java)
        scores = {"BLEU-4": float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])}
        if meteor_scorer is not None:
            scores["METEOR"] = float(meteor_scorer.compute_score(gts, res)[0])
        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        scores["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
        if spice:
            from pycocoevalcap.spice.spice import Spice

            scores["SPICE"] = float(Spice().compute_score(gts, res)[0])
        results[name] = CaptionScores(scores, dict(skipped), "ptb" if java else "simple")
    return results


@dataclass
class CodecCaptions:
    name: str
    bits: np.ndarray
    captions: list[str]
    scores: CaptionScores | None = None


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def evaluate_captioning(
    checkpoint: Path,
    annotations: Path,
    features: Path,
    out: Path,
    *,
    codecs: Sequence[str] = (),
    coder: str | None = None,
    beams: int = 1,
    max_new_tokens: int = 30,
    batch_size: int = 64,
    device: str = "cpu",
    meteor: bool | None = None,
    spice: bool = False,
    gpt: str | None = None,
    progress: bool = True,
) -> list[CodecCaptions]:
    """Caption the evaluation images from each codec's decoded features; write and score."""
    from tqdm.auto import tqdm

    from semcomp.downstream.clipcap import load_captioned_features, load_clipcap, open_codec
    from semcomp.models import select_device

    data = load_captioned_features(annotations, features)
    captioner = load_clipcap(checkpoint, gpt=gpt)
    if captioner.config.clip_dim != data.dim:
        raise ConfigError(
            f"{checkpoint} captions {captioner.config.clip_dim}-d embeddings; the features in "
            f"{features} are {data.dim}-d"
        )
    device = select_device(device)
    specs = ["float32", *[c for c in codecs if c != "float32"]]
    named = [open_codec(spec, data.dim, coder) for spec in specs]
    names = [n.name for n in named]
    if len(set(names)) != len(names):
        raise ConfigError(f"two codecs have the same name: {names}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[CodecCaptions] = []
    with tqdm(total=len(named) * len(data.image_ids), desc="captions", disable=not progress) as bar:
        for item in named:
            encoded = item.codec.encode_batch(data.embeddings)
            decoded = item.codec.decode(encoded.streams)
            captions = captioner.captions(
                decoded,
                beams=beams,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                device=device,
                progress=bar.update,
            )
            results.append(CodecCaptions(item.name, encoded.bits, captions))
    header = ["image_id", "file_name", "references"]
    for result in results:
        header += [f"caption: {result.name}", f"bits: {result.name}"]
    rows = []
    for i, image_id in enumerate(data.image_ids):
        row: list[Any] = [image_id, data.file_names[i], json.dumps(data.references[i])]
        for result in results:
            row += [result.captions[i], int(result.bits[i])]
        rows.append(row)
    write_csv(out / "captions.csv", header, rows)
    references = dict(zip(range(len(data.image_ids)), data.references, strict=True))
    scored = score_caption_sets(
        references,
        {r.name: dict(enumerate(r.captions)) for r in results},
        meteor=meteor,
        spice=spice,
    )
    for result in results:
        result.scores = scored[result.name]
    write_csv(
        out / "metrics.csv",
        ["codec", "bits_per_image", "bpd", "images", *METRICS],
        [
            [
                r.name,
                float(np.mean(r.bits)),
                float(np.mean(r.bits)) / data.dim,
                len(r.captions),
                *[r.scores.scores.get(metric, "") for metric in METRICS],
            ]
            for r in results
        ],
    )
    first = results[0].scores
    (out / "eval.json").write_text(
        json.dumps(
            {
                "checkpoint": str(Path(checkpoint).resolve()),
                "annotations": str(Path(annotations).resolve()),
                "features": str(Path(features).resolve()),
                "codecs": names,
                "decoding": {"beams": beams, "max_new_tokens": max_new_tokens},
                "tokenizer": first.tokenizer,
                "skipped": first.skipped,
                "images": len(data.image_ids),
                "annotated_images_without_features": data.missing,
                "trained_with_codec": captioner.training.get("codec"),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return results
