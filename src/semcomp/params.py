"""Parameter types every plugin (codec, captioner, reconstructor) builds its ``Params`` from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


class PluginParams(BaseModel):
    """Base of a plugin's parameters: unknown keys are errors; values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_in_study(path: Path, info: ValidationInfo) -> Path:
    study_dir = (info.context or {}).get("study_dir")
    if study_dir is not None and not path.is_absolute():
        path = Path(study_dir) / path
    return path.resolve() if study_dir is not None else path


#: A path in ``study.toml``: relative paths are relative to the study folder.
StudyPath = Annotated[Path, AfterValidator(_resolve_in_study)]
