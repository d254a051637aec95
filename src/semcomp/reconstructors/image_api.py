"""Reconstructions from the OpenAI Images API (or a compatible endpoint).

The textual-transform paper reconstructed with DALL-E 2; OpenAI retired DALL-E
2 and 3 on 2026-05-12 and GPT Image 1 on 2026-10-23 (openai 3.54's model
notes), so the default is ``gpt-image-2``; any model name the endpoint serves
can be given. Images APIs take no seed: each replicate is a separate request
and the seed column stays empty. Concurrency, retries, the key and the abort on
a rejected key come from :mod:`semcomp.api`; a content-policy refusal is a
settled failure of that item. An answer may be up to ``max_response_bytes``
(128 MiB by default); a returned image that holds the key (an endpoint echoing
it in a PNG text chunk) is stored re-encoded from its pixels, without it.
"""

from __future__ import annotations

import base64
import io
from typing import Any, ClassVar

from pydantic import Field

from semcomp.api import ApiParams, ApiRunner, MalformedResponse
from semcomp.errors import ImageError
from semcomp.images import decode_image
from semcomp.reconstructors.base import Reconstruction, Reconstructor


class ImageApiParams(ApiParams):
    model: str = "gpt-image-2"
    size: str = "1024x1024"
    #: ``standard``/``hd`` for DALL-E 3, ``low``/``medium``/``high``/``auto`` for GPT Image
    quality: str | None = None
    #: list price per image, to estimate the cost of each reconstruction
    price_per_image: float | None = Field(default=None, ge=0)
    #: images are large: a generous bound on an answer's body
    max_response_bytes: int = Field(default=128 << 20, ge=1024)

    operational: ClassVar[frozenset[str]] = ApiParams.operational | {"price_per_image"}


def as_png(data: bytes, *, keep_png: bool = True) -> bytes:
    """The image, fully decoded (a truncated file fails here), as PNG bytes: ``data``
    itself when it is a PNG and ``keep_png``, else re-encoded from its pixels (no
    metadata kept)."""
    decoded = decode_image(data).rgb
    if keep_png and data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    buffer = io.BytesIO()
    decoded.save(buffer, format="PNG")
    return buffer.getvalue()


class ImageApiReconstructor(Reconstructor):
    name = "image-api"
    extra = "api"
    Params = ImageApiParams
    seeded = False

    def __init__(self, params: ImageApiParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.runner = ApiRunner(params)

    @classmethod
    def chunk_for(cls, params: ImageApiParams, batch_size: int) -> int:
        return params.chunk_items

    def identity(self) -> dict[str, Any]:
        return {
            "reconstructor": self.name,
            "model": self.params.model,
            "base_url": self.params.endpoint,
        }

    def _check(self, response: Any) -> Reconstruction:
        import openai

        if not isinstance(response, openai.types.ImagesResponse) or not response.data:
            raise MalformedResponse(f"not an images response ({type(response).__name__})")
        first = response.data[0]
        if not first.b64_json:
            raise MalformedResponse("images response without b64_json")
        try:
            data = base64.b64decode(first.b64_json)
            png = as_png(data, keep_png=not self.runner.leaks_secret(data))
        except (ValueError, ImageError) as exc:  # retried: a fresh request may decode
            raise MalformedResponse(f"the returned image does not decode: {exc}") from None
        meta: dict[str, Any] = {"estimated_cost_usd": self.params.price_per_image}
        if getattr(first, "revised_prompt", None):
            meta["revised_prompt"] = first.revised_prompt
        usage = getattr(response, "usage", None)
        if usage is not None:
            meta |= {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        return Reconstruction(png=png, meta=meta)

    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        params: ImageApiParams = self.params
        options: dict[str, Any] = {"model": params.model, "size": params.size, "n": 1}
        if params.model.startswith("dall-e"):
            options["response_format"] = "b64_json"  # GPT Image models always answer in base64
        if params.quality is not None:
            options["quality"] = params.quality

        def make_requests(client: Any) -> list[Any]:
            return [
                lambda prompt=prompt: client.images.generate(prompt=prompt, **options)
                for prompt in prompts
            ]

        return self.runner.run_all(make_requests, self._check)
