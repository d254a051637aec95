"""CLIP embeddings and similarity, rate–distortion tables, statistics and figures.

``EMBEDDERS`` is the one table of image-embedder kinds (lazy, so naming one
does not import torch).
"""

from semcomp.registry import Registry

EMBEDDERS = Registry(
    "embedder", entry_point_group="semcomp.embedders", base="semcomp.analysis.embedder:Embedder"
)
EMBEDDERS.register("open_clip", "semcomp.analysis.clip:OpenClipEmbedder")

__all__ = ["EMBEDDERS"]
