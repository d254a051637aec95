"""A look-alike of the textual-transform paper's data repository, for tests.

The authors published ``original_images/`` (``{category}_{1..3}.{ext}`` with mixed
extensions, RGBA PNGs with alpha 255, a plain-text ``contents`` file beside them),
``compressed_images/`` (``{name}_q1`` and ``{name}_q11``: IJG JPEG quality 1 and 11,
progressive 4:2:2, ``.jpg`` or ``.jpeg``) and ``reconstructed_images/``
(``{name}_gr|_sr|_hr.png``: DALL-E 2 from GPT-4, BLIP and human captions, RGB
1024x1024). :func:`build_paper_repo` writes the same layout with generated images
(smaller, so tests stay fast); one original is missing while its compressed and
reconstructed files are present, as in some copies of the repository.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import photo

#: the paper's five categories, three images each
CATEGORIES = ("object", "scattered", "person", "group", "landscape")
#: the extension of each category's images 1, 2 and 3 (mixed, as in the repository)
EXTENSIONS = {
    "object": (".jpg", ".png", ".jpeg"),
    "scattered": (".webp", ".jpg", ".png"),
    "person": (".jpeg", ".jpg", ".webp"),
    "group": (".png", ".jpg", ".jpeg"),
    "landscape": (".jpg", ".webp", ".png"),
}
#: the JPEG levels: the label in the file name → IJG quality
JPEG_LEVELS = {"q1": 1, "q11": 11}
#: the DALL-E 2 reconstructions: the suffix in the file name → whose caption it drew
RECONSTRUCTIONS = {"gr": "GPT-4", "sr": "BLIP", "hr": "human"}
#: the original a fresh copy lacks (its compressed and reconstructed files are there)
MISSING = "group_2"


@dataclass
class PaperRepo:
    root: Path
    #: original name (file stem) → its file, for the originals present
    originals: dict[str, Path]
    #: the name of the original whose file is missing
    missing: str
    #: (name, "q1" | "q11") → JPEG file
    compressed: dict[tuple[str, str], Path] = field(default_factory=dict)
    #: (name, "gr" | "sr" | "hr") → PNG file
    reconstructed: dict[tuple[str, str], Path] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every image name the repository's folders mention (the missing one included)."""
        return sorted({name for name, _ in self.compressed})


def _save_original(image: Image.Image, path: Path, index: int) -> None:
    suffix = path.suffix
    if suffix == ".png":  # the repository's PNGs are RGBA with an opaque alpha channel
        rgba = image.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(path)
    elif suffix == ".webp":  # one lossless WebP, the others lossy
        image.save(path, format="WEBP", lossless=index == 0, quality=90)
    else:
        image.save(path, format="JPEG", quality=95)


def build_paper_repo(
    root: Path,
    *,
    categories: tuple[str, ...] = CATEGORIES,
    per_category: int = 3,
    size: tuple[int, int] = (96, 72),
    reconstruction_size: int = 64,
    missing: str | None = MISSING,
) -> PaperRepo:
    """Write the repository's three folders under ``root`` and say what is where.

    Originals vary in size around ``size``; compressed files are made from each
    original with Pillow (libjpeg's IJG quality scale) at quality 1 and 11,
    progressive, 4:2:2, named ``.jpeg`` when the original is a ``.jpeg`` and
    ``.jpg`` otherwise; reconstructions are ``reconstruction_size``-square RGB PNGs.
    """
    originals_dir = root / "original_images"
    compressed_dir = root / "compressed_images"
    reconstructed_dir = root / "reconstructed_images"
    for folder in (originals_dir, compressed_dir, reconstructed_dir):
        folder.mkdir(parents=True, exist_ok=True)
    (originals_dir / "contents").write_text(
        "Originals by category: " + ", ".join(categories) + "\n", encoding="utf-8"
    )
    repo = PaperRepo(root=root, originals={}, missing=missing or "")
    seed = 0
    webps = 0
    for category in categories:
        for number in range(1, per_category + 1):
            seed += 1
            name = f"{category}_{number}"
            suffix = EXTENSIONS.get(category, (".png",) * 3)[(number - 1) % 3]
            width, height = size[0] + 8 * (seed % 4), size[1] + 4 * (seed % 3)
            image = photo(width, height, seed)
            path = originals_dir / f"{name}{suffix}"
            _save_original(image, path, webps if suffix == ".webp" else -1)
            webps += suffix == ".webp"
            repo.originals[name] = path
            jpeg_suffix = ".jpeg" if suffix == ".jpeg" else ".jpg"
            for label, quality in JPEG_LEVELS.items():
                target = compressed_dir / f"{name}_{label}{jpeg_suffix}"
                image.save(
                    target, format="JPEG", quality=quality, progressive=True, subsampling="4:2:2"
                )
                repo.compressed[(name, label)] = target
            rng = np.random.default_rng(seed)
            for label in RECONSTRUCTIONS:
                pixels = rng.integers(0, 256, (reconstruction_size, reconstruction_size, 3))
                target = reconstructed_dir / f"{name}_{label}.png"
                Image.fromarray(pixels.astype(np.uint8), "RGB").save(target)
                repo.reconstructed[(name, label)] = target
    if missing:
        repo.originals.pop(missing).unlink()
    return repo


def write_manifest(repo: PaperRepo, path: Path) -> Path:
    """A manifest of the originals present: category = the name before ``_{number}``."""
    lines = ["path,category"]
    for name, original in sorted(repo.originals.items()):
        relative = original.relative_to(path.parent).as_posix()
        lines.append(f"{relative},{name.rsplit('_', 1)[0]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
