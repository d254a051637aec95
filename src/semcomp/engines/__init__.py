"""Engines run a batch stage's model work: in this process, or on a Ray cluster.

A batch stage (caption, reconstruct, embed, ``features extract``) hands an
engine three things:

- a :class:`PluginFactory`: picklable, it builds the plugin (and so loads the
  model) wherever the work runs: here, or inside a Ray actor;
- a :class:`BatchTask`: ``load`` reads and decodes one batch's inputs without
  the model (DataLoader workers here, CPU tasks on Ray), ``infer`` runs the
  model on a loaded batch (one result or one exception per item);
- the batches, formed by the stage, so both engines see the same batch
  composition (diffusion output depends on it, see ``reconstructors/diffusers``).

The engine yields a :class:`BatchOutcome` per batch; the stage, on the driver,
writes each outcome in one store transaction. So the store stays consistent and
a killed run resumes with no duplicated or lost rows whichever engine ran it.

Plugins that call remote APIs (``scalable = False``) always run locally: their
concurrency is an async pool on the driver, and Ray would add nothing.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - one input item of a batch
L = TypeVar("L")  # a loaded batch
T = TypeVar("T")

#: the profile phases, in report order
PHASES = ("decode", "preprocess", "model", "write")

#: plugin family → (module, registry attribute)
FAMILIES = {
    "captioner": ("semcomp.captioners", "CAPTIONERS"),
    "reconstructor": ("semcomp.reconstructors", "RECONSTRUCTORS"),
    "embedder": ("semcomp.metrics", "EMBEDDERS"),
    "metric": ("semcomp.metrics", "METRICS"),
    "codec": ("semcomp.codecs", "CODECS"),
}

_current_timer: ContextVar[PhaseTimer | None] = ContextVar("semcomp_phase_timer", default=None)


class PhaseTimer:
    """Seconds per phase; nested phases are taken out of the phase around them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[str] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self._open.append(name)
        token = _current_timer.set(self)
        try:
            yield
        finally:
            _current_timer.reset(token)
            elapsed = time.perf_counter() - started
            self._open.pop()
            self.seconds[name] += elapsed
            if self._open:
                self.seconds[self._open[-1]] -= elapsed

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds


def phase(name: str) -> AbstractContextManager[None]:
    """Time a block as ``name`` in the running batch's profile (nothing outside a batch).

    Plugins mark their preprocessing with ``with phase("preprocess"):`` so the
    profile splits it from the model's forward passes.
    """
    timer = _current_timer.get()
    return timer.phase(name) if timer is not None else nullcontext()


@dataclass(frozen=True)
class PluginFactory:
    """Builds one plugin from its registry name and parameters (picklable, for Ray actors).

    ``config`` is the plugin's validated ``Params`` (or an ``EmbedderConfig``),
    passed as the plugin's first argument; ``options`` are its keyword arguments
    (device, batch size).
    """

    family: str
    name: str
    config: Any
    options: dict[str, Any] = field(default_factory=dict)
    #: how the stage report names the model
    label: str = ""

    @property
    def plugin_class(self) -> Any:
        module, registry = FAMILIES[self.family]
        return getattr(importlib.import_module(module), registry).get(self.name)

    @property
    def scalable(self) -> bool:
        """Whether the plugin holds a local model worth running on a cluster (not an API)."""
        return bool(getattr(self.plugin_class, "scalable", False))

    def __call__(self) -> Any:
        return self.plugin_class(self.config, **self.options)

    def chunk(self) -> int:
        """Items per engine batch: the plugin's ``chunk_for`` its config and batch size."""
        batch_size = self.options["batch_size"]
        return max(1, self.plugin_class.chunk_for(self.config, batch_size))


class BatchTask(ABC, Generic[I, L]):
    """One batch stage's work, split into the part without the model and the part with it.

    Subclasses must be picklable (Ray sends them to its workers).
    """

    #: whether :meth:`load` reads anything (False: no DataLoader workers are started for it)
    loads: bool = True

    def context(self, model: Any) -> Any:
        """What :meth:`load` may use from the built model (e.g. its preprocessing); None."""
        return None

    def remote_context(self, factory: PluginFactory) -> Any:
        """What :meth:`load` may use where the model is not (Ray CPU tasks), built from
        ``factory`` without the model (e.g. an image processor read from its folder); None."""
        return None

    @abstractmethod
    def load(self, batch: Sequence[I], context: Any) -> L:
        """Read and decode one batch's inputs (no model; per-item problems as exceptions).

        ``context`` is :meth:`context` of the model when the loading runs beside
        it (local engine, in DataLoader workers or not), :meth:`remote_context`
        when it runs elsewhere (Ray CPU tasks). Preprocessing done here is timed with
        ``with phase("preprocess"):``; the rest of the load counts as ``decode``.
        """

    @abstractmethod
    def infer(self, model: Any, loaded: L, context: Any) -> list[Any]:
        """One result or one exception per item of the batch."""


