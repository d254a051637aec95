"""``study.toml``: what a study runs, validated on load.

Every section forbids unknown keys; a bad key or value is a
:class:`~semcomp.errors.ConfigError` that names the key and the file.
Relative paths are relative to the study folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from semcomp.errors import ConfigError
from semcomp.filenames import path_text, text_path
from semcomp.images import DEFAULT_MAX_PIXELS
from semcomp.methods import (
    EmbeddingMethod,
    ExternalMethod,
    MethodConfig,
    PixelMethod,
    TextualMethod,
)
from semcomp.metrics import EMBEDDERS
from semcomp.params import LOCAL_DIR, TINY_FOLDERS, TINY_MODEL, StudyPath, identity_in_study
from semcomp.store import content_key
from semcomp.validation import Section, describe_errors, registered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STUDY_FILE = "study.toml"
DEFAULT_CLIP_MODEL = "ViT-L-14-336"
DEFAULT_CLIP_PRETRAINED = "openai"
#: the label of ``model = "tiny"`` (the demo's)
TINY_CLIP_NAME = "tiny-clip-random"


class ImagesConfig(Section):
    #: a folder (recursive; category = first-level subfolder) or a CSV manifest
    source: StudyPath
    #: if given, every image's category must be one of these
    categories: list[str] | None = None
    #: decompression-bomb guard
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)


class EmbedderConfig(Section):
    """An image embedder for semantic similarity (CLIP through open_clip)."""

    #: an embedder kind from ``semcomp.metrics.EMBEDDERS``
    kind: str = "open_clip"
    #: an open_clip model name, ``hf-hub:org/repo``, ``local-dir:/path``, or ``tiny`` (the
    #: demo's tiny random-weight CLIP, kept in the study folder: numbers are not meaningful)
    model: str = DEFAULT_CLIP_MODEL
    #: an open_clip weights tag (``openai``, ``laion2b_s32b_b82k``, ...) or a checkpoint path;
    #: ignored by ``hf-hub:`` and ``local-dir:`` models, which carry their weights
    pretrained: str = DEFAULT_CLIP_PRETRAINED
    #: preprocessing overrides (None = the weights' own): how a non-square image meets the
    #: square input: ``shortest`` resizes and centre-crops (CLIP's default), ``longest``
    #: pads, ``squash`` distorts the aspect ratio
    resize_mode: Literal["shortest", "longest", "squash"] | None = None
    interpolation: Literal["bicubic", "bilinear", "nearest"] | None = None
    #: short name used in metric names; defaults to ``model/pretrained`` (or the folder name)
    name: str | None = None
    #: set when the weights are random (the offline demo): numbers are not meaningful
    random_weights: bool = False

    #: the model as it enters the embedder's identity: a folder inside the study relative to it
    _identity_model: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _tiny_is_random(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("model") == TINY_MODEL:
            data = data | {"random_weights": True}
            data.setdefault("name", TINY_CLIP_NAME)
        return data

    @field_validator("model")
    @classmethod
    def _local_dir_in_study(cls, model: str, info: ValidationInfo) -> str:
        if model == TINY_MODEL:
            model = LOCAL_DIR + TINY_FOLDERS["clip"]
        prefix, _, folder = model.partition(":")
        study_dir = (info.context or {}).get("study_dir")
        if prefix == "local-dir" and study_dir is not None and not Path(folder).is_absolute():
            return f"local-dir:{(Path(study_dir) / folder).resolve()}"
        return model

    @model_validator(mode="after")
    def _portable_identity(self, info: ValidationInfo) -> EmbedderConfig:
        self._identity_model = identity_in_study(self.model, info.context)
        return self

    @property
    def portable_model(self) -> str:
        """The model as a study keeps it: a folder inside the study relative to it."""
        return self._identity_model or self.model

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        return registered(EMBEDDERS, kind)

    @property
    def label(self) -> str:
        """The name metrics carry: model and weights, plus any preprocessing override."""
        if self.name:
            return self.name
        if self.model.startswith(("local-dir:", "hf-hub:")):
            label = Path(self.model.partition(":")[2]).name
        else:
            label = f"{self.model}/{self.pretrained}"
        overrides = [value for value in (self.resize_mode, self.interpolation) if value]
        return "+".join([label, *overrides])

    @property
    def embedder_id(self) -> str:
        """Identity of the embeddings: model, weights and preprocessing overrides."""
        overrides = {"resize_mode": self.resize_mode, "interpolation": self.interpolation}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return content_key("embedder", self.kind, self.portable_model, self.pretrained, overrides)


class SimilarityConfig(Section):
    models: list[EmbedderConfig] = Field(default_factory=lambda: [EmbedderConfig()], min_length=1)
    batch_size: int = Field(default=32, gt=0)
    #: ``auto`` picks CUDA when available, else CPU
    device: str = "auto"

    @model_validator(mode="after")
    def _distinct_labels(self) -> SimilarityConfig:
        labels = [m.label for m in self.models]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"similarity models share the label(s) {repeated}: give each a name")
        return self


class StudyConfig(Section):
    name: str = "study"
    description: str = ""
    seed: int = 0
    images: ImagesConfig
    methods: list[MethodConfig] = Field(min_length=1)
    similarity: SimilarityConfig = Field(default_factory=SimilarityConfig)

    #: the validation context: the study folder and, for a study made before paths were
    #: stored relative to it, the folder its identities were made in
    _context: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _embedding_codecs_match_a_clip(self, info: ValidationInfo) -> StudyConfig:
        self._context = dict(info.context or {})
        for method in self.methods:
            if not isinstance(method, EmbeddingMethod):
                continue
            if self.embedder_for(method) is None:
                have = [f"{m.model}/{m.pretrained}" for m in self.similarity.models]
                raise ValueError(
                    f"method {method.name!r}: its checkpoint compresses embeddings of CLIP "
                    f"{method.clip.get('model')}/{method.clip.get('pretrained')}, which is not one "
                    f"of the similarity models {have}; add it to [[similarity.models]]"
                )
        return self

    def stored_path(self, path: Path | str) -> str:
        """How the store keeps a path: relative to the study folder when inside it, as
        text SQLite can hold (a name that is not UTF-8 escaped, see :mod:`semcomp.filenames`)."""
        return path_text(identity_in_study(os.path.abspath(path), self._context))

    def stored_file(self, key: str) -> Path:
        """The file a :meth:`stored_path` key names, wherever the study folder is now."""
        path = text_path(key)
        study_dir = self._context.get("study_dir")
        if study_dir is None:
            return path
        anchor = self._context.get("identity_root")
        if anchor and path.is_absolute() and path.is_relative_to(anchor):
            return Path(study_dir) / path.relative_to(anchor)  # an older study, since moved
        return Path(study_dir) / path  # a relative key is inside the study folder

    def embedder_for(self, method: EmbeddingMethod) -> EmbedderConfig | None:
        """The similarity model whose embeddings ``method``'s checkpoint compresses."""
        clip = method.clip
        for model in self.similarity.models:
            carries_weights = model.model.startswith(("local-dir:", "hf-hub:"))
            same_model = (
                self._clip_key(model.model) == self._clip_key(clip.get("model", ""))
                if carries_weights
                else model.model == clip.get("model")
            )
            same_weights = carries_weights or model.pretrained == clip.get("pretrained")
            if same_model and same_weights and not (model.resize_mode or model.interpolation):
                return model
        return None

    def _clip_key(self, model: str) -> str:
        """A CLIP model named by a checkpoint or a similarity model, comparable wherever the
        study folder is: ``tiny`` and relative folders are in the study folder."""
        if model == TINY_MODEL:
            model = LOCAL_DIR + TINY_FOLDERS["clip"]
        prefix, _, rest = model.partition(":")
        if prefix != "local-dir":
            return model
        if rest == TINY_MODEL:
            rest = TINY_FOLDERS["clip"]
        study_dir = self._context.get("study_dir")
        if not Path(rest).is_absolute() and study_dir is not None:
            rest = str((Path(study_dir) / rest).resolve())
        return identity_in_study(f"{LOCAL_DIR}{rest}", self._context)

    @model_validator(mode="after")
    def _unique_methods(self) -> StudyConfig:
        seen_names: set[str] = set()
        seen_ids: dict[str, str] = {}
        for method in self.methods:
            if method.name in seen_names:
                raise ValueError(f"two methods are named {method.name!r}")
            seen_names.add(method.name)
            if method.method_id in seen_ids:
                raise ValueError(
                    f"methods {seen_ids[method.method_id]!r} and {method.name!r} have the same "
                    "codec and params; merge their operating points into one method"
                )
            seen_ids[method.method_id] = method.name
        return self


def parse_config(
    data: dict[str, Any],
    source: str,
    study_dir: Path | None = None,
    identity_root: str | None = None,
) -> StudyConfig:
    """Validate a study file's data. ``identity_root``: see :func:`load_config`."""
    context = {"study_dir": study_dir} if study_dir is not None else None
    if context is not None and identity_root:
        context["identity_root"] = identity_root
    try:
        return StudyConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_errors(exc)}") from None


def load_config(study_dir: Path, identity_root: str | None = None) -> StudyConfig:
    """Read and validate ``study.toml`` in ``study_dir``.

    Paths inside the study folder enter identities (method ids, embedder ids, stored
    source paths) relative to it, so a moved or copied study keeps its rows.
    ``identity_root`` is for a study whose identities were made with absolute paths
    (before semcomp stored them relative): the folder it was in then.
    """
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found; create a study with `semcomp init DIR --images SRC`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path), path.parent, identity_root)


__all__ = [
    "STUDY_FILE",
    "EmbedderConfig",
    "ExternalMethod",
    "ImagesConfig",
    "MethodConfig",
    "PixelMethod",
    "SimilarityConfig",
    "StudyConfig",
    "TextualMethod",
    "load_config",
    "parse_config",
]
