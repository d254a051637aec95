"""The image sets codec papers report on, read from the user's folder and checked against
their known file lists: Kodak (24 images), CLIC 2020 professional validation (41) and DIV2K
validation (100).

Each set is a data file (``image_sets/<name>.toml``) validated when it is loaded:
``files`` (the set's file names, unique plain names with an image suffix) and/or
``count`` (the number of images, when the names are not listed; with both they must
agree), ``suffix`` (what a file of a count-only set ends with) and ``subfolders`` (where
under the folder the user names the files may be, as the set's archive unpacks).
:func:`open_image_set` lists the files present, the set's files that are missing and the
files that are not the set's (left out).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from semcomp.datasets.tables import packaged_toml
from semcomp.errors import ConfigError
from semcomp.images import IMAGE_SUFFIXES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: the image sets by name (a data file each)
IMAGE_SETS = ("kodak", "clic2020-professional-valid", "div2k-valid")
SET_ALIASES = {
    "kodak24": "kodak",
    "clic2020-professional-validation": "clic2020-professional-valid",
    "clic-professional-valid": "clic2020-professional-valid",
    "div2k-validation": "div2k-valid",
    "div2k-val": "div2k-valid",
}


@dataclass(frozen=True)
class ImageSet:
    name: str
    title: str
    #: the set's file names (empty: only ``count`` is known)
    files: tuple[str, ...]
    count: int
    #: the suffix of a file of the set (checked when only the count is known)
    suffix: str
    #: subfolders of the user's folder that may hold the files
    subfolders: tuple[str, ...] = ()


@dataclass
class ImageSetFiles:
    """An image set as found in a folder."""

    image_set: ImageSet
    folder: Path
    #: the set's files that are there (all the images, for a count-only set), sorted
    images: list[Path] = field(default_factory=list)
    #: the set's files that are not there
    missing: list[str] = field(default_factory=list)
    #: image files there that are not the set's (left out)
    extra: list[str] = field(default_factory=list)

    def problems(self) -> list[tuple[str, str]]:
        """(what, reason) for each missing or extra file, or a wrong count."""
        title, known = self.image_set.title, self.image_set.count
        problems = []
        if not self.image_set.files and len(self.images) != known:
            problems.append(
                (
                    "count",
                    f"{self.folder} has {len(self.images)} {self.image_set.suffix} image(s); "
                    f"the {title} set has {known} (its file names are not known to semcomp, "
                    "so only the count is checked)",
                )
            )
        problems += [
            (name, f"missing: one of the {title} set's {known} files, not in {self.folder}")
            for name in self.missing
        ]
        problems += [
            (name, f"not one of the {title} set's {known} files: left out") for name in self.extra
        ]
        return problems


def image_set_name(name: str) -> str | None:
    """The image set ``name`` names (aliases allowed), or None."""
    key = name.strip().lower()
    key = SET_ALIASES.get(key, key)
    return key if key in IMAGE_SETS else None


@cache
def image_set(name: str) -> ImageSet:
    """The validated file list of an image set (see the module docstring)."""
    text = packaged_toml("image_sets", name, f"no file list for image set {name!r}")
    return parse_image_set(name, text)


def parse_image_set(name: str, text: str) -> ImageSet:
    """An image set's data file, validated (a :class:`ConfigError` naming the problem)."""
    where = f"semcomp/datasets/image_sets/{name}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = set(data) - {"title", "files", "count", "suffix", "subfolders"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{where}: files must be a list of file names")
    for file in files:
        if Path(file).name != file or Path(file).suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"{where}: {file!r} is not a plain image file name")
    if len(set(files)) != len(files):
        raise ConfigError(f"{where}: files listed twice")
    count = data.get("count", len(files))
    if not isinstance(count, int) or count <= 0:
        raise ConfigError(f"{where}: give files or a positive count")
    if files and count != len(files):
        raise ConfigError(f"{where}: count {count} but {len(files)} files listed")
    suffix = str(data.get("suffix", Path(files[0]).suffix if files else ""))
    if suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"{where}: suffix {suffix!r} is not an image suffix")
    return ImageSet(
        name=name,
        title=str(data.get("title", name)),
        files=tuple(files),
        count=count,
        suffix=suffix.lower(),
        subfolders=tuple(data.get("subfolders", ())),
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def open_image_set(root: Path, name: str) -> ImageSetFiles:
    """The set's files in ``root`` (or in one of the set's subfolders of it), checked
    against its file list; a :class:`ConfigError` when there is no such folder or it holds
    no image."""
    known = image_set(name)
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder (the {known.title} images)")
    folder = root
    if not _image_files(root):
        folder = next((root / s for s in known.subfolders if (root / s).is_dir()), root)
    present = _image_files(folder)
    if not present:
        raise ConfigError(f"{root} holds no images of the {known.title} set")
    found = ImageSetFiles(known, folder)
    if not known.files:
        found.images = [p for p in present if p.suffix.lower() == known.suffix]
        found.extra = [p.name for p in present if p.suffix.lower() != known.suffix]
        return found
    by_name = {p.name: p for p in present}
    found.images = [by_name[f] for f in known.files if f in by_name]
    found.missing = [f for f in known.files if f not in by_name]
    listed = set(known.files)
    found.extra = [p.name for p in present if p.name not in listed]
    return found
