"""Lossy WebP through Pillow (libwebp)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from semcomp.codecs.base import CodecParams
from semcomp.codecs.pixel import PillowCodec


class WebpParams(CodecParams):
    #: libwebp effort, 0 (fast) to 6 (slowest, smallest)
    method: int = Field(default=4, ge=0, le=6)


class WebpCodec(PillowCodec):
    name = "webp"
    Params = WebpParams
    suffix = ".webp"
    media_type = "image/webp"
    pillow_format = "WEBP"
    max_side = 16_383
    quality_range = (0, 100)

    def save_options(self) -> dict[str, Any]:
        params: WebpParams = self.params  # type: ignore[assignment]
        return {"method": params.method, "lossless": False, "exact": False}
