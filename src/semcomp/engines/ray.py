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
node mounts, and semcomp must be installed on every node. Plugins are found
in the actors by registry name: a plugin registered at run time (not by an
imported module or an entry point) cannot be built there.

An actor that dies (killed, out of memory) is replaced and its batch retried on the
new one, ``BATCH_RETRIES`` times; a batch that kills every actor it runs on stops the
stage with one line (the batches written before stay; a new run resumes after them).

Each batch is one block, so outcomes stream back batch by batch. The loading
tasks ask for half a CPU and the actors for a whole one, so Ray Data keeps
them as two operators (with equal resources it fuses them, and a CPU-only
actor would decode serially). The CPU tasks also preprocess where the
preprocessing can be had without the model (:meth:`BatchTask.remote_context`:
BLIP's image processor), so model-sized pixels cross the object store; CLIP's
transform comes from the loaded model's config, so embedding batches cross
at decoded size (at most ``images.max_pixels``). A Ray this engine starts
sizes its store from the machine's RAM (Ray's default), or ``object_store_bytes``.
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
)
from semcomp.errors import ConfigError, SemcompError
from semcomp.extras import require_extras

#: CPUs a loading task asks for (unlike the actors' 1, so Ray Data does not fuse the two)
LOAD_CPUS = 0.5
#: times a batch is retried on a new actor after the actor running it died (Ray Data's
#: default is forever: a batch that kills its actor each time, e.g. out of memory, would
#: stall the run with no progress)
BATCH_RETRIES = 2
#: seconds to wait for a ``ray://`` cluster before giving up
CONNECT_TIMEOUT_S = 15


def import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    require_extras("--engine ray", "ray")
    import ray
    import ray.data

    return ray


def check_address(address: str | None) -> None:
    if address is None or address == "auto" or address.startswith("ray://"):
        return
    raise ConfigError(f"--address must be 'auto' or 'ray://host:port', not {address!r}")


def semcomp_error(exc: BaseException) -> SemcompError | None:
    """The SemcompError that Ray wrapped (RayTaskError, UserCodeException, actor errors), if any.

    Walks ``cause`` (Ray's own link to the user's exception), ``__cause__`` and
    ``__context__``.
    """
    seen: set[int] = set()
    waiting: list[Any] = [exc]
    while waiting:
        current = waiting.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(current, SemcompError) and not isinstance(cause, BaseException):
            return current
        waiting += [current.__context__, current.__cause__, cause]
    return None


