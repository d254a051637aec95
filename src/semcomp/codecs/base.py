"""The codec contract: an image in, a payload with an exact rate out, and back.

Like CompressAI's ``compress``/``decompress`` pair, a codec turns an image into
the exact bytes that would be sent (:class:`Representation`) and turns those
bytes back into something to score. Rates are never estimated: ``rate_bits``
is ``8 * len(payload)`` for byte-aligned payloads.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from PIL import Image

from semcomp.params import PluginParams

TargetKind = Literal["quality", "reduction", "bytes", "bpp"]
#: The operating-point keys a method may give, in the order they are listed.
TARGET_KINDS: tuple[TargetKind, ...] = ("quality", "reduction", "bytes", "bpp")


#: Base for a codec's fixed parameters; unknown keys are errors.
CodecParams = PluginParams


@dataclass(frozen=True)
class OriginalFacts:
    """What a rate target is relative to: the original file's size and pixel count."""

    file_bytes: int
    pixels: int


@dataclass(frozen=True)
class OperatingPoint:
    """One target of a method: a setting (``quality``) or a rate target to meet.

    ``reduction = 0.9`` means the file shrinks by 90 % relative to the original
    file, as in the textual-transform paper; ``bpp`` is bits per original pixel.
    """

    kind: TargetKind
    value: float

    @property
    def label(self) -> str:
        if self.kind in ("quality", "bytes"):
            return f"{self.kind}={int(self.value)}"
        return f"{self.kind}={self.value:g}"

    def max_bytes(self, original: OriginalFacts) -> int | None:
        """The largest payload that meets this target, or None for a fixed setting."""
        if self.kind == "quality":
            return None
        if self.kind == "bytes":
            return int(self.value)
        if self.kind == "reduction":
            limit = (1.0 - self.value) * original.file_bytes
        else:
            limit = self.value * original.pixels / 8
        # round first so that 0.1 * 10_000 = 999.9999999 still allows 1000 bytes
        return math.floor(round(limit, 6))

    def achieved(self, payload_bytes: int, original: OriginalFacts) -> float:
        """The value of this target's quantity that a payload of this size reaches."""
        if self.kind == "reduction":
            return 1.0 - payload_bytes / original.file_bytes
        if self.kind == "bpp":
            return payload_bytes * 8 / original.pixels
        return float(payload_bytes)


@dataclass(frozen=True)
class Representation:
    """The bytes that would be sent, their exact rate, and how they were made."""

    payload: bytes
    rate_bits: int
    meta: dict[str, Any] = field(default_factory=dict)


class ImageCodec(ABC):
    """An image codec with operating points. Subclasses register in ``semcomp.codecs``."""

    #: registry name, e.g. ``"jpeg"``
    name: ClassVar[str]
    #: the codec's fixed parameters (validated from the method's ``params`` table)
    Params: ClassVar[type[CodecParams]]
    #: file suffix and media type of the payload when stored as an artifact
    suffix: ClassVar[str]
    media_type: ClassVar[str]
    #: which operating-point kinds this codec understands
    target_kinds: ClassVar[tuple[TargetKind, ...]] = TARGET_KINDS

    #: whether it runs a model that the encode and decode stages batch through the engine
    #: (it then has ``encode_batch(images, quality)`` and ``decode_batch(payloads, quality)``)
    batched: ClassVar[bool] = False
    #: the pip extra its dependencies come in (``semcomp.extras``); None: the base install
    extra: ClassVar[str | None] = None

    def __init__(self, params: CodecParams):
        self.params = params

    @classmethod
    def quality_range_for(cls, params: CodecParams) -> tuple[int, int] | None:
        """The qualities a method may ask for with these parameters (None: any)."""
        return getattr(cls, "quality_range", None)

    @abstractmethod
    def encode(
        self, image: Image.Image, points: list[OperatingPoint], original: OriginalFacts
    ) -> list[Representation | Exception]:
        """Encode ``image`` at every operating point.

        All points of one image are encoded together so a codec can share work
        between them. A point that cannot be met is returned as an exception
        (usually :class:`~semcomp.errors.TargetUnreachableError`) in its place.
        """

    @abstractmethod
    def decode(self, payload: bytes) -> Image.Image:
        """Decode a payload back to an RGB image."""
