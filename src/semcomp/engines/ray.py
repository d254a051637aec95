"""The Ray engine: a stage's batches on a pool of model actors that lives as long as the engine.

The engine starts (or joins) Ray once when it is entered and creates its actor pool
then, so the actors start up (a process importing torch) while the driver runs the
stages before the first model stage; the same actors serve every stage of the run. An
actor builds a stage's plugin from its :class:`~semcomp.engines.PluginFactory` when the
stage's model differs from the one it holds (closing that one first: one model per
actor), and keeps it when the next stage asks for the same model (same factory). So a
run pays the actors' start-up (a process importing torch and the model libraries) once,
not once per stage, and a model once per run of stages that share it. Each actor holds
``gpus_per_actor`` GPUs (0 on CPU).

Where batches are read and decoded (:meth:`BatchTask.load`) depends on the cluster
(``load_in``). On one node they load in the model actor: it runs up to
``IN_FLIGHT_PER_ACTOR`` calls at once in threads, one batch at a time on the model, so
the next batches decode while the model works, as the local engine's prefetch thread
does, and no pixels cross the object store. On a cluster of several nodes each batch is
loaded by a Ray CPU task (asking for ``LOAD_CPUS``), which spreads the decoding over the
cluster's CPUs; its result stays in Ray's object store and the actor is handed the
reference, so loaded pixels go from the loading worker to the actor without passing
through the driver. Outcomes come back to the driver, which writes them to the study
store batch by batch, exactly as with the local engine. At most ``IN_FLIGHT_PER_ACTOR``
batches per actor are loading or waiting, so loading runs ahead of the model without
filling the object store. On one node, a CPU task and an object-store round trip per
batch cost more than the decoding they take off the actor (measured in
benchmarks/RESULTS.md, "Ray engine overhead on one node").

Why not Ray Data's ``map_batches`` with an ``ActorPoolStrategy`` (the first version of
this engine, and what the design named): its actor pool lives for one dataset, so every
stage started new actor processes and loaded its model again, about 10 to 20 s per stage
on two CPU cores, and the pipeline's planning and per-block scheduling added more per
batch. Plain actors and tasks keep Ray's scheduling, GPU placement, object store and
actor restarts without that per-stage cost.

Inputs are referenced by path (artifacts, image files), so on a cluster of several
machines the study folder (or image folder) must be on storage every node mounts, and
semcomp must be installed on every node. Plugins are found in the actors by registry
name: a plugin registered at run time (not by an imported module or an entry point)
cannot be built there.

An actor that dies (killed, out of memory) is restarted and its batch retried on it,
``BATCH_RETRIES`` times; a batch that kills the actor every time stops the stage with one
line (the batches written before stay; a new run resumes after them). Loading tasks
also preprocess where the preprocessing can be had without the model
(:meth:`BatchTask.remote_context`: BLIP's image processor), so model-sized pixels cross
the object store; CLIP's transform comes from the loaded model's config, so embedding
batches cross at decoded size (at most ``images.max_pixels``). A Ray this engine starts
sizes its store from the machine's RAM (Ray's default), or ``object_store_bytes``.
"""

from __future__ import annotations

import contextlib
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


#: per worker process: (task, factory) → the task's remote context (built once)
_remote_contexts: dict[bytes, Any] = {}


def _remote_context(task: BatchTask, factory: PluginFactory) -> Any:
    key = pickle.dumps((task, factory), protocol=pickle.HIGHEST_PROTOCOL)
    if key not in _remote_contexts:
        _remote_contexts[key] = task.remote_context(factory)
    return _remote_contexts[key]


def load_batch(stage: tuple[PluginFactory, BatchTask], batch: Sequence[Any]) -> Any:
    """A Ray CPU task: one batch → (loaded batch, seconds per phase), without the model
    (with a model-independent preprocessing when the task has one). A SemcompError
    travels as the value, to be raised on the driver (see :class:`ModelHost`)."""
    factory, task = stage
    try:
        return load_timed(task, batch, _remote_context(task, factory))
    except SemcompError as exc:
        return exc


