"""Parameter types every plugin (codec, captioner, reconstructor) builds its ``Params`` from,
and the base of the plugins that run in batches (captioners, reconstructors)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache, partial
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


class PluginParams(BaseModel):
    """Base of a plugin's parameters: unknown keys are errors; values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: fields that change how the work runs (concurrency, timeouts, where the key is), not
    #: what it produces: left out of the identity, so changing them redoes nothing
    operational: ClassVar[frozenset[str]] = frozenset()

    def identity(self) -> dict[str, Any]:
        """The parameters that determine results, for cache keys and method ids."""
        return self.model_dump(mode="json", exclude=set(self.operational))


class BatchPlugin:
    """What captioners and reconstructors share: built once per stage from validated
    ``Params`` (perhaps inside a Ray actor), called with batches of ``batch_size`` items."""

    name: ClassVar[str]
    Params: ClassVar[type[PluginParams]]
    #: whether it runs a local model that ``--engine ray`` should run in actors (not an API)
    scalable: ClassVar[bool] = False
    #: the pip extra its dependencies come in (``semcomp.extras``); None: the base install
    extra: ClassVar[str | None] = None
    default_batch_size: ClassVar[int] = 8

    def __init__(
        self, params: PluginParams, *, device: str = "auto", batch_size: int | None = None
    ):
        self.params = params
        self.device = device
        self.batch_size = self.default_batch_size if batch_size is None else batch_size
        self.chunk_size = self.chunk_for(params, self.batch_size)

    @classmethod
    def chunk_for(cls, params: PluginParams, batch_size: int) -> int:
        """Items per call of the stage (and per transaction): a model's batch; API
        plugins raise it to keep their concurrent requests busy."""
        return batch_size

    @classmethod
    def hf_models(cls, params: dict[str, Any]) -> list[str]:
        """The Hugging Face models (hub ids or folders) building it loads, from its validated
        params' JSON dump, so that a run can check they are there before any stage starts
        (none for API plugins)."""
        return []


def file_sha256(path: Path, what: str) -> str:
    """Content hash of a file a parameter names, so that editing the file changes identities.

    Raises ValueError (which pydantic reports at the key) if the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ValueError(f"cannot read {what}: {exc}") from None
    return digest.hexdigest()


def _resolve_in_study(path: Path, info: ValidationInfo) -> Path:
    study_dir = (info.context or {}).get("study_dir")
    if study_dir is not None and not path.is_absolute():
        path = Path(study_dir) / path
    return path.resolve() if study_dir is not None else path


#: A path in ``study.toml``: relative paths are relative to the study folder.
StudyPath = Annotated[Path, AfterValidator(_resolve_in_study)]


#: ``model = "tiny"``: the tiny random-weight model of the plugin's architecture (what the
#: offline demo runs), kept in the study folder under ``models/`` (see ``semcomp.tiny_models``)
TINY_MODEL = "tiny"
#: where a study keeps each tiny model, by architecture
TINY_FOLDERS = {
    "clip": "models/tiny-clip",
    "blip": "models/tiny-blip",
    "sd": "models/tiny-sd",
    "controlnet": "models/tiny-controlnet",
}
#: the prefix of an open_clip model in a local folder
LOCAL_DIR = "local-dir:"


def portable_path(path: str | Path, study_dir: Path | str | None, anchor: str | None = None) -> str:
    """How a path is stored and enters identities, wherever the study folder is.

    A path inside ``study_dir`` becomes relative to it (POSIX); one outside stays as
    given (absolute). ``anchor`` is for studies whose identities were made with absolute
    paths before they were portable: the path is then written as if the study were at
    ``anchor`` (the folder it had then), so their identities, and rows, stay the same.
    """
    if study_dir is None:
        return str(path)
    root = _real_folder(str(study_dir))
    absolute = os.path.abspath(path)
    inside = root if root.endswith(os.sep) else root + os.sep
    if absolute.startswith(inside) or absolute == root:  # links kept as they are
        text = absolute[len(inside) :] or "."  # a string: no Path per stored path
        relative = text.replace(os.sep, "/")
        return str(Path(anchor) / relative) if anchor else relative
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: not a file to follow
        return str(path)
    if not resolved.is_relative_to(root):
        return str(path)
    relative_path = resolved.relative_to(root)
    return str(Path(anchor) / relative_path) if anchor else relative_path.as_posix()


@lru_cache(maxsize=64)
def _real_folder(folder: str) -> str:
    """A study folder's real path (links resolved), once per process: every stored path of
    a run is made relative to it (a `semcomp run` at 10,000 originals makes 30,000)."""
    return str(Path(folder).resolve())


def portable_value(value: Any, study_dir: Path | str | None, anchor: str | None = None) -> Any:
    """``value`` (JSON: dicts, lists, strings) with every absolute path inside the study
    folder, plain or ``local-dir:``, written by :func:`portable_path`."""
    if isinstance(value, dict):
        return {k: portable_value(v, study_dir, anchor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable_value(v, study_dir, anchor) for v in value]
    if study_dir is None or not isinstance(value, str):
        return value
    prefix = LOCAL_DIR if value.startswith(LOCAL_DIR) else ""
    path = value[len(prefix) :]
    if not os.path.isabs(path) or "\n" in path:  # a string test: no Path per value
        return value
    return prefix + portable_path(path, study_dir, anchor)


def identity_in_study(value: Any, context: dict | None) -> Any:
    """:func:`portable_value` for a method's or model's identity, from the validation
    context (``study_dir`` and, for a study made before, its ``identity_root``)."""
    context = context or {}
    return portable_value(value, context.get("study_dir"), context.get("identity_root"))


def _local_folder_or_hub_id(source: str, info: ValidationInfo, tiny: str) -> str:
    study_dir = (info.context or {}).get("study_dir")
    if source == TINY_MODEL and tiny:
        folder = Path(TINY_FOLDERS[tiny])
        return str((Path(study_dir) / folder).resolve()) if study_dir is not None else str(folder)
    if study_dir is not None and not Path(source).is_absolute():
        local = Path(study_dir) / source
        if local.exists():
            return str(local.resolve())
    return source


def model_source(tiny: str) -> Any:
    """A model source: a hub id (``org/name``), a folder (relative to the study folder), or
    ``"tiny"`` for the tiny random-weight model of architecture ``tiny`` (a
    :data:`TINY_FOLDERS` key), built in the study folder when a run needs it."""
    return Annotated[str, AfterValidator(partial(_local_folder_or_hub_id, tiny=tiny))]
