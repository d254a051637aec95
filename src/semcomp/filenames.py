"""File names as text the store can hold, and back.

On POSIX a file name is bytes; one that is not valid UTF-8 (``caf\\xff.png``) reaches
Python as a ``str`` with lone surrogates (PEP 383), which SQLite cannot store as
text. :func:`path_text` writes such a name with its undecodable bytes as ``\\xHH``
(other lone surrogates as ``\\uHHHH``) and its backslashes doubled, so the text is
lossless and shows the name escaped; :func:`text_path` turns it back into the real
path. Every other name, the ordinary case, is stored exactly as it is: a name is
escaped only when it has a lone surrogate or a backslash followed by ``\\``, ``x``
or ``u``, which are exactly the names whose plain text would read back differently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_SURROGATE = re.compile("[\ud800-\udfff]")
_NEEDS_ESCAPE = re.compile(r"[\ud800-\udfff]|\\[\\xu]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode gives it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def _unescape(match: re.Match[str]) -> str:
    escape = match.group(1)
    if escape == "\\":
        return "\\"
    if escape[0] == "x":
        return chr(0xDC00 + int(escape[1:], 16))
    return chr(int(escape[1:], 16))


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as valid UTF-8 text that :func:`text_path` turns back into the same path."""
    text = os.fspath(path)
    if not _NEEDS_ESCAPE.search(text):
        return text
    return _SURROGATE.sub(_escape, text.replace("\\", "\\\\"))


def text_path(text: str) -> Path:
    """The real path of a name stored by :func:`path_text`."""
    if "\\" not in text or not _ESCAPE.search(text):
        return Path(text)
    return Path(_ESCAPE.sub(_unescape, text))
