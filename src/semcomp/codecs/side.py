"""Side information a textual method sends with its caption: a thumbnail or an edge sketch.

``side = "thumbnail"``: the original downscaled to a longest side of ``size`` pixels
and coded with a pixel codec (``jpeg`` or ``webp``) at a ``quality`` or within a
``bytes`` budget (the pixel codecs' own quality search). ``side = "edges"``: Canny
edges (OpenCV) of the original downscaled to ``size``, coded losslessly as a
bilevel image (1-bit PNG, or lossless WebP). ``side = "hed"``: an HED sketch
(:mod:`semcomp.codecs.hed`, from a ``weights`` file) of the original at ``size``,
thresholded and coded the same way. Each ``size`` is an operating point.

The payload sent is one container, every byte of which counts in the rate::

    byte 0    format version (1)
    varint    n: the caption payload's length in bytes (LEB128: 7 bits a byte,
              least significant first, high bit set on every byte but the last)
    n bytes   the caption payload (the method's text codec)
    the rest  the side payload (a JPEG/WebP file, or a 1-bit PNG / lossless WebP)

The header is the version byte and the varint: 2 bytes for captions up to 127
bytes, 3 up to 16,383. The side payload's kind is not sent: it is the method's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import Field, field_validator, model_validator

from semcomp.codecs.varint import read_varint, varint
from semcomp.errors import ConfigError
from semcomp.params import PluginParams, StudyPath

#: the container format this module writes (its first byte)
CONTAINER_VERSION = 1
#: what ``side`` may be
SIDE_KINDS = ("thumbnail", "edges", "hed")
#: the package the edge detector needs
EDGES_PACKAGE = "opencv-python-headless"


@dataclass(frozen=True)
class Container:
    """A container's parts: every byte of the payload is in exactly one of them."""

    caption: bytes
    side: bytes
    header_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + len(self.caption) + len(self.side)


def pack(caption: bytes, side: bytes) -> bytes:
    """The container of a caption payload and a side payload (format in the module doc)."""
    return bytes([CONTAINER_VERSION]) + varint(len(caption)) + caption + side


def unpack(payload: bytes) -> Container:
    """A container's parts; a ValueError names what is wrong with a malformed one."""
    if not payload:
        raise ValueError("the container is empty")
    if payload[0] != CONTAINER_VERSION:
        raise ValueError(
            f"container version {payload[0]} is not {CONTAINER_VERSION}, the one this reads"
        )
    length, start = read_varint(payload, 1, "the container ends inside a length")
    if start + length > len(payload):
        raise ValueError(
            f"the caption's length ({length} bytes) runs past the container's end "
            f"({len(payload) - start} bytes left)"
        )
    return Container(
        caption=payload[start : start + length], side=payload[start + length :], header_bytes=start
    )


class SideParams(PluginParams):
    #: longest side in pixels, each an operating point (never above the original's)
    size: list[int] = Field(min_length=1)

    @field_validator("size")
    @classmethod
    def _sizes(cls, values: list[int]) -> list[int]:
        for value in values:
            if value < 8:
                raise ValueError(f"size {value} is below 8 pixels")
        if len(set(values)) != len(values):
            raise ValueError(f"sizes repeat: {values}")
        return values


class ThumbnailParams(SideParams):
    codec: Literal["jpeg", "webp"] = "webp"
    #: the codec's parameters (``subsampling`` for JPEG, ``method`` for WebP)
    codec_params: dict[str, Any] = Field(default_factory=dict)
    #: a fixed quality, or ...
    quality: int | None = None
    #: ... the highest quality whose file fits in this many bytes
    bytes: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> ThumbnailParams:
        if (self.quality is None) == (self.bytes is None):
            raise ValueError("a thumbnail needs one of quality or bytes")
        codec = pixel_codec(self.codec, self.codec_params)
        if self.quality is not None:
            low, high = codec.quality_range
            if not low <= self.quality <= high:
                raise ValueError(f"quality {self.quality} is outside {self.codec}'s {low}..{high}")
        return self


class EdgesParams(SideParams):
    #: Canny's hysteresis thresholds (on 0-255 grey levels)
    low: int = Field(default=100, ge=0)
    high: int = Field(default=200, ge=0)
    #: lossless bilevel format: 1-bit PNG or lossless WebP
    format: Literal["png", "webp"] = "png"

    @model_validator(mode="after")
    def _ordered(self) -> EdgesParams:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        return self


class HedParams(SideParams):
    #: the HED network's weights (safetensors or a PyTorch state dict; see semcomp.codecs.hed)
    weights: StudyPath
    #: sketch pixels: the soft edge map at or above this (0-1)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    #: lossless bilevel format: 1-bit PNG or lossless WebP
    format: Literal["png", "webp"] = "png"


