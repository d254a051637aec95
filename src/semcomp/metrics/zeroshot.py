"""Zero-shot classification with (decoded) image embeddings against class text embeddings,
and the ``zero-shot`` metric: accuracy of CLIP classifying each candidate among the
study's classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import PrivateAttr, ValidationInfo, field_validator, model_validator

from semcomp.images import DEFAULT_MAX_PIXELS
from semcomp.metrics.base import ScoreSpec, TaskMetric
from semcomp.metrics.embedder import GuardedPreprocess, on_preprocessed
from semcomp.params import PluginParams


@dataclass(frozen=True)
class ZeroShotResult:
    top1: float
    top5: float
    classes: int


def zero_shot(
    image_embeddings: np.ndarray,
    labels: np.ndarray,
    text_embeddings: np.ndarray,
    classes: np.ndarray | None = None,
) -> ZeroShotResult:
    """Top-1/top-5 accuracy of nearest class prompts (cosine), among ``classes`` only.

    With a class split, only the held-out classes compete (a 200-way task for
    the paper's ImageNet split).
    """
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    text = text_embeddings[classes]
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    images = image_embeddings / np.maximum(
        np.linalg.norm(image_embeddings, axis=1, keepdims=True), 1e-12
    )
    logits = images @ text.T
    k = min(5, len(classes))
    top = np.argsort(-logits, axis=1)[:, :k]
    predicted = classes[top]
    top1 = float(np.mean(predicted[:, 0] == labels))
    top5 = float(np.mean((predicted == labels[:, None]).any(axis=1)))
    return ZeroShotResult(top1=top1, top5=top5, classes=len(classes))


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1)))


def top_k_hits(
    image_embeddings: np.ndarray, labels: np.ndarray, text_embeddings: np.ndarray, k: int
) -> np.ndarray:
    """Per image, whether its label (a row index of ``text_embeddings``) is among the ``k``
    classes whose text embeddings are nearest (cosine); a boolean array."""
    images = image_embeddings / np.maximum(
        np.linalg.norm(image_embeddings, axis=1, keepdims=True), 1e-12
    )
    text = text_embeddings / np.maximum(
        np.linalg.norm(text_embeddings, axis=1, keepdims=True), 1e-12
    )
    top = np.argsort(-(images @ text.T), axis=1, kind="stable")[:, :k]
    return (top == np.asarray(labels)[:, None]).any(axis=1)


#: A subset of CLIP's 80 ImageNet prompt templates (Radford et al. 2021): the seven its
#: authors found best on ImageNet, plus the plain "a photo of a {}."
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def class_text(name: str) -> str:
    """A class name as prompts say it: ``single_object`` → ``single object``."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())


class ZeroShotParams(PluginParams):
    """The CLIP model (as ``[[similarity.models]]`` names one), prompt templates, classes."""

    #: an open_clip model name, ``hf-hub:org/repo``, ``local-dir:/path``, or ``tiny``
    model: str = "ViT-L-14-336"
    pretrained: str = "openai"
    resize_mode: Literal["shortest", "longest", "squash"] | None = None
    interpolation: Literal["bicubic", "bilinear", "nearest"] | None = None
    random_weights: bool = False
    #: each with one ``{}`` for the class name; a class's text embedding is the normalised
    #: mean over its prompts
    templates: tuple[str, ...] = PROMPT_TEMPLATES
    #: the classes that compete (empty: the classes of the study's originals, filled in by
    #: the score stage)
    classes: tuple[str, ...] = ()

    _clip: Any = PrivateAttr(default=None)

    @field_validator("templates")
    @classmethod
    def _one_slot(cls, templates: tuple[str, ...]) -> tuple[str, ...]:
        if not templates:
            raise ValueError("give at least one prompt template")
        for template in templates:
            if template.count("{}") != 1:
                raise ValueError(f"template {template!r} needs exactly one {{}} for the class")
        return templates

    @field_validator("classes")
    @classmethod
    def _distinct(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(classes)))

    @model_validator(mode="after")
    def _clip_model(self, info: ValidationInfo) -> ZeroShotParams:
        from semcomp.config import EmbedderConfig

        fields = ("model", "pretrained", "resize_mode", "interpolation", "random_weights")
        data = {name: getattr(self, name) for name in fields}
        self._clip = EmbedderConfig.model_validate(data, context=info.context)
        return self

    @property
    def clip(self) -> Any:
        """The CLIP model as an :class:`~semcomp.config.EmbedderConfig`."""
        return self._clip


