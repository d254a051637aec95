"""The ``clip`` metric: CLIP image embeddings through open_clip, and their cosine similarity.

The textual-transform paper reports CLIP cosine similarity "scaled to lie
between 0 and 1"; we store both the raw cosine and (cos + 1) / 2, and each
metric's name records the model and the formula.

An embedder's identity is the model, the weights tag *and* the preprocessing
(resize, crop, mean/std), because the same weights with another resize give
other embeddings (open_clip's pretrained tags carry their preprocessing the
same way). The store keys cached embeddings by that identity.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from semcomp.config import EmbedderConfig
from semcomp.engines import phase
from semcomp.errors import ConfigError, ModelUnavailableError
from semcomp.metrics import EMBEDDERS
from semcomp.metrics.base import EmbeddingMetric, ScoreSpec
from semcomp.metrics.embedder import Embedder
from semcomp.models import (
    batches_with_backoff,
    drop_model,
    hub_offline,
    inference_dtype,
    load_cached_or_download,
    select_device,
)

if TYPE_CHECKING:
    import numpy as np

LOCAL_DIR = "local-dir:"


def _fetch_hint(config: EmbedderConfig) -> str:
    return (
        f"run `semcomp models fetch --clip {config.model} --pretrained {config.pretrained}` "
        "on a connected machine (or copy its Hugging Face cache here), "
        "or point the study at local weights with model = 'local-dir:/path'"
    )


def check_model_name(model: str) -> None:
    """Fail early, with the list of names, for an open_clip model name that does not exist."""
    if model.startswith((LOCAL_DIR, "hf-hub:")):
        return
    import open_clip

    if model.replace("/", "-") not in open_clip.list_models():
        raise ConfigError(
            f'open_clip has no model {model!r}; `python -c "import open_clip; '
            'print(open_clip.list_models())"` lists them'
        )


def open_clip_pretrained_table() -> Any:
    """open_clip's table of weights tags (``open_clip.pretrained``) without importing torch.

    Importing open_clip takes seconds (torch); a run checks its models before any stage
    starts, in well under that. The module is read from open_clip's folder under a private
    package name, with its optional safetensors import turned off; when open_clip is
    already imported (or this fails), its own module is used.
    """
    import importlib
    import importlib.util
    import sys
    import types

    if "open_clip" not in sys.modules:
        name = "_semcomp_open_clip_tables"
        try:
            if name not in sys.modules:
                spec = importlib.util.find_spec("open_clip")
                package = types.ModuleType(name)
                package.__path__ = list(spec.submodule_search_locations or [])
                sys.modules[name] = package
            saved = sys.modules.get("safetensors.torch", False)
            sys.modules["safetensors.torch"] = None  # type: ignore[assignment]
            try:
                return importlib.import_module(f"{name}.pretrained")
            finally:
                if saved is False:
                    del sys.modules["safetensors.torch"]
                else:
                    sys.modules["safetensors.torch"] = saved
        except Exception:  # another open_clip layout: import it the usual way
            pass
    return importlib.import_module("open_clip.pretrained")


def weights_problem(config: EmbedderConfig, reachable: Any) -> str | None:
    """Why ``config``'s CLIP weights cannot be loaded, or None if they can: a local folder,
    weights in the local cache, or a hub that answers. Fast: no model is built."""
    from semcomp.models import hf_cached, hf_model_problem

    what = f"CLIP model {config.label!r}"
    if config.model.startswith(LOCAL_DIR):
        folder = Path(config.model.removeprefix(LOCAL_DIR))
        if (folder / "open_clip_config.json").is_file():
            return None
        return f"{what}: no open_clip model in {folder} (open_clip_config.json and weights)"
    if config.model.startswith("hf-hub:"):
        return hf_model_problem(config.model.removeprefix("hf-hub:"), what, reachable)
    if Path(config.pretrained).is_file():
        return None
    table = open_clip_pretrained_table()
    cfg = table.get_pretrained_cfg(config.model.replace("/", "-"), config.pretrained)
    if not cfg:
        return f"{what}: open_clip has no weights {config.pretrained!r} for model {config.model!r}"
    repo = cfg.get("hf_hub", "")
    if repo:
        repo_id, filename = os.path.split(repo)  # as open_clip reads it: "org/model/[file]"
        names = [table.HF_SAFE_WEIGHTS_NAME, table.HF_WEIGHTS_NAME]
        if filename:
            names = [filename, str(Path(filename).with_suffix(".safetensors"))]
        if any(hf_cached(repo_id, name) for name in names):
            return None
    elif cfg.get("url"):
        cache = Path(os.path.expanduser("~/.cache/clip"))
        if (cache / os.path.basename(cfg["url"])).is_file():
            return None
    if reachable():
        return None
    return f"{what}: not in the local cache and the hub is unreachable; {_fetch_hint(config)}"


def load_open_clip(config: EmbedderConfig, device: str) -> Any:
    """Create the open_clip model with its weights, from the cache or the hub."""
    import open_clip

    check_model_name(config.model)
    carries_weights = config.model.startswith((LOCAL_DIR, "hf-hub:"))
    pretrained = None if carries_weights else config.pretrained

    def load() -> Any:
        model, _, _ = open_clip.create_model_and_transforms(
            config.model,
            pretrained=pretrained,
            device=device,
            image_resize_mode=config.resize_mode,
            image_interpolation=config.interpolation,
        )
        return model

    if config.model.startswith(LOCAL_DIR):
        return load()
    return load_cached_or_download(
        load, what=f"CLIP model {config.label!r}", fetch_hint=_fetch_hint(config)
    )


def weights_location(config: EmbedderConfig) -> str:
    """Where the loaded weights came from, for provenance.

    A hub-cache path names the snapshot (commit) it holds; ``local-dir:`` and
    ``hf-hub:`` models name their folder or repository.
    """
    if config.model.startswith((LOCAL_DIR, "hf-hub:")):
        return config.model
    return fetch_open_clip_weights(config, download=False)


class OpenClipEmbedder(Embedder):
    """Batched, L2-normalised CLIP image embeddings; load once per stage, then :meth:`close`."""

    #: a local model: ``--engine ray`` runs it in actors
    scalable = True
    #: the pip extra it needs (``semcomp.extras``)
    extra = "clip"

    def __init__(self, config: EmbedderConfig, *, device: str = "auto", batch_size: int = 32):
        import torch
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.config = config
        self.device = select_device(device)
        self.batch_size = batch_size
        self.model = load_open_clip(config, self.device).eval()
        self.dtype = inference_dtype(self.device)
        if self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
        self.preprocess_cfg = dict(self.model.visual.preprocess_cfg)
        self.preprocess = image_transform_v2(PreprocessCfg(**self.preprocess_cfg), is_train=False)
        self.weights = weights_location(config)

    def identity(self) -> dict[str, Any]:
        """The row the store keeps for this embedder: model, weights and preprocessing."""
        return {
            "kind": self.config.kind,
            "model": self.config.model,
            "pretrained": self.config.pretrained,
            "preprocess": json.loads(json.dumps(self.preprocess_cfg)),
            "weights": self.weights,
            "random_weights": self.config.random_weights,
        }

    def embed_pixels(self, pixels: Any) -> np.ndarray:
        """Embeddings of a batch already preprocessed by :attr:`preprocess` (N, 3, H, W)."""
        import numpy as np
        import torch

        pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=True)
        with torch.inference_mode():
            features = self.model.encode_image(pixels).float()
        features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu().numpy().astype(np.float32)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """Embeddings of RGB images, one L2-normalised float32 row each."""
        with phase("preprocess"):
            pixels = [self.preprocess(image) for image in images]
        return self.embed_preprocessed(pixels)

    def embed_preprocessed(self, pixels: Any) -> np.ndarray:
        """Embeddings of images already transformed by :attr:`preprocess`: a list of
        3×H×W tensors, or one N×3×H×W tensor (e.g. stacked and pinned by a loader).

        Runs in batches of ``batch_size``, halved on out-of-memory.
        """
        import numpy as np
        import torch

        def run(batch: Any) -> np.ndarray:
            return self.embed_pixels(batch if torch.is_tensor(batch) else torch.stack(batch))

        keep = partial(setattr, self, "batch_size")
        parts = [result for _, result in batches_with_backoff(pixels, self.batch_size, run, keep)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.visual.output_dim)

    @cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer, built once (it reads its vocabulary: about 0.1 s, and
        zero-shot prompts each class in a call of its own: 1,000 for ImageNet)."""
        import open_clip

        return open_clip.get_tokenizer(self.config.model)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings (for zero-shot class prompts)."""
        import numpy as np
        import torch

        tokenizer = self.tokenizer
        rows = []
        for start in range(0, len(texts), 256):
            tokens = tokenizer(texts[start : start + 256]).to(self.device)
            with torch.inference_mode():
                features = self.model.encode_text(tokens).float()
            rows.append(torch.nn.functional.normalize(features, dim=-1).cpu().numpy())
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, self.dim))

    def close(self) -> None:
        drop_model(self)


def fetch_open_clip_weights(config: EmbedderConfig, *, download: bool = True) -> str:
    """Path of the weights file for ``config`` (a built-in model and weights tag).

    Looks in the local cache first; downloads only if ``download`` and the hub
    is reachable. Raises :class:`~semcomp.errors.ModelUnavailableError` otherwise.
    """
    import open_clip

    if config.model.startswith((LOCAL_DIR, "hf-hub:")):
        raise ConfigError(f"{config.model!r} names its weights itself; there is no tag to fetch")
    check_model_name(config.model)
    if Path(config.pretrained).is_file():
        return config.pretrained
    pretrained_cfg = open_clip.get_pretrained_cfg(config.model.replace("/", "-"), config.pretrained)
    if not pretrained_cfg:
        tags = open_clip.list_pretrained_tags_by_model(config.model.replace("/", "-"))
        raise ConfigError(
            f"open_clip model {config.model!r} has no weights tag {config.pretrained!r} "
            f"(tags: {', '.join(tags) or 'none'})"
        )

    def fetch() -> str:
        return str(open_clip.download_pretrained(pretrained_cfg))

    if not download:
        try:
            with hub_offline():
                return fetch()
        except Exception as exc:
            raise ModelUnavailableError(
                f"CLIP model {config.label!r} is not in the local cache; {_fetch_hint(config)}"
            ) from exc
    return load_cached_or_download(
        fetch, what=f"CLIP model {config.label!r}", fetch_hint=_fetch_hint(config)
    )


@dataclass(frozen=True)
class SimilarityMetric:
    name: str
    formula: str
    description: str

    def value(self, cosine: float) -> float:
        return (cosine + 1.0) / 2.0 if self.formula == "(cos+1)/2" else cosine


def clip_metrics(embedder: EmbedderConfig) -> list[SimilarityMetric]:
    """The metrics one embedder yields: raw cosine and its [0, 1] scaling."""
    label = embedder.label
    return [
        SimilarityMetric(
            name=f"clip_cos[{label}]",
            formula="cos",
            description=f"cosine similarity of {label} image embeddings, in [-1, 1]",
        ),
        SimilarityMetric(
            name=f"clip_(cos+1)/2[{label}]",
            formula="(cos+1)/2",
            description=f"cosine similarity of {label} image embeddings scaled to [0, 1]",
        ),
    ]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (renormalised, so stored fp16 rounding cancels)."""
    import numpy as np

    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denominator) if denominator > 0 else 0.0


