"""Zero-shot classification with (decoded) image embeddings against class text embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
