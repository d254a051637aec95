"""``study.toml``: what a study runs, validated on load.

Every section forbids unknown keys; a bad key or value is a
:class:`~semcomp.errors.ConfigError` that names the key and the file.
Relative paths are relative to the study folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from semcomp.errors import ConfigError
from semcomp.filenames import path_text, text_path
from semcomp.images import DEFAULT_MAX_PIXELS, SourceImage, SourceProblem, find_sources
from semcomp.methods import (
    EmbeddingMethod,
    ExternalMethod,
    MethodConfig,
    PixelMethod,
    TextualMethod,
)
from semcomp.metrics import EMBEDDERS, METRICS
from semcomp.params import LOCAL_DIR, TINY_FOLDERS, TINY_MODEL, StudyPath, identity_in_study
from semcomp.store import content_key
from semcomp.validation import (
    UNION_TAGS,
    Section,
    describe_errors,
    registered,
    validated_params,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STUDY_FILE = "study.toml"
DEFAULT_CLIP_MODEL = "ViT-L-14-336"
DEFAULT_CLIP_PRETRAINED = "openai"
#: the label of ``model = "tiny"`` (the demo's)
TINY_CLIP_NAME = "tiny-clip-random"


class DatasetSource(Section):
    """``[images.source]`` as a table: the originals of a named labelled dataset
    (``dataset = "oxford-pets"``, ...: each image's class is its category and label) or of
    a codec image set (``kodak``, ``clic2020-professional-valid``, ``div2k-valid``: their
    known file lists checked), read from ``root`` (see :mod:`semcomp.datasets.originals`)."""

    dataset: str
    #: the folder that holds it, in the layout its users have
    root: StudyPath
    #: default: the dataset's official evaluation split
    split: str | None = None
    #: at most this many images of each class (the first ones, in the dataset's order)
    per_class: int | None = Field(default=None, gt=0)
    #: at most this many images in all, classes taken in turn (a stratified subset)
    limit: int | None = Field(default=None, gt=0)
    #: a Hugging Face copy's label column, when it is not ``label``
    label_column: str | None = None

    _listed: Any = PrivateAttr(default=None)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, dataset: str) -> str:
        from semcomp.datasets.originals import known_dataset

        try:
            return known_dataset(dataset)
        except ConfigError as exc:
            raise ValueError(
                f"{exc} (or an image set: kodak, clic2020-professional-valid, div2k-valid)"
            ) from None

    @model_validator(mode="after")
    def _options_fit(self) -> DatasetSource:
        from semcomp.datasets.originals import is_image_set

        if is_image_set(self.dataset):
            given = [k for k in ("split", "per_class", "label_column") if getattr(self, k)]
            if given:
                raise ValueError(
                    f"{self.dataset} is an image set without classes or splits: "
                    f"{', '.join(given)} do not apply (limit does)"
                )
        return self

    def originals(self) -> Any:
        """The :class:`~semcomp.datasets.originals.DatasetOriginals` (listed once)."""
        from semcomp.datasets.originals import dataset_originals

        if self._listed is None:
            self._listed = dataset_originals(
                self.dataset,
                self.root,
                split=self.split,
                per_class=self.per_class,
                limit=self.limit,
                label_column=self.label_column,
            )
        return self._listed

    def __str__(self) -> str:
        split = f" {self.split}" if self.split else ""
        return f"{self.dataset}{split} at {self.root}"


#: the kinds of ``[images] source`` (left out of error messages' key paths)
SOURCE_TAGS = ("source-path", "source-dataset")
UNION_TAGS.update(SOURCE_TAGS)


class ImagesConfig(Section):
    #: a folder (recursive; category = first-level subfolder), a CSV manifest, or a table
    #: naming a dataset (:class:`DatasetSource`)
    source: Annotated[
        Annotated[StudyPath, Tag(SOURCE_TAGS[0])] | Annotated[DatasetSource, Tag(SOURCE_TAGS[1])],
        Discriminator(
            lambda v: SOURCE_TAGS[isinstance(v, dict | DatasetSource)],
        ),
    ]
    #: if given, every image's category must be one of these
    categories: list[str] | None = None
    #: decompression-bomb guard
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)

    @property
    def dataset(self) -> DatasetSource | None:
        """The dataset the originals come from, when ``source`` names one."""
        return self.source if isinstance(self.source, DatasetSource) else None

    def find_sources(self) -> Iterator[SourceImage | SourceProblem]:
        """The images ``source`` names: a folder's, a manifest's or a dataset's; a dataset
        that cannot be read at all is one problem."""
        if self.dataset is None:
            yield from find_sources(self.source)
            return
        try:
            yield from self.dataset.originals().sources
        except ConfigError as exc:
            yield SourceProblem(item=str(self.dataset.root), reason=str(exc))

    def source_exists(self) -> bool:
        """Whether the folder or manifest (or the dataset's root) is there."""
        path = self.source if self.dataset is None else self.dataset.root
        return path.is_dir() or path.is_file()


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


class MetricConfig(Section):
    """A ``[[metrics]]`` entry: ``metric = "psnr"`` (a name in ``semcomp.metrics.METRICS``),
    an optional ``name`` (the label its score keys carry instead of the default), ``device``
    and ``batch_size`` (default: ``[similarity]``'s), and the metric's own parameters,
    validated by its ``Params`` model (``[[similarity.models]]`` entries are ``clip`` ones).
    """

    metric: str
    name: str | None = Field(default=None, min_length=1)
    device: str | None = None
    batch_size: int | None = Field(default=None, gt=0)
    #: the metric's parameters: every other key of the entry (validated, defaults filled in)
    params: dict[str, Any] = Field(default_factory=dict)

    _validated: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _other_keys_are_params(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = {"metric", "name", "device", "batch_size"}
        params = {key: value for key, value in data.items() if key not in own}
        if data.get("metric") == "clip" and data.get("name") is not None:
            params["name"] = data["name"]  # a CLIP model's name is its label already
        return {key: value for key, value in data.items() if key in own} | {"params": params}

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        return registered(METRICS, metric)

    @model_validator(mode="after")
    def _validate_params(self, info: ValidationInfo) -> MetricConfig:
        self._validated = validated_params(METRICS, self.metric, self.params, "", info)
        self.params = self._validated.model_dump(mode="json")
        return self

    @classmethod
    def for_embedder(cls, embedder: EmbedderConfig) -> MetricConfig:
        """The ``clip`` metric of a ``[[similarity.models]]`` entry."""
        config = cls.model_construct(
            metric="clip", name=embedder.name, params=embedder.model_dump(mode="json")
        )
        config._validated = embedder
        return config

    @classmethod
    def of(cls, metric: str, validated: Any, *, device: str, batch_size: int) -> MetricConfig:
        """A metric that is no ``[[metrics]]`` entry (a best-of-N ``select`` with its own
        ``params``), from its validated parameters, with a device and batch size."""
        if metric == "clip":
            config = cls.for_embedder(validated)
        else:
            config = cls.model_construct(
                metric=metric, name=None, params=validated.model_dump(mode="json")
            )
            config._validated = validated
        return config.model_copy(update={"device": device, "batch_size": batch_size})

    @property
    def metric_class(self) -> Any:
        """The metric's class (imports its module, not its model's libraries)."""
        return METRICS.get(self.metric)

    @property
    def kind(self) -> str:
        return str(self.metric_class.kind)

    @property
    def validated(self) -> Any:
        """The parameters as the metric's ``Params`` model (an :class:`EmbedderConfig` for
        ``clip``)."""
        return self._validated

    @property
    def label(self) -> str:
        """How failures, progress and score keys name this entry: ``name``, else the CLIP
        model's label for ``clip``, else the metric's name."""
        if self.metric == "clip":
            return str(self._validated.label)
        return self.name or self.metric

    @property
    def random_weights(self) -> bool:
        """Whether it runs random-weight models (its numbers are then not meaningful)."""
        embedders = self.metric_class.embedders(self._validated)
        own = bool(getattr(self._validated, "random_weights", False))
        return own or any(embedder.random_weights for embedder in embedders)

    def scores(self, params: Any = None) -> list[Any]:
        """Its :class:`~semcomp.metrics.base.ScoreSpec` list for ``params`` (default: its
        validated ones); with a ``name``, each key's bracketed part is the name."""
        from dataclasses import replace

        specs = self.metric_class.scores(self._validated if params is None else params)
        if self.metric == "clip" or not self.name:
            return specs
        return [
            replace(
                spec,
                key=f"{spec.key.partition('[')[0]}[{self.name}]",
                display=f"{spec.display} [{self.name}]",
            )
            for spec in specs
        ]

    def identity(self, params: Any = None) -> dict[str, Any]:
        return self.metric_class.identity_of(self._validated if params is None else params)

    @property
    def embedder_id(self) -> str:
        """The store key of an embedding metric's cached vectors."""
        return str(self.metric_class.embedder_id(self._validated))


class StudyConfig(Section):
    name: str = "study"
    description: str = ""
    seed: int = 0
    images: ImagesConfig
    methods: list[MethodConfig] = Field(min_length=1)
    similarity: SimilarityConfig = Field(default_factory=SimilarityConfig)
    #: ``[[metrics]]`` entries; with any and no ``[[similarity.models]]``, the default CLIP
    #: model is not added
    metrics: list[MetricConfig] = Field(default_factory=list)

    #: the validation context: the study folder and, for a study made before paths were
    #: stored relative to it, the folder its identities were made in
    _context: dict[str, Any] = PrivateAttr(default_factory=dict)
    _metric_entries: list[MetricConfig] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _embedding_codecs_match_a_clip(self, info: ValidationInfo) -> StudyConfig:
        self._context = dict(info.context or {})
        self._metric_entries = self._merged_metrics()
        for method in self.methods:
            if not isinstance(method, EmbeddingMethod):
                continue
            if self.embedder_for(method) is None:
                have = [f"{m.model}/{m.pretrained}" for m in self.clip_models]
                if method.clip is None:
                    raise ValueError(
                        f"method {method.name!r}: an embedding codec compresses a CLIP "
                        "model's embeddings, and the study has no clip metric"
                    )
                raise ValueError(
                    f"method {method.name!r}: its checkpoint compresses embeddings of CLIP "
                    f"{method.clip.get('model')}/{method.clip.get('pretrained')}, which is not one "
                    f"of the similarity models {have}; add it to [[similarity.models]]"
                )
        return self

    @model_validator(mode="after")
    def _select_with_study_metrics(self) -> StudyConfig:
        """Each best-of-N ``select`` scores with the study's metric (see :meth:`select_metric`)."""
        for method in self.methods:
            select = getattr(method, "select", None)
            if select is None:
                continue
            try:
                metric = self.select_metric(select)
                select.use(metric, identity_in_study(metric.identity(), self._context))
            except ValueError as exc:
                raise ValueError(f"method {method.name!r}: select: {exc}") from None
            method.__dict__.pop("method_id", None)  # its identity holds the metric's
        return self

    def select_metric(self, select: Any) -> MetricConfig:
        """The metric a best-of-N ``select`` scores with: without ``params``, the study's
        entry of metric ``by`` (``by = "clip"``: the configured CLIP model; with several
        entries, the one that writes ``score``), with its device and batch size; else (or
        when the study has no entry of it) ``by`` with ``params`` (its defaults when none
        are given) on ``[similarity]``'s device and batch size."""
        if not select.params_given:
            entries = [entry for entry in self._metric_entries if entry.metric == select.by]
            if select.score is not None:
                entries = [
                    entry
                    for entry in entries
                    if select.score in {spec.key for spec in entry.scores()}
                ]
            if len(entries) > 1:
                keys = [entry.scores()[0].key for entry in entries]
                raise ValueError(
                    f"the study has {len(entries)} {select.by!r} metrics "
                    f"({', '.join(entry.label for entry in entries)}): name the deciding one "
                    f"with score (e.g. {', '.join(repr(key) for key in keys)})"
                )
            if entries:
                return entries[0]
        return MetricConfig.of(
            select.by,
            select.metric_params,
            device=self.similarity.device,
            batch_size=self.similarity.batch_size,
        )

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

    def _merged_metrics(self) -> list[MetricConfig]:
        """``[[similarity.models]]`` as ``clip`` metrics, then ``[[metrics]]``, with device and
        batch size filled in; identical CLIP entries are one; score keys must be distinct."""
        similarity = self.similarity
        entries: list[MetricConfig] = []
        if "models" in similarity.model_fields_set or not self.metrics:
            entries += [MetricConfig.for_embedder(model) for model in similarity.models]
        entries += self.metrics
        merged: list[MetricConfig] = []
        owners: dict[str, str] = {}
        clip_labels: dict[str, str] = {}
        for entry in entries:
            if entry.metric == "clip":
                seen = clip_labels.get(entry.label)
                if seen == entry.embedder_id:
                    continue  # in [[similarity.models]] and in [[metrics]]: one metric
                if seen is not None:
                    raise ValueError(
                        f"two CLIP models are labelled {entry.label!r}: give each a name"
                    )
                clip_labels[entry.label] = entry.embedder_id
            for spec in entry.scores():
                if spec.key in owners:
                    raise ValueError(
                        f"metrics {owners[spec.key]!r} and {entry.label!r} both write the score "
                        f"{spec.key!r}: give one of them a name"
                    )
                owners[spec.key] = entry.label
            merged.append(
                entry.model_copy(
                    update={
                        "device": entry.device or similarity.device,
                        "batch_size": entry.batch_size or similarity.batch_size,
                    }
                )
            )
        return merged

    @property
    def metric_entries(self) -> list[MetricConfig]:
        """Every configured metric in study order (``clip`` ones from ``[[similarity.models]]``
        first), each with its class (:attr:`MetricConfig.metric_class`), validated params
        (:attr:`MetricConfig.validated`), device and batch size."""
        return list(self._metric_entries)

    @property
    def clip_models(self) -> list[EmbedderConfig]:
        """The CLIP models of the ``clip`` metrics, one per embedder identity."""
        models: dict[str, EmbedderConfig] = {}
        for entry in self._metric_entries:
            if entry.metric == "clip":
                models.setdefault(entry.embedder_id, entry.validated)
        return list(models.values())

    def embedder_for(self, method: EmbeddingMethod) -> EmbedderConfig | None:
        """The similarity model whose embeddings ``method``'s codec compresses (a codec made
        for any CLIP model: the study's first)."""
        clip = method.clip
        if clip is None:
            return self.clip_models[0] if self.clip_models else None
        for model in self.clip_models:
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
    "DatasetSource",
    "EmbedderConfig",
    "ExternalMethod",
    "ImagesConfig",
    "MethodConfig",
    "MetricConfig",
    "PixelMethod",
    "SimilarityConfig",
    "StudyConfig",
    "TextualMethod",
    "load_config",
    "parse_config",
]
