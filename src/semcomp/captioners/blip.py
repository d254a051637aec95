"""BLIP and BLIP-2 captions through transformers (any hub id or local folder).

``Salesforce/blip-image-captioning-large`` is the default, the BLIP the
textual-transform paper used. One generic path loads both families
(``AutoModelForImageTextToText``); captions are generated in batches, in fp16
on CUDA. An optional text ``prefix`` conditions the caption and is part of it
(the decoded text starts with it, and it is sent like every other byte).

Attention: BLIP-2 runs PyTorch's fused SDPA attention (transformers' default for models
that support it); transformers implements BLIP's attention in eager mode only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from PIL import Image
from pydantic import Field

from semcomp.captioners.base import Caption, Captioner, OriginalRef
from semcomp.engines import phase
from semcomp.errors import ConfigError
from semcomp.models import (
    batches_with_backoff,
    drop_model,
    inference_dtype,
    load_pretrained,
    select_device,
)
from semcomp.params import PluginParams, model_source

BLIP_MODEL_TYPES = ("blip", "blip-2")


#: a hub id, a folder, or "tiny" (a tiny random-weight model, see semcomp.tiny_models)
BlipSource = model_source("blip")


class BlipParams(PluginParams):
    model: BlipSource = "Salesforce/blip-image-captioning-large"
    #: a hub revision (branch, tag or commit) to pin the weights
    revision: str | None = None
    num_beams: int = Field(default=3, ge=1)
    max_new_tokens: int = Field(default=30, ge=1)
    min_new_tokens: int = Field(default=5, ge=0)
    #: conditional captioning, e.g. "a photograph of" (kept in the caption)
    prefix: str = ""


def pixel_values(image_processor: Any, image: Image.Image) -> Any:
    """One image's ``pixel_values`` (3×H×W) from a BLIP image processor."""
    return image_processor(images=[image], return_tensors="pt")["pixel_values"][0]


def _loader_preprocess(model_type: str, params: BlipParams, processor: Any) -> Any:
    if model_type == "blip-2" and params.prefix:
        return None
    return partial(pixel_values, processor.image_processor)


class BlipCaptioner(Captioner):
    name = "blip"
    extra = "captioning"
    Params = BlipParams
    scalable = True

    def __init__(self, params: BlipParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        self.torch_device = select_device(self.device)
        dtype = inference_dtype(self.torch_device)
        revision = {"revision": params.revision} if params.revision else {}

        def load() -> tuple[Any, Any, Any]:
            config = AutoConfig.from_pretrained(params.model, **revision)
            if config.model_type not in BLIP_MODEL_TYPES:
                raise ConfigError(
                    f"{params.model} is a {config.model_type!r} model, not BLIP or BLIP-2"
                )
            processor = AutoProcessor.from_pretrained(params.model, **revision)
            model = AutoModelForImageTextToText.from_pretrained(
                params.model, dtype=dtype, **revision
            )
            return config, processor, model

        config, self.processor, model = load_pretrained(load, params.model, what="BLIP model")
        self.model = model.to(self.torch_device).eval()
        self.model_type = config.model_type
        self.commit = getattr(config, "_commit_hash", None)
        if self.model_type == "blip-2":
            # BLIP-2 generates after the prompt: pad on the left so batched = one at a time
            self.processor.tokenizer.padding_side = "left"

    @classmethod
    def hf_models(cls, params: dict[str, Any]) -> list[str]:
        return [params["model"]]

    def identity(self) -> dict[str, Any]:
        return {
            "captioner": self.name,
            "model": self.params.model,
            "model_type": self.model_type,
            "revision": self.params.revision or self.commit,
        }

    def loader_preprocess(self) -> Any:
        """Image → pixel tensor, for the stage's loaders (DataLoader workers) to run.

        None for BLIP-2 with a prefix: its processor builds the text around the images.
        """
        return _loader_preprocess(self.model_type, self.params, self.processor)

    @classmethod
    def loader_preprocess_for(cls, params: BlipParams) -> Any:
        """:meth:`loader_preprocess` without the model: the processor read from the model's
        folder or cache (for loaders where the model is not, e.g. Ray CPU tasks)."""
        from transformers import AutoConfig, AutoProcessor

        revision = {"revision": params.revision} if params.revision else {}

        def load() -> tuple[str, Any]:
            config = AutoConfig.from_pretrained(params.model, **revision)
            return config.model_type, AutoProcessor.from_pretrained(params.model, **revision)

        model_type, processor = load_pretrained(load, params.model, what="BLIP processor")
        if model_type not in BLIP_MODEL_TYPES:
            return None  # the actor building the model says what is wrong
        return _loader_preprocess(model_type, params, processor)

    def _generate(self, images: list[Any]) -> list[str]:
        import torch
        from transformers import BatchFeature

        params: BlipParams = self.params
        with phase("preprocess"):
            if images and isinstance(images[0], torch.Tensor):  # from loader_preprocess
                if params.prefix:
                    prefixes = [params.prefix] * len(images)
                    inputs = self.processor(text=prefixes, return_tensors="pt", padding=True)
                else:
                    inputs = BatchFeature({})
                inputs["pixel_values"] = torch.stack(list(images))
            elif params.prefix:  # one prefix per image: a single string would caption one image
                inputs = self.processor(
                    images=images,
                    text=[params.prefix] * len(images),
                    return_tensors="pt",
                    padding=True,
                )
            else:
                inputs = self.processor(images=images, return_tensors="pt")
        inputs = inputs.to(self.torch_device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.vision_model.dtype)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                num_beams=params.num_beams,
                max_new_tokens=params.max_new_tokens,
                min_new_tokens=params.min_new_tokens,
            )
        return [
            text.strip() for text in self.processor.batch_decode(output, skip_special_tokens=True)
        ]

    def caption(
        self, originals: list[OriginalRef], images: list[Image.Image | None]
    ) -> list[list[Caption] | Exception]:
        usable = [image for image in images if image is not None]
        texts = [
            text
            for _, batch in batches_with_backoff(
                usable, self.batch_size, self._generate, partial(setattr, self, "batch_size")
            )
            for text in batch
        ]
        return [[Caption(text)] for text in texts]

    def close(self) -> None:
        drop_model(self)
