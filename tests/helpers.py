"""Helpers the tests share (images that compress like photos, study files)."""

from pathlib import Path

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus fine noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            128 + 100 * np.sin(x / (7 + seed) + y / 13),
            128 + 100 * np.cos(y / (11 + seed)),
            128 + 80 * np.sin((x + y) / 17),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(scale=12, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_study(
    root: Path,
    images: Path,
    tiny_clip: str,
    methods: str = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [30, 70]\n',
    extra: str = "",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(
        f'name = "test"\nseed = 0\n{extra}\n[images]\nsource = "{images.as_posix()}"\n\n{methods}\n'
        f"[similarity]\nbatch_size = 4\n\n[[similarity.models]]\n"
        f"model = '{tiny_clip}'\nname = 'tiny'\nrandom_weights = true\n"
    )
    return root
