"""Anything with a rate. ``CODECS`` is the one table of codec names."""

from semcomp.codecs.base import (
    ImageCodec,
    OperatingPoint,
    OriginalFacts,
    Representation,
)
from semcomp.registry import Registry

CODECS = Registry("codec", entry_point_group="semcomp.codecs")
CODECS.register("jpeg", "semcomp.codecs.jpeg:JpegCodec")
CODECS.register("webp", "semcomp.codecs.webp:WebpCodec")

__all__ = ["CODECS", "ImageCodec", "OperatingPoint", "OriginalFacts", "Representation"]