@dataclass
class BatchOutcome:
    """What the model work of one batch produced, and where its time went."""

    index: int
    results: list[Any]
    #: the plugin's ``identity()`` (recorded with every result row)
    identity: dict[str, Any]
    seconds: dict[str, float]


class ModelWorker:
    """One built model running a task's batches: in this process or as a Ray actor.

    ``threads`` sets torch's intra-op threads first: CPU results depend on it (a
    batched UNet on one thread and on two can differ by one grey level), so Ray
    actors use the driver's count and give the local engine's results bit for bit.
    """

    def __init__(self, factory: PluginFactory, task: BatchTask, threads: int | None = None):
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.model = factory()
        self.task = task
        self.identity = self.model.identity()
        self.context = task.context(self.model)

    def run(self, index: int, loaded: Any, load_seconds: dict[str, float]) -> BatchOutcome:
        timer = PhaseTimer()
        for name, seconds in load_seconds.items():
            timer.add(name, seconds)
        with timer.phase("model"):
            results = self.task.infer(self.model, loaded, self.context)
        return BatchOutcome(index, results, self.identity, dict(timer.seconds))

    def close(self) -> None:
        self.model.close()
        self.model = None


def load_timed(task: BatchTask, batch: Sequence[Any], context: Any) -> tuple[Any, dict[str, float]]:
    """``task.load(batch)`` and its seconds per phase: ``decode``, and ``preprocess``
    for what the task marks so (in whichever process or Ray task the load runs)."""
    timer = PhaseTimer()
    with timer.phase("decode"):
        loaded = task.load(batch, context)
    return loaded, dict(timer.seconds)


#: batches the local engine loads ahead of the model by default (``LocalEngine(prefetch=...)``)
PREFETCH = 2


def prefetched(produce: Callable[[int], T], count: int, depth: int = PREFETCH) -> Iterator[T]:
    """``produce(0)``, ..., ``produce(count - 1)`` in order, each computed up to ``depth``
    calls ahead in one background thread while the caller works on the previous one.

    The one prefetching helper of the batch stages: the local engine loads (reads,
    decodes, preprocesses) the next batches with it while the model runs on the current
    one. Decoding (Pillow) and torch's kernels release the GIL, so a thread overlaps them
    with no process start-up and no copies. An exception raised by ``produce`` is raised
    here, at its item's turn, exactly as a plain loop would raise it (per-item problems
    are not exceptions: a task's ``load`` returns them with the batch). When the caller
    stops early (an error, a kill, a closed generator) the thread stops after the call it
    is in, and nothing more is produced.
    """
    if count <= 0:
        return
    if depth <= 0 or count == 1:
        for index in range(count):
            yield produce(index)
        return
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        for index in range(count):
            if stop.is_set():
                return
            try:
                item = (True, produce(index))
            except BaseException as exc:  # raised in the caller's thread, at its turn
                hand_over((False, exc))
                return
            if not hand_over(item):
                return

    thread = threading.Thread(target=work, name="semcomp-prefetch", daemon=True)
    thread.start()
    try:
        for _ in range(count):
            ok, value = ready.get()
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


