"""Captions from a vision LLM behind any OpenAI-compatible Chat Completions endpoint.

OpenAI, vLLM, Ollama, ... through the official ``openai`` client. Each image is
downscaled to ``max_side`` and sent as a base64 data URL with a prompt preset
(the textual-transform paper's "in a way DALL-E 2 would understand", the
paper's human protocol, or a length-targeted ``max_words`` prompt for a rate
sweep). Token usage and, when prices are given, the estimated cost are
recorded with every caption; refusals, empty answers and answers longer than
``max_tokens`` could produce are failures, never captions. Concurrency,
retries and key handling live in :mod:`semcomp.api`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, ClassVar, Literal

from PIL import Image
from pydantic import Field, ValidationInfo, field_validator, model_validator

from semcomp.api import ApiItemFailure, ApiParams, ApiRunner, MalformedResponse
from semcomp.captioners.base import Caption, Captioner, OriginalRef
from semcomp.captioners.prompts import load_preset
from semcomp.errors import ConfigError

#: UTF-8 bytes one token can stand for, at most, in a caption: real tokenizers average
#: about 4 per token on English text; a caption longer than ``max_tokens`` times this
#: did not come from ``max_tokens`` tokens
MAX_BYTES_PER_TOKEN = 32


class LlmApiParams(ApiParams):
    model: str
    #: a built-in preset (``dalle2``, ``human_protocol``, ``max_words``) or a preset TOML path
    prompt: str = "dalle2"
    #: values for the preset's ``{variables}``
    prompt_variables: dict[str, str | int | float] = Field(default_factory=dict)
    #: the ``max_words`` preset's length target (sweep it: ``sweep = { max_words = [...] }``)
    max_words: int | None = Field(default=None, ge=1)
    #: None leaves the endpoint's default (some reasoning models accept no other)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int = Field(default=300, ge=1)
    #: ``max_completion_tokens`` (OpenAI) or ``max_tokens`` (older servers)
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    #: images are downscaled so their longest side is at most this many pixels
    max_side: int = Field(default=1024, ge=32)
    image_format: Literal["jpeg", "png"] = "jpeg"
    detail: Literal["auto", "low", "high"] = "auto"
    #: list prices, to estimate the cost of each caption (none recorded when omitted)
    price_per_million_input_tokens: float | None = Field(default=None, ge=0)
    price_per_million_output_tokens: float | None = Field(default=None, ge=0)

    operational: ClassVar[frozenset[str]] = ApiParams.operational | {
        "price_per_million_input_tokens",
        "price_per_million_output_tokens",
    }

    @field_validator("prompt")
    @classmethod
    def _preset_file_in_study(cls, prompt: str, info: ValidationInfo) -> str:
        study_dir = (info.context or {}).get("study_dir")
        if prompt.endswith(".toml") and study_dir is not None and not Path(prompt).is_absolute():
            return str((Path(study_dir) / prompt).resolve())
        return prompt

    def identity(self) -> dict[str, Any]:
        """The rendered prompt is the identity: editing a preset file is a new captioner."""
        preset = load_preset(self.prompt)
        return super().identity() | {"prompt_text": self.prompt_text(), "system": preset.system}

    @model_validator(mode="after")
    def _prompt_renders(self) -> LlmApiParams:
        try:
            self.prompt_text()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def prompt_text(self) -> str:
        values: dict[str, object] = dict(self.prompt_variables)
        if self.max_words is not None:
            values["max_words"] = self.max_words
        return load_preset(self.prompt).render(values)


def data_url(image: Image.Image, max_side: int, image_format: str) -> str:
    """The image, downscaled to ``max_side`` on its longest side, as a base64 data URL."""
    image = image.copy()
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return f"data:image/{image_format};base64,{base64.b64encode(buffer.getvalue()).decode()}"


class LlmApiCaptioner(Captioner):
    name = "llm-api"
    extra = "api"
    Params = LlmApiParams

    def __init__(self, params: LlmApiParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.runner = ApiRunner(params)
        self.preset = load_preset(params.prompt)
        self.prompt = params.prompt_text()

    @classmethod
    def chunk_for(cls, params: LlmApiParams, batch_size: int) -> int:
        return params.chunk_items

    def identity(self) -> dict[str, Any]:
        return {
            "captioner": self.name,
            "model": self.params.model,
            "base_url": self.params.endpoint,
            "prompt": self.prompt,
        }

    def _messages(self, image: Image.Image) -> list[dict[str, Any]]:
        params: LlmApiParams = self.params
        content = [
            {"type": "text", "text": self.prompt},
            {
                "type": "image_url",
                "image_url": {
                    "url": data_url(image, params.max_side, params.image_format),
                    "detail": params.detail,
                },
            },
        ]
        messages: list[dict[str, Any]] = []
        if self.preset.system:
            messages.append({"role": "system", "content": self.preset.system})
        messages.append({"role": "user", "content": content})
        return messages

    def _cost(self, input_tokens: int, output_tokens: int) -> float | None:
        params: LlmApiParams = self.params
        if params.price_per_million_input_tokens is None:
            return None
        output_price = params.price_per_million_output_tokens or 0.0
        return (
            input_tokens * params.price_per_million_input_tokens + output_tokens * output_price
        ) / 1e6

    def _check(self, response: Any) -> Caption:
        import openai

        if not isinstance(response, openai.types.chat.ChatCompletion) or not response.choices:
            raise MalformedResponse(f"not a chat completion ({type(response).__name__})")
        choice = response.choices[0]
        usage = response.usage
        input_tokens = usage.prompt_tokens if usage else 0
        output_tokens = usage.completion_tokens if usage else 0
        meta = {
            "response_model": response.model,
            "finish_reason": choice.finish_reason,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "estimated_cost_usd": self._cost(input_tokens, output_tokens),
        }
        message = choice.message
        if message.refusal:
            raise ApiItemFailure(f"refused: {message.refusal}", retryable=False, detail=meta)
        text = (message.content or "").strip()
        if not text:
            reason = f"empty answer (finish_reason={choice.finish_reason})"
            raise ApiItemFailure(reason, retryable=False, detail=meta)
        limit = self.params.max_tokens * MAX_BYTES_PER_TOKEN
        size = len(text.encode("utf-8"))
        if size > limit:
            reason = (
                f"an answer of {size:,} bytes is longer than max_tokens = "
                f"{self.params.max_tokens} tokens could produce (at most {limit:,} bytes)"
            )
            raise ApiItemFailure(reason, retryable=False, detail=meta)
        return Caption(text=text, meta=meta)

    def caption(
        self, originals: list[OriginalRef], images: list[Image.Image | None]
    ) -> list[list[Caption] | Exception]:
        params: LlmApiParams = self.params
        options: dict[str, Any] = {params.max_tokens_field: params.max_tokens}
        if params.temperature is not None:
            options["temperature"] = params.temperature
        all_messages = [self._messages(image) for image in images if image is not None]

        def make_requests(client: Any) -> list[Any]:
            return [
                lambda messages=messages: client.chat.completions.create(
                    model=params.model, messages=messages, **options
                )
                for messages in all_messages
            ]

        results = self.runner.run_all(make_requests, self._check)
        return [[r] if isinstance(r, Caption) else r for r in results]
