"""Loading and normalising images, content hashes, pixel counts, and finding sources.

Real images are messy: every image that enters semcomp goes through
:func:`decode_image`, which applies EXIF orientation, takes the first frame of
animations, composites transparency over white and converts every mode
(palette, LA, CMYK, 16-bit, I;16, float) to 8-bit RGB. Anything that cannot be
decoded raises :class:`~semcomp.errors.ImageError` with the reason, which the
ingest stage records as a failure row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from semcomp.csvtext import csv_encoding, open_csv
from semcomp.errors import ImageError, PixelLimitError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".dib"}
)
#: Default decompression-bomb guard: fits a 50 MP photo (8192 × 6144 = 50.3 MP) with room.
DEFAULT_MAX_PIXELS = 64_000_000
#: Where images without a category folder (or manifest category) are filed.
UNCATEGORISED = "uncategorised"


def sha256_hex(data: bytes) -> str:
    """Content hash used for original ids and artifact names."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DecodedImage:
    """An image normalised to 8-bit RGB, with what was learnt about the file."""

    rgb: Image.Image
    format: str
    source_mode: str
    frames: int

    @property
    def width(self) -> int:
        return self.rgb.width

    @property
    def height(self) -> int:
        return self.rgb.height

    @property
    def pixels(self) -> int:
        return self.rgb.width * self.rgb.height


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit and 32-bit grey: scale to 8 bits. Pillow's own I→L conversion clips
        # at 255 instead of scaling, which turns a 16-bit photo white.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if (mode.startswith("I;16") or values.max(initial=0) > 255) else 255.0
        if mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        grey = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes fully and normalise them to upright 8-bit RGB.

    Raises :class:`ImageError` for files that are not images, are truncated or
    corrupt, or have more than ``max_pixels`` pixels (decompression bomb guard,
    checked from the header before any pixel is decoded).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError("not an image Pillow can identify") from None
        except Image.DecompressionBombError as exc:
            raise PixelLimitError(f"decompression bomb guard: {exc}") from None
        except Exception as exc:  # Pillow's parsers raise OSError, ValueError, struct.error, ...
            raise ImageError(f"cannot open image: {type(exc).__name__}: {exc}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise PixelLimitError(
                f"decompression bomb guard: {width}×{height} = {width * height:,} pixels "
                f"exceeds the limit of {max_pixels:,} (raise images.max_pixels to allow it)"
            )
        if width < 1 or height < 1:
            raise ImageError(f"image has no pixels ({width}×{height})")
        fmt = image.format or "unknown"
        source_mode = image.mode
        try:
            frames = getattr(image, "n_frames", 1)
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright)
            rgb.load()
        except Image.DecompressionBombError as exc:
            raise PixelLimitError(f"decompression bomb guard: {exc}") from None
        except Exception as exc:  # a corrupt file can make any parser step fail
            raise ImageError(
                f"corrupt or truncated {fmt} data: {type(exc).__name__}: {exc}"
            ) from None
    return DecodedImage(rgb=rgb, format=fmt, source_mode=source_mode, frames=frames)


#: formats whose files hold their pixels exactly (a WebP is told apart by its chunks)
LOSSLESS_FORMATS = frozenset({"PNG", "GIF", "BMP", "TIFF", "WEBP-lossless"})


def file_format(pillow_format: str, data: bytes) -> str:
    """A format name that says whether the file is lossless: Pillow's name, except that a
    WebP is ``WEBP-lossless`` (only VP8L image data) or ``WEBP-lossy`` (any VP8 data)."""
    if pillow_format != "WEBP":
        return pillow_format
    chunks, position = set(), 12  # RIFF header: "RIFF", size, "WEBP"
    while position + 8 <= len(data):
        tag = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        chunks.add(tag)
        position += 8 + size + (size & 1)  # chunks are padded to an even length
    lossless = b"VP8L" in chunks and b"VP8 " not in chunks
    return "WEBP-lossless" if lossless else "WEBP-lossy"


@dataclass(frozen=True)
class SourceImage:
    """One image file named by a folder scan or a manifest row."""

    path: Path
    category: str
    name: str
    #: where it was named, for error messages: ``folder`` or ``manifest.csv:LINE``
    origin: str


@dataclass(frozen=True)
class SourceProblem:
    """A manifest row or path that could not become a :class:`SourceImage`."""

    item: str
    reason: str


def scan_folder(root: Path) -> Iterator[SourceImage | SourceProblem]:
    """Every image file under ``root`` (recursive); category = first-level subfolder.

    Hidden files and folders are skipped. Files whose suffix is not an image
    suffix are skipped, not failed: a README next to the photos is not an
    error. A file with an image suffix that does not decode *is* a failure,
    recorded by the ingest stage.
    """
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        category = relative.parts[0] if len(relative.parts) > 1 else UNCATEGORISED
        yield SourceImage(path=path, category=category, name=path.stem, origin="folder")


MANIFEST_COLUMNS = ("path", "category", "id")


def read_manifest(manifest: Path) -> Iterator[SourceImage | SourceProblem]:
    """Rows of a CSV manifest with columns ``path``, ``category`` and optional ``id``.

    Paths are relative to the manifest's folder and must stay inside it. A
    malformed row is yielded as a :class:`SourceProblem` naming its line. The
    file is UTF-8 (with or without a byte-order mark) or, failing that,
    Windows-1252 (Excel's plain "CSV").
    """
    root = manifest.parent.resolve()
    with open_csv(manifest, csv_encoding(manifest)) as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "path" not in header:
            yield SourceProblem(
                item=f"{manifest}:1",
                reason=f"manifest has no 'path' column (columns: {', '.join(header) or 'none'})",
            )
            return
        unknown = sorted(set(header) - set(MANIFEST_COLUMNS))
        if unknown:
            yield SourceProblem(
                item=f"{manifest}:1",
                reason=f"unknown manifest column(s) {', '.join(unknown)}; "
                f"expected {', '.join(MANIFEST_COLUMNS)}",
            )
            return
        reader.fieldnames = header
        for row in reader:
            line = f"{manifest}:{reader.line_num}"
            if None in row:
                yield SourceProblem(item=line, reason="row has more fields than the header")
                continue
            raw_path = (row.get("path") or "").strip()
            if not raw_path:
                yield SourceProblem(item=line, reason="empty path")
                continue
            path = (root / raw_path).resolve()
            if not path.is_relative_to(root):
                yield SourceProblem(
                    item=line, reason=f"path {raw_path!r} points outside the manifest's folder"
                )
                continue
            category = (row.get("category") or "").strip() or UNCATEGORISED
            name = (row.get("id") or "").strip() or path.stem
            yield SourceImage(path=path, category=category, name=name, origin=line)


def find_sources(source: Path) -> Iterator[SourceImage | SourceProblem]:
    """Images named by ``source``: a folder (scanned) or a ``.csv`` manifest."""
    if source.is_dir():
        yield from scan_folder(source)
    elif source.suffix.lower() == ".csv" and source.is_file():
        yield from read_manifest(source)
    else:
        yield SourceProblem(
            item=str(source), reason="images source is neither a folder nor a .csv manifest"
        )
