"""The reconstructor contract: prompts and seeds in, images (or a reason per item) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from semcomp.params import BatchPlugin, PluginParams


@dataclass(frozen=True)
class PromptUse:
    """How much of a caption the reconstructor's text encoder actually reads.

    CLIP text encoders stop at 77 tokens: bytes past ``consumed_chars`` are
    rate that buys nothing.
    """

    tokens: int
    limit: int
    consumed_chars: int

    @property
    def truncated(self) -> bool:
        return self.tokens > self.limit


@dataclass(frozen=True)
class Reconstruction:
    png: bytes
    #: cost estimate, revised prompt, ...
    meta: dict[str, Any] = field(default_factory=dict)


class Reconstructor(BatchPlugin, ABC):
    """Text → image. Construct once per stage (it may load a model), then :meth:`close`."""

    #: whether a seed makes the output reproducible (an image API has none)
    seeded: ClassVar[bool] = True
    default_batch_size: ClassVar[int] = 4
    #: the side information (``semcomp.codecs.side`` kinds) it is conditioned on; a
    #: reconstructor that has any needs it, and is called through :meth:`reconstruct_with_side`
    side_kinds: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def prompt_reader(cls, params: PluginParams) -> Any:
        """A callable ``caption -> PromptUse`` (loading only a tokenizer), or None if unknown."""
        return None

    @abstractmethod
    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        """One image per prompt; an exception in place of an image is that item's failure."""

    def reconstruct_with_side(
        self, prompts: list[str], seeds: list[int], sides: list[Any]
    ) -> list[Reconstruction | Exception]:
        """One image per prompt, conditioned on its decoded side information (a PIL image)."""
        raise NotImplementedError(f"reconstructor {self.name!r} takes no side information")

    def identity(self) -> dict[str, Any]:
        return {"reconstructor": self.name}

    def close(self) -> None:
        """Free the model (nothing to free by default)."""
