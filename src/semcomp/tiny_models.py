"""Tiny random-weight models of the real architectures, written to local folders.

They are what the offline demo and the tests run when real weights cannot be
had, and they load through exactly the production loading code
(``local-dir:`` for open_clip, ``from_pretrained(folder)`` for transformers and
diffusers). Their outputs are meaningless; everything made with them is
labelled "random weights". Each builder is deterministic for a seed and does
nothing if the folder is already complete.

With ``full_size=True`` the same builders write random-weight models at the
real sizes (CLIP ViT-L/14@336px, BLIP-large, Stable Diffusion 1.5), built from
config numbers alone, for throughput benchmarks on a GPU without downloads.
Their tokenizers keep the tiny vocabularies (the embedding tables shrink with
them; everything else has the real shape).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from semcomp.models import quiet_hf_libraries

TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

#: words (and BERT word pieces) the tiny captioners can say
_WORD_LIST = """
a an the of on in with and at to is are by for from its near two three some
man woman person people dog cat bird horse car bus train boat plane bike
table chair bed couch room street road field grass tree sky water beach snow
red blue green white black yellow brown small large big old young apple mug ball
sitting standing walking riding holding eating playing looking lying flying
picture photo image view group front top side next close up over under mountain
##s ##ing ##ed ##er ##ly ##y . , building city park kitchen food plate sun moon
wall window door light sign
"""
WORDS = _WORD_LIST.split()


def _done(folder: Path, marker: str) -> bool:
    return (folder / marker).exists()


def _save_whole(folder: Path, *savers: Any) -> None:
    """Each ``saver.save_pretrained`` into a sibling folder, then that folder becomes
    ``folder``: a save killed half-way (gigabytes at full size) leaves nothing that
    :func:`_done` takes for a built model."""
    import shutil

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for saver in savers:
        saver.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


#: the real SD 1.5 UNet, VAE and text encoder sizes (runwayml/stable-diffusion-v1-5 configs)
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE: dict[str, Any] = {
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
}
SD15_TEXT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
}
#: BLIP-large (Salesforce/blip-image-captioning-large): ViT-L/16 at 384 px, BERT-base decoder
BLIP_LARGE_VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 16,
}
BLIP_LARGE_TEXT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
    "encoder_hidden_size": 1024,
}


def write_tiny_open_clip(folder: Path, seed: int = 0, *, full_size: bool = False) -> str:
    """A tiny CLIP (ViT image tower, transformer text tower); returns its ``local-dir:`` id.

    ``full_size``: ViT-L/14 at 336 px (open_clip's ``ViT-L-14-336`` config) instead.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    weights = folder / "open_clip_model.safetensors"
    if not weights.exists():
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        config = open_clip.get_model_config("ViT-L-14-336") if full_size else TINY_CLIP_CONFIG
        model = open_clip.CLIP(**config)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        (folder / "open_clip_config.json").write_text(
            json.dumps({"model_cfg": config, "preprocess_cfg": {}}, indent=2)
        )
        tmp = folder / ".open_clip_model.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(weights)
    return f"local-dir:{folder.resolve()}"


def write_tiny_blip(folder: Path, seed: int = 0, *, full_size: bool = False) -> Path:
    """A tiny BLIP captioner (BlipForConditionalGeneration) saved with its processor.

    ``full_size``: BLIP-large's vision and text sizes (384 px input) instead.
    """
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    quiet_hf_libraries()
    folder = Path(folder)
    if _done(folder, "model.safetensors"):
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        vocab = Path(scratch) / "vocab.txt"
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
        vocab.write_text("\n".join(dict.fromkeys(specials + WORDS)) + "\n")
        # the vocabulary path goes positionally: transformers 5 ignores vocab_file=
        tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]", model_max_length=64)
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "encoder_hidden_size": 32,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    if full_size:
        text, vision = dict(BLIP_LARGE_TEXT), dict(BLIP_LARGE_VISION)
    side = vision["image_size"]
    processor = BlipProcessor(BlipImageProcessor(size={"height": side, "width": side}), tokenizer)
    config = BlipConfig(
        text_config=text
        | {
            "vocab_size": len(tokenizer),
            # 0.5 so that different tiny-model images get different captions; the usual
            # 0.02 at full size, where 0.5 overflows the activations of 24 layers
            "initializer_range": 0.02 if full_size else 0.5,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        # the default initializer_range (1e-10) gives every image one caption
        vision_config=vision | {"initializer_range": 0.02},
        projection_dim=text["hidden_size"] if full_size else 32,
        image_text_hidden_size=text["hidden_size"] if full_size else 32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    _save_whole(folder, processor, model)
    return folder


def write_tiny_blip2(folder: Path, seed: int = 0, num_query_tokens: int = 4) -> Path:
    """A tiny BLIP-2 (ViT, Q-Former, OPT) saved with its processor."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        GPT2Tokenizer,
    )

    quiet_hf_libraries()
    folder = Path(folder)
    if _done(folder, "model.safetensors"):
        return folder
    words = [w for w in WORDS if not w.startswith("##")]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [" ".join(words)] * 50,
        vocab_size=1000,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        show_progress=False,
    )
    model_json = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    tokenizer = GPT2Tokenizer(
        vocab=model_json["vocab"],
        merges=merges,
        unk_token="<unk>",
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        add_bos_token=True,
        model_max_length=64,
    )
    processor = Blip2Processor(
        BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer,
        num_query_tokens=num_query_tokens,
    )
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = Blip2Config(
        vision_config=small
        | {"intermediate_size": 64, "image_size": 32, "patch_size": 8, "initializer_range": 0.02},
        qformer_config=small
        | {
            "vocab_size": len(tokenizer),
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,
            "cross_attention_frequency": 1,
            "initializer_range": 0.02,
        },
        text_config=small
        | {
            "model_type": "opt",
            "vocab_size": len(tokenizer),
            "ffn_dim": 64,
            "max_position_embeddings": 64,
            "word_embed_proj_dim": 32,
            "init_std": 0.5,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        num_query_tokens=num_query_tokens,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    _save_whole(folder, processor, model)
    return folder


def write_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A tiny GPT-2 language model (``GPT2LMHeadModel``) with a byte-level BPE tokenizer
    trained on the caption words, for ClipCap (``semcomp clipcap``)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = Path(folder)
    if _done(folder, "model.safetensors"):
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        bpe = ByteLevelBPETokenizer()
        sentences = [" ".join(WORDS[i : i + 8]) for i in range(0, len(WORDS), 3)]
        bpe.train_from_iterator(
            sentences * 4, vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False
        )
        bpe.save_model(scratch)
        # from_pretrained(folder): GPT2TokenizerFast(vocab_file=...) builds an empty tokenizer
        tokenizer = GPT2TokenizerFast.from_pretrained(scratch)
    if len(tokenizer) < 100:
        raise RuntimeError(f"the tiny GPT-2 tokenizer has only {len(tokenizer)} tokens")
    quiet_hf_libraries()
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    _save_whole(folder, tokenizer, GPT2LMHeadModel(config).eval())
    return folder


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that CLIP's byte-level BPE works on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_sam(folder: Path, seed: int = 0) -> Path:
    """A tiny Segment Anything model (``SamModel``: ViT image encoder, prompt encoder, mask
    decoder) at 64 px with its processor, for ``semcomp referring eval``."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    folder = Path(folder)
    if _done(folder, "model.safetensors"):
        return folder
    quiet_hf_libraries()
    torch.manual_seed(seed)
    config = SamConfig(
        vision_config={
            "image_size": 64,
            "patch_size": 8,
            "hidden_size": 32,
            "output_channels": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_dim": 64,
            "global_attn_indexes": [1],
            "window_size": 4,
            "num_pos_feats": 16,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": 64, "patch_size": 8},
        mask_decoder_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_dim": 64,
            "iou_head_hidden_dim": 32,
        },
    )
    processor = SamProcessor(
        SamImageProcessor(
            size={"longest_edge": 64},
            pad_size={"height": 64, "width": 64},
            mask_size={"longest_edge": 32},
            mask_pad_size={"height": 32, "width": 32},
        )
    )
    _save_whole(folder, processor, SamModel(config).eval())
    return folder


#: the tiny Stable Diffusion's UNet (a tiny ControlNet is made from one like it)
TINY_SD_UNET: dict[str, Any] = {
    "sample_size": 8,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}


def write_tiny_stable_diffusion(folder: Path, seed: int = 0, *, full_size: bool = False) -> Path:
    """A tiny Stable Diffusion 1.x pipeline (CLIP text encoder, UNet, VAE with the real ×8).

    ``full_size``: SD 1.5's UNet, VAE and text encoder sizes (512×512 images) instead.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    quiet_hf_libraries()
    folder = Path(folder)
    if _done(folder, "model_index.json"):
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for symbol in _byte_symbols():
            vocab[symbol] = len(vocab)
        for symbol in _byte_symbols():
            vocab[symbol + "</w>"] = len(vocab)
        merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n")]
        for left, right in merges:
            vocab.setdefault(left + right, len(vocab))
        vocab_path, merges_path = Path(scratch) / "vocab.json", Path(scratch) / "merges.txt"
        vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        merges_path.write_text(
            "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
        )
        # vocab=/merges= (not *_file=) in transformers 5; model_max_length is required
        tokenizer = CLIPTokenizer(
            vocab=str(vocab_path), merges=str(merges_path), model_max_length=77
        )
    text: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    unet_config: dict[str, Any] = dict(TINY_SD_UNET)
    vae_config: dict[str, Any] = {
        "block_out_channels": (8, 8, 8, 8),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 64,
    }
    if full_size:
        text, unet_config, vae_config = dict(SD15_TEXT), dict(SD15_UNET), dict(SD15_VAE)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **text,
        )
    )
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **unet_config)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        **vae_config,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    _save_whole(folder, pipeline)
    return folder


def write_tiny_controlnet(folder: Path, seed: int = 0) -> Path:
    """A tiny ControlNet (``ControlNetModel.from_unet``) for the tiny Stable Diffusion's UNet
    architecture: random weights; its conditioning embedding downscales by the real ×8."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    quiet_hf_libraries()
    folder = Path(folder)
    if _done(folder, "config.json"):
        return folder
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **TINY_SD_UNET)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    # a fresh ControlNet's "zero convolutions" ignore the sketch: give them random weights
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")) or (
                name.startswith("controlnet_cond_embedding.conv_out")
            ):
                parameter.normal_(std=0.1)
    _save_whole(folder, controlnet)
    return folder


