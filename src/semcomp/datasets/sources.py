"""Images that are not files of their own: a row of a Parquet shard, an image of a CIFAR batch.

Each is a small picklable reference (it travels to DataLoader workers and Ray
tasks) with ``read_bytes()``, like :class:`pathlib.Path`: the encoded image
(a Parquet cell's bytes; a CIFAR image as a lossless PNG). A worker reads one
row group or one batch file once and keeps it (a small cache), so consecutive
images cost one read. ``str()`` names the image for failure lists and file
lists: ``<file>#<row>``.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from semcomp.errors import ConfigError


@lru_cache(maxsize=4)
def _row_group_starts(path: str) -> tuple[int, ...]:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    starts, total = [], 0
    for group in range(metadata.num_row_groups):
        starts.append(total)
        total += metadata.row_group(group).num_rows
    return (*starts, total)


@lru_cache(maxsize=2)
def _row_group(path: str, group: int, column: str) -> list[Any]:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_group(group, columns=[column]).column(0).to_pylist()


@dataclass(frozen=True)
class ParquetImage:
    """Row ``row`` of column ``column`` (a Hugging Face ``Image``: ``{bytes, path}``, or bytes)."""

    path: Path
    row: int
    column: str

    def read_bytes(self) -> bytes:
        starts = _row_group_starts(str(self.path))
        group = int(np.searchsorted(starts, self.row, side="right")) - 1
        cell = _row_group(str(self.path), group, self.column)[self.row - starts[group]]
        if isinstance(cell, dict):
            if cell.get("bytes"):
                return cell["bytes"]
            if cell.get("path"):  # an image stored by reference, next to the shard
                return (self.path.parent / cell["path"]).read_bytes()
            return b""
        return cell or b""

    def __str__(self) -> str:
        return f"{self.path}#{self.row}"


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing else.

    CIFAR's Python batches are pickles; DESIGN.md allows no untrusted unpickling,
    so any other global (a class, a function) in the file is refused.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only arrays are allowed)")


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR batch or meta file (keys as text; torchvision reads them with ``latin1``)."""
    try:
        with Path(path).open("rb") as handle:
            data = _ArraysOnly(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ConfigError(f"{path} is not a CIFAR batch file: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a CIFAR batch file (holds a {type(data).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


@lru_cache(maxsize=2)
def _cifar_pixels(path: str) -> np.ndarray:
    data = read_cifar_pickle(Path(path))
    return np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@dataclass(frozen=True)
class CifarImage:
    """Image ``index`` of a CIFAR batch file, as PNG bytes (lossless)."""

    path: Path
    index: int

    def read_bytes(self) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(_cifar_pixels(str(self.path))[self.index]).save(buffer, format="PNG")
        return buffer.getvalue()

    def __str__(self) -> str:
        return f"{self.path}#{self.index}"