def pretty_model(config: EmbedderConfig) -> str:
    """How figures name a CLIP model: ``ViT-L/14@336 (openai)`` for open_clip's
    ``ViT-L-14-336`` with weights ``openai``; a ``name`` as given; a folder or hub
    repository by its last part."""
    if config.name:
        return config.name
    if config.model.startswith((LOCAL_DIR, "hf-hub:")):
        return config.label
    shape = re.fullmatch(r"ViT-([A-Za-z0-9]+)-(\d+)(?:-(\d+))?(.*)", config.model)
    model = config.model
    if shape:
        size, patch, resolution, rest = shape.groups()
        model = f"ViT-{size}/{patch}" + (f"@{resolution}" if resolution else "") + rest
    overrides = [value for value in (config.resize_mode, config.interpolation) if value]
    return " ".join([f"{model} ({config.pretrained})", *overrides])


class ClipMetric(EmbeddingMetric):
    """``clip``: cosine similarity of CLIP image embeddings (open_clip: any model name with
    a weights tag, ``hf-hub:`` repositories such as SigLIP or EVA-CLIP, ``local-dir:``
    folders), raw and scaled to [0, 1] as in the textual-transform paper.

    Its parameters are an :class:`~semcomp.config.EmbedderConfig` (``[[similarity.models]]``
    entries are the same thing); the embed stage caches its vectors per artifact.
    """

    extra = "clip"
    name = "clip"
    Params = EmbedderConfig  # type: ignore[assignment]
    default_batch_size = 32

    def __init__(
        self, params: EmbedderConfig, *, device: str = "auto", batch_size: int | None = None
    ):
        super().__init__(params, device=device, batch_size=batch_size)
        embedder_class = EMBEDDERS.get(params.kind)
        self.embedder = embedder_class(params, device=device, batch_size=self.batch_size)
        #: what the embed stage's loading applies (:class:`~semcomp.stages.embed.EmbedImages`)
        self.preprocess = self.embedder.preprocess
        self.preprocess_cfg = getattr(self.embedder, "preprocess_cfg", {})

    @classmethod
    def scores(cls, params: EmbedderConfig) -> list[ScoreSpec]:  # type: ignore[override]
        model = pretty_model(params)
        return [
            ScoreSpec(
                key=metric.name,
                display=f"CLIP {model} cosine"
                + (", scaled" if metric.formula == "(cos+1)/2" else ""),
                higher_is_better=True,
                low=0.0 if metric.formula == "(cos+1)/2" else -1.0,
                high=1.0,
                description=metric.description,
            )
            for metric in clip_metrics(params)
        ]

    @classmethod
    def values(cls, params: EmbedderConfig, cosine: float) -> dict[str, float]:  # type: ignore[override]
        return {metric.name: metric.value(cosine) for metric in clip_metrics(params)}

    @classmethod
    def identity_of(cls, params: EmbedderConfig) -> dict[str, Any]:  # type: ignore[override]
        overrides = {"resize_mode": params.resize_mode, "interpolation": params.interpolation}
        return {
            "metric": cls.name,
            "kind": params.kind,
            # the path as loaded: stored relative to the study folder (``ctx.portable``), so
            # the identity stays the same when the study moves, whatever anchors its ids
            "model": params.model,
            "pretrained": params.pretrained,
            **{key: value for key, value in overrides.items() if value is not None},
        }

    @classmethod
    def embedder_id(cls, params: EmbedderConfig) -> str:  # type: ignore[override]
        return params.embedder_id

    @classmethod
    def weights_problem(cls, params: EmbedderConfig, reachable: Any) -> str | None:  # type: ignore[override]
        return weights_problem(params, reachable)

    @classmethod
    def embedders(cls, params: EmbedderConfig) -> list[Any]:  # type: ignore[override]
        return [params]

    @property
    def random_weights(self) -> bool:
        return bool(self.params.random_weights)

    @property
    def torch_device(self) -> str:
        return str(self.embedder.device)

    def embedder_identity(self) -> dict[str, Any]:
        return self.embedder.identity()

    def embed(self, images: Sequence[Any]) -> np.ndarray:
        return self.embedder.embed(list(images))

    def embed_preprocessed(self, pixels: Any) -> np.ndarray:
        return self.embedder.embed_preprocessed(pixels)

    def close(self) -> None:
        self.embedder.close()
