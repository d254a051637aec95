"""A solid-colour image derived from the prompt: a pipeline test double and a floor baseline."""

from __future__ import annotations

import hashlib
import io

from PIL import Image
from pydantic import Field

from semcomp.params import PluginParams
from semcomp.reconstructors.base import Reconstruction, Reconstructor


class SolidColourParams(PluginParams):
    width: int = Field(default=64, ge=1, le=4096)
    height: int = Field(default=64, ge=1, le=4096)


class SolidColourReconstructor(Reconstructor):
    name = "solid-colour"
    Params = SolidColourParams

    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        results: list[Reconstruction | Exception] = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
            image = Image.new("RGB", (self.params.width, self.params.height), tuple(digest[:3]))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            results.append(Reconstruction(png=buffer.getvalue()))
        return results