def in_a_thread_of_its_own(work: Any, *args: Any) -> Any:
    """``work(*args)`` in a new thread that ends with it (its exception raised here).

    An actor's call threads live as long as the actor: an OpenMP team that a batch's
    preprocessing starts in one of them (a fast image processor's torch operations) would
    stay alive beside the model thread's and slow the model (see :class:`ModelHost`); a
    team started in this thread ends with it, as the local engine's prefetch thread's ends
    with its stage.
    """
    import threading

    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append((True, work(*args)))
        except BaseException as exc:  # raised in the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=call, name="semcomp-load", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class ModelHost:
    """A Ray actor that holds at most one model and runs batches on it.

    :meth:`run` builds the model of the factory it is given (``key`` names the factory)
    when it is not the one held, closing that one first. A SemcompError (weights not
    there, a bad config, ...) goes back to the driver as the batch's outcome, which raises
    it there: raised in the actor, Ray would wrap it and keep only its text.

    The actor runs up to ``IN_FLIGHT_PER_ACTOR`` calls at once (a threaded actor). A batch
    that comes unloaded is loaded by its call (in a thread that ends with the load:
    :func:`in_a_thread_of_its_own`), so the next batches read and
    decode while the model works on the current one, as the local engine's prefetch
    thread does. The model is built, run and closed on one thread of its own (``model``),
    one batch at a time, as the local engine runs it on the driver's one thread: torch's
    OpenMP keeps a team of threads per thread that runs a parallel operation, and with
    the teams of three call threads alive at once it counts more threads than cores and
    stops spinning between operations (a small model's many short operations then take
    about twice as long on two quiet cores; measured in benchmarks/RESULTS.md, "Ray's
    reconstruct stage on one model thread").
    """

    def __init__(self, threads: int | None):
        import threading
        from concurrent.futures import ThreadPoolExecutor

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.lock = threading.Lock()  # guards key, worker and failure
        self.model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semcomp-model")
        self.key: str | None = None
        self.worker: ModelWorker | None = None
        self.failure: SemcompError | None = None

    def _on_model_thread(self, work: Any, *args: Any) -> Any:
        return self.model.submit(work, *args).result()

    def _hold(self, key: str, factory: PluginFactory, task: BatchTask) -> None:
        """On the model thread: hold the model of ``key`` (built, or kept), set to ``task``."""
        with self.lock:
            if key != self.key:
                self._release()
                self.key = key
                try:
                    self.worker = ModelWorker(factory, task)
                except SemcompError as exc:
                    self.failure = exc
                    return
            if self.worker is not None and self.worker.task != task:  # the same model, another task
                self.worker.task = task
                self.worker.context = task.context(self.worker.model)

    def _context(self, key: str, factory: PluginFactory, task: BatchTask) -> Any:
        """The held model's loading context for ``task`` (or its failure), holding it first
        (on the model thread) when it is not the one held."""
        with self.lock:
            if key == self.key and (self.failure is not None or self.worker.task == task):
                return self.failure or self.worker.context
        self._on_model_thread(self._hold, key, factory, task)
        with self.lock:
            return self.failure or self.worker.context

    def _infer(
        self,
        key: str,
        factory: PluginFactory,
        task: BatchTask,
        index: int,
        value: Any,
        seconds: Any,
    ) -> Any:
        """On the model thread: the batch's outcome on the model of ``key``."""
        self._hold(key, factory, task)
        if self.failure is not None:
            return self.failure
        try:
            return self.worker.run(index, value, seconds)
        except SemcompError as exc:
            return exc

    def run(
        self,
        key: str,
        stage: tuple[PluginFactory, BatchTask],
        index: int,
        batch: Any,
        loaded: bool = True,
    ) -> Any:
        """The outcome of batch ``index`` on the model of ``stage``'s factory: ``batch`` as
        a loading task returned it (``loaded``), or the batch itself, loaded here."""
        factory, task = stage
        if isinstance(batch, SemcompError):
            return batch
        if loaded and task.loads:
            value, seconds = batch
        else:
            context = self._context(key, factory, task)
            if isinstance(context, SemcompError):
                return context
            try:  # beside the model's work on another batch
                value, seconds = in_a_thread_of_its_own(load_timed, task, batch, context)
            except SemcompError as exc:
                return exc
        return self._on_model_thread(self._infer, key, factory, task, index, value, seconds)

    def pid(self) -> int:
        return os.getpid()

    def release(self) -> None:
        """Free the model held (the next stage's model, or none, takes its place)."""
        self._on_model_thread(self._locked_release)

    def _locked_release(self) -> None:
        with self.lock:
            self._release()

    def _release(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.key, self.worker, self.failure = None, None, None


#: batches per actor that are loading, loaded or running at once
IN_FLIGHT_PER_ACTOR = 3
#: where a Ray engine loads batches (``RayEngine(load_in=...)``)
LOAD_IN = ("auto", "actor", "tasks")


def factory_key(factory: PluginFactory) -> str:
    """Names a factory's model: actors keep the model they hold for the same key."""
    import hashlib

    return hashlib.sha256(pickle.dumps(factory, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


class RayEngine(Engine):
    """Batch stages on Ray: ``address`` None starts a local Ray, else ``auto`` / ``ray://``.

    ``actors`` is the size of the model actor pool (default: one per GPU of the
    cluster, or one on a cluster without GPUs); ``gpus_per_actor`` defaults to 1
    when the cluster has GPUs, else 0. The engine connects and starts its pool when it
    is entered (the actors start up while the driver runs the stages before the first
    model stage); the pool serves every stage until :meth:`close`.

    ``load_in`` says where batches are read and decoded: ``"actor"`` (in the model
    actor's threads, ahead of the model, with no copy through the object store),
    ``"tasks"`` (Ray CPU tasks, which spread the decoding over a cluster's CPUs), or
    ``"auto"``: in the actor on a one-node Ray, in tasks on a cluster of several nodes.
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
        load_in: str = "auto",
    ):
        check_address(address)
        if actors is not None and actors < 1:
            raise ConfigError("--actors must be at least 1")
        if gpus_per_actor is not None and gpus_per_actor < 0:
            raise ConfigError("--gpus-per-actor cannot be negative")
        if load_in not in LOAD_IN:
            raise ConfigError(f"load_in must be one of {', '.join(LOAD_IN)}, not {load_in!r}")
        self.ray = import_ray()
        self.address = address
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.object_store_bytes = object_store_bytes
        self.progress = progress
        self.load_in = load_in
        #: whether batches load in Ray tasks (decided with the pool, from ``load_in``; it may
        #: be changed between stages)
        self.load_in_tasks = load_in == "tasks"
        self.started_ray = False
        self.hosts: list[Any] = []
        self._loader: Any = None

    def __enter__(self) -> RayEngine:
        self._connect()
        try:
            self._start_pool()
        except BaseException:
            self.close()
            raise
        return self

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None and self.object_store_bytes is not None:
            options["object_store_memory"] = self.object_store_bytes
        if self.address is None:
            # Ray starts its workers at niceness 15: on a machine shared with other work the
            # run's own model work would then wait behind everything else (on two busy cores
            # the actors got a tenth of the CPU the local engine gets); the Ray this engine
            # starts runs its workers at the driver's priority, as the local engine does
            os.environ.setdefault("RAY_worker_niceness", "0")
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

    def _start_pool(self) -> list[Any]:
        """The model actors, started at the first stage that needs them."""
        if self.hosts:
            return self.hosts
        import torch

        ray = self.ray
        actors, gpus = self._pool()
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        # CPU results depend on torch's thread count: CPU actors use the driver's, so they
        # give the local engine's rows; GPU actors keep the count Ray gives them
        threads = torch.get_num_threads() if gpus == 0 else None
        if self.load_in == "auto":
            self.load_in_tasks = sum(1 for node in ray.nodes() if node.get("Alive")) > 1
        host = ray.remote(ModelHost).options(
            num_cpus=min(self.cpus_per_actor, cpus / 2),
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=BATCH_RETRIES,
            max_concurrency=IN_FLIGHT_PER_ACTOR,
        )
        self.hosts = [host.remote(threads) for _ in range(actors)]
        self._loader = ray.remote(load_batch).options(num_cpus=LOAD_CPUS)
        return self.hosts

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
            yield from self._outcomes(factory, task, batches, ordered)
        except SemcompError as exc:
            raise exc from None
        except self.ray.exceptions.RayActorError as exc:
            raise SemcompError(lost_actor_message(factory, exc)) from None
        except Exception as exc:
            found = semcomp_error(exc)
            if found is None:
                raise
            raise found from None

    def _outcomes(
        self,
        factory: PluginFactory,
        task: BatchTask,
        batches: Sequence[Sequence[Any]],
        ordered: bool,
    ) -> Iterator[BatchOutcome]:
        ray = self.ray
        hosts = self._start_pool()
        key = factory_key(factory)
        shared = ray.put((factory, task))  # sent once, read by every call by reference
        busy = [0] * len(hosts)
        running: dict[Any, tuple[int, int]] = {}  # outcome reference → (batch, actor)
        done: dict[int, BatchOutcome] = {}
        following = 0  # the next batch to yield when ``ordered``
        window = IN_FLIGHT_PER_ACTOR * len(hosts)
        in_tasks = task.loads and self.load_in_tasks
        submitted = 0
        try:
            while following < len(batches):
                while submitted < len(batches) and len(running) < window:
                    actor = busy.index(min(busy))
                    batch = list(batches[submitted])
                    if in_tasks:
                        batch = self._loader.remote(shared, batch)
                    reference = hosts[actor].run.remote(key, shared, submitted, batch, in_tasks)
                    running[reference] = (submitted, actor)
                    busy[actor] += 1
                    submitted += 1
                ready, _ = ray.wait(list(running), num_returns=1)
                for reference in ready:
                    index, actor = running.pop(reference)
                    busy[actor] -= 1
                    outcome = ray.get(reference)
                    if isinstance(outcome, SemcompError):
                        raise outcome
                    if not ordered:
                        following += 1
                        yield outcome
                        continue
                    done[index] = outcome
                while ordered and following in done:
                    yield done.pop(following)
                    following += 1
        finally:
            for reference in running:  # stopped early: drop what has not run yet
                with contextlib.suppress(Exception):  # finished already, or the actor is gone
                    ray.cancel(reference)

    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):  # Ray already shut down
                self.ray.kill(host)
        self.hosts = []
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_ray = False
