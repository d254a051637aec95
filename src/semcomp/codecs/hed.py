"""HED (holistically-nested edge detection) sketches for ``side = "hed"``.

The network is the one ControlNet's HED annotator runs (``ControlNetHED_Apache2``, its
weights ``ControlNetHED.pth`` in the ``lllyasviel/Annotators`` repository on Hugging
Face): five VGG-like blocks of 3×3 convolutions (64, 128, 256, 512, 512 channels; 2, 2,
3, 3, 3 layers, ReLU after each; 2×2 max-pooling before every block but the first),
each with a 1×1 projection to one edge map; the input (0-255 RGB) minus a learned
per-channel offset. The five maps are resized to the image, averaged, and squashed by a
sigmoid: the soft edge map ControlNet's HED and scribble models are conditioned on.
semcomp thresholds it into a bilevel sketch, coded losslessly like Canny edges.

Weights are read from a file the study names (``weights``): safetensors, or a PyTorch
state dict loaded with ``weights_only=True`` (nothing is unpickled). No weights are
downloaded: a missing file is one clear error naming where to get it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from semcomp.errors import ModelUnavailableError

#: where the real weights come from
HED_WEIGHTS_SOURCE = (
    "ControlNetHED.pth from the lllyasviel/Annotators repository on Hugging Face "
    "(e.g. `huggingface-cli download lllyasviel/Annotators ControlNetHED.pth`)"
)
#: (output channels, convolutions) of each block
HED_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def hed_network() -> Any:
    """The HED network with freshly initialised weights (a ``torch.nn.Module``)."""
    import torch

    class DoubleConvBlock(torch.nn.Module):
        def __init__(self, input_channel: int, output_channel: int, layer_number: int):
            super().__init__()
            self.convs = torch.nn.Sequential()
            for i in range(layer_number):
                self.convs.append(
                    torch.nn.Conv2d(
                        input_channel if i == 0 else output_channel, output_channel, 3, padding=1
                    )
                )
            self.projection = torch.nn.Conv2d(output_channel, 1, 1)

        def forward(self, x: Any, down_sampling: bool = False) -> tuple[Any, Any]:
            h = torch.nn.functional.max_pool2d(x, 2, 2) if down_sampling else x
            for conv in self.convs:
                h = torch.nn.functional.relu(conv(h))
            return h, self.projection(h)

    class ControlNetHED(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.Parameter(torch.zeros(1, 3, 1, 1))
            channels = 3
            for index, (width, layers) in enumerate(HED_BLOCKS, start=1):
                setattr(self, f"block{index}", DoubleConvBlock(channels, width, layers))
                channels = width

        def forward(self, x: Any) -> list[Any]:
            h = x - self.norm
            projections = []
            for index in range(1, len(HED_BLOCKS) + 1):
                h, projection = getattr(self, f"block{index}")(h, down_sampling=index > 1)
                projections.append(projection)
            return projections

    return ControlNetHED()


def load_hed(weights: Path, device: str = "cpu") -> Any:
    """The HED network with the weights in ``weights`` (safetensors or a PyTorch state
    dict), in eval mode; a missing or mismatched file is one clear error."""
    import torch

    weights = Path(weights)
    if not weights.is_file():
        raise ModelUnavailableError(
            f"HED weights not found at {weights}: download {HED_WEIGHTS_SOURCE} and point "
            'side_params.weights at the file (side = "hed")'
        )
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    network = hed_network()
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelUnavailableError(
            f"{weights} does not hold HED weights (the network of {HED_WEIGHTS_SOURCE}): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    import hashlib

    network.weights_sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()  # provenance
    return network.to(device).eval()


def hed_edges(network: Any, image: Image.Image) -> Image.Image:
    """The soft HED edge map of ``image`` (mode ``L``, 255 = edge), as ControlNet's
    annotator computes it: the five side outputs resized to the image (bilinear),
    averaged, through a sigmoid."""
    import numpy as np
    import torch

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    device = next(network.parameters()).device
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
        maps = network(tensor)
        size = (image.height, image.width)
        resized = [
            torch.nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps
        ]
        edge = torch.sigmoid(torch.cat(resized, dim=1).mean(dim=1))[0]
    grey = (edge.cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L")


def write_random_hed(path: Path, seed: int = 0) -> Path:
    """The HED network with random weights saved as safetensors (tests, offline runs)."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    network = hed_network()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path
