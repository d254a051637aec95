"""Batch tasks for Ray engine tests, importable by Ray's worker processes (the
``ray_cluster`` fixture puts this folder on their ``PYTHONPATH``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semcomp.engines import BatchTask


class KillsItsActor(BatchTask):
    """Echoes each item; a batch holding ``"kill"`` ends the actor's process (as an
    out-of-memory kill would) on every try, or only on the first when ``once_marker``
    names a file, which the first try creates."""

    loads = False

    def __init__(self, once_marker: Path | None = None):
        self.once_marker = once_marker

    def load(self, batch: Sequence[str], context: Any) -> Sequence[str]:
        return batch

    def infer(self, model: Any, loaded: Sequence[str], context: Any) -> list[Any]:
        if "kill" in loaded:
            if self.once_marker is None:
                os._exit(1)
            if not self.once_marker.exists():
                self.once_marker.touch()
                os._exit(1)
        return list(loaded)
