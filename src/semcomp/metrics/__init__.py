"""Metrics: how much of an original survives in a candidate. One plugin family.

``METRICS`` is the one table of metric backends (entry-point group
``semcomp.metrics``; lazy, so naming one does not import torch); each backend
subclasses one of the kinds in :mod:`semcomp.metrics.base`. ``EMBEDDERS`` is
the table of image embedders (CLIP through open_clip), which the ``clip``
metric and the embedding codecs share.
"""

from semcomp.registry import Registry

METRICS = Registry(
    "metric", entry_point_group="semcomp.metrics", base="semcomp.metrics.base:Metric"
)
METRICS.register("clip", "semcomp.metrics.clip:ClipMetric")
METRICS.register("psnr", "semcomp.metrics.psnr:PsnrMetric")
METRICS.register("ms-ssim", "semcomp.metrics.msssim:MsSsimMetric")
METRICS.register("lpips", "semcomp.metrics.lpips:Lpips")
METRICS.register("dists", "semcomp.metrics.dists:Dists")
METRICS.register("dreamsim", "semcomp.metrics.dreamsim:DreamSim")
METRICS.register("fid", "semcomp.metrics.fid:Fid")
METRICS.register("kid", "semcomp.metrics.kid:Kid")
METRICS.register("zero-shot", "semcomp.metrics.zeroshot:ZeroShotMetric")

EMBEDDERS = Registry(
    "embedder", entry_point_group="semcomp.embedders", base="semcomp.metrics.embedder:Embedder"
)
EMBEDDERS.register("open_clip", "semcomp.metrics.clip:OpenClipEmbedder")

__all__ = ["EMBEDDERS", "METRICS"]
