"""Opening CSV files people download or save from spreadsheets.

Files come as UTF-8, UTF-8 with a byte-order mark (Excel's "CSV UTF-8"), or
Windows-1252 (Excel's plain "CSV" on Windows, MTurk downloads opened and saved
again). :func:`csv_encoding` tells which by checking that the bytes are valid
UTF-8, streaming, so a large file is never held in memory twice.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TextIO

from semcomp.errors import ConfigError

UTF8 = "utf-8-sig"
WINDOWS = "cp1252"


def csv_encoding(path: Path, *, fallback: str | None = WINDOWS) -> str:
    """``utf-8-sig`` if ``path`` is valid UTF-8 (BOM or not), else ``fallback``.

    With ``fallback=None`` a file that is not UTF-8 is a :class:`ConfigError`.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        if fallback is None:
            raise ConfigError(
                f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8"
            ) from None
        return fallback
    return UTF8


def open_csv(path: Path, encoding: str) -> TextIO:
    """A text handle for :mod:`csv` (``newline=""``); undecodable Windows bytes become U+FFFD."""
    errors = "strict" if encoding == UTF8 else "replace"
    return Path(path).open(newline="", encoding=encoding, errors=errors)
