"""Checkpoints: one safetensors file holding the weights, the priors and a JSON config.

The JSON (format name and version, model config, the CLIP identity the codec
was trained for, training facts) lives in the safetensors metadata, so a
checkpoint is one file to copy. Loading reads tensors and JSON only: nothing
is unpickled, whoever made the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semcomp.codecs.pqvae.bitstream import make_coder
from semcomp.errors import ConfigError

if TYPE_CHECKING:  # torch: reading a checkpoint's metadata (a study's status) needs none
    from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig

FORMAT = "semcomp-pqvae"
FORMAT_VERSION = 1
PRIOR = "prior.global"
POSITIONAL_PRIOR = "prior.positional"


@dataclass
class Checkpoint:
    """A trained embedding codec: model, index priors, and what it was trained for."""

    config: PQVAEConfig
    model: EmbeddingCodecModel
    #: index counts on the training set: (K,) and (symbols, K)
    prior: np.ndarray
    positional_prior: np.ndarray
    #: the CLIP identity of the embeddings it compresses: {"model": ..., "pretrained": ...}
    clip: dict[str, str]
    training: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        from safetensors.torch import save_file

        tensors = {
            f"model.{name}": tensor.detach().cpu().contiguous()
            for name, tensor in self.model.state_dict().items()
        }
        import torch

        tensors[PRIOR] = torch.as_tensor(self.prior, dtype=torch.float64)
        tensors[POSITIONAL_PRIOR] = torch.as_tensor(self.positional_prior, dtype=torch.float64)
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "config": self.config.model_dump_json(),
            "clip": json.dumps(self.clip, sort_keys=True),
            "training": json.dumps(self.training, sort_keys=True),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
        return path

    def coder(self, name: str):
        subspaces = 1 if self.config.architecture == "scalar" else self.config.subspaces
        return make_coder(
            name,
            self.config.symbols,
            self.config.alphabet,
            self.prior,
            self.positional_prior,
            subspaces,
        )


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises its own SafetensorError for foreign files
        raise ConfigError(f"{path} is not a readable safetensors checkpoint: {exc}") from None


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint written by :meth:`Checkpoint.save` (tensors and JSON only)."""
    from safetensors.torch import load_file

    from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no PQVAE checkpoint at {path}")
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a semcomp PQVAE checkpoint")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{path} has checkpoint format {version}, newer than this semcomp reads "
            f"({FORMAT_VERSION}); upgrade semcomp"
        )
    config = PQVAEConfig.model_validate_json(metadata["config"])
    tensors = load_file(str(path))
    model = EmbeddingCodecModel(config)
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return Checkpoint(
        config=config,
        model=model,
        prior=tensors[PRIOR].numpy(),
        positional_prior=tensors[POSITIONAL_PRIOR].numpy(),
        clip=json.loads(metadata.get("clip", "{}")),
        training=json.loads(metadata.get("training", "{}")),
    )
