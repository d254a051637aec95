"""Semantic similarity between an original and a candidate from their CLIP embeddings.

The textual-transform paper reports CLIP cosine similarity "scaled to lie
between 0 and 1"; we store both the raw cosine and (cos + 1) / 2, and each
metric's name records the model and the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semcomp.config import EmbedderConfig


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
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denominator) if denominator > 0 else 0.0
