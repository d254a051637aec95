"""ClipCap (Mokady et al. 2021) on CLIP embeddings, with an embedding codec in the loop.

A mapping network turns one CLIP image embedding into ``prefix_length`` GPT-2
input embeddings (the *prefix*); GPT-2 continues the prefix with a caption.
Two mappers, as in ClipCap: ``mlp`` (embedding → hidden → prefix, tanh; GPT-2
fine-tuned with it, which is what the PQVAE paper's §4.6 does) and
``transformer`` (a learned constant prefix attended together with the
projected embedding by a transformer encoder; ClipCap trains it with GPT-2
frozen, ``tune_gpt=False``).

Training data: a COCO-style caption file (``captions_train2014.json`` layout)
and the feature shards ``semcomp features extract`` writes; an image's
embedding is found by its file name. The mapping network sees L2-normalised
embeddings, as an embedding codec's decoded embeddings are, so the ``float32``
codec gives exactly the original features. With ``codec`` set, every training
embedding is replaced by the frozen codec's decoded embedding (the paper's
"compression module inserted between the CLIP encoder and the mapping
network"; nothing upstream of the codec is trained, so the straight-through
gradient never has anywhere to go).

Differences from the reference code, on purpose: the learning rate warms up
linearly for ``warmup_steps`` and then stays constant (the reference decays it
linearly to the planned last step, which would make a run extended by more
epochs differ from one planned that long), and training resumes per epoch.

Checkpoints are one safetensors file (mapper weights, and GPT-2's when it was
fine-tuned) with the configuration as JSON in its metadata and beside it
(``clipcap.json``); nothing is unpickled when loading. ``last.safetensors``
plus ``train_state.json`` hold the optimizer state, the RNG state and the
epoch, so an interrupted run continues exactly where the last epoch ended:
on CPU with the same seed it ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from semcomp.errors import ConfigError
from semcomp.train_state import load_last, save_last

log = logging.getLogger(__name__)

FORMAT = "semcomp-clipcap"
FORMAT_VERSION = 1
CHECKPOINT = "clipcap.safetensors"
CONFIG_FILE = "clipcap.json"
IGNORE = -100  # the label value transformers' loss skips


# ---- annotations and features ----------------------------------------------------------------


@dataclass
class CaptionedImage:
    image_id: Any
    file_name: str
    captions: list[str] = field(default_factory=list)


def read_coco_captions(path: Path) -> dict[Any, CaptionedImage]:
    """Images and their reference captions from a COCO caption file, in file order.

    A malformed record is a :class:`ConfigError` naming the file and the record.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no caption annotation file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a JSON caption file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(f"{path} has no 'images' list (expected the COCO captions layout)")
    if not isinstance(data.get("annotations"), list):
        raise ConfigError(f"{path} has no 'annotations' list (expected the COCO captions layout)")
    images: dict[Any, CaptionedImage] = {}
    for number, record in enumerate(data["images"]):
        if (
            not isinstance(record, dict)
            or record.get("id") is None
            or not isinstance(record.get("file_name"), str)
            or not record["file_name"]
        ):
            raise ConfigError(
                f"{path}: images[{number}] {json.dumps(record)[:200]} needs an 'id' and a "
                "'file_name'"
            )
        images[record["id"]] = CaptionedImage(record["id"], record["file_name"])
    for number, record in enumerate(data["annotations"]):
        where = f"{path}: annotations[{number}] {json.dumps(record)[:200]}"
        if not isinstance(record, dict) or "image_id" not in record:
            raise ConfigError(f"{where} has no 'image_id'")
        caption = record.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise ConfigError(f"{where} has no caption text")
        if record["image_id"] not in images:
            raise ConfigError(f"{where} names image {record['image_id']!r}, not in 'images'")
        images[record["image_id"]].captions.append(caption.strip())
    return images


@dataclass
class CaptionedFeatures:
    """The images that have both reference captions and an embedding, in annotation order."""

    image_ids: list[Any]
    file_names: list[str]
    embeddings: np.ndarray
    references: list[list[str]]
    clip: dict[str, str]
    #: file names of annotated images with no embedding in the shards
    missing: list[str]
    #: each image's path as the shard's file list records it (the file may have moved)
    paths: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def feature_shards(features: Path) -> list[tuple[Path, Path]]:
    """(embeddings, file list) of every shard under a ``semcomp features extract`` folder."""
    features = Path(features)
    folder = features / "images" if (features / "images").is_dir() else features
    shards = sorted(folder.glob("shard-*.safetensors"))
    if not shards:
        raise ConfigError(
            f"{features} holds no feature shards (images/shard-*.safetensors from "
            "`semcomp features extract`)"
        )
    return [(s, s.with_name(s.name.removesuffix(".safetensors") + ".paths.txt")) for s in shards]


