"""The captioner contract: originals in, captions (or a reason per item) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from semcomp.params import BatchPlugin


@dataclass(frozen=True)
class OriginalRef:
    """What a captioner may know about an original besides its pixels."""

    id: str
    name: str
    category: str
    source_path: str


@dataclass(frozen=True)
class Caption:
    text: str
    author: str | None = None
    #: token usage, estimated cost, model revision, ...
    meta: dict[str, Any] = field(default_factory=dict)


class CaptionFailure(Exception):
    """One original could not be captioned (a refusal, an empty answer, no CSV row, ...)."""

    def __init__(self, reason: str, *, retryable: bool = False, detail: dict | None = None):
        super().__init__(reason)
        self.retryable = retryable
        self.detail = detail or {}


class Captioner(BatchPlugin, ABC):
    """Image → text. Construct once per stage (it may load a model), then :meth:`close`."""

    #: whether :meth:`caption` needs the decoded images (human captions do not)
    needs_images: ClassVar[bool] = True

    @abstractmethod
    def caption(
        self, originals: list[OriginalRef], images: list[Image.Image | None]
    ) -> list[list[Caption] | Exception]:
        """Captions for each original: usually one, several for human captions,
        or an exception whose message is the reason for that item."""

    def prepare(self, originals: list[OriginalRef]) -> None:
        """Called once with every current original before captioning (nothing by default)."""

    def identity(self) -> dict[str, Any]:
        """Model id and revision (recorded with every caption)."""
        return {"captioner": self.name}

    def problems(self) -> list[tuple[str, str]]:
        """(item, reason) for input problems found on loading, e.g. malformed CSV rows."""
        return []

    def close(self) -> None:
        """Free the model (nothing to free by default)."""
