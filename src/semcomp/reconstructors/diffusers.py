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
    drop_model,
    inference_dtype,
    load_pretrained,
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
        pipeline = self.load_pipeline(
            diffusers,
            {
                "dtype": inference_dtype(self.torch_device),
                "safety_checker": None,
                "requires_safety_checker": False,
                **revision,
            },
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

    def load_pipeline(self, diffusers: Any, options: dict[str, Any]) -> Any:
        """The pipeline, loaded through :func:`load_pretrained` (one clear message if absent)."""
        return load_pretrained(
            lambda: diffusers.AutoPipelineForText2Image.from_pretrained(
                self.params.model, **options
            ),
            self.params.model,
            what="text-to-image pipeline",
        )

    def pipeline_inputs(self, sides: list[Any]) -> dict[str, Any]:
        """The pipeline's arguments besides prompts, seeds, steps and guidance."""
        return {"width": self.params.width, "height": self.params.height}

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

    def _generate(self, batch: list[tuple[str, int, Any]]) -> list[bytes]:
        import torch

        params: DiffusersParams = self.params
        prompts = [prompt for prompt, _, _ in batch]
        generators = [torch.Generator(device="cpu").manual_seed(seed) for _, seed, _ in batch]
        options: dict[str, Any] = {}
        if params.negative_prompt:
            options["negative_prompt"] = [params.negative_prompt] * len(batch)
        with torch.inference_mode():
            images = self.pipeline(
                prompt=prompts,
                generator=generators,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                output_type="pil",
                **self.pipeline_inputs([side for _, _, side in batch]),
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
        return self._reconstruct(list(zip(prompts, seeds, [None] * len(prompts), strict=True)))

    def _reconstruct(self, pairs: list[tuple[str, int, Any]]) -> list[Reconstruction | Exception]:
        return [
            Reconstruction(png=png)
            for _, batch in batches_with_backoff(
                pairs, self.batch_size, self._generate, partial(setattr, self, "batch_size")
            )
            for png in batch
        ]

    def close(self) -> None:
        drop_model(self, "pipeline")


# ---- conditioned on side information (semcomp.codecs.side) ---------------------------------

#: a ControlNet: a hub id, a folder, or "tiny" (one matching the tiny Stable Diffusion)
ControlNetSource = model_source("controlnet")


class ControlNetParams(DiffusersParams):
    #: a ControlNet for the base model (canny edges for ``side = "edges"``)
    controlnet: ControlNetSource = "lllyasviel/sd-controlnet-canny"
    conditioning_scale: float = Field(default=1.0, ge=0)


class ControlNetReconstructor(DiffusersReconstructor):
    """Text and an edge sketch → image: ``StableDiffusionControlNetPipeline`` (canny).

    The decoded sketch is resized to ``width`` × ``height`` and conditions every step.
    """

    name = "diffusers-controlnet"
    Params = ControlNetParams
    #: a canny ControlNet for ``edges``, an HED or scribble one for ``hed``
    side_kinds = ("edges", "hed")

    def load_pipeline(self, diffusers: Any, options: dict[str, Any]) -> Any:
        params: ControlNetParams = self.params
        controlnet = load_pretrained(
            lambda: diffusers.ControlNetModel.from_pretrained(
                params.controlnet, dtype=options["dtype"]
            ),
            params.controlnet,
            what="ControlNet",
        )
        return load_pretrained(
            lambda: diffusers.StableDiffusionControlNetPipeline.from_pretrained(
                params.model, controlnet=controlnet, **options
            ),
            params.model,
            what="ControlNet pipeline",
        )

    def pipeline_inputs(self, sides: list[Any]) -> dict[str, Any]:
        params: ControlNetParams = self.params
        size = (params.width, params.height)
        return super().pipeline_inputs(sides) | {
            "image": [side.resize(size) for side in sides],
            "controlnet_conditioning_scale": params.conditioning_scale,
        }

    @classmethod
    def hf_models(cls, params: dict[str, Any]) -> list[str]:
        return [params["model"], params["controlnet"]]

    def identity(self) -> dict[str, Any]:
        return super().identity() | {"controlnet": self.params.controlnet}

    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        raise NotImplementedError(f'{self.name} needs side information (side = "edges")')

    def reconstruct_with_side(
        self, prompts: list[str], seeds: list[int], sides: list[Any]
    ) -> list[Reconstruction | Exception]:
        return self._reconstruct(list(zip(prompts, seeds, sides, strict=True)))


class Img2ImgParams(DiffusersParams):
    #: how far from the thumbnail the image may move: 0 keeps it, 1 ignores it
    #: (``steps × strength`` denoising steps run)
    strength: float = Field(default=0.6, gt=0, le=1)


class Img2ImgReconstructor(DiffusersReconstructor):
    """Text and a thumbnail → image: ``AutoPipelineForImage2Image`` (for SD 1.x
    ``StableDiffusionImg2ImgPipeline``) started from the thumbnail, upscaled to
    ``width`` × ``height``, noised to ``strength``."""

    name = "diffusers-img2img"
    Params = Img2ImgParams
    side_kinds = ("thumbnail",)

    def load_pipeline(self, diffusers: Any, options: dict[str, Any]) -> Any:
        return load_pretrained(
            lambda: diffusers.AutoPipelineForImage2Image.from_pretrained(
                self.params.model, **options
            ),
            self.params.model,
            what="image-to-image pipeline",
        )

    def pipeline_inputs(self, sides: list[Any]) -> dict[str, Any]:
        from PIL import Image

        params: Img2ImgParams = self.params
        size = (params.width, params.height)
        return {
            "image": [side.resize(size, Image.Resampling.BICUBIC) for side in sides],
            "strength": params.strength,
        }

    def reconstruct(self, prompts: list[str], seeds: list[int]) -> list[Reconstruction | Exception]:
        raise NotImplementedError(f'{self.name} needs side information (side = "thumbnail")')

    def reconstruct_with_side(
        self, prompts: list[str], seeds: list[int], sides: list[Any]
    ) -> list[Reconstruction | Exception]:
        return self._reconstruct(list(zip(prompts, seeds, sides, strict=True)))
