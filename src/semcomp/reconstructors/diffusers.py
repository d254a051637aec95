"""Reconstructions with a diffusers text-to-image pipeline (any hub id or local folder).

``AutoPipelineForText2Image`` loads Stable Diffusion 1.5/2.1/XL, SD-Turbo and
the rest; steps, guidance, size, scheduler and negative prompt come from the
method. Prompts run in batches (fp16 on CUDA, optional CPU offload for small
GPUs), each with its own seeded CPU generator, so a seed gives the same
starting noise on any device. The safety checker is not loaded: it blacks out
images, which would corrupt similarity scores.

Same prompt, seed and batch composition give bit-identical images; the same
prompt and seed in a batch of another size can differ by one grey level
(floating-point rounding in the batched UNet).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from pydantic import Field

from semcomp.engines import phase
from semcomp.errors import ConfigError
from semcomp.models import (
    batches_with_backoff,
    inference_dtype,
    load_pretrained,
    release,
    select_device,
)
from semcomp.params import PluginParams, model_source
from semcomp.reconstructors.base import PromptUse, Reconstruction, Reconstructor

#: a hub id, a folder, or "tiny" (a tiny random-weight model, see semcomp.tiny_models)
DiffusionSource = model_source("sd")


class DiffusersParams(PluginParams):
    model: DiffusionSource = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    revision: str | None = None
    steps: int = Field(default=25, ge=1)
    guidance: float = Field(default=7.5, ge=0)
    width: int = Field(default=512, ge=8, multiple_of=8)
    height: int = Field(default=512, ge=8, multiple_of=8)
    #: a diffusers scheduler class name, with or without the "Scheduler" suffix
    #: (``DDIM``, ``EulerDiscrete``, ``DPMSolverMultistep``, ...); None keeps the model's
    scheduler: str | None = None
    negative_prompt: str = ""
    #: move idle sub-models to the CPU (GPUs with little memory; CUDA only)
    cpu_offload: bool = False

    operational: ClassVar[frozenset[str]] = frozenset({"cpu_offload"})


def consumed_prefix(tokenizer: Any, text: str) -> PromptUse:
    """How much of ``text`` a CLIP tokenizer with ``model_max_length`` tokens keeps."""
    limit = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add(pair=False)
    encoded = tokenizer(
        text, add_special_tokens=False, truncation=False, return_offsets_mapping=True
    )
    offsets = encoded["offset_mapping"]
    if len(offsets) <= limit:
        return PromptUse(tokens=len(offsets), limit=limit, consumed_chars=len(text))
    # the cut can fall inside a character (byte-level BPE): count only whole characters
    consumed = min(offsets[limit - 1][1], offsets[limit][0])
    return PromptUse(tokens=len(offsets), limit=limit, consumed_chars=consumed)


class DiffusersReconstructor(Reconstructor):
    name = "diffusers"
    extra = "diffusion"
    Params = DiffusersParams
    scalable = True

    @classmethod
    def prompt_reader(cls, params: DiffusersParams) -> Callable[[str], PromptUse]:
        from transformers import AutoTokenizer

        revision = {"revision": params.revision} if params.revision else {}
        tokenizer = load_pretrained(
            lambda: AutoTokenizer.from_pretrained(params.model, subfolder="tokenizer", **revision),
            params.model,
            what="text-to-image tokenizer",
        )
        return lambda text: consumed_prefix(tokenizer, text)

    def __init__(self, params: DiffusersParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        import diffusers

        self.torch_device = select_device(self.device)
        revision = {"revision": params.revision} if params.revision else {}
        pipeline = load_pretrained(
            lambda: diffusers.AutoPipelineForText2Image.from_pretrained(
                params.model,
                dtype=inference_dtype(self.torch_device),
                safety_checker=None,
                requires_safety_checker=False,
                **revision,
            ),
            params.model,
            what="text-to-image pipeline",
        )
        if params.scheduler:
            name = params.scheduler.removesuffix("Scheduler") + "Scheduler"
            scheduler_class = getattr(diffusers, name, None)
            if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
                raise ConfigError(f"diffusers has no scheduler {name!r}")
            pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config)
        if params.cpu_offload and self.torch_device.startswith("cuda"):
            pipeline.enable_model_cpu_offload()
        else:
            pipeline = pipeline.to(self.torch_device)
        pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self.commit = getattr(pipeline.config, "_commit_hash", None)

    @classmethod
    def hf_models(cls, params: dict[str, Any]) -> list[str]:
        return [params["model"]]

    def identity(self) -> dict[str, Any]:
        return {
            "reconstructor": self.name,
            "model": self.params.model,
            "pipeline": type(self.pipeline).__name__,
            "scheduler": type(self.pipeline.scheduler).__name__,
            "revision": self.params.revision or self.commit,
        }

    def _generate(self, batch: list[tuple[str, int]]) -> list[bytes]:
        import torch

        params: DiffusersParams = self.params
        prompts = [prompt for prompt, _ in batch]
        generators = [torch.Generator(device="cpu").manual_seed(seed) for _, seed in batch]
        options: dict[str, Any] = {}
        if params.negative_prompt:
            options["negative_prompt"] = [params.negative_prompt] * len(batch)
        with torch.inference_mode():
            images = self.pipeline(
                prompt=prompts,
                generator=generators,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                width=params.width,
                height=params.height,
                output_type="pil",
                **options,
            ).images
        encoded = []
        with phase("write"):  # PNG encoding: the output's writing, not the model's work
            for image in images:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                encoded.append(buffer.getvalue())
        return encoded

    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        pairs = list(zip(prompts, seeds, strict=True))
        return [
            Reconstruction(png=png)
            for _, batch in batches_with_backoff(
                pairs, self.batch_size, self._generate, partial(setattr, self, "batch_size")
            )
            for png in batch
        ]

    def close(self) -> None:
        self.pipeline = None
        release()
