"""The Ray engine: a stage's batches as a Ray Data pipeline.

``from_items`` (one row per batch, formed by the stage) → ``map_batches`` of
CPU tasks that read and decode each batch (:meth:`BatchTask.load`) →
``map_batches`` over an actor pool where each actor builds the plugin once
from its :class:`~semcomp.engines.PluginFactory` and holds one GPU
(``gpus_per_actor``; 0 on CPU). Outcomes stream back to the driver, which
writes them to the study store batch by batch, exactly as with the local engine.

Rows carry the stage's own objects pickled (batches, loaded batches,
outcomes): they travel only between this driver and its own Ray workers.
Inputs are referenced by path (artifacts, image files), so on a cluster of
several machines the study folder (or image folder) must be on storage every
node mounts, and semcomp must be installed on every node.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any

from semcomp.engines import (
    BatchOutcome,
    BatchTask,
    Engine,
    ModelWorker,
    PluginFactory,
    load_timed,
    ray_missing_message,
)
from semcomp.errors import ConfigError, SemcompError

#: object store of a Ray this engine starts itself (the machine's RAM is shared with the models)
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2


def import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise SemcompError(ray_missing_message()) from None
    return ray


def check_address(address: str | None) -> None:
    if address is None or address == "auto" or address.startswith("ray://"):
        return
    raise ConfigError(f"--address must be 'auto' or 'ray://host:port', not {address!r}")


def _pickled_column(values: list[Any]) -> Any:
    import numpy as np

    column = np.empty(len(values), dtype=object)
    column[:] = [pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL) for v in values]
    return column


def _load(rows: dict[str, Any], task: BatchTask) -> dict[str, Any]:
    """Ray Data CPU tasks: batch rows → loaded batches (no model)."""
    loaded = []
    for index, batch in zip(rows["index"], rows["batch"], strict=True):
        value, seconds = load_timed(task, pickle.loads(batch), None)
        loaded.append((int(index), value, seconds))
    return {"index": rows["index"], "loaded": _pickled_column(loaded)}


class _Infer:
    """Ray Data actor: builds the plugin once, then runs each loaded batch on it."""

    def __init__(self, factory: PluginFactory, task: BatchTask, threads: int):
        self.worker = ModelWorker(factory, task, threads)

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        outcomes = [self.worker.run(*pickle.loads(blob)) for blob in rows["loaded"]]
        return {"index": rows["index"], "outcome": _pickled_column(outcomes)}


class RayEngine(Engine):
    """Batch stages on Ray: ``address`` None starts a local Ray, else ``auto`` / ``ray://``.

    ``actors`` is the size of the model actor pool (default: one per GPU of the
    cluster, or one on a cluster without GPUs); ``gpus_per_actor`` defaults to 1
    when the cluster has GPUs, else 0.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int | None = None,
        gpus_per_actor: float | None = None,
        cpus_per_actor: float = 1.0,
        progress: bool = False,
    ):
        check_address(address)
        if actors is not None and actors < 1:
            raise ConfigError("--actors must be at least 1")
        self.ray = import_ray()
        self.address = address
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.progress = progress
        self.started_ray = False

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None:
            options["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
        ray.init(address=self.address, **options)
        self.started_ray = True

    def _pool(self) -> tuple[int, float]:
        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        per_actor = self.gpus_per_actor if self.gpus_per_actor is not None else (1 if gpus else 0)
        if self.actors is not None:
            return self.actors, per_actor
        if per_actor > 0:
            return max(1, int(gpus // per_actor)), per_actor
        return 1, 0.0

    def run(
        self, factory: PluginFactory, task: BatchTask, batches: Sequence[Sequence[Any]]
    ) -> Iterator[BatchOutcome]:
        if not batches:
            return
        import torch

        self._connect()
        data = self.ray.data
        context = data.DataContext.get_current()
        context.enable_progress_bars = self.progress
        context.enable_operator_progress_bars = self.progress
        context.print_on_execution_start = False
        if not self.progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        actors, gpus = self._pool()
        cpus = max(1.0, float(self.ray.cluster_resources().get("CPU", 1)))
        rows = [
            {"index": index, "batch": pickle.dumps(list(batch), protocol=pickle.HIGHEST_PROTOCOL)}
            for index, batch in enumerate(batches)
        ]
        dataset = (
            data.from_items(rows, override_num_blocks=min(len(rows), 64))
            .map_batches(_load, fn_kwargs={"task": task}, batch_size=1, num_cpus=min(1.0, cpus / 2))
            .map_batches(
                _Infer,
                fn_constructor_args=(factory, task, torch.get_num_threads()),
                batch_size=1,
                compute=data.ActorPoolStrategy(size=actors),
                num_gpus=gpus,
                num_cpus=min(self.cpus_per_actor, cpus / 2),
            )
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["outcome"])

    def close(self) -> None:
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_ray = False
