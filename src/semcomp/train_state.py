"""A training run's last epoch on disk, so that a killed run resumes where it stopped.

The PQVAE-shared trainer and the ClipCap trainer both keep, in their output folder, the
last epoch's weights, optimiser state and torch RNG in ``last.safetensors`` and the rest
(a fingerprint of the configuration, the epoch, the history, …) in ``train_state.json``.
Both files are written to a temporary name and renamed, weights first, so a kill leaves
either the previous epoch's pair or the new one's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from semcomp.errors import ConfigError

STATE_FILE = "train_state.json"
LAST = "last.safetensors"


def save_last(
    out_dir: Path, model_tensors: dict[str, Any], optimizer: Any, state: dict[str, Any]
) -> None:
    """Write the model's tensors, ``optimizer``'s state, the RNG and ``state`` (JSON)."""
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_tensors.items()}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = torch.get_rng_state()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{LAST}.tmp"
    save_file(tensors, str(tmp))
    state_tmp = out_dir / f".{STATE_FILE}.tmp"
    state_tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(out_dir / LAST)
    state_tmp.replace(out_dir / STATE_FILE)


def load_last(
    out_dir: Path, fingerprint: dict[str, Any], optimizer: Any, what: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The model's tensors and the JSON state of ``out_dir``'s last epoch, with
    ``optimizer``'s state and the torch RNG restored; None when the folder holds no run.

    A run whose fingerprint differs (another configuration or data) is a ConfigError
    naming ``what`` it holds, rather than a silent mix of two runs.
    """
    import torch
    from safetensors.torch import load_file

    state_path = out_dir / STATE_FILE
    if not state_path.is_file() or not (out_dir / LAST).is_file():
        return None
    state = json.loads(state_path.read_text())
    if state["fingerprint"] != fingerprint:
        raise ConfigError(f"{out_dir} holds {what}; choose another --out folder")
    tensors = load_file(str(out_dir / LAST))
    optimizer_state = optimizer.state_dict()
    for key, tensor in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[name] = tensor
    optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(tensors["rng"])
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    return model, state
