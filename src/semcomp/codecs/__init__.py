"""Anything with a rate. ``CODECS`` (image codecs) and ``TEXT_CODECS`` (caption payloads)
are the one table of names of each family."""

from semcomp.codecs.base import (
    ImageCodec,
    OperatingPoint,
    OriginalFacts,
    Representation,
)
from semcomp.registry import Registry

CODECS = Registry(
    "codec", entry_point_group="semcomp.codecs", base="semcomp.codecs.base:ImageCodec"
)
CODECS.register("jpeg", "semcomp.codecs.jpeg:JpegCodec")
CODECS.register("webp", "semcomp.codecs.webp:WebpCodec")
CODECS.register("compressai", "semcomp.codecs.learned:CompressaiCodec")

TEXT_CODECS = Registry(
    "text codec", entry_point_group="semcomp.text_codecs", base="semcomp.codecs.text:TextCodec"
)
TEXT_CODECS.register("utf8", "semcomp.codecs.text:Utf8Codec")
TEXT_CODECS.register("zlib", "semcomp.codecs.text:ZlibCodec")
TEXT_CODECS.register("brotli", "semcomp.codecs.text:BrotliCodec")
TEXT_CODECS.register("zstd", "semcomp.codecs.text:ZstdCodec")

__all__ = [
    "CODECS",
    "TEXT_CODECS",
    "ImageCodec",
    "OperatingPoint",
    "OriginalFacts",
    "Representation",
]
