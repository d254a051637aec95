"""Learned image codecs from CompressAI's model zoo, as pixel codecs with exact rates.

``codec = "compressai"`` with ``params = { model = "cheng2020-anchor" }`` and
``quality = [1, 2, 3]``: each quality is one of the zoo's published networks
(trained for ``metric``, MSE by default). The rate is the exact size of what
would be sent: the entropy-coded strings from the model's ``compress()`` and
the shapes ``decompress()`` needs, in the byte container below; decoding runs
``decompress()`` on those bytes, never the model's forward pass.

Byte container (every byte is counted in the rate)::

    varint height, varint width        the image size, to crop the padding off
    varint shape_h, varint shape_w     ``compress()``'s "shape" (the coded latent's size)
    varint n                           number of strings (1 factorized, 2 hyperprior)
    n - 1 times: varint length, bytes  every string but the last, length-prefixed
    bytes                              the last string: the rest of the container

A varint is unsigned LEB128 (7 bits a byte, high bit set on all but the last
byte), so sizes below 128 take one byte. The model, its metric and quality are
the method's settings, known to both ends like a JPEG decoder's own tables,
so they are not in the container.

Images are padded to a multiple of 64 (what the zoo's models need), centred
with zeros as CompressAI's own evaluation does, and cropped back after
decoding. Images of different sizes go through the model in separate
sub-batches, so an image's bits never depend on what it was batched with.

The codec is a batch plugin: the stage builds it once (perhaps in a Ray actor),
and it keeps one network (one quality) in memory at a time, on CUDA when
available. Pretrained weights come from CompressAI's download URLs into
torch's hub cache; ``weights = "random"`` builds the same architecture with
random weights (then ``update()`` so the entropy coders have their tables),
for offline tests and demos.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from PIL import Image
from pydantic import field_validator

from semcomp.codecs.base import (
    CodecParams,
    ImageCodec,
    OperatingPoint,
    OriginalFacts,
    Representation,
)
from semcomp.codecs.varint import read_varint, varint
from semcomp.engines import phase
from semcomp.errors import ConfigError, ModelUnavailableError
from semcomp.extras import install_command, require_extras
from semcomp.params import BatchPlugin

#: CompressAI zoo models with published weights → their highest quality (qualities start at 1)
COMPRESSAI_MODELS: dict[str, int] = {
    "bmshj2018-factorized": 8,
    "bmshj2018-hyperprior": 8,
    "mbt2018-mean": 8,
    "mbt2018": 8,
    "cheng2020-anchor": 6,
    "cheng2020-attn": 6,
}

#: the spatial multiple every zoo model needs (six stride-2 stages with the hyperprior)
PAD_MULTIPLE = 64


class CompressaiParams(CodecParams):
    #: a CompressAI zoo name (see :data:`COMPRESSAI_MODELS`)
    model: str = "cheng2020-anchor"
    #: the distortion the published networks were trained for
    metric: Literal["mse", "ms-ssim"] = "mse"
    #: ``pretrained`` (CompressAI's published weights) or ``random`` (same architecture,
    #: random weights: offline tests and demos; the numbers mean nothing)
    weights: Literal["pretrained", "random"] = "pretrained"

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if model not in COMPRESSAI_MODELS:
            known = ", ".join(COMPRESSAI_MODELS)
            raise ValueError(f"CompressAI has no zoo model {model!r} with weights; models: {known}")
        return model


# -- the byte container -------------------------------------------------------------------


def pack_container(size: tuple[int, int], shape: tuple[int, int], strings: list[bytes]) -> bytes:
    """The bytes sent for one image: its size, the latent shape and the coded strings."""
    if not strings:
        raise ValueError("a CompressAI bitstream has at least one string")
    out = bytearray()
    for value in (*size, *shape, len(strings)):
        out += varint(value)
    for string in strings[:-1]:
        out += varint(len(string))
        out += string
    out += strings[-1]
    return bytes(out)


def unpack_container(data: bytes) -> tuple[tuple[int, int], tuple[int, int], list[bytes]]:
    """``(size, shape, strings)`` back from :func:`pack_container`'s bytes."""
    values = []
    at = 0
    for _ in range(5):
        value, at = read_varint(data, at, "truncated CompressAI container")
        values.append(value)
    height, width, shape_h, shape_w, count = values
    if count < 1:
        raise ValueError("CompressAI container with no string")
    strings = []
    for _ in range(count - 1):
        length, at = read_varint(data, at, "truncated CompressAI container")
        if at + length > len(data):
            raise ValueError("truncated CompressAI container")
        strings.append(data[at : at + length])
        at += length
    strings.append(data[at:])
    return (height, width), (shape_h, shape_w), strings


# -- weights --------------------------------------------------------------------------------


