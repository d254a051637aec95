"""The optional dependency sets (pip extras) and the one-line error of a command that
needs one that is not installed.

The base install (no torch) runs the study store, ingest, pixel codecs, text payloads,
human captions, external imports, ``status``, ``report``, the surveys and the analysis.
Everything that loads a model or serves the app is an extra (``pyproject.toml``).
"""

from __future__ import annotations

import importlib.util

from semcomp.errors import MissingExtraError

#: extra → the modules semcomp imports from it (pyproject.toml's extra installs them)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "clip": ("torch", "torchvision", "open_clip", "huggingface_hub"),
    "captioning": ("torch", "transformers", "huggingface_hub"),
    "diffusion": ("torch", "transformers", "diffusers", "accelerate", "huggingface_hub"),
    "api": ("openai",),
    "pqvae": ("torch", "constriction"),
    "app": ("streamlit", "plotly"),
    "ray": ("ray",),
    "learned": (
        "torch",
        "torchvision",
        "einops",
        "pytorch_msssim",
        "torch_geometric",
        "xxhash",
        "compressai",
    ),
    "metrics": ("torch", "torchvision", "torchmetrics", "lpips", "piq", "pytorch_msssim"),
    "hub": ("huggingface_hub",),
    "side": ("cv2",),
    "downstream": ("torch", "transformers", "pycocoevalcap", "constriction"),
}

#: CompressAI pins numpy<2, so it is installed without its dependencies (the
#: ``learned`` extra brings its runtime needs)
COMPRESSAI = "compressai>=1.2.8"


def install_command(extras: list[str]) -> str:
    """The pip command that installs ``extras``."""
    command = f"pip install 'semcomp[{','.join(extras)}]'"
    if "learned" in extras:
        command += f" && pip install --no-deps '{COMPRESSAI}'"
    return command


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module set to None
        return False


def missing_extras(*extras: str) -> list[str]:
    """The extras among ``extras`` (in order, once each) with a module that is not installed."""
    return [
        extra
        for extra in dict.fromkeys(extras)
        if not all(_importable(module) for module in EXTRA_MODULES[extra])
    ]


def require_extras(command: str, *extras: str) -> None:
    """Raise one :class:`MissingExtraError` naming every extra of ``extras`` that ``command``
    needs and lacks, and how to install them:
    ``semcomp run needs the 'clip' extra: pip install 'semcomp[clip]'``."""
    missing = missing_extras(*extras)
    if missing:
        names = ", ".join(f"'{extra}'" for extra in missing)
        noun = "extra" if len(missing) == 1 else "extras"
        raise MissingExtraError(f"{command} needs the {names} {noun}: {install_command(missing)}")


__all__ = ["COMPRESSAI", "EXTRA_MODULES", "install_command", "missing_extras", "require_extras"]
