"""``study.toml``: what a study runs, validated on load.

Every section forbids unknown keys; a bad key or value is a
:class:`~semcomp.errors.ConfigError` that names the key and the file.
Relative paths are relative to the study folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from semcomp.analysis import EMBEDDERS
from semcomp.codecs import CODECS
from semcomp.codecs.base import TARGET_KINDS, OperatingPoint
from semcomp.errors import ConfigError
from semcomp.images import DEFAULT_MAX_PIXELS
from semcomp.registry import Registry
from semcomp.store import content_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STUDY_FILE = "study.toml"
DEFAULT_CLIP_MODEL = "ViT-L-14-336"
DEFAULT_CLIP_PRETRAINED = "openai"


def _registered(registry: Registry, name: str) -> str:
    """``name`` if ``registry`` has it; else a ValueError, which pydantic places at the key."""
    try:
        registry.check(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return name


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImagesConfig(Section):
    #: a folder (recursive; category = first-level subfolder) or a CSV manifest
    source: Path
    #: if given, every image's category must be one of these
    categories: list[str] | None = None
    #: decompression-bomb guard
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)


class MethodConfig(Section):
    """A codec, its fixed parameters, and the operating points to encode at."""

    name: str = Field(min_length=1)
    codec: str
    quality: list[int] = Field(default_factory=list)
    reduction: list[float] = Field(default_factory=list)
    bytes: list[int] = Field(default_factory=list)
    bpp: list[float] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, codec: str) -> str:
        return _registered(CODECS, codec)

    @field_validator("reduction")
    @classmethod
    def _reduction_in_range(cls, values: list[float]) -> list[float]:
        for value in values:
            if not 0.0 < value < 1.0:
                raise ValueError(f"reduction {value} must lie strictly between 0 and 1")
        return values

    @field_validator("bytes", "bpp")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        for value in values:
            if value <= 0:
                raise ValueError(f"rate target {value} must be positive")
        return values

    @model_validator(mode="after")
    def _check_against_codec(self) -> MethodConfig:
        codec_class = CODECS.get(self.codec)
        try:
            validated = codec_class.Params.model_validate(self.params)
        except ValidationError as exc:
            raise ValueError(_describe_errors(exc, prefix="params")) from None
        self.params = validated.model_dump(mode="json")
        low, high = getattr(codec_class, "quality_range", (None, None))
        for quality in self.quality:
            if low is not None and not low <= quality <= high:
                raise ValueError(f"quality {quality} is outside {self.codec}'s range {low}..{high}")
        points = self.operating_points()
        if not points:
            raise ValueError(
                f"method {self.name!r} gives no operating point ({', '.join(TARGET_KINDS)})"
            )
        unsupported = sorted({p.kind for p in points} - set(codec_class.target_kinds))
        if unsupported:
            raise ValueError(
                f"codec {self.codec!r} does not support {', '.join(unsupported)} targets"
            )
        return self

    def operating_points(self) -> list[OperatingPoint]:
        points = [
            OperatingPoint(kind, float(value))
            for kind in TARGET_KINDS
            for value in getattr(self, kind)
        ]
        return list(dict.fromkeys(points))

    @property
    def method_id(self) -> str:
        """Identity of the method: codec and validated parameters (not the display name)."""
        return content_key("method", self.codec, self.params)


class EmbedderConfig(Section):
    """An image embedder for semantic similarity (CLIP through open_clip)."""

    #: an embedder kind from ``semcomp.analysis.EMBEDDERS``
    kind: str = "open_clip"
    #: an open_clip model name, ``hf-hub:org/repo`` or ``local-dir:/path``
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

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        return _registered(EMBEDDERS, kind)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.model.startswith(("local-dir:", "hf-hub:")):
            return Path(self.model.partition(":")[2]).name
        return f"{self.model}/{self.pretrained}"

    @property
    def embedder_id(self) -> str:
        """Identity of the embeddings: model, weights and preprocessing overrides."""
        overrides = {"resize_mode": self.resize_mode, "interpolation": self.interpolation}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return content_key("embedder", self.kind, self.model, self.pretrained, overrides)


class SimilarityConfig(Section):
    models: list[EmbedderConfig] = Field(default_factory=lambda: [EmbedderConfig()], min_length=1)
    batch_size: int = Field(default=32, gt=0)
    #: ``auto`` picks CUDA when available, else CPU
    device: str = "auto"


class StudyConfig(Section):
    name: str = "study"
    description: str = ""
    seed: int = 0
    images: ImagesConfig
    methods: list[MethodConfig] = Field(min_length=1)
    similarity: SimilarityConfig = Field(default_factory=SimilarityConfig)

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

    def resolve_paths(self, study_dir: Path) -> StudyConfig:
        """Make relative paths absolute against the study folder."""
        if not self.images.source.is_absolute():
            self.images.source = (study_dir / self.images.source).resolve()
        for embedder in self.similarity.models:
            prefix, _, folder = embedder.model.partition(":")
            if prefix == "local-dir" and not Path(folder).is_absolute():
                embedder.model = f"local-dir:{(study_dir / folder).resolve()}"
        return self


def _describe_errors(exc: ValidationError, prefix: str = "") -> str:
    messages = []
    for error in exc.errors():
        parts = [prefix] if prefix else []
        for part in error["loc"]:
            if isinstance(part, int):
                parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
            else:
                parts.append(str(part))
        where = ".".join(parts) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")
        messages.append(f"{where}: {message}")
    return "; ".join(messages)


def parse_config(data: dict[str, Any], source: str) -> StudyConfig:
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe_errors(exc)}") from None


def load_config(study_dir: Path) -> StudyConfig:
    """Read and validate ``study.toml`` in ``study_dir``."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found; create a study with `semcomp init DIR --images SRC`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path)).resolve_paths(path.parent)
