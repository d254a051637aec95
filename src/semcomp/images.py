"""Loading and normalising images, content hashes, pixel counts, and finding sources.

Real images are messy: every image that enters semcomp goes through
:func:`decode_image`, which applies EXIF orientation, takes the first frame of
animations, composites transparency over white and converts every mode
(palette, LA, CMYK, 16-bit, I;16, float) to 8-bit RGB. Anything that cannot be
decoded raises :class:`~semcomp.errors.ImageError` with the reason, which the
ingest stage records as a failure row.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from semcomp.csvtext import (
    CsvProblem,
    csv_encoding,
    csv_records,
    delimiter_hint,
    open_csv,
    shorten,
)
from semcomp.errors import ImageError, PixelLimitError
from semcomp.filenames import path_text

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
        import numpy as np

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
    if not data:
        raise ImageError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError("not an image Pillow can identify") from None
        except Image.DecompressionBombError as exc:
            raise _bomb_error(exc, max_pixels) from None
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
            raise _bomb_error(exc, max_pixels) from None
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


_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


def _bomb_error(exc: Image.DecompressionBombError, max_pixels: int) -> ImageError:
    """Pillow's own bomb refusal, said with the configured ``max_pixels``.

    Pillow refuses, while reading the header, anything over twice its global
    ``Image.MAX_IMAGE_PIXELS`` (about 179 MP); that hard limit is not ours to
    change per image, so an image under ``max_pixels`` but over it is settled.
    """
    found = _PILLOW_PIXELS.search(str(exc))
    if found is None:
        return PixelLimitError(
            f"decompression bomb guard: the image has more pixels than the limit of "
            f"{max_pixels:,} (raise images.max_pixels to allow it)"
        )
    pixels = int(found.group(1))
    if pixels > max_pixels:
        return PixelLimitError(
            f"decompression bomb guard: {pixels:,} pixels exceeds the limit of "
            f"{max_pixels:,} (raise images.max_pixels to allow it)"
        )
    return ImageError(
        f"decompression bomb guard: {pixels:,} pixels is within images.max_pixels "
        f"({max_pixels:,}) but over Pillow's own hard limit of {2 * Image.MAX_IMAGE_PIXELS:,}"
    )


def read_image_file(path: Path) -> bytes:
    """The bytes of the regular file at ``path``; anything else is an :class:`ImageError`.

    The file is opened without blocking and checked before it is read, so a FIFO
    or device put where an image was is refused instead of waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageError(f"not a regular file ({_file_kind(mode)})")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` (named like an image) cannot be read as one, or None for a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            if exc.errno == errno.ELOOP:
                return "symlink loop: the link points (in the end) to itself"
            if exc.errno == errno.ENOENT:
                return f"dangling symlink: its target {path_text(os.readlink(path))} does not exist"
        return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    return f"{_file_kind(mode)}, not an image file; skipped without opening it"


@dataclass(frozen=True)
class SourceImage:
    """One image file named by a folder scan or a manifest row."""

    path: Path
    category: str
    name: str
    #: where it was named, for error messages: ``folder`` or ``manifest.csv:LINE``
    origin: str
    #: its class for task metrics (a manifest's ``label`` column; empty: its category)
    label: str = ""


@dataclass(frozen=True)
class SourceProblem:
    """A manifest row or path that could not become a :class:`SourceImage`."""

    item: str
    reason: str
    path: Path | None = None  #: the file it is about, when it is one


def scan_folder(root: Path) -> Iterator[SourceImage | SourceProblem]:
    """Every image file under ``root`` (recursive); category = first-level subfolder.

    Hidden files and folders are skipped. Files whose suffix is not an image
    suffix are skipped, not failed: a README next to the photos is not an
    error. A file with an image suffix that does not decode *is* a failure,
    recorded by the ingest stage, and so is anything named like an image that
    is not a file (a dangling symlink or a loop, a folder, a FIFO: never opened).
    Names that are not UTF-8 are kept escaped (:mod:`semcomp.filenames`).
    """
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        problem = _not_a_file(path)
        if problem is not None:
            yield SourceProblem(item=path_text(path), reason=problem, path=path)
            continue
        category = path_text(relative.parts[0]) if len(relative.parts) > 1 else UNCATEGORISED
        yield SourceImage(path=path, category=category, name=path_text(path.stem), origin="folder")


MANIFEST_COLUMNS = ("path", "category", "id", "label")


def read_manifest(manifest: Path) -> Iterator[SourceImage | SourceProblem]:
    """Rows of a CSV manifest with columns ``path``, ``category`` and optional ``id`` and
    ``label`` (the class task metrics use, when it is not the category).

    Paths are relative to the manifest's folder and must stay inside it. A
    malformed row is yielded as a :class:`SourceProblem` naming its line. The
    file is UTF-8 (with or without a byte-order mark) or, failing that,
    Windows-1252 (Excel's plain "CSV").
    """
    root = manifest.parent.resolve()
    with open_csv(manifest, csv_encoding(manifest)) as handle:
        records = csv_records(handle)
        first = next(records, None)
        if isinstance(first, CsvProblem):
            yield SourceProblem(item=f"{manifest}:{first.line}", reason=first.reason)
            return
        header = [h.strip().lower() for h in (first.cells if first else [])]
        if "path" not in header:
            hint = delimiter_hint(header)
            yield SourceProblem(
                item=f"{manifest}:1",
                reason="manifest has no 'path' column ("
                + (hint or f"columns: {', '.join(map(shorten, header)) or 'none'}")
                + ")",
            )
            return
        unknown = sorted(set(header) - set(MANIFEST_COLUMNS))
        if unknown:
            yield SourceProblem(
                item=f"{manifest}:1",
                reason=f"unknown manifest column(s) {', '.join(map(shorten, unknown))}; "
                f"expected {', '.join(MANIFEST_COLUMNS)}",
            )
            return
        for record in records:
            if isinstance(record, CsvProblem):
                yield SourceProblem(item=f"{manifest}:{record.line}", reason=record.reason)
                continue
            line = f"{manifest}:{record.line}"
            if len(record.cells) > len(header):
                yield SourceProblem(item=line, reason="row has more fields than the header")
                continue
            row = dict(zip(header, record.cells, strict=False))
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
            name = (row.get("id") or "").strip() or path_text(path.stem)
            label = (row.get("label") or "").strip()
            yield SourceImage(path=path, category=category, name=name, origin=line, label=label)


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
