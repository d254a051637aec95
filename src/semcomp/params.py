"""Parameter types every plugin (codec, captioner, reconstructor) builds its ``Params`` from,
and the base of the plugins that run in batches (captioners, reconstructors)."""

from __future__ import annotations

import hashlib
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


def _local_folder_or_hub_id(source: str, info: ValidationInfo) -> str:
    study_dir = (info.context or {}).get("study_dir")
    if study_dir is not None and not Path(source).is_absolute():
        local = Path(study_dir) / source
        if local.exists():
            return str(local.resolve())
    return source


#: A model source: a hub id (``org/name``) or a folder (relative to the study folder).
ModelSource = Annotated[str, AfterValidator(_local_folder_or_hub_id)]