def zoo() -> Any:
    """``compressai.zoo`` (imported quietly: compressai scripts modules with a torch API that
    torch now warns about, which says nothing to a semcomp user)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        require_extras('codec "compressai"', "learned")
        try:
            import compressai.zoo
        except ImportError as exc:  # installed, but a module it imports is not
            raise ConfigError(
                f'codec "compressai" cannot be imported ({exc}): {install_command(["learned"])}'
            ) from None

    return compressai.zoo


def weights_url(model: str, metric: str, quality: int) -> str:
    return zoo().image.model_urls[model][metric][quality]


def weights_file(model: str, metric: str, quality: int) -> Path:
    """Where torch's hub cache keeps (or would keep) the published weights."""
    import torch

    name = os.path.basename(urlparse(weights_url(model, metric, quality)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def fetch_hint(model: str, metric: str, quality: int) -> str:
    function = model.replace("-", "_")
    path = weights_file(model, metric, quality)
    return (
        f'on a connected machine run `python -c "from compressai.zoo import {function}; '
        f"{function}(quality={quality}, metric='{metric}', pretrained=True)\"` and copy "
        f"{path.name} into {path.parent}"
    )


def load_zoo_model(params: CompressaiParams, quality: int, device: str) -> Any:
    """The zoo network for ``quality`` in eval mode on ``device``, ready to code."""
    from semcomp.models import host_reachable

    build = zoo().image_models[params.model]
    if params.weights == "random":
        import torch

        with torch.random.fork_rng(devices=[]):  # the same weights in every run and process
            torch.manual_seed(quality)
            model = build(quality=quality, metric=params.metric, pretrained=False)
    else:
        what = f"CompressAI {params.model} ({params.metric}, quality {quality})"
        cached = weights_file(params.model, params.metric, quality).is_file()
        if not cached and not host_reachable(weights_url(params.model, params.metric, quality)):
            raise ModelUnavailableError(
                f"{what} weights are not in the local cache and cannot be downloaded; "
                f"{fetch_hint(params.model, params.metric, quality)}"
            )
        try:
            model = build(quality=quality, metric=params.metric, pretrained=True, progress=False)
        except Exception as exc:  # URLError, a truncated file, ...
            raise ModelUnavailableError(
                f"{what} weights cannot be loaded ({exc}); "
                f"{fetch_hint(params.model, params.metric, quality)}"
            ) from exc
    model = model.eval().to(device)
    model.update(force=True)  # the entropy coders' CDF tables (random weights have none)
    return model


@contextmanager
def coding_mode() -> Iterator[None]:
    """No autograd, and deterministic cuDNN convolutions: the decoder must recompute the
    encoder's entropy-model parameters exactly (a hyperprior's scales, a context model's
    predictions), even when the two run in batches of different sizes."""
    import torch

    with (
        torch.inference_mode(),
        torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True
        ),
    ):
        yield


def pad_to_multiple(x: Any, multiple: int = PAD_MULTIPLE) -> tuple[Any, tuple[int, int, int, int]]:
    """Zero-pad an N×3×H×W tensor, centred, to a multiple; and the padding (l, r, t, b)."""
    import torch.nn.functional as F

    height, width = x.shape[-2:]
    new_h = -(-height // multiple) * multiple
    new_w = -(-width // multiple) * multiple
    left, top = (new_w - width) // 2, (new_h - height) // 2
    padding = (left, new_w - width - left, top, new_h - height - top)
    return F.pad(x, padding, mode="constant", value=0), padding


def crop_padding(x: Any, size: tuple[int, int]) -> Any:
    """Undo :func:`pad_to_multiple` for an image of ``size`` (height, width)."""
    height, width = size
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def to_tensor(images: list[Image.Image]) -> Any:
    """Same-size RGB images → an N×3×H×W float tensor in [0, 1]."""
    import numpy as np
    import torch

    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(255.0)


def to_images(x: Any) -> list[Image.Image]:
    """An N×3×H×W tensor in [0, 1] → RGB images (rounded to 8 bits)."""
    array = x.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(item, "RGB") for item in array]


def groups_by(keys: list[Any]) -> dict[Any, list[int]]:
    """Positions of equal keys, in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return groups


class CompressaiCodec(ImageCodec, BatchPlugin):
    """A CompressAI zoo network per quality; ``compress()`` bytes in, ``decompress()`` out."""

    name = "compressai"
    extra = "learned"
    Params = CompressaiParams
    suffix = ".cai"
    media_type = "application/x-semcomp-compressai"
    target_kinds = ("quality",)
    #: a local model: the encode and decode stages batch it through the engine
    batched: ClassVar[bool] = True
    scalable = True
    default_batch_size = 4

    def __init__(
        self, params: CompressaiParams, *, device: str = "auto", batch_size: int | None = None
    ):
        BatchPlugin.__init__(self, params, device=device, batch_size=batch_size)
        self.torch_device: str | None = None
        self.quality: int | None = None
        self.model: Any = None

    @classmethod
    def quality_range_for(cls, params: CodecParams) -> tuple[int, int]:
        return 1, COMPRESSAI_MODELS[params.model]  # type: ignore[attr-defined]

    def identity(self) -> dict[str, Any]:
        return {"codec": self.name} | self.params.identity()

    def network(self, quality: int) -> Any:
        """The network for ``quality``; the previous one is freed first (one in memory)."""
        if self.quality != quality:
            from semcomp.models import drop_model, select_device

            self.quality = None
            drop_model(self)
            self.torch_device = self.torch_device or select_device(self.device)
            self.model = load_zoo_model(self.params, quality, self.torch_device)  # type: ignore[arg-type]
            self.quality = quality
        return self.model

    def close(self) -> None:
        from semcomp.models import drop_model

        self.quality = None
        drop_model(self)

    def _by_group(
        self, keys: list[Any], run: Any, results: list[Any], failure: type[Exception]
    ) -> None:
        """``run(key, positions)`` → one result per position, over each group of equal keys
        (None keys are skipped) in batches of ``batch_size``, halved on out-of-memory; an
        error fails the rest of its group only."""
        from semcomp.models import batches_with_backoff

        def shrink(size: int) -> None:
            self.batch_size = size

        for key, members in groups_by(keys).items():
            if key is None:
                continue
            done = 0
            try:
                for part, values in batches_with_backoff(
                    members, self.batch_size, lambda part, key=key: run(key, part), shrink
                ):
                    for i, value in zip(part, values, strict=True):
                        results[i] = value
                    done += len(part)
            except Exception as exc:  # e.g. an image too large for the device: its group fails
                for i in members[done:]:
                    results[i] = failure(f"compressai {self.params.model}: {exc}")

    def encode_batch(
        self, images: list[Image.Image], quality: int
    ) -> list[Representation | Exception]:
        """Each image's bitstream at ``quality``, or the exception that stopped it."""
        model = self.network(quality)

        def compress(size: tuple[int, int], part: list[int]) -> list[Representation]:
            with phase("preprocess"):
                x, _ = pad_to_multiple(to_tensor([images[i] for i in part]))
            with coding_mode():
                coded = model.compress(x.to(self.torch_device))
            shape = (int(coded["shape"][0]), int(coded["shape"][1]))
            reps = []
            for position in range(len(part)):
                strings = [bytes(level[position]) for level in coded["strings"]]
                payload = pack_container(size, shape, strings)
                meta = {
                    "quality": quality,
                    "model": self.params.model,
                    "strings_bytes": [len(s) for s in strings],
                    "container_bytes": len(payload) - sum(len(s) for s in strings),
                }
                reps.append(Representation(payload, 8 * len(payload), meta))
            return reps

        results: list[Any] = [None] * len(images)
        self._by_group([(i.height, i.width) for i in images], compress, results, RuntimeError)
        return results

    def decode_batch(self, payloads: list[bytes], quality: int) -> list[Image.Image | Exception]:
        """Each container decoded with ``decompress()`` and cropped, or why it could not be."""
        model = self.network(quality)
        results: list[Any] = [None] * len(payloads)
        unpacked: list[Any] = []
        for i, payload in enumerate(payloads):
            try:
                unpacked.append(unpack_container(payload))
            except ValueError as exc:
                results[i] = exc
                unpacked.append(None)

        def decompress(key: tuple[Any, ...], part: list[int]) -> list[Image.Image]:
            size, shape, count = key
            strings = [[unpacked[i][2][level] for i in part] for level in range(count)]
            with coding_mode():
                x_hat = model.decompress(strings, list(shape))["x_hat"]
            return to_images(crop_padding(x_hat, size))

        keys = [None if u is None else (u[0], u[1], len(u[2])) for u in unpacked]
        self._by_group(keys, decompress, results, ValueError)
        return results

    # the per-image contract, for callers outside the stages (one image at a time)
    def encode(
        self, image: Image.Image, points: list[OperatingPoint], original: OriginalFacts
    ) -> list[Representation | Exception]:
        return [self.encode_batch([image], int(point.value))[0] for point in points]

    def decode(self, payload: bytes) -> Image.Image:
        """Decode with the network last used (the container does not name its quality)."""
        if self.quality is None:
            raise ValueError("a CompressAI payload decodes with its quality: use decode_batch")
        result = self.decode_batch([payload], self.quality)[0]
        if isinstance(result, Exception):
            raise result
        return result


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "COMPRESSAI_MODELS",
    "CompressaiCodec",
    "CompressaiParams",
    "pack_container",
    "unpack_container",
]