class Engine(ABC):
    """Runs batches of a task on models built by a factory; yields outcomes as they finish."""

    name: str

    @abstractmethod
    def run(
        self,
        factory: PluginFactory,
        task: BatchTask,
        batches: Sequence[Sequence[Any]],
        *,
        ordered: bool = False,
    ) -> Iterator[BatchOutcome]:
        """One outcome per batch (``outcome.index`` is the batch's position), in any order
        unless ``ordered`` (then in batch order, e.g. so shards complete one after another)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the engine started (nothing for the local engine)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LoadedBatches:
    """A map-style dataset of loaded batches, for a DataLoader with worker processes."""

    def __init__(self, task: BatchTask, batches: Sequence[Sequence[Any]], context: Any):
        self.task, self.batches, self.context = task, batches, context

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[int, Any, dict[str, float]]:
        loaded, seconds = load_timed(self.task, self.batches[index], self.context)
        return index, loaded, seconds


def _as_is(item: Any) -> Any:
    return item


class LocalEngine(Engine):
    """The model in this process, batches in order.

    With ``workers > 0`` the batches are read, decoded and preprocessed in that
    many DataLoader worker processes ahead of the model (pinned memory on
    CUDA); with 0 they load in a background thread of this process, ``prefetch``
    batches ahead of the model (:func:`prefetched`), or, with ``prefetch=0``,
    just before their turn. The results are the same either way.
    """

    name = "local"

    def __init__(self, workers: int = 0, prefetch: int = PREFETCH):
        self.workers = max(0, workers)
        self.prefetch = max(0, prefetch)

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
        worker = ModelWorker(factory, task)
        try:
            for index, loaded, seconds in self._loaded(task, batches, worker):
                yield worker.run(index, loaded, seconds)
        finally:
            worker.close()

    def _loaded(
        self, task: BatchTask, batches: Sequence[Sequence[Any]], worker: ModelWorker
    ) -> Iterator[tuple[int, Any, dict[str, float]]]:
        if self.workers == 0 or len(batches) == 1 or not task.loads:

            def load(index: int) -> tuple[int, Any, dict[str, float]]:
                return index, *load_timed(task, batches[index], worker.context)

            depth = self.prefetch if task.loads else 0
            yield from prefetched(load, len(batches), depth)
            return
        import torch

        loader = torch.utils.data.DataLoader(
            _LoadedBatches(task, batches, worker.context),
            batch_size=None,
            num_workers=min(self.workers, len(batches)),
            collate_fn=_as_is,
            pin_memory=model_device(worker.model).startswith("cuda"),
            prefetch_factor=2,
        )
        yield from loader


def model_device(model: Any) -> str:
    """The torch device a plugin resolved (``torch_device``), else its ``device`` setting."""
    return str(getattr(model, "torch_device", None) or getattr(model, "device", ""))


def profile_lines(stages: Sequence[Any]) -> list[str]:
    """Per-stage throughput and time split, for ``semcomp run --profile``.

    ``stages`` are stage reports; only stages that ran batches through a model
    appear. Phase seconds are summed over batches (several Ray actors work at
    once, so they can add up to more than the stage's wall time).
    """
    lines = []
    header = f"  {'stage':<12} {'items':>7} {'items/s':>9} " + " ".join(
        f"{name:>16}" for name in PHASES
    )
    for stage in stages:
        if not stage.items:
            continue
        total = sum(stage.phases.get(name, 0.0) for name in PHASES) or 1.0
        seconds = [stage.phases.get(name, 0.0) for name in PHASES]
        split = " ".join(f"{s:8.2f} s {100 * s / total:4.0f}%" for s in seconds)
        rate = stage.items / stage.seconds if stage.seconds > 0 else 0.0
        lines.append(f"  {stage.stage:<12} {stage.items:>7} {rate:>9.2f} {split}")
    return [header, *lines] if lines else ["  no stage ran a model in this run"]


def make_engine(
    name: str = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
) -> Engine:
    """The engine ``semcomp run --engine NAME`` asks for; options of the other engine are refused.

    A Ray engine connects when it is entered (``with make_engine("ray") as engine``), so
    an unreachable cluster is reported before any stage runs.
    """
    from semcomp.errors import ConfigError

    if name == "local":
        ray_only = {"--address": address, "--actors": actors, "--gpus-per-actor": gpus_per_actor}
        given = [option for option, value in ray_only.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} is for --engine ray")
        return LocalEngine(workers=workers or 0)
    if name == "ray":
        if workers is not None:
            raise ConfigError(
                "--workers is for the local engine (on Ray, CPU tasks decode the images)"
            )
        from semcomp.engines.ray import RayEngine
        from semcomp.extras import require_extras

        require_extras("--engine ray", "ray")

        return RayEngine(address=address, actors=actors, gpus_per_actor=gpus_per_actor)
    raise ConfigError(f"unknown engine {name!r}; engines are local and ray")


__all__ = [
    "PHASES",
    "PREFETCH",
    "BatchOutcome",
    "BatchTask",
    "Engine",
    "LocalEngine",
    "ModelWorker",
    "PhaseTimer",
    "PluginFactory",
    "make_engine",
    "phase",
    "prefetched",
    "profile_lines",
]
