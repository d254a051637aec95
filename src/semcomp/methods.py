"""Methods: what a study compresses with, and each method's identity.

Three kinds, told apart by their keys in ``study.toml`` (or an explicit ``kind``):

- ``pixel``: an image codec (``codec = "jpeg"``) at operating points;
- ``textual``: captioner → text payload codec → reconstructor (``captioner = "blip"``);
- ``external``: files made elsewhere (reconstructions, another tool's JPEGs), imported
  from a folder (``folder = ...``) with the rate of their files, captions, or none.

A method's identity (``method_id``) is a hash of everything that changes its
results, never of its display name, so renaming a method keeps its rows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from semcomp.captioners import CAPTIONERS
from semcomp.codecs import CODECS, TEXT_CODECS
from semcomp.codecs.base import TARGET_KINDS, OperatingPoint
from semcomp.codecs.embedding import EMBEDDING_CODECS
from semcomp.params import (
    TINY_MODEL,
    PluginParams,
    StudyPath,
    file_sha256,
    identity_in_study,
    portable_path,
)
from semcomp.reconstructors import RECONSTRUCTORS
from semcomp.selection import SelectConfig, operating_label
from semcomp.store import content_key, to_json
from semcomp.validation import (
    UNION_TAGS,
    Section,
    describe_errors,
    registered,
    validated_params,
)


class MethodBase(Section):
    name: str = Field(min_length=1)
    #: set when the method runs random-weight models (the offline demo): its numbers are
    #: not meaningful, and reports say so
    random_weights: bool = False

    @functools.cached_property
    def method_id(self) -> str:
        """A hash of everything that changes the method's results (see :meth:`_method_id`).

        Computed once per method: stages read it for every item, and it hashes JSON.
        Assigning a field or copying the method computes it again.
        """
        return self._method_id()

    def _method_id(self) -> str:
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("method_id", None)
        super().__setattr__(name, value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("method_id", None)
        return copied

    def operating_point_labels(self) -> list[str]:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for reports: what the method does, with its parameters."""
        raise NotImplementedError

    @property
    def payload_codec(self) -> str:
        """What turns the representation into bytes (an image codec, text codec, coder)."""
        for field in ("codec", "text_codec", "entropy_coder"):
            value = getattr(self, field, None)
            if value:
                return str(value)
        return ""


class PixelMethod(MethodBase):
    """An image codec, its fixed parameters, and the operating points to encode at."""

    kind: Literal["pixel"] = "pixel"
    #: a named setting from :data:`METHOD_PRESETS`; the method's own keys replace the preset's
    preset: str | None = None
    codec: str
    quality: list[int] = Field(default_factory=list)
    reduction: list[float] = Field(default_factory=list)
    bytes: list[int] = Field(default_factory=list)
    bpp: list[float] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    #: model-based codecs (``compressai``): images per model call, and ``auto`` picks CUDA
    #: when available; how the work runs, not what it produces (not in the method's id)
    batch_size: int | None = Field(default=None, ge=1)
    device: str = "auto"

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        name = data["preset"]
        if name not in METHOD_PRESETS:
            known = ", ".join(sorted(METHOD_PRESETS))
            raise ValueError(f"unknown preset {name!r}; presets are {known}")
        preset = METHOD_PRESETS[name]
        merged = preset | data
        merged["params"] = preset.get("params", {}) | data.get("params", {})
        return merged

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, codec: str) -> str:
        return registered(CODECS, codec)

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
    def _check_against_codec(self, info: ValidationInfo) -> PixelMethod:
        codec_class = CODECS.get(self.codec)
        if not codec_class.batched and (self.batch_size is not None or self.device != "auto"):
            raise ValueError(
                f"batch_size and device are for codecs that run a model, not {self.codec}"
            )
        validated = validated_params(CODECS, self.codec, self.params, "params", info)
        self.params = validated.model_dump(mode="json")
        low, high = codec_class.quality_range_for(validated) or (None, None)
        for quality in self.quality:
            if low is not None and not low <= quality <= high:
                raise ValueError(f"quality {quality} is outside {self.codec}'s range {low}..{high}")
        points = self.operating_points()
        if not points:
            kinds = ", ".join(TARGET_KINDS)
            raise ValueError(f"method {self.name!r} gives no operating point ({kinds})")
        unsupported = sorted({p.kind for p in points} - set(codec_class.target_kinds))
        if unsupported:
            kinds = ", ".join(unsupported)
            raise ValueError(f"codec {self.codec!r} does not support {kinds} targets")
        return self

    def operating_points(self) -> list[OperatingPoint]:
        points = [
            OperatingPoint(kind, float(value))
            for kind in TARGET_KINDS
            for value in getattr(self, kind)
        ]
        return list(dict.fromkeys(points))

    def operating_point_labels(self) -> list[str]:
        return [p.label for p in self.operating_points()]

    def describe(self) -> str:
        return f"{self.codec} {to_json(self.params)}"

    def _method_id(self) -> str:
        """Codec and validated parameters (not the display name, not the operating points)."""
        return content_key("method", self.codec, self.params)


