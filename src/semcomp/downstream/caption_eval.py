"""``semcomp clipcap eval``: captions from original and decoded embeddings, scored.

Each codec (``float32`` = the original features, ``float16``, PQVAE
checkpoints) encodes every evaluation embedding into its real byte streams;
the decoded embeddings are captioned by the same ClipCap model, run through an
engine (:mod:`semcomp.engines`: in this process, or Ray actors) in batches.
Outputs in ``out``:

- ``captions.csv``: image id, file name, the reference captions (JSON list),
  then per codec its caption, the bits of that image's stream and the
  CLIP-text cosine between its caption and the caption from the original
  features (the paper's Fig. 7 as a table);
- ``metrics.csv``: one row per codec (and rate): mean bits per image, bits
  per dimension, BLEU-4, METEOR, ROUGE-L, CIDEr-D (SPICE when asked for) and
  CLIP-text (the mean of those cosines);
- ``caption_metrics.png``/``.pdf``: each metric against bits per embedding,
  one point (or line, for checkpoints of one codec family) per codec;
- ``examples.png``/``.pdf``: the paper's Fig. 7 as an image grid (image,
  reference caption, captions from the original and each codec's features),
  when the images are found;
- ``eval.json``: the settings, the tokenizer used and the metrics skipped, with why;
- ``cache/captions-*.jsonl``: every caption generated, keyed by the decoded
  embedding it came from, appended batch by batch, so a killed evaluation
  resumes without captioning those embeddings again (a different checkpoint
  or decoding setting writes another file).

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
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.engines import BatchTask, Engine, LocalEngine, PluginFactory
from semcomp.errors import ConfigError, SemcompError

log = logging.getLogger(__name__)

#: metric columns, in the order they are written
METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
#: the mean CLIP-text cosine between a codec's caption and the original features' caption
CLIP_TEXT = "CLIP-text"
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
    candidate_sets: dict[Any, dict[Any, str]],
    *,
    meteor: bool | None = None,
    spice: bool = False,
    subsets: bool = False,
) -> dict[Any, CaptionScores]:
    """:func:`score_captions` of several candidate sets (one per codec) against the same
    references: the references and every set's captions are tokenised in one call, and
    METEOR's Java process started once.

    Each set covers every reference, or with ``subsets`` some of them (say, the originals
    one method captioned): it is scored against those references only, as
    :func:`score_captions` of that subset would score it (CIDEr-D's document frequencies
    come from the set's own references)."""
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
    for name, candidates in candidate_sets.items():
        covered = set(candidates) <= set(references) if subsets else None
        if not (covered or set(references) == set(candidates)):
            raise ConfigError(f"captions {name!r} and the references cover different images")
    everything = {("reference", key): value for key, value in references.items()}
    for name, candidates in candidate_sets.items():
        everything.update({("candidate", name, key): [c] for key, c in candidates.items()})
    tokens = tokenized(everything, java)  # one Java start-up for all of them
    meteor_scorer = None
    if "METEOR" not in skipped:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor_scorer = Meteor()  # loads its paraphrase tables: tens of seconds
    results = {}
    for name, candidates in candidate_sets.items():
        keys = [key for key in references if key in candidates]  # the references' order
        gts = {key: tokens[("reference", key)] for key in keys}
        res = {key: tokens[("candidate", name, key)] for key in keys}
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


# ---- ClipCap as an engine plugin ---------------------------------------------------------


@dataclass(frozen=True)
class CaptionerSettings:
    """What builds a ClipCap captioner wherever an engine runs it (picklable)."""

    checkpoint: str
    gpt: str | None = None
    beams: int = 1
    max_new_tokens: int = 30

    def key(self) -> str:
        """The cache key of the captions it writes: the checkpoint's bytes and the decoding."""
        digest = hashlib.sha256()
        path = Path(self.checkpoint)
        path = path / "clipcap.safetensors" if path.is_dir() else path
        with path.open("rb") as handle:
            for block in iter(partial(handle.read, 1 << 20), b""):
                digest.update(block)
        settings = [self.gpt, self.beams, self.max_new_tokens]
        digest.update(json.dumps(settings).encode())
        return digest.hexdigest()[:16]


class ClipCapCaptioner:
    """A loaded ClipCap model captioning batches of embeddings (the engine's plugin)."""

    #: a local model: ``--engine ray`` runs it in actors
    scalable = True

    def __init__(self, config: CaptionerSettings, *, device: str = "auto", batch_size: int = 64):
        from semcomp.downstream.clipcap import load_clipcap
        from semcomp.models import select_device

        self.config = config
        self.device = select_device(device)
        self.batch_size = batch_size
        self.captioner = load_clipcap(Path(config.checkpoint), gpt=config.gpt)
        self.captioner.model.to(self.device).eval()

    @classmethod
    def chunk_for(cls, config: CaptionerSettings, batch_size: int) -> int:
        return batch_size

    def identity(self) -> dict[str, Any]:
        return {
            "checkpoint": str(Path(self.config.checkpoint).resolve()),
            "config": self.captioner.config.model_dump(mode="json"),
            "beams": self.config.beams,
            "max_new_tokens": self.config.max_new_tokens,
        }

    def caption(self, embeddings: np.ndarray) -> list[str]:
        """One caption per embedding, in batches of ``batch_size`` (halved on out-of-memory)."""
        import torch

        from semcomp.models import batches_with_backoff

        def run(batch: np.ndarray) -> list[str]:
            features = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.captioner.model.caption(
                features,
                self.captioner.tokenizer,
                beams=self.config.beams,
                max_new_tokens=self.config.max_new_tokens,
            )

        keep = partial(setattr, self, "batch_size")
        return [
            c
            for _, part in batches_with_backoff(embeddings, self.batch_size, run, keep)
            for c in part
        ]

    def close(self) -> None:
        from semcomp.models import drop_model

        drop_model(self, "captioner")


@dataclass(frozen=True)
class ClipCapFactory(PluginFactory):
    """Builds :class:`ClipCapCaptioner` (not a registry plugin: found by its class)."""

    @property
    def plugin_class(self) -> Any:
        return ClipCapCaptioner


def clipcap_factory(settings: CaptionerSettings, *, device: str, batch_size: int) -> ClipCapFactory:
    return ClipCapFactory(
        "downstream",
        "clipcap",
        settings,
        {"device": device, "batch_size": batch_size},
        label=f"ClipCap {settings.checkpoint}",
    )


class CaptionEmbeddings(BatchTask):
    """A batch of decoded embeddings (the items, one vector each) → one caption each."""

    loads = False

    def load(self, batch: Sequence[np.ndarray], context: Any) -> np.ndarray:
        return np.stack(batch).astype(np.float32)

    def infer(self, model: Any, loaded: np.ndarray, context: Any) -> list[Any]:
        try:
            return model.caption(loaded)
        except Exception as exc:  # the batch's every item failed with it
            return [exc] * len(loaded)


def embedding_key(vector: np.ndarray) -> str:
    """A decoded embedding's cache key: the digest of its float32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).hexdigest()[:32]


class CaptionCache:
    """Captions of one captioner (checkpoint and decoding) keyed by the embedding captioned.

    A JSON-lines file, appended and flushed batch by batch; a line cut short by a
    kill is ignored when it is read back (that embedding is captioned again).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.captions: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.captions[row["embedding"]] = row["caption"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def add(self, keys: Sequence[str], captions: Sequence[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({"embedding": k, "caption": c}) + "\n"
            for k, c in zip(keys, captions, strict=True)
        )
        with self.path.open("a", encoding="utf-8") as handle:
            if handle.tell() and not self._ends_with_newline():
                handle.write("\n")  # after a line cut short by a kill
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        self.captions.update(zip(keys, captions, strict=True))

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


@dataclass
class StageTiming:
    """One step's work for ``--profile`` (read by :func:`semcomp.engines.profile_lines`)."""

    stage: str
    items: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


def caption_embeddings(
    engine: Engine,
    factory: PluginFactory,
    cache: CaptionCache,
    embeddings: np.ndarray,
    *,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> StageTiming:
    """Caption every embedding whose caption ``cache`` lacks (each distinct one once)."""
    timing = StageTiming("caption")
    started = time.perf_counter()
    keys = [embedding_key(v) for v in embeddings]
    pending: dict[str, np.ndarray] = {}
    for key, vector in zip(keys, embeddings, strict=True):
        if key not in cache.captions:
            pending.setdefault(key, vector)
    order = list(pending)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    failures: list[str] = []
    for outcome in engine.run(
        factory, CaptionEmbeddings(), [[pending[k] for k in b] for b in batches]
    ):
        batch = batches[outcome.index]
        done = [(k, c) for k, c in zip(batch, outcome.results, strict=True) if isinstance(c, str)]
        failures += [str(c) for c in outcome.results if not isinstance(c, str)]
        if done:
            cache.add(*zip(*done, strict=True))
        timing.items += len(batch)
        for name, seconds in outcome.seconds.items():
            timing.phases[name] = timing.phases.get(name, 0.0) + seconds
        if progress:
            progress(len(batch))
    timing.seconds = time.perf_counter() - started
    if failures:
        raise SemcompError(
            f"{len(failures)} caption(s) could not be generated (first: {failures[0]}); the "
            f"others are kept in {cache.path}: run the same command again to finish"
        )
    return timing


# ---- CLIP-text similarity ------------------------------------------------------------------


def clip_text_similarity(
    reference: Sequence[str],
    candidate_sets: dict[str, Sequence[str]],
    embedder_config: Any,
    *,
    device: str = "cpu",
    batch_size: int = 256,
) -> tuple[dict[str, np.ndarray], dict[str, Any], StageTiming]:
    """Cosine between CLIP text embeddings of ``reference[i]`` and each set's ``[i]``.

    Each distinct caption is embedded once, in batches, by the project's open_clip
    loading (``embedder_config``: a :class:`semcomp.config.EmbedderConfig`, so a
    ``local-dir:`` model works offline). Returns the cosines per set, the embedder's
    identity and the time it took.
    """
    from semcomp.metrics.clip import OpenClipEmbedder

    started = time.perf_counter()
    texts = list(dict.fromkeys([*reference, *(c for s in candidate_sets.values() for c in s)]))
    embedder = OpenClipEmbedder(embedder_config, device=device, batch_size=batch_size)
    try:
        loaded = time.perf_counter()
        vectors = embedder.embed_texts(texts)
        identity = embedder.identity()
    finally:
        embedder.close()
    row = {text: i for i, text in enumerate(texts)}
    original = vectors[[row[t] for t in reference]]
    cosines = {
        name: np.einsum("ij,ij->i", original, vectors[[row[t] for t in captions]])
        for name, captions in candidate_sets.items()
    }
    ended = time.perf_counter()
    timing = StageTiming("clip-text", len(texts), ended - started, {"model": ended - loaded})
    return cosines, identity, timing


# ---- the evaluation ------------------------------------------------------------------------


@dataclass
class CodecCaptions:
    name: str
    bits: np.ndarray
    captions: list[str]
    scores: CaptionScores | None = None
    #: per image: CLIP-text cosine of this caption and the original features' caption
    clip_text: np.ndarray | None = None


@dataclass
class CaptionEvaluation:
    results: list[CodecCaptions]
    #: per step, for ``--profile``
    timings: list[StageTiming]
    #: the files written
    written: list[Path]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def image_file(listed: str, file_name: str, images: Path | None) -> Path | None:
    """An evaluation image: in ``images`` when given, else where its feature shard found it."""
    for candidate in ([Path(images) / file_name] if images else []) + [Path(listed)]:
        if candidate.is_file():
            return candidate
    return None


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
    clip_text: bool = True,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    images: Path | None = None,
    examples: int = 4,
    engine: Engine | None = None,
    progress: bool = True,
) -> CaptionEvaluation:
    """Caption the evaluation images from each codec's decoded features; write and score.

    ``clip_text``: the CLIP-text similarity of each codec's captions to the original
    features' captions, with ``clip_model``/``clip_pretrained`` (default: the CLIP model
    the features were extracted with, as their shards record it). ``engine`` runs the
    captioner (default: this process). Models run one at a time: ClipCap over every
    codec's embeddings, then CLIP's text tower over every caption.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from semcomp.analysis.figures import (
        caption_examples_figure,
        caption_metrics_figure,
        save_figure,
    )
    from semcomp.downstream.clipcap import load_captioned_features, open_codec
    from semcomp.models import select_device

    data = load_captioned_features(annotations, features)
    settings = CaptionerSettings(str(checkpoint), gpt, beams, max_new_tokens)
    trained = _checkpoint_config(Path(checkpoint))
    if trained["clip_dim"] != data.dim:
        raise ConfigError(
            f"{checkpoint} captions {trained['clip_dim']}-d embeddings; the features in "
            f"{features} are {data.dim}-d"
        )
    clip = None
    if clip_text:
        from semcomp.config import EmbedderConfig

        model = clip_model or data.clip.get("model")
        if not model:
            raise ConfigError(
                f"the features in {features} do not name their CLIP model: give --clip-model "
                "(or --no-clip-text)"
            )
        pretrained = clip_pretrained or data.clip.get("pretrained") or "openai"
        clip = EmbedderConfig(model=model, pretrained=pretrained)
    device = select_device(device)
    specs = ["float32", *[c for c in codecs if c != "float32"]]
    named = [open_codec(spec, data.dim, coder) for spec in specs]
    names = [n.name for n in named]
    if len(set(names)) != len(names):
        raise ConfigError(f"two codecs have the same name: {names}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    decoded: list[tuple[np.ndarray, np.ndarray]] = []  # (bits, decoded embeddings) per codec
    for item in named:
        encoded = item.codec.encode_batch(data.embeddings)
        decoded.append((encoded.bits, item.codec.decode(encoded.streams)))
    cache = CaptionCache(out / "cache" / f"captions-{settings.key()}.jsonl")
    factory = clipcap_factory(settings, device=device, batch_size=batch_size)
    everything = np.concatenate([d for _, d in decoded])
    total = len(everything)
    with tqdm(total=total, desc="captions", disable=not progress) as bar:
        bar.update(sum(embedding_key(v) in cache.captions for v in everything))
        timing = caption_embeddings(
            engine or LocalEngine(),
            factory,
            cache,
            everything,
            batch_size=batch_size,
            progress=bar.update,
        )
    timings = [timing]
    results = [
        CodecCaptions(item.name, bits, [cache.captions[embedding_key(v)] for v in vectors])
        for item, (bits, vectors) in zip(named, decoded, strict=True)
    ]
    clip_identity = None
    if clip is not None:
        cosines, clip_identity, clip_timing = clip_text_similarity(
            results[0].captions,
            {r.name: r.captions for r in results},
            clip,
            device=device,
        )
        timings.append(clip_timing)
        for result in results:
            result.clip_text = cosines[result.name]
    header = ["image_id", "file_name", "references"]
    for result in results:
        header += [f"caption: {result.name}", f"bits: {result.name}"]
        if clip is not None:
            header.append(f"clip_text: {result.name}")
    rows = []
    for i, image_id in enumerate(data.image_ids):
        row: list[Any] = [image_id, data.file_names[i], json.dumps(data.references[i])]
        for result in results:
            row += [result.captions[i], int(result.bits[i])]
            if result.clip_text is not None:
                row.append(round(float(result.clip_text[i]), 6))
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
    table = pd.DataFrame(
        [
            {
                "codec": r.name,
                "bits_per_image": float(np.mean(r.bits)),
                "bpd": float(np.mean(r.bits)) / data.dim,
                "images": len(r.captions),
                **{metric: r.scores.scores.get(metric) for metric in METRICS},
                CLIP_TEXT: float(np.mean(r.clip_text)) if r.clip_text is not None else None,
            }
            for r in results
        ]
    )
    write_csv(
        out / "metrics.csv",
        list(table.columns),
        [["" if pd.isna(v) else v for v in row] for row in table.itertuples(index=False)],
    )
    written = [out / "captions.csv", out / "metrics.csv"]
    written += save_figure(caption_metrics_figure(table), out / "caption_metrics")
    shown = []
    for i in range(len(data.image_ids)):
        if len(shown) == examples:
            break
        path = image_file(data.paths[i], data.file_names[i], images)
        if path is not None:
            shown.append(
                {
                    "image": path,
                    "title": str(data.file_names[i]),
                    "reference": data.references[i][0],
                    "captions": [
                        (f"{r.name} ({int(r.bits[i])} bits)", r.captions[i]) for r in results
                    ],
                }
            )
    if shown:
        written += save_figure(caption_examples_figure(shown), out / "examples")
    elif examples:
        log.warning("no evaluation image found, so no examples figure (--images FOLDER)")
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
                "clip_text": clip_identity,
                "images": len(data.image_ids),
                "examples": [str(e["title"]) for e in shown],
                "annotated_images_without_features": data.missing,
                "trained_with_codec": trained["training"].get("codec"),
                "caption_cache": str(cache.path.relative_to(out)),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    written.append(out / "eval.json")
    return CaptionEvaluation(results, timings, written)


def _checkpoint_config(checkpoint: Path) -> dict[str, Any]:
    """A ClipCap run's ``clipcap.json`` (its config and training), without loading GPT-2."""
    from semcomp.downstream.clipcap import CHECKPOINT, CONFIG_FILE

    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    described = folder / CONFIG_FILE
    if not (folder / CHECKPOINT).is_file() or not described.is_file():
        raise ConfigError(f"no ClipCap checkpoint at {folder} (`semcomp clipcap train` writes one)")
    config = json.loads(described.read_text(encoding="utf-8"))
    return {"clip_dim": config["config"]["clip_dim"], "training": config.get("training", {})}