def lost_actor_message(factory: PluginFactory, exc: BaseException) -> str:
    """One line for a batch whose actor died on every try (the stage stops there)."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"a Ray actor running {factory.label or factory.name} died on the same batch "
        f"{BATCH_RETRIES + 1} times ({type(exc).__name__}: {reason}); the stage stopped. "
        "The batches finished before are saved and a new run resumes after them; look for "
        "what kills the actor (out of memory is the usual cause: lower the batch size) in "
        "Ray's logs, or run with --engine local to see the error"
    )


def _pickled_column(values: list[Any]) -> Any:
    import numpy as np

    column = np.empty(len(values), dtype=object)
    column[:] = [pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL) for v in values]
    return column


#: per worker process: (task, factory) → the task's remote context (built once)
_remote_contexts: dict[bytes, Any] = {}


def _remote_context(task: BatchTask, factory: PluginFactory) -> Any:
    key = pickle.dumps((task, factory), protocol=pickle.HIGHEST_PROTOCOL)
    if key not in _remote_contexts:
        _remote_contexts[key] = task.remote_context(factory)
    return _remote_contexts[key]


def _load(rows: dict[str, Any], task: BatchTask, factory: PluginFactory) -> dict[str, Any]:
    """Ray Data CPU tasks: batch rows → loaded batches (no model; a model-independent
    preprocessing when the task has one)."""
    loaded = []
    for index, batch in zip(rows["index"], rows["batch"], strict=True):
        try:
            context = _remote_context(task, factory)
            value, seconds = load_timed(task, pickle.loads(batch), context)
        except SemcompError as exc:  # travels as data to the driver (see _Infer)
            value, seconds = exc, {}
        loaded.append((int(index), value, seconds))
    return {"index": rows["index"], "loaded": _pickled_column(loaded)}


class _Infer:
    """Ray Data actor: builds the plugin once, then runs each loaded batch on it.

    A SemcompError (weights not there, a bad config, ...) goes back to the driver as
    the batch's outcome, which raises it there: raised in the actor, Ray would wrap it
    and keep only its text (``UserCodeException`` does not carry its cause across).
    """

    def __init__(self, factory: PluginFactory, task: BatchTask, threads: int | None):
        self.failure: SemcompError | None = None
        try:
            self.worker = ModelWorker(factory, task, threads)
        except SemcompError as exc:
            self.failure = exc

    def _outcome(self, index: int, loaded: Any, seconds: dict[str, float]) -> Any:
        if self.failure is not None:
            return self.failure
        if isinstance(loaded, SemcompError):
            return loaded
        try:
            return self.worker.run(index, loaded, seconds)
        except SemcompError as exc:
            return exc

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        outcomes = [self._outcome(*pickle.loads(blob)) for blob in rows["loaded"]]
        return {"index": rows["index"], "outcome": _pickled_column(outcomes)}


class RayEngine(Engine):
    """Batch stages on Ray: ``address`` None starts a local Ray, else ``auto`` / ``ray://``.

    ``actors`` is the size of the model actor pool (default: one per GPU of the
    cluster, or one on a cluster without GPUs); ``gpus_per_actor`` defaults to 1
    when the cluster has GPUs, else 0. The engine connects when it is entered.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int | None = None,
        gpus_per_actor: float | None = None,
        cpus_per_actor: float = 1.0,
        object_store_bytes: int | None = None,
        progress: bool = False,
    ):
        check_address(address)
        if actors is not None and actors < 1:
            raise ConfigError("--actors must be at least 1")
        if gpus_per_actor is not None and gpus_per_actor < 0:
            raise ConfigError("--gpus-per-actor cannot be negative")
        self.ray = import_ray()
        self.address = address
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.object_store_bytes = object_store_bytes
        self.progress = progress
        self.started_ray = False

    def __enter__(self) -> RayEngine:
        self._connect()
        return self

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None and self.object_store_bytes is not None:
            options["object_store_memory"] = self.object_store_bytes
        if self.address is not None and self.address.startswith("ray://"):
            os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", str(CONNECT_TIMEOUT_S))
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            where = self.address or "a new local Ray"
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            raise SemcompError(
                f"cannot reach Ray at {where}: {reason}; start one "
                "with `ray start --head` or omit --address"
            ) from None
        self.started_ray = True

    def _pool(self) -> tuple[int, float]:
        """(actors, GPUs per actor), checked against what the cluster has."""
        gpus = float(self.ray.cluster_resources().get("GPU", 0))
        per_actor = self.gpus_per_actor if self.gpus_per_actor is not None else (1 if gpus else 0)
        if per_actor > 0 and gpus == 0:
            raise ConfigError(
                f"--gpus-per-actor {per_actor:g} on a Ray cluster without GPUs "
                "(use 0, or add GPU nodes)"
            )
        if self.actors is not None:
            actors = self.actors
        elif per_actor > 0:
            actors = max(1, int(gpus // per_actor))
        else:
            actors = 1
        if actors * per_actor > gpus:
            raise ConfigError(
                f"{actors} actors x {per_actor:g} GPU(s) need more than the cluster's {gpus:g} "
                "GPU(s); lower --actors or --gpus-per-actor"
            )
        return actors, float(per_actor)

    def run(
        self,
        factory: PluginFactory,
        task: BatchTask,
        batches: Sequence[Sequence[Any]],
        *,
        ordered: bool = False,
    ) -> Iterator[BatchOutcome]:
        if not batches:
            return
        self._connect()
        try:
            for row in self.pipeline(factory, task, batches, ordered=ordered).iter_rows():
                outcome = pickle.loads(row["outcome"])
                if isinstance(outcome, SemcompError):
                    raise outcome
                yield outcome
        except SemcompError as exc:
            raise exc from None
        except self.ray.exceptions.RayActorError as exc:
            raise SemcompError(lost_actor_message(factory, exc)) from None
        except Exception as exc:
            found = semcomp_error(exc)
            if found is None:
                raise
            raise found from None

    def pipeline(
        self,
        factory: PluginFactory,
        task: BatchTask,
        batches: Sequence[Sequence[Any]],
        *,
        ordered: bool = False,
    ) -> Any:
        """The Ray Data dataset of ``batches``' outcomes (lazy: iterating it runs it)."""
        import torch

        data = self.ray.data
        context = data.DataContext.get_current()
        context.enable_progress_bars = self.progress
        context.enable_operator_progress_bars = self.progress
        context.print_on_execution_start = False
        context.execution_options.preserve_order = ordered
        if not self.progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        actors, gpus = self._pool()
        cpus = max(1.0, float(self.ray.cluster_resources().get("CPU", 1)))
        # CPU results depend on torch's thread count: CPU actors use the driver's, so they
        # give the local engine's rows; GPU actors keep the count Ray gives them
        threads = torch.get_num_threads() if gpus == 0 else None
        rows = [
            {"index": index, "batch": pickle.dumps(list(batch), protocol=pickle.HIGHEST_PROTOCOL)}
            for index, batch in enumerate(batches)
        ]
        return (
            data.from_items(rows, override_num_blocks=len(rows))
            .map_batches(
                _load,
                fn_kwargs={"task": task, "factory": factory},
                batch_size=1,
                num_cpus=LOAD_CPUS,
            )
            .map_batches(
                _Infer,
                fn_constructor_args=(factory, task, threads),
                batch_size=1,
                compute=data.ActorPoolStrategy(size=actors),
                num_gpus=gpus,
                num_cpus=min(self.cpus_per_actor, cpus / 2),
                max_restarts=-1,
                max_task_retries=BATCH_RETRIES,
            )
        )

    def close(self) -> None:
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_ray = False
