"""Baseline JPEG through Pillow (libjpeg), the textual-transform paper's pixel codec."""

from __future__ import annotations

from typing import Any, Literal

from semcomp.codecs.base import CodecParams
from semcomp.codecs.pixel import PillowCodec


class JpegParams(CodecParams):
    #: chroma subsampling; 4:2:0 is what Pillow and most cameras write
    subsampling: Literal["4:4:4", "4:2:2", "4:2:0"] = "4:2:0"
    #: optimise Huffman tables (smaller files, same pixels)
    optimize: bool = False
    progressive: bool = False


class JpegCodec(PillowCodec):
    name = "jpeg"
    Params = JpegParams
    suffix = ".jpg"
    media_type = "image/jpeg"
    pillow_format = "JPEG"
    max_side = 65_500
    quality_range = (1, 100)

    def save_options(self) -> dict[str, Any]:
        params: JpegParams = self.params  # type: ignore[assignment]
        return {
            "subsampling": params.subsampling,
            "optimize": params.optimize,
            "progressive": params.progressive,
        }
