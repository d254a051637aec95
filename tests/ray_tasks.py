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


class WhereItRuns(BatchTask):
    """Each item → (process that loaded it, process of the model, the model's stamp): a
    stamp is set on a model the first time it runs a batch, so a new model gets a new one."""

    def load(self, batch: Sequence[str], context: Any) -> tuple[Sequence[str], int]:
        return batch, os.getpid()

    def infer(self, model: Any, loaded: tuple[Sequence[str], int], context: Any) -> list[Any]:
        import uuid

        if not hasattr(model, "stamp"):
            model.stamp = uuid.uuid4().hex
        items, loader = loaded
        return [(loader, os.getpid(), model.stamp) for _ in items]


class WhichThread(BatchTask):
    """Each item → (thread that built the model's context, thread that loaded the batch,
    thread that ran the model on it, the loading thread's name), as thread idents within
    the model's process."""

    def context(self, model: Any) -> int:
        import threading

        return threading.get_ident()

    def load(self, batch: Sequence[str], context: int) -> tuple[Sequence[str], int, int, str]:
        import threading

        return batch, context, threading.get_ident(), threading.current_thread().name

    def infer(
        self, model: Any, loaded: tuple[Sequence[str], int, int, str], context: Any
    ) -> list[Any]:
        import threading

        items, built, loader, name = loaded
        return [(built, loader, threading.get_ident(), name) for _ in items]
