"""The same caption for every image: a zero-information baseline and a pipeline test double."""

from __future__ import annotations

from PIL import Image

from semcomp.captioners.base import Caption, Captioner, OriginalRef
from semcomp.params import PluginParams


class FixedParams(PluginParams):
    text: str = "a photograph"


class FixedCaptioner(Captioner):
    name = "fixed"
    Params = FixedParams
    needs_images = False

    def caption(
        self, originals: list[OriginalRef], images: list[Image.Image | None]
    ) -> list[list[Caption] | Exception]:
        return [[Caption(self.params.text)] for _ in originals]