#: the file each tiny model's folder has once it is complete
_TINY_MARKERS = {
    "clip": "open_clip_model.safetensors",
    "blip": "model.safetensors",
    "sd": "model_index.json",
    "controlnet": "config.json",
}


def tiny_model_kind(study_dir: Path, source: str) -> str | None:
    """Which tiny model (``clip``, ``blip``, ``sd``) ``source`` is in ``study_dir``, if any:
    where ``model = "tiny"`` puts it (``semcomp.params.TINY_FOLDERS``)."""
    from semcomp.params import LOCAL_DIR, TINY_FOLDERS

    path = Path(source.removeprefix(LOCAL_DIR))
    if not path.is_absolute():
        return None
    for kind, folder in TINY_FOLDERS.items():
        if path.resolve() == (Path(study_dir) / folder).resolve():
            return kind
    return None


def ensure_tiny_model(study_dir: Path, kind: str) -> bool:
    """Build the study's tiny ``kind`` model unless it is there; whether it was built."""
    from semcomp.params import TINY_FOLDERS

    folder = Path(study_dir) / TINY_FOLDERS[kind]
    if (folder / _TINY_MARKERS[kind]).exists():
        return False
    builders = {
        "clip": write_tiny_open_clip,
        "blip": write_tiny_blip,
        "sd": write_tiny_stable_diffusion,
        "controlnet": write_tiny_controlnet,
    }
    builders[kind](folder)
    return True
