"""Opening CSV files people download or save from spreadsheets.

Files come as UTF-8, UTF-8 with a byte-order mark (Excel's "CSV UTF-8"), or
Windows-1252 (Excel's plain "CSV" on Windows, MTurk downloads opened and saved
again). :func:`csv_encoding` tells which by checking that the bytes are valid
UTF-8, streaming, so a large file is never held in memory twice.
:func:`csv_records` reads the records of such a file with bounded fields and lines,
turning what cannot be read into problems that name their line.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
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
                # an ASCII block after whole characters is valid as it is (checked about ten
                # times faster than decoded); any other goes through the decoder
                if not (block.isascii() and decoder.getstate()[0] == b""):
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


#: Python's default ``csv`` field limit, stated here so that the bound does not depend on
#: what other code set globally: a longer field is a problem of its row.
MAX_FIELD = 131_072
#: The longest physical line read whole. A longer line is skipped in pieces and reported,
#: so a pathological file (a 1 GB line) is never held in memory.
MAX_LINE = 1 << 20
_SKIP_CHUNK = 1 << 16
_NEWLINES = ("\n", "\r")
_DELIMITERS = {";": "semicolons (;)", "\t": "tabs", "|": "vertical bars (|)"}


@dataclass(frozen=True)
class CsvRecord:
    """One CSV record (a row; quoted fields may span lines)."""

    #: the physical line the record starts on (1-based, as an editor counts)
    line: int
    cells: list[str]
    #: the record runs to the end of the file, which has no final line break: often a
    #: file cut short (a download stopped mid-row)
    unterminated: bool = False


@dataclass(frozen=True)
class CsvProblem:
    """A record that could not be read, with the physical line it starts on."""

    line: int
    reason: str


class _LineTooLong(Exception):
    pass


class _Lines:
    """Physical lines of a text handle, each at most ``max_line`` characters, counted."""

    def __init__(self, handle: TextIO, max_line: int):
        self.handle = handle
        self.max_line = max_line
        self.count = 0
        self.last = ""
        #: the csv reader asked for a line after the last one (it was inside a quoted field)
        self.exhausted = False
        #: a line of the current record holds a NUL character
        self.nul = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.handle.readline(self.max_line)
        if not line:
            self.exhausted = True
            raise StopIteration
        self.count += 1
        if len(line) >= self.max_line and not line.endswith(_NEWLINES):
            while True:  # skip the rest of the line without keeping it
                rest = self.handle.readline(_SKIP_CHUNK)
                if not rest or rest.endswith(_NEWLINES):
                    break
            raise _LineTooLong
        if "\0" in line:
            self.nul = True
        self.last = line
        return line


def csv_records(
    handle: TextIO, *, max_field: int = MAX_FIELD, max_line: int | None = None
) -> Iterator[CsvRecord | CsvProblem]:
    """The records of a CSV text handle (opened by :func:`open_csv`), and the ones that fail.

    Blank lines are skipped. A record is a :class:`CsvProblem` instead, naming its line,
    when a field is longer than ``max_field`` characters, a physical line is longer than
    ``max_line`` (skipped without being held in memory), it holds a NUL character (a
    binary or UTF-16 file, or a damaged one), or the file ends inside a quoted field.
    Reading goes on with the next record after each problem.
    """
    max_line = max_line or MAX_LINE
    lines = _Lines(handle, max_line)
    reader = csv.reader(lines)
    # csv enforces its own (global) field limit; check ours only if that one is looser
    check_fields = csv.field_size_limit() > max_field
    while True:
        start, lines.nul = lines.count + 1, False
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _LineTooLong:
            yield CsvProblem(
                lines.count, f"line is longer than {max_line:,} characters; skipped unread"
            )
            continue
        except csv.Error as exc:
            reason = (
                f"a field is longer than {csv.field_size_limit():,} characters"
                if "field limit" in str(exc)
                else f"not readable as CSV: {exc}"
            )
            yield CsvProblem(lines.count, reason)
            continue
        if not cells:
            continue
        if lines.exhausted:
            yield CsvProblem(
                start,
                f"the file ends early, at line {lines.count}, inside a quoted field "
                "that is never closed",
            )
            return
        if lines.nul:
            yield CsvProblem(
                start, "contains a NUL character (is it a binary or UTF-16 file?); row skipped"
            )
            continue
        if check_fields and any(len(cell) > max_field for cell in cells):
            yield CsvProblem(start, f"a field is longer than {max_field:,} characters")
            continue
        yield CsvRecord(start, cells, unterminated=not lines.last.endswith(_NEWLINES))


def delimiter_hint(header: list[str]) -> str | None:
    """Why a header read as one column may have been meant as several, or None.

    A file saved by Excel in many locales is separated by semicolons.
    """
    if len(header) != 1:
        return None
    for delimiter, name in _DELIMITERS.items():
        if delimiter in header[0]:
            return (
                f"its header is one column with {name} in it: the file is separated by "
                f"{name}, not commas; save it as comma-separated CSV (in Excel: "
                "'CSV UTF-8 (Comma delimited)')"
            )
    return None


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for messages."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
