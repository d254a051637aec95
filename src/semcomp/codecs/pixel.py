"""Pillow-backed pixel codecs and the rate-target search they share.

A rate target (``reduction``, ``bytes``, ``bpp``) is met by binary search over
the codec's integer quality range for the *highest* quality whose file is no
larger than the target. 101 qualities need at most ⌈log2 101⌉ = 7 encodes;
encodes are cached per image, so several targets on one image share them.
File size is not strictly monotone in quality, so the search may miss a
higher quality that also fits; the quality it returns always meets the target.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

from PIL import Image

from semcomp.codecs.base import ImageCodec, OperatingPoint, OriginalFacts, Representation
from semcomp.errors import ImageError, TargetUnreachableError


class QualitySearch:
    """Encodes of one image at integer qualities, memoised."""

    def __init__(self, codec: PillowCodec, image: Image.Image):
        self.codec = codec
        self.image = image
        self.encoded: dict[int, bytes] = {}

    def at(self, quality: int) -> bytes:
        if quality not in self.encoded:
            self.encoded[quality] = self.codec.encode_at_quality(self.image, quality)
        return self.encoded[quality]

    def highest_quality_within(self, max_bytes: int) -> tuple[int | None, int]:
        """Highest quality whose payload fits in ``max_bytes`` (None if none), and encodes spent."""
        before = len(self.encoded)
        low, high = self.codec.quality_range
        best: int | None = None
        while low <= high:
            middle = (low + high) // 2
            if len(self.at(middle)) <= max_bytes:
                best, low = middle, middle + 1
            else:
                high = middle - 1
        return best, len(self.encoded) - before


class PillowCodec(ImageCodec):
    """A codec that Pillow writes with an integer ``quality``."""

    pillow_format: ClassVar[str]
    quality_range: ClassVar[tuple[int, int]]
    #: the longest side, in pixels, the format can hold (None: no limit of its own)
    max_side: ClassVar[int | None] = None

    def save_options(self) -> dict[str, Any]:
        """Pillow ``save`` keyword arguments other than quality."""
        return {}

    def encode_at_quality(self, image: Image.Image, quality: int) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=self.pillow_format, quality=quality, **self.save_options())
        return buffer.getvalue()

    def encode(
        self, image: Image.Image, points: list[OperatingPoint], original: OriginalFacts
    ) -> list[Representation | Exception]:
        if self.max_side is not None and max(image.size) > self.max_side:
            refused = ImageError(
                f"{self.pillow_format} cannot hold a side over {self.max_side:,} px; "
                f"this image is {image.width:,}×{image.height:,}"
            )
            return [refused for _ in points]
        search = QualitySearch(self, image)
        results: list[Representation | Exception] = []
        for point in points:
            max_bytes = point.max_bytes(original)
            if max_bytes is None:
                quality = int(point.value)
                encodes = int(quality not in search.encoded)
            else:
                quality, encodes = search.highest_quality_within(max_bytes)
            if quality is None:
                lowest = self.quality_range[0]
                smallest = len(search.at(lowest))
                results.append(
                    TargetUnreachableError(
                        f"{self.name}: no quality meets {point.label} ({max_bytes:,} bytes); "
                        f"the smallest file, at quality {lowest}, is {smallest:,} bytes "
                        f"({point.kind} {point.achieved(smallest, original):.4g})",
                        closest={
                            "quality": lowest,
                            "bytes": smallest,
                            "achieved": point.achieved(smallest, original),
                            "max_bytes": max_bytes,
                        },
                    )
                )
                continue
            payload = search.at(quality)
            meta: dict[str, Any] = {"quality": quality, "encodes": encodes}
            if max_bytes is not None:
                meta |= {"max_bytes": max_bytes, "achieved": point.achieved(len(payload), original)}
            results.append(Representation(payload=payload, rate_bits=8 * len(payload), meta=meta))
        return results

    def decode(self, payload: bytes) -> Image.Image:
        with Image.open(io.BytesIO(payload)) as image:
            return image.convert("RGB")