def load_captioned_features(annotations: Path, features: Path) -> CaptionedFeatures:
    """Join a caption file to feature shards by image file name."""
    from semcomp.codecs.pqvae.data import load_embeddings

    images = read_coco_captions(annotations)
    rows: dict[str, np.ndarray] = {}
    listed: dict[str, str] = {}
    clip: dict[str, str] = {}
    for shard, listing in feature_shards(features):
        part = load_embeddings(shard)
        clip = clip or part.clip
        if not listing.is_file():
            raise ConfigError(f"{shard} has no file list beside it ({listing.name})")
        lines = listing.read_text(encoding="utf-8").splitlines()
        names = [Path(line).name for line in lines]
        if len(names) != len(part.embeddings):
            raise ConfigError(
                f"{listing} lists {len(names)} files but {shard.name} holds "
                f"{len(part.embeddings)} embeddings"
            )
        for name, line, vector in zip(names, lines, part.embeddings, strict=True):
            if name in rows:
                raise ConfigError(f"{features}: two images are named {name}; names must be unique")
            rows[name] = vector
            listed[name] = line
    kept = [image for image in images.values() if image.file_name in rows and image.captions]
    missing = [image.file_name for image in images.values() if image.file_name not in rows]
    if not kept:
        raise ConfigError(f"no image of {annotations} has both captions and features in {features}")
    if missing:
        log.warning(
            "%d annotated image(s) have no features in %s and are left out (first: %s)",
            len(missing),
            features,
            missing[0],
        )
    return CaptionedFeatures(
        image_ids=[image.image_id for image in kept],
        file_names=[image.file_name for image in kept],
        embeddings=np.stack([rows[image.file_name] for image in kept]).astype(np.float32),
        references=[image.captions for image in kept],
        clip=clip,
        missing=missing,
        paths=[listed[image.file_name] for image in kept],
    )


# ---- codecs in the loop ---------------------------------------------------------------------


@dataclass
class NamedCodec:
    name: str
    codec: Any  # semcomp.codecs.pqvae.codec.CheckpointCodec


def open_codec(spec: str, dim: int, coder: str | None = None) -> NamedCodec:
    """``float32``, ``float16`` or the path of a PQVAE checkpoint → an embedding codec."""
    from semcomp.codecs.pqvae.bitstream import DEFAULT_CODER
    from semcomp.codecs.pqvae.checkpoint import Checkpoint, load_checkpoint
    from semcomp.codecs.pqvae.codec import FLOATS, CheckpointCodec
    from semcomp.codecs.pqvae.evaluate import method_label
    from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig

    if spec in FLOATS:
        config = PQVAEConfig(architecture=spec, input_dim=dim)
        checkpoint = Checkpoint(
            config, EmbeddingCodecModel(config).eval(), np.ones(2), np.ones((1, 2)), {}
        )
        return NamedCodec(spec, CheckpointCodec(checkpoint))
    path = Path(spec)
    if not path.exists():
        raise ConfigError(f"codec {spec!r} is neither float32, float16 nor a PQVAE checkpoint")
    checkpoint = load_checkpoint(path)
    if checkpoint.config.input_dim != dim:
        raise ConfigError(
            f"{path} compresses {checkpoint.config.input_dim}-d embeddings; "
            f"the features are {dim}-d"
        )
    return NamedCodec(
        f"{method_label(checkpoint.config)} [{path.stem}]",
        CheckpointCodec(checkpoint, coder or DEFAULT_CODER),
    )


# ---- the model -------------------------------------------------------------------------------


class ClipCapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: GPT-2: a local folder or a Hugging Face id (``gpt2``)
    gpt: str = "gpt2"
    mapping: Literal["mlp", "transformer"] = "mlp"
    clip_dim: int = Field(ge=1)
    prefix_length: int = Field(default=10, ge=1)
    #: transformer mapper: tokens the embedding is projected to, layers and heads
    clip_length: int = Field(default=10, ge=1)
    mapper_layers: int = Field(default=8, ge=1)
    mapper_heads: int = Field(default=8, ge=1)
    #: fine-tune GPT-2 with the mapper (ClipCap's MLP setting, the paper's §4.6)
    tune_gpt: bool = True
    #: caption tokens kept for training (the end-of-text token included)
    max_tokens: int = Field(default=40, ge=2)


