"""The ``dreamsim`` metric: DreamSim (Fu et al., 2023), a perceptual distance tuned on human
similarity judgements of synthetic image pairs (NIGHTS).

Through the ``dreamsim`` package: the ensemble concatenates the CLS / embedding
features of DINO ViT-B/16, CLIP ViT-B/16 and OpenCLIP ViT-B/16, fine-tuned with
LoRA; the distance is 1 − cosine similarity of the (centred, normalised)
embeddings. Both images are resized to 224×224 (bicubic, aspect ratio not kept) as
the package's own preprocessing does.

Weights: the package downloads them from its GitHub releases (and DINO through
``torch.hub``) into a folder, ``weights_dir`` (default ``~/.cache/dreamsim``); a
run never downloads them itself, it names the command that does. ``weights =
"random"`` builds the same model (the package's ``PerceptualModel`` with its LoRA
layers) from random ViT-B backbones; ``"tiny"`` from 12-layer ViTs 32 wide, for
tests and the offline demo.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal
from unittest import mock

from semcomp.metrics.base import ScoreSpec
from semcomp.metrics.learned import LearnedPairwiseMetric, distance_score, missing_packages, seeded
from semcomp.params import PluginParams, StudyPath

#: the DreamSim models whose backbones can also be built with random weights
VARIANTS = ("ensemble", "dino_vitb16", "clip_vitb32", "open_clip_vitb32")
DISPLAY = {
    "ensemble": "DreamSim",
    "dino_vitb16": "DreamSim (DINO ViT-B/16)",
    "clip_vitb32": "DreamSim (CLIP ViT-B/32)",
    "open_clip_vitb32": "DreamSim (OpenCLIP ViT-B/32)",
}
#: each variant's backbones (the package's ``dreamsim_args``), known without importing it
BACKBONES = {
    "ensemble": "dino_vitb16,clip_vitb16,open_clip_vitb16",
    "dino_vitb16": "dino_vitb16",
    "clip_vitb32": "clip_vitb32",
    "open_clip_vitb32": "open_clip_vitb32",
}
#: the LoRA of the released models (the ensemble's training config: r 16, α 0.5, dropout 0.3
#: on the attention's qkv), used when there is no adapter_config.json (random weights)
LORA = {"r": 16, "lora_alpha": 0.5, "lora_dropout": 0.3, "bias": "none", "target_modules": ["qkv"]}
IMAGE_SIZE = 224
#: what ``torch.hub.load("facebookresearch/dino:main", ...)`` keeps in the weights folder
DINO_HUB = ("facebookresearch_dino_main", "checkpoints/dino_vitbase16_pretrain.pth")


def default_weights_dir() -> Path:
    return Path(os.path.expanduser("~/.cache/dreamsim"))


class DreamSimParams(PluginParams):
    operational: ClassVar[frozenset[str]] = frozenset({"weights_dir"})

    #: ``ensemble`` (the paper's model) or one fine-tuned backbone
    variant: Literal["ensemble", "dino_vitb16", "clip_vitb32", "open_clip_vitb32"] = "ensemble"
    #: ``random``: random ViT-B backbones; ``tiny``: random 12-layer ViTs 32 wide (tests)
    weights: Literal["pretrained", "random", "tiny"] = "pretrained"
    #: the folder the package downloads its weights into (default ``~/.cache/dreamsim``)
    weights_dir: StudyPath | None = None


def _tag(variant: str) -> str:
    return "ensemble_" if variant == "ensemble" else f"{variant}_single_"


def required_files(variant: str) -> list[str]:
    """What the weights folder must hold for ``variant`` (as the package's downloader
    checks it, plus DINO's ``torch.hub`` repository and checkpoint)."""
    files = [f"{_tag(variant)}lora/adapter_config.json"]
    for model_type in BACKBONES[variant].split(","):
        if model_type.startswith("dino"):
            files += [f"{model_type}_pretrain.pth", *DINO_HUB]
        else:
            files.append(f"{model_type}_pretrain.pth.tar")
    return files


def _fetch_hint(variant: str, folder: Path) -> str:
    return (
        'run `python -c "from dreamsim import dreamsim; dreamsim(pretrained=True, '
        f"device='cpu', cache_dir='{folder}', dreamsim_type='{variant}')\"` on a connected "
        f"machine and copy {folder} here (or set weights_dir)"
    )


def _random_backbone(model_type: str, load_dir: str = "", *, tiny: bool) -> Any:
    """A random-weight stand-in for ``ViTExtractor.create_model``: the same ViT layout the
    package loads its checkpoints into (CLIP towers as DINO-style ViTs with a projection)."""
    import torch
    from dreamsim.feature_extraction.load_clip_as_dino import QuickGELU
    from dreamsim.feature_extraction.vision_transformer import (
        DINOHead,
        VisionTransformer,
        vit_base,
    )

    patch = int(re.search(r"(\d+)$", model_type).group(1))
    if tiny:
        vit = VisionTransformer(
            patch_size=patch,
            embed_dim=32,
            depth=12,  # DreamSim reads block 11
            num_heads=2,
            mlp_ratio=2,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        )
    else:
        vit = vit_base(patch_size=patch)
    width = vit.embed_dim
    if "clip" not in model_type:
        head = DINOHead(width, 2048, hidden_dim=64, bottleneck_dim=32) if tiny else None
        return (vit, head or DINOHead(width, 2048)) if model_type == "dino_vitb16" else vit
    vit.pos_drop = torch.nn.LayerNorm(width)
    if not model_type.startswith("open_clip"):
        for block in vit.blocks:
            block.mlp.act = QuickGELU()
    for module in vit.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = 1e-5
    return vit, torch.randn(width, 512) * width**-0.5


class DreamSim(LearnedPairwiseMetric):
    """DreamSim distance of each candidate to its original: 0 for identical images."""

    name = "dreamsim"
    Params: ClassVar[type[PluginParams]] = DreamSimParams
    default_batch_size = 16

    @classmethod
    def scores(cls, params: DreamSimParams) -> list[ScoreSpec]:
        tags = [params.variant] if params.variant != "ensemble" else []
        display = DISPLAY[params.variant]
        if params.weights != "pretrained":
            tags.append(params.weights)
            display += ", random weights" if params.weights == "random" else ", tiny random"
        key = f"dreamsim[{','.join(tags)}]" if tags else "dreamsim"
        return [
            distance_score(
                key,
                display,
                "DreamSim: 1 − cosine similarity of ViT embeddings tuned on human judgements of "
                "image similarity (0 = identical; layout, pose and semantic content count "
                "more than fine detail)",
                high=2.0,
            )
        ]

    @classmethod
    def identity_of(cls, params: DreamSimParams) -> dict[str, Any]:
        return {
            **super().identity_of(params),
            "backbones": BACKBONES[params.variant],
            "lora": f"{_tag(params.variant)}lora" if params.weights == "pretrained" else LORA,
            "preprocess": f"both images resized to {IMAGE_SIZE}×{IMAGE_SIZE} (PIL bicubic, "
            "aspect ratio not kept), RGB in [0, 1], each backbone's mean/std",
        }

    @classmethod
    def weights_problem(cls, params: DreamSimParams, reachable: Any) -> str | None:
        problem = missing_packages(cls.name, "dreamsim", "peft")
        if params.weights != "pretrained" or problem:
            return problem
        folder = Path(params.weights_dir or default_weights_dir())
        missing = [f for f in required_files(params.variant) if not (folder / f).exists()]
        if not missing:
            return None
        return (
            f"{DISPLAY[params.variant]}: weights not in {folder} (missing {', '.join(missing)}); "
            + _fetch_hint(params.variant, folder)
        )

    def load(self) -> Any:
        import torch
        from dreamsim.config import dreamsim_args
        from dreamsim.feature_extraction.extractor import ViTExtractor
        from dreamsim.model import PerceptualModel
        from peft import LoraConfig, PeftModel, get_peft_model

        variant, weights = self.params.variant, self.params.weights
        folder = Path(self.params.weights_dir or default_weights_dir())
        config = dreamsim_args["model_config"][variant]

        def perceptual_model() -> Any:
            hub_dir = torch.hub.get_dir()  # the package points torch.hub at its folder
            try:
                with warnings.catch_warnings():  # DINO's head uses the old weight_norm
                    warnings.simplefilter("ignore", FutureWarning)
                    return PerceptualModel(
                        **config, device=self.device, load_dir=str(folder), normalize_embeds=True
                    )
            finally:
                torch.hub.set_dir(hub_dir)

        if weights == "pretrained":
            model = perceptual_model()
            adapter = folder / f"{_tag(variant)}lora"
            saved = json.loads((adapter / "adapter_config.json").read_text())
            lora = LoraConfig(**{k: saved[k] for k in LORA})
            model = get_peft_model(model, lora)
            model = PeftModel.from_pretrained(model.base_model.model, str(adapter))
        else:
            factory = partial(_random_backbone, tiny=weights == "tiny")
            with seeded(), mock.patch.object(ViTExtractor, "create_model", staticmethod(factory)):
                model = perceptual_model()
                model = get_peft_model(model, LoraConfig(**LORA))
        return model.requires_grad_(False)

    def pixels(self, original: Any, candidate: Any) -> tuple[Any, Any]:
        from PIL import Image
        from torchvision.transforms.functional import to_tensor

        size = (IMAGE_SIZE, IMAGE_SIZE)
        return tuple(
            to_tensor(image.resize(size, Image.Resampling.BICUBIC))
            for image in (original, candidate)
        )

    def distances(self, originals: Any, candidates: Any) -> Any:
        return self.model(originals, candidates)