class ZeroShotMetric(TaskMetric):
    """``zero-shot``: whether CLIP puts the candidate in its original's class, among the
    study's classes, with prompt-template text embeddings (1.0 or 0.0 per candidate: the
    mean is the top-1 accuracy; top-5 too with five classes or more). The decoded
    embeddings of an embedding codec of the same CLIP model are classified directly."""

    extra = "clip"
    name = "zero-shot"
    Params = ZeroShotParams
    default_batch_size = 32

    def __init__(
        self, params: ZeroShotParams, *, device: str = "auto", batch_size: int | None = None
    ):
        from semcomp.metrics import EMBEDDERS

        super().__init__(params, device=device, batch_size=batch_size)
        if not params.classes:
            raise ValueError("zero-shot needs its classes (TaskMetric.with_classes)")
        clip = params.clip
        self.embedder = EMBEDDERS.get(clip.kind)(clip, device=device, batch_size=self.batch_size)
        #: one image → the model's input, model-free: the score stage runs it while loading
        self.preprocess = self.embedder.preprocess
        self.preprocess_cfg = getattr(self.embedder, "preprocess_cfg", {})
        templates = params.templates
        prompts = [t.format(class_text(name)) for name in params.classes for t in templates]
        text = self.embedder.embed_texts(prompts).reshape(len(params.classes), len(templates), -1)
        text = text / np.maximum(np.linalg.norm(text, axis=2, keepdims=True), 1e-12)
        self.class_embeddings = text.mean(axis=1)
        self.index = {name: i for i, name in enumerate(params.classes)}
        #: the score keys each prediction fills (top-1, and top-5 with five classes or more)
        self.keys = [spec.key for spec in self.scores(params)]

    @classmethod
    def with_classes(  # type: ignore[override]
        cls, params: ZeroShotParams, classes: Sequence[str], templates: Sequence[str] = ()
    ) -> ZeroShotParams:
        """The study's classes, unless study.toml fixes them; a labelled dataset's own
        templates, unless study.toml gives some."""
        update: dict[str, Any] = {}
        if not params.classes:
            update["classes"] = tuple(sorted(set(classes)))
        if templates and "templates" not in params.model_fields_set:
            update["templates"] = tuple(templates)
        return params.model_copy(update=update) if update else params

    @classmethod
    def scores(cls, params: ZeroShotParams) -> list[ScoreSpec]:  # type: ignore[override]
        from semcomp.metrics.clip import pretty_model

        model, n = pretty_model(params.clip), len(params.classes)
        among = f"among {n} classes" if n else "among the study's classes"
        specs = []
        for k in (1, 5) if n >= 5 else (1,):
            specs.append(
                ScoreSpec(
                    key=f"zero-shot top-{k}[{params.clip.label}]",
                    display=f"Zero-shot top-{k} accuracy, CLIP {model}",
                    higher_is_better=True,
                    low=0.0,
                    high=1.0,
                    description=(
                        f"1 when the original's class is among CLIP {model}'s {k} nearest class "
                        f"prompts ({len(params.templates)} templates) {among}, else 0: its "
                        "mean is the accuracy"
                    ),
                )
            )
        return specs

    @classmethod
    def identity_of(cls, params: ZeroShotParams) -> dict[str, Any]:  # type: ignore[override]
        from semcomp.metrics.clip import ClipMetric

        clip = ClipMetric.identity_of(params.clip)
        clip.pop("metric")
        return {
            "metric": cls.name,
            "clip": clip,
            "templates": list(params.templates),
            "classes": list(params.classes),
            "class_text": "underscores and hyphens read as spaces",
        }

    @classmethod
    def embedders(cls, params: ZeroShotParams) -> list[Any]:  # type: ignore[override]
        return [params.clip]

    @classmethod
    def weights_problem(cls, params: ZeroShotParams, reachable: Any) -> str | None:  # type: ignore[override]
        from semcomp.metrics.clip import weights_problem

        return weights_problem(params.clip, reachable)

    @classmethod
    def embedder_for_vectors(cls, params: ZeroShotParams) -> str | None:  # type: ignore[override]
        return str(params.clip.embedder_id)

    @property
    def random_weights(self) -> bool:
        return bool(self.params.clip.random_weights)

    @property
    def torch_device(self) -> str:
        return str(self.embedder.device)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights": self.embedder.weights}

    def predict(
        self, images: Sequence[Any], labels: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[dict[str, float] | Exception]:
        """Through the embed stage's size guard: an image whose CLIP resize would exceed
        ``max_pixels`` (an extreme panorama) is an :class:`~semcomp.errors.ImageError` in
        its place, not an allocation of gigabytes."""
        guard = GuardedPreprocess(self.preprocess, self.preprocess_cfg, max_pixels)
        return on_preprocessed(
            guard,
            images,
            lambda pixels, kept: self.predict_preprocessed(pixels, [labels[i] for i in kept]),
        )

    def predict_preprocessed(self, pixels: Any, labels: Sequence[str]) -> list[dict[str, float]]:
        """:meth:`predict` of images already transformed by :attr:`preprocess` (a list of
        3×H×W tensors or one N×3×H×W tensor)."""
        return self.predict_embeddings(self.embedder.embed_preprocessed(pixels), labels)

    def predict_embeddings(
        self, vectors: np.ndarray, labels: Sequence[str]
    ) -> list[dict[str, float]]:
        unknown = sorted({label for label in labels if label not in self.index})
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {self.params.classes}")
        truth = np.array([self.index[label] for label in labels])
        hits = [top_k_hits(np.asarray(vectors), truth, self.class_embeddings, k) for k in (1, 5)]
        return [
            {key: float(hit[i]) for key, hit in zip(self.keys, hits, strict=False)}
            for i in range(len(labels))
        ]

    def close(self) -> None:
        self.embedder.close()