def build_model(config: ClipCapConfig, gpt: Any) -> Any:
    """A ``ClipCapModel`` (an ``nn.Module``) around a loaded GPT-2."""
    import torch
    from torch import nn

    class ClipCapModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = config
            self.gpt = gpt
            width = gpt.get_input_embeddings().embedding_dim
            self.width = width
            length = config.prefix_length
            if config.mapping == "mlp":
                self.mapper = nn.Sequential(
                    nn.Linear(config.clip_dim, width * length // 2),
                    nn.Tanh(),
                    nn.Linear(width * length // 2, width * length),
                )
            else:
                if width % config.mapper_heads:
                    raise ConfigError(
                        f"GPT-2's width {width} is not divisible by mapper_heads "
                        f"{config.mapper_heads}"
                    )
                self.mapper = nn.ModuleDict(
                    {
                        "project": nn.Linear(config.clip_dim, config.clip_length * width),
                        "encoder": nn.TransformerEncoder(
                            nn.TransformerEncoderLayer(
                                width,
                                config.mapper_heads,
                                dim_feedforward=2 * width,
                                dropout=0.0,
                                batch_first=True,
                                norm_first=True,
                            ),
                            config.mapper_layers,
                            enable_nested_tensor=False,
                        ),
                    }
                )
                self.prefix_const = nn.Parameter(torch.randn(length, width))
            if not config.tune_gpt:
                for parameter in self.gpt.parameters():
                    parameter.requires_grad_(False)

        def prefix(self, features: Any) -> Any:
            features = nn.functional.normalize(features.float(), dim=-1)
            batch, length = len(features), self.config.prefix_length
            if self.config.mapping == "mlp":
                return self.mapper(features).view(batch, length, self.width)
            projected = self.mapper["project"](features).view(
                batch, self.config.clip_length, self.width
            )
            constant = self.prefix_const.unsqueeze(0).expand(batch, -1, -1)
            encoded = self.mapper["encoder"](torch.cat([projected, constant], dim=1))
            return encoded[:, self.config.clip_length :]

        def loss(self, features: Any, tokens: Any, mask: Any) -> Any:
            prefix = self.prefix(features)
            embeds = self.gpt.get_input_embeddings()(tokens)
            ones = torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device)
            labels = torch.cat(
                [
                    torch.full_like(ones, IGNORE, dtype=torch.long),
                    tokens.masked_fill(mask == 0, IGNORE),
                ],
                dim=1,
            )
            out = self.gpt(
                inputs_embeds=torch.cat([prefix, embeds], dim=1),
                attention_mask=torch.cat([ones, mask], dim=1),
                labels=labels,
            )
            return out.loss

        @torch.no_grad()
        def caption(
            self, features: Any, tokenizer: Any, *, beams: int = 1, max_new_tokens: int = 30
        ) -> list[str]:
            prefix = self.prefix(features)
            generated = self.gpt.generate(
                inputs_embeds=prefix,
                attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
                max_new_tokens=max_new_tokens,
                num_beams=beams,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )
            return [
                text.strip() for text in tokenizer.batch_decode(generated, skip_special_tokens=True)
            ]

        def trainable_state(self) -> dict[str, Any]:
            """What a checkpoint holds: the mapper, and GPT-2 when it is fine-tuned."""
            state = {
                k: v
                for k, v in self.state_dict().items()
                if not k.startswith("gpt.") or self.config.tune_gpt
            }
            if self.gpt.config.tie_word_embeddings:  # the same tensor as wte (safetensors
                state.pop("gpt.lm_head.weight", None)  # refuses shared storage)
            return {k: v.detach().cpu().contiguous() for k, v in state.items()}

        def load_trainable_state(self, state: dict[str, Any]) -> None:
            missing, unexpected = self.load_state_dict(state, strict=False)
            allowed = {"gpt.lm_head.weight"} if self.gpt.config.tie_word_embeddings else set()
            if unexpected or any(
                k not in allowed and (k.startswith("mapper.") or self.config.tune_gpt)
                for k in missing
            ):
                raise ConfigError(
                    f"checkpoint does not fit the model: missing {sorted(missing)[:5]}, "
                    f"unexpected {sorted(unexpected)[:5]}"
                )

    return ClipCapModel()


def load_gpt(source: str) -> tuple[Any, Any]:
    """GPT-2 (``GPT2LMHeadModel``) and its tokenizer from a folder or the Hugging Face cache."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from semcomp.models import load_pretrained

    model = load_pretrained(lambda: GPT2LMHeadModel.from_pretrained(source), source, what="GPT-2")
    tokenizer = load_pretrained(
        lambda: AutoTokenizer.from_pretrained(source), source, what="GPT-2 tokenizer"
    )
    return model, tokenizer


# ---- checkpoints -----------------------------------------------------------------------------


@dataclass
class ClipCap:
    """A trained captioner: the model (with GPT-2), its tokenizer, and what it was trained on."""

    config: ClipCapConfig
    model: Any
    tokenizer: Any
    clip: dict[str, str]
    training: dict[str, Any]

    def save(self, folder: Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "config": self.config.model_dump_json(),
            "clip": json.dumps(self.clip, sort_keys=True),
            "training": json.dumps(self.training, sort_keys=True),
        }
        tmp = folder / f".{CHECKPOINT}.tmp"
        save_file(self.model.trainable_state(), str(tmp), metadata=metadata)
        tmp.replace(folder / CHECKPOINT)
        described = {k: json.loads(v) for k, v in metadata.items() if k not in ("format",)}
        (folder / CONFIG_FILE).write_text(
            json.dumps({"format": FORMAT, **described}, indent=2), encoding="utf-8"
        )
        return folder / CHECKPOINT

    def captions(
        self,
        embeddings: np.ndarray,
        *,
        beams: int = 1,
        max_new_tokens: int = 30,
        batch_size: int = 64,
        device: str = "cpu",
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        import torch

        self.model.to(device).eval()
        out: list[str] = []
        for start in range(0, len(embeddings), batch_size):
            batch = torch.from_numpy(np.asarray(embeddings[start : start + batch_size])).to(device)
            out += self.model.caption(
                batch, self.tokenizer, beams=beams, max_new_tokens=max_new_tokens
            )
            if progress:
                progress(len(batch))
        return out


def load_clipcap(path: Path, gpt: str | None = None) -> ClipCap:
    """A checkpoint folder (or its ``clipcap.safetensors``) → :class:`ClipCap`.

    ``gpt`` overrides where GPT-2 is loaded from (its weights come from the
    checkpoint when it was fine-tuned; the tokenizer always from there).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"no ClipCap checkpoint at {path} (`semcomp clipcap train` writes one)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own error type for foreign files
        raise ConfigError(f"{path} is not a readable safetensors checkpoint: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a semcomp ClipCap checkpoint")
    if int(metadata.get("format_version", "0")) > FORMAT_VERSION:
        raise ConfigError(f"{path} was written by a newer semcomp; upgrade semcomp")
    config = ClipCapConfig.model_validate_json(metadata["config"])
    if gpt:
        config = config.model_copy(update={"gpt": gpt})
    language_model, tokenizer = load_gpt(config.gpt)
    model = build_model(config, language_model)
    model.load_trainable_state(load_file(str(path)))
    model.eval()
    return ClipCap(
        config,
        model,
        tokenizer,
        json.loads(metadata.get("clip", "{}")),
        json.loads(metadata.get("training", "{}")),
    )


# ---- training --------------------------------------------------------------------------------


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=40, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    warmup_steps: int = Field(default=5000, ge=0)
    seed: int = 0
    #: a frozen embedding codec in the loop: float32, float16 or a PQVAE checkpoint path
    codec: str | None = None
    coder: str | None = None
    device: str = "cpu"


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    lr: float
    seconds: float


def tokenize_captions(tokenizer: Any, captions: list[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each caption, cut to ``max_tokens - 1``, then the end-of-text token."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the GPT-2 tokenizer has no end-of-text token")
    ids = tokenizer(captions, add_special_tokens=False)["input_ids"]
    return [[*row[: max_tokens - 1], tokenizer.eos_token_id] for row in ids]


class Trainer:
    """Trains a ClipCap captioner into ``out_dir``; resumes an unfinished run there."""

    def __init__(
        self,
        model_config: ClipCapConfig,
        train_config: TrainConfig,
        data: CaptionedFeatures,
        out_dir: Path,
        *,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ):
        import torch

        if data.dim != model_config.clip_dim:
            raise ConfigError(
                f"the features are {data.dim}-d but the model expects clip_dim="
                f"{model_config.clip_dim}"
            )
        self.model_config, self.config = model_config, train_config
        self.data, self.out_dir = data, Path(out_dir)
        self.log, self.progress = log, progress
        torch.manual_seed(train_config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        gpt, self.tokenizer = load_gpt(model_config.gpt)
        self.model = build_model(model_config, gpt).to(train_config.device)
        self.codec_name = "original"
        self.features = data.embeddings
        if train_config.codec:
            named = open_codec(train_config.codec, data.dim, train_config.coder)
            self.codec_name = named.name
            # frozen: decoded once, exactly what the receiver would decode
            self.features = named.codec.reconstruct(data.embeddings)
        # one training sample per (image, caption)
        self.samples = [(row, c) for row, refs in enumerate(data.references) for c in refs]
        self.tokens = tokenize_captions(
            self.tokenizer, [c for _, c in self.samples], model_config.max_tokens
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=train_config.lr
        )
        self.history: list[EpochReport] = []
        #: the epochs trained by this process (not those a resumed run found done)
        self.trained: list[EpochReport] = []
        self.start_epoch, self.step = 1, 0

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "model": self.model_config.model_dump(mode="json"),
            "train": self.config.model_dump(mode="json", exclude={"epochs", "device"}),
            "samples": len(self.samples),
        }

    def resume(self) -> bool:
        last = load_last(
            self.out_dir,
            self._fingerprint(),
            self.optimizer,
            "a ClipCap run of another configuration or data",
        )
        if last is None:
            return False
        model_state, state = last
        self.model.load_trainable_state(model_state)
        self.history = [EpochReport(**row) for row in state["history"]]
        self.start_epoch, self.step = state["epoch"] + 1, state["step"]
        self.log(f"resuming {self.out_dir} after epoch {state['epoch']}")
        return True

    def _save_last(self, epoch: int) -> None:
        state = {
            "fingerprint": self._fingerprint(),
            "epoch": epoch,
            "step": self.step,
            "history": [asdict(r) for r in self.history],
        }
        save_last(self.out_dir, self.model.trainable_state(), self.optimizer, state)

    def _lr(self) -> float:
        warmup = self.config.warmup_steps
        return self.config.lr * (min(1.0, (self.step + 1) / warmup) if warmup else 1.0)

    def _batch(self, indices: np.ndarray) -> tuple[Any, Any, Any]:
        import torch

        rows = [self.tokens[i] for i in indices]
        width = max(len(r) for r in rows)
        eos = self.tokenizer.eos_token_id
        tokens = torch.tensor([r + [eos] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        features = torch.from_numpy(self.features[[self.samples[i][0] for i in indices]])
        device = self.config.device
        return features.to(device), tokens.to(device), mask.to(device)

    def train(self) -> ClipCap:
        from tqdm.auto import tqdm

        self.resume()
        config = self.config
        for epoch in range(self.start_epoch, config.epochs + 1):
            started = time.perf_counter()
            self.model.train()
            order = np.random.default_rng([config.seed, epoch]).permutation(len(self.samples))
            batches = [
                order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
            ]
            losses = []
            for indices in tqdm(
                batches, desc=f"clipcap epoch {epoch}", disable=not self.progress, leave=False
            ):
                for group in self.optimizer.param_groups:
                    group["lr"] = self._lr()
                loss = self.model.loss(*self._batch(indices))
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.step += 1
                losses.append(loss.item())
            report = EpochReport(
                epoch, float(np.mean(losses)), self._lr(), time.perf_counter() - started
            )
            if not math.isfinite(report.train_loss):
                raise ConfigError(f"the training loss became {report.train_loss} in epoch {epoch}")
            self.history.append(report)
            self.trained.append(report)
            self.log(f"epoch {epoch}: loss {report.train_loss:.4f} lr {report.lr:.2e}")
            self._save_last(epoch)
            self.captioner().save(self.out_dir)
        captioner = self.captioner()
        captioner.save(self.out_dir)
        self.log(f"checkpoint: {self.out_dir / CHECKPOINT}")
        return captioner

    def timing(self) -> Any:
        """This process's training as a ``--profile`` step: captions trained on, seconds."""
        from semcomp.downstream.caption_eval import StageTiming

        seconds = sum(r.seconds for r in self.trained)
        items = len(self.samples) * len(self.trained)
        return StageTiming("train", items, seconds, {"model": seconds})

    def captioner(self) -> ClipCap:
        return ClipCap(
            self.model_config,
            self.model.eval(),
            self.tokenizer,
            self.data.clip,
            {
                "train": self.config.model_dump(mode="json"),
                "codec": self.codec_name,
                "images": len(self.data.image_ids),
                "captions": len(self.samples),
                "epochs_done": len(self.history),
                "history": [asdict(r) for r in self.history],
            },
        )