SIDE_PARAMS: dict[str, type[SideParams]] = {
    "thumbnail": ThumbnailParams,
    "edges": EdgesParams,
    "hed": HedParams,
}


def pixel_codec(name: str, params: dict[str, Any]) -> Any:
    from semcomp.codecs import CODECS

    codec_class = CODECS.get(name)
    return codec_class(codec_class.Params.model_validate(params))


@dataclass(frozen=True)
class SidePayload:
    data: bytes
    suffix: str
    media_type: str
    meta: dict[str, Any] = field(default_factory=dict)


def scaled(image: Image.Image, size: int) -> Image.Image:
    """``image`` with its longest side ``size`` (aspect kept; never enlarged)."""
    longest = max(image.size)
    if longest <= size:
        return image.copy()
    factor = size / longest
    width = max(1, round(image.width * factor))
    height = max(1, round(image.height * factor))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def require_edges_backend() -> None:
    """A ConfigError naming the package when OpenCV is not installed."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise ConfigError(
            f'side = "edges" needs {EDGES_PACKAGE}: pip install "semcomp[side]"'
        ) from None


def canny_edges(image: Image.Image, low: int, high: int) -> Image.Image:
    """Canny edges of ``image`` as a bilevel (mode ``1``) image: edges white."""
    import cv2
    import numpy as np

    grey = np.ascontiguousarray(np.asarray(image.convert("L")))
    edges = cv2.Canny(grey, low, high)
    return Image.fromarray(edges).convert("1", dither=Image.Dither.NONE)


def bilevel_payload(sketch: Image.Image, file_format: str, meta: dict[str, Any]) -> SidePayload:
    """A bilevel (mode ``1``) sketch coded losslessly: 1-bit PNG or lossless WebP."""
    buffer = io.BytesIO()
    if file_format == "png":
        sketch.save(buffer, format="PNG", optimize=True)
        suffix, media_type = ".png", "image/png"
    else:
        sketch.convert("L").save(buffer, format="WEBP", lossless=True, quality=100, method=6)
        suffix, media_type = ".webp", "image/webp"
    on = sum(sketch.convert("L").histogram()[128:])
    meta = meta | {"edge_fraction": round(on / (sketch.width * sketch.height), 6)}
    return SidePayload(buffer.getvalue(), suffix, media_type, meta)


def encode_side(
    kind: str, params: SideParams, image: Image.Image, size: int, model: Any = None
) -> SidePayload:
    """The side payload of ``image`` at longest side ``size``. Raises when a budget is unmet.
    ``model``: the loaded HED network for ``hed`` (:func:`semcomp.codecs.hed.load_hed`)."""
    small = scaled(image, size)
    meta: dict[str, Any] = {"side_width": small.width, "side_height": small.height}
    if kind == "thumbnail":
        from semcomp.codecs.base import OperatingPoint, OriginalFacts

        assert isinstance(params, ThumbnailParams)
        codec = pixel_codec(params.codec, params.codec_params)
        point = (
            OperatingPoint("quality", float(params.quality))
            if params.quality is not None
            else OperatingPoint("bytes", float(params.bytes or 0))
        )
        facts = OriginalFacts(file_bytes=0, pixels=small.width * small.height)
        (result,) = codec.encode(small.convert("RGB"), [point], facts)
        if isinstance(result, Exception):
            raise result
        return SidePayload(
            result.payload,
            codec.suffix,
            codec.media_type,
            meta | {"side_quality": result.meta["quality"]},
        )
    if kind == "edges":
        assert isinstance(params, EdgesParams)
        edges = canny_edges(small, params.low, params.high)
        return bilevel_payload(edges, params.format, meta)
    if kind == "hed":
        from semcomp.codecs.hed import hed_edges

        assert isinstance(params, HedParams)
        if model is None:
            raise ValueError('side = "hed" needs its loaded network (semcomp.codecs.hed)')
        meta["hed_weights_sha256"] = getattr(model, "weights_sha256", None)
        cut = round(params.threshold * 255)
        sketch = hed_edges(model, small).point(lambda level: 255 if level >= cut else 0)
        return bilevel_payload(sketch.convert("1", dither=Image.Dither.NONE), params.format, meta)
    raise ValueError(f"unknown side information {kind!r}; kinds: {', '.join(SIDE_KINDS)}")


def decode_side(data: bytes) -> Image.Image:
    """A side payload as the RGB image a reconstructor is conditioned on."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


__all__ = [
    "CONTAINER_VERSION",
    "SIDE_KINDS",
    "SIDE_PARAMS",
    "Container",
    "EdgesParams",
    "HedParams",
    "SidePayload",
    "ThumbnailParams",
    "decode_side",
    "encode_side",
    "pack",
    "unpack",
]
