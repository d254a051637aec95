"""The reconstructor contract: prompts and seeds in, images (or a reason per item) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from semcomp.params import PluginParams


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


class Reconstructor(ABC):
    """Text → image. Construct once per stage (it may load a model), then :meth:`close`."""

    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    #: whether a seed makes the output reproducible (an image API has none)
    seeded: ClassVar[bool] = True
    #: whether it runs a local model that ``--engine ray`` should run in actors (not an API)
    scalable: ClassVar[bool] = False

    def __init__(self, params: PluginParams, *, device: str = "auto", batch_size: int = 4):
        self.params = params
        self.device = device
        self.batch_size = batch_size
        self.chunk_size = self.chunk_for(params, batch_size)

    @classmethod
    def chunk_for(cls, params: PluginParams, batch_size: int) -> int:
        """Items per call of the stage (and per transaction): a model's batch; API
        plugins raise it to keep their concurrent requests busy."""
        return batch_size

    @classmethod
    def prompt_reader(cls, params: PluginParams) -> Any:
        """A callable ``caption -> PromptUse`` (loading only a tokenizer), or None if unknown."""
        return None

    @abstractmethod
    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        """One image per prompt; an exception in place of an image is that item's failure."""

    def identity(self) -> dict[str, Any]:
        return {"reconstructor": self.name}

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Free the model (nothing to free by default)."""