#: Method presets: settings a study file names with ``preset = "..."`` (its own keys win).
#: ``paper-jpeg`` is how the textual-transform paper's JPEGs were made: IJG quality 1
#: ("JPEG low") and 11 ("JPEG high"), 4:2:2 chroma subsampling, progressive (what the
#: quantisation tables and markers of its published files say). The paper's "90 % / 80 %
#: smaller" are nominal: these files are 35-99 % smaller than their originals.
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "paper-jpeg": {
        "codec": "jpeg",
        "quality": [1, 11],
        "params": {"subsampling": "4:2:2", "progressive": True},
    },
}


#: The label of the single operating point of a textual method without a sweep.
CAPTION_POINT = "caption"


class CaptionPoint(BaseModel):
    """One operating point of a textual method: a label and the captioner parameters."""

    label: str
    captioner_params: dict[str, Any]
    captioner_key: str
    #: the side information's longest side at this point (None: the caption alone)
    side_size: int | None = None
    #: best-of-N at this point: candidates the encoder chooses among (None: no selection)
    select_n: int | None = None


class TextualMethod(MethodBase):
    """A textual transform: caption the image, send the text, reconstruct an image from it."""

    kind: Literal["textual"] = "textual"
    captioner: str
    captioner_params: dict[str, Any] = Field(default_factory=dict)
    #: one captioner parameter swept over values, each an operating point
    #: (e.g. ``{ max_words = [10, 20, 40] }`` for a rate sweep)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    text_codec: str = "utf8"
    text_codec_params: dict[str, Any] = Field(default_factory=dict)
    reconstructor: str = "diffusers"
    reconstructor_params: dict[str, Any] = Field(default_factory=dict)
    #: reconstructions per caption (different seeds), to show diffusion randomness
    replicates: int = Field(default=1, ge=1)
    #: images per model call for the captioner and the reconstructor (halved on out-of-memory)
    batch_size: int = Field(default=8, ge=1)
    #: ``auto`` picks CUDA (fp16) when available, else CPU
    device: str = "auto"
    #: side information sent with the caption (``thumbnail``, ``edges`` or ``hed``, see
    #: :mod:`semcomp.codecs.side`); each of ``side_params.size`` is an operating point
    side: Literal["thumbnail", "edges", "hed"] | None = None
    side_params: dict[str, Any] = Field(default_factory=dict)
    #: encoder-side selection (see :mod:`semcomp.selection`): ``{ n = [1, 4], by = "psnr" }``;
    #: each ``n`` is an operating point
    select: SelectConfig | None = None

    _points: list[CaptionPoint] = PrivateAttr(default_factory=list)
    _text_codec_identity: dict[str, Any] = PrivateAttr(default_factory=dict)
    _reconstructor_identity: dict[str, Any] = PrivateAttr(default_factory=dict)
    _side_params_identity: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("captioner")
    @classmethod
    def _known_captioner(cls, name: str) -> str:
        return registered(CAPTIONERS, name)

    @field_validator("text_codec")
    @classmethod
    def _known_text_codec(cls, name: str) -> str:
        return registered(TEXT_CODECS, name)

    @field_validator("reconstructor")
    @classmethod
    def _known_reconstructor(cls, name: str) -> str:
        return registered(RECONSTRUCTORS, name)

    @field_validator("sweep")
    @classmethod
    def _one_swept_parameter(cls, sweep: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if len(sweep) > 1:
            raise ValueError(f"sweep one captioner parameter at a time, not {sorted(sweep)}")
        for key, values in sweep.items():
            if not values:
                raise ValueError(f"sweep of {key!r} has no values")
        return sweep

    @model_validator(mode="after")
    def _validate_plugins(self, info: ValidationInfo) -> TextualMethod:
        models = (self.captioner_params.get("model"), self.reconstructor_params.get("model"))
        if TINY_MODEL in models:
            self.random_weights = True  # marked as the demo's tiny models are
        text_codec = validated_params(
            TEXT_CODECS, self.text_codec, self.text_codec_params, "text_codec_params", info
        )
        reconstructor = validated_params(
            RECONSTRUCTORS,
            self.reconstructor,
            self.reconstructor_params,
            "reconstructor_params",
            info,
        )
        self.text_codec_params = text_codec.model_dump(mode="json")
        self.reconstructor_params = reconstructor.model_dump(mode="json")
        # paths inside the study folder enter identities relative to it: a moved study
        # keeps its rows
        self._text_codec_identity = identity_in_study(text_codec.identity(), info.context)
        self._reconstructor_identity = identity_in_study(reconstructor.identity(), info.context)
        base = self.captioner_params
        if self.sweep:
            ((key, values),) = self.sweep.items()
            variants = [(f"{key}={value}", base | {key: value}, f"sweep.{key}") for value in values]
        else:
            variants = [(CAPTION_POINT, base, "captioner_params")]
        points = []
        for label, raw, where in variants:
            params = validated_params(CAPTIONERS, self.captioner, raw, where, info)
            identity = identity_in_study(params.identity(), info.context)
            key = content_key("captioner", self.captioner, identity)
            points.append(
                CaptionPoint(
                    label=label,
                    captioner_params=params.model_dump(mode="json"),
                    captioner_key=key,
                )
            )
        self._points = self._with_select(self._with_side(points, info))
        return self

    def _with_select(self, points: list[CaptionPoint]) -> list[CaptionPoint]:
        """Each caption point at each best-of-N of ``select`` (none without it)."""
        if self.select is None:
            return points
        if not RECONSTRUCTORS.get(self.reconstructor).seeded:
            raise ValueError(
                f"select needs a seeded reconstructor: {self.reconstructor!r} draws the same "
                "image every time"
            )
        return [
            point.model_copy(
                update={
                    "label": operating_label(n)
                    if point.label == CAPTION_POINT
                    else f"{point.label} {operating_label(n)}",
                    "select_n": n,
                }
            )
            for point in points
            for n in self.select.n
        ]

    def _with_side(self, points: list[CaptionPoint], info: ValidationInfo) -> list[CaptionPoint]:
        """Validate the side information; each caption point at each of its sizes."""
        from semcomp.codecs.side import SIDE_PARAMS

        reconstructor_sides = RECONSTRUCTORS.get(self.reconstructor).side_kinds
        if self.side is None:
            if self.side_params:
                raise ValueError('side_params needs side ("thumbnail", "edges" or "hed")')
            if reconstructor_sides:
                raise ValueError(
                    f"reconstructor {self.reconstructor!r} is conditioned on side information: "
                    f"set side = {' or '.join(repr(k) for k in reconstructor_sides)}"
                )
            return points
        if self.side not in reconstructor_sides:
            users = sorted(
                name
                for name in RECONSTRUCTORS.names()
                if self.side in RECONSTRUCTORS.get(name).side_kinds
            )
            raise ValueError(
                f"reconstructor {self.reconstructor!r} does not use side = {self.side!r}; "
                f"reconstructors that do: {', '.join(users) or 'none'}"
            )
        try:
            side = SIDE_PARAMS[self.side].model_validate(self.side_params, context=info.context)
        except ValidationError as exc:
            raise ValueError(describe_errors(exc, prefix="side_params")) from None
        self.side_params = side.model_dump(mode="json")
        # a file it names (HED weights) enters identities relative to the study folder
        self._side_params_identity = identity_in_study(self.side_params, info.context)
        return [
            point.model_copy(
                update={
                    "label": f"{self.side}={size}"
                    if point.label == CAPTION_POINT
                    else f"{point.label} {self.side}={size}",
                    "side_size": size,
                }
            )
            for point in points
            for size in side.size
        ]

    def caption_points(self) -> list[CaptionPoint]:
        return list(self._points)

    def operating_point_labels(self) -> list[str]:
        return [p.label for p in self._points]

    def describe(self) -> str:
        model = self.captioner_params.get("model")
        captioner = f"{self.captioner} ({model})" if model else self.captioner
        sweep = f" sweeping {to_json(self.sweep)}" if self.sweep else ""
        target = self.reconstructor_params.get("model", "")
        side = f" + {self.side} {to_json(self.side_params)}" if self.side else ""
        select = f", best of {self.select.n} by {self.select.by}" if self.select is not None else ""
        return (
            f"textual transform: {captioner}{sweep}{side} -> {self.text_codec} -> "
            f"{self.reconstructor} {target}, {self.replicates} replicate(s){select}"
        ).strip()

    @property
    def reconstructor_key(self) -> str:
        return content_key("reconstructor", self.reconstructor, self._reconstructor_identity)

    @property
    def side_identity(self) -> dict[str, Any] | None:
        """The side information's part of identities (None without side information)."""
        return {"side": self.side, "params": self._side_params_identity} if self.side else None

    def _method_id(self) -> str:
        keys = [p.captioner_key for p in self._points]
        if self.side or self.select is not None:  # points repeat a caption: its captioner once
            keys = list(dict.fromkeys(keys))
        parts: list[Any] = [
            "method",
            "textual",
            keys,
            self.text_codec,
            self._text_codec_identity,
            self.reconstructor_key,
        ]
        if self.side:  # only when set: methods without it keep their ids
            parts.append(self.side_identity)
        if self.select is not None:  # likewise
            parts.append({"select": self.select.identity()})
        return content_key(*parts)

    def reconstruction_key(self, point: CaptionPoint) -> str:
        """What a reconstruction's seed derives from: caption source and reconstructor
        (and the side information at this point's size, when there is one).

        The text codec is left out: it changes the rate, never the caption, so
        methods that differ only in payload codec reconstruct the same images.
        """
        if point.side_size is None:
            return content_key(point.captioner_key, self.reconstructor_key)
        return content_key(
            point.captioner_key, self.reconstructor_key, self.side_identity, point.side_size
        )


#: placeholders an external method's file pattern may use: ``name`` (and its older
#: spelling ``stem``) the original's file stem, ``id`` its manifest id (else the stem),
#: ``sha256`` its content hash
PATTERN_FIELDS = ("name", "id", "stem", "sha256")
#: a pattern ending in this matches any image extension (``"{name}_q1.*"``)
ANY_IMAGE_EXTENSION = ".*"
#: where an external method's rate comes from: the imported file's bytes, the caption
#: CSV's caption bytes, or nowhere (no known rate)
RATE_SOURCES = ("file", "captions", "none")


class ExternalMethod(MethodBase):
    """Files made elsewhere (reconstructions, or a pixel codec's output), imported from a folder.

    ``pattern`` names each original's file, e.g. ``"{name}_gr.png"`` for the
    textual-transform paper's DALL-E images or ``"{name}_q1.*"`` for its JPEGs
    (matched case-insensitively; a trailing ``.*`` is any image extension).
    ``rate`` says where the rate comes from: ``"file"`` (the file's exact bytes,
    like semcomp's own JPEG), ``"captions"`` (the caption's bytes under
    ``text_codec``, from ``captions``: a CSV with columns ``image`` and
    ``caption``) or ``"none"`` (unknown: the points have no x-coordinate).
    Default: ``captions`` when a captions CSV is given, else ``none``. ``codec``
    and ``operating_point`` are labels for tables and figures.
    """

    kind: Literal["external"] = "external"
    folder: StudyPath
    pattern: str = "{name}.png"
    rate: Literal["file", "captions", "none"] | None = None
    #: what tables and figures call the codec (e.g. ``"jpeg"``, ``"dall-e-2"``)
    codec: str | None = Field(default=None, min_length=1)
    #: the label of the method's one operating point (e.g. ``"q1"``); default ``caption``,
    #: or ``file`` with ``rate = "file"``
    operating_point: str | None = Field(default=None, min_length=1)
    captions: StudyPath | None = None
    text_codec: str = "utf8"
    text_codec_params: dict[str, Any] = Field(default_factory=dict)

    _text_codec_identity: dict[str, Any] = PrivateAttr(default_factory=dict)
    _captions_sha256: str | None = PrivateAttr(default=None)
    _folder_identity: str = PrivateAttr(default="")

    @field_validator("pattern")
    @classmethod
    def _known_fields(cls, pattern: str) -> str:
        import string

        body = pattern.removesuffix(ANY_IMAGE_EXTENSION)
        try:
            parsed = list(string.Formatter().parse(body))
        except ValueError as exc:
            raise ValueError(f"pattern {pattern!r} does not parse: {exc}") from None
        fields = {f for _, f, _, _ in parsed if f is not None}
        unknown = fields - set(PATTERN_FIELDS)
        if unknown or not fields:
            raise ValueError(
                "pattern must use {name}, {id}, {stem} or {sha256} and nothing else "
                f"(got {pattern!r})"
            )
        if "*" in body:
            raise ValueError(f"pattern {pattern!r}: '*' is allowed only as a trailing '.*'")
        return pattern

    @field_validator("text_codec")
    @classmethod
    def _known_text_codec(cls, name: str) -> str:
        return registered(TEXT_CODECS, name)

    @model_validator(mode="after")
    def _validate_codec(self, info: ValidationInfo) -> ExternalMethod:
        if self.rate is None:
            self.rate = self.default_rate
        if self.operating_point is None:
            self.operating_point = "file" if self.rate == "file" else CAPTION_POINT
        if self.rate == "captions" and self.captions is None:
            raise ValueError('rate = "captions" needs a captions CSV (captions = "...")')
        if self.rate == "file" and self.captions is not None:
            raise ValueError(
                'rate = "file" takes the rate from the files, so a captions CSV has no use here'
            )
        text_codec = validated_params(
            TEXT_CODECS, self.text_codec, self.text_codec_params, "text_codec_params", info
        )
        self.text_codec_params = text_codec.model_dump(mode="json")
        self._text_codec_identity = identity_in_study(text_codec.identity(), info.context)
        context = info.context or {}
        self._folder_identity = portable_path(
            self.folder, context.get("study_dir"), context.get("identity_root")
        )
        if self.captions is not None:
            self._captions_sha256 = file_sha256(self.captions, "captions CSV")
        return self

    @property
    def default_rate(self) -> str:
        return "captions" if self.captions is not None else "none"

    @property
    def payload_codec(self) -> str:
        """The ``codec`` label; else the text codec of a caption rate; else what the rate is."""
        if self.codec:
            return self.codec
        return {"captions": self.text_codec, "file": "file"}.get(str(self.rate), "")

    def operating_point_labels(self) -> list[str]:
        return [str(self.operating_point)]

    def describe(self) -> str:
        rate = {
            "file": ", rate = the files' bytes",
            "captions": f", rate = caption bytes from {self.captions.name}"
            if self.captions
            else "",
            "none": ", rate unknown",
        }[str(self.rate)]
        label = f" ({self.codec})" if self.codec else ""
        return f"external files{label} {self.folder / self.pattern}{rate}"

    def _method_id(self) -> str:
        parts: list[Any] = [
            "method",
            "external",
            self._folder_identity or str(self.folder),
            self.pattern,
            self._captions_sha256,  # edited captions are new rates
            self.text_codec,
            self._text_codec_identity,
        ]
        if self.rate != self.default_rate:  # the default keeps the ids of older study files
            parts.append({"rate": self.rate})
        return content_key(*parts)


class EmbeddingMethod(MethodBase):
    """A CLIP-embedding codec from the embedding-codec family (``codec``, default
    ``pqvae``: PQVAE-shared or a baseline from a trained checkpoint).

    Its candidates are decoded embeddings, not images: similarity is the cosine
    between the original's CLIP embedding and the decoded one, under the CLIP
    model the codec was made for (which must be a similarity model). The ``pqvae``
    codec's parameters, ``checkpoint`` and ``entropy_coder``, are written at the
    method's top level; other codecs take theirs in ``params``.
    """

    kind: Literal["embedding"] = "embedding"
    codec: str = "pqvae"
    checkpoint: StudyPath | None = None
    #: one of semcomp.codecs.pqvae.bitstream.CODERS
    entropy_coder: str = "range-positional"
    params: dict[str, Any] = Field(default_factory=dict)

    _validated: PluginParams | None = PrivateAttr(default=None)

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, codec: str) -> str:
        return registered(EMBEDDING_CODECS, codec)

    @model_validator(mode="after")
    def _codec_params(self, info: ValidationInfo) -> EmbeddingMethod:
        params = dict(self.params)
        if self.codec == "pqvae":
            given = {"checkpoint", "entropy_coder"} & set(params)
            if given:
                raise ValueError(
                    f"give the pqvae codec's {', '.join(sorted(given))} at the method's top "
                    "level, not in params"
                )
            if self.checkpoint is None:
                raise ValueError("the pqvae codec needs a checkpoint (semcomp pqvae train)")
            params |= {"checkpoint": self.checkpoint, "entropy_coder": self.entropy_coder}
        elif self.checkpoint is not None or "entropy_coder" in self.model_fields_set:
            raise ValueError(
                f"checkpoint and entropy_coder are the pqvae codec's; give the {self.codec} "
                "codec's parameters in params"
            )
        self._validated = validated_params(EMBEDDING_CODECS, self.codec, params, "params", info)
        if self.codec != "pqvae":
            self.params = self._validated.model_dump(mode="json")
        return self

    @property
    def codec_class(self) -> type:
        return EMBEDDING_CODECS.get(self.codec)

    @property
    def validated(self) -> PluginParams:
        """The codec's parameters, validated by its ``Params``."""
        return self._validated

    @property
    def clip(self) -> dict[str, str] | None:
        """The CLIP identity the codec compresses (``{"model": ..., "pretrained": ...}``), or
        ``None``: the study's first CLIP model."""
        return self.codec_class.clip(self._validated)

    @property
    def payload_codec(self) -> str:
        return self.codec_class.label(self._validated)

    def operating_point_labels(self) -> list[str]:
        return [self.codec_class.label(self._validated)]

    def describe(self) -> str:
        return self.codec_class.describe(self._validated)

    def _method_id(self) -> str:
        identity = self.codec_class.identity(self._validated)
        if self.codec == "pqvae":  # as before the family existed: studies keep their rows
            return content_key(
                "method", "embedding", identity["checkpoint_sha256"], identity["entropy_coder"]
            )
        return content_key("method", "embedding", self.codec, identity)


METHOD_KINDS = ("pixel", "textual", "external", "embedding")
UNION_TAGS.update(METHOD_KINDS)


def method_kind(data: Any) -> str:
    """Which kind a method table is: its ``kind``, else told by its keys."""
    if isinstance(data, dict):
        if "kind" in data:
            return str(data["kind"])
        if "captioner" in data:
            return "textual"
        if "folder" in data:
            return "external"
        if "checkpoint" in data:
            return "embedding"
        return "pixel"
    return getattr(data, "kind", "pixel")


MethodConfig = Annotated[
    Annotated[PixelMethod, Tag("pixel")]
    | Annotated[TextualMethod, Tag("textual")]
    | Annotated[ExternalMethod, Tag("external")]
    | Annotated[EmbeddingMethod, Tag("embedding")],
    Discriminator(method_kind),
]

__all__ = [
    "ANY_IMAGE_EXTENSION",
    "CAPTION_POINT",
    "METHOD_KINDS",
    "METHOD_PRESETS",
    "PATTERN_FIELDS",
    "RATE_SOURCES",
    "CaptionPoint",
    "ExternalMethod",
    "MethodConfig",
    "PixelMethod",
    "TextualMethod",
]
