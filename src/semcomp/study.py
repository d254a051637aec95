"""A study: a folder with ``study.toml``, ``study.db`` and ``artifacts/``.

:meth:`Study.run` runs the fixed sequence of idempotent stages

1. ``ingest``  originals (id = content hash)
2. ``encode``  every original with every method at every operating point
3. ``decode``  representations into candidate images
4. ``embed``   originals and candidates with every similarity model
5. ``score``   candidate–original similarity

Each stage works out what is pending from the store alone, so a finished study
re-runs without loading any model, and a killed run resumes where it stopped.
Each stage holds at most one model, loaded once and freed before the next.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from semcomp import __version__
from semcomp.config import STUDY_FILE, DatasetSource, StudyConfig, load_config
from semcomp.engines import Engine, LocalEngine
from semcomp.errors import ConfigError, StoreError
from semcomp.extras import require_extras
from semcomp.images import IMAGE_SUFFIXES, SourceImage, SourceProblem, find_sources
from semcomp.methods import TextualMethod
from semcomp.models import hf_model_problem
from semcomp.params import portable_value
from semcomp.registry import PluginSource
from semcomp.stages import STAGES, StageContext, StageReport, failure_label
from semcomp.stages.embed import NOT_IMAGES, needed_artifacts
from semcomp.store import (
    DB_NAME,
    SchemaOutdatedError,
    Store,
    is_writable,
    keys_among,
    read_writer,
    to_json,
    utc_now,
)
from semcomp.tiny_models import ensure_tiny_model, tiny_model_kind

log = logging.getLogger(__name__)

PROVENANCE_PACKAGES = (
    "semcomp",
    "torch",
    "open_clip_torch",
    "pillow",
    "numpy",
    "pandas",
    "scipy",
    "pydantic",
    "safetensors",
    "transformers",
    "diffusers",
    "openai",
    "constriction",
    "compressai",
)


def package_versions(plugins: Iterable[PluginSource] = ()) -> dict[str, str]:
    """Versions of the packages (and Pillow's codec libraries) that shape the numbers, and
    of every distribution in ``plugins`` (where the run's plugins come from)."""
    versions = dict(_package_versions())
    for source in plugins:
        if not source.builtin:
            versions[str(source.distribution)] = str(source.version)
    return versions


@functools.cache
def _package_versions() -> dict[str, str]:
    """Read once per process (about 50 ms of metadata reads that every run paid)."""
    versions: dict[str, str] = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    from PIL import features

    for codec in ("jpg", "webp"):
        versions[f"lib{codec}"] = str(features.version(codec))
    return versions


def plugin_sources(config: StudyConfig) -> list[PluginSource]:
    """Where each plugin a study's methods and similarity models name comes from."""
    from semcomp.captioners import CAPTIONERS
    from semcomp.codecs import CODECS, TEXT_CODECS
    from semcomp.codecs.embedding import EMBEDDING_CODECS
    from semcomp.methods import EmbeddingMethod, ExternalMethod, PixelMethod
    from semcomp.metrics import EMBEDDERS, METRICS
    from semcomp.reconstructors import RECONSTRUCTORS

    used = [(EMBEDDERS, model.kind) for model in config.similarity.models]
    used += [(METRICS, entry.metric) for entry in config.metric_entries]
    for method in config.methods:
        if isinstance(method, PixelMethod):
            used.append((CODECS, method.codec))
        elif isinstance(method, TextualMethod):
            used += [
                (CAPTIONERS, method.captioner),
                (RECONSTRUCTORS, method.reconstructor),
                (TEXT_CODECS, method.text_codec),
            ]
        elif isinstance(method, ExternalMethod):
            used.append((TEXT_CODECS, method.text_codec))
        elif isinstance(method, EmbeddingMethod):
            used.append((EMBEDDING_CODECS, method.codec))
    return [registry.source(name) for registry, name in used]


def gpu_versions() -> dict[str, str]:
    """The CUDA and cuDNN versions (and the GPU) when this process used a GPU: torch is
    imported and has initialised CUDA. Empty otherwise (torch is never imported for it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return {}
    versions = {"cuda": str(torch.version.cuda), "gpu": torch.cuda.get_device_name()}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    versions["cudnn"] = str(cudnn) if cudnn else "not available"
    return versions


#: study_info key: "" when the study's identities use paths relative to its folder; the
#: folder it was in, for a study whose identities were made with absolute paths
IDENTITY_ROOT = "identity_root"


def identity_root(store: Store) -> str | None:
    """The folder a study's path-based identities are anchored at (None: its own folder).

    A study first run by a semcomp that stored absolute paths keeps them: its identities
    are computed as if it were still where it was then (its folder when first opened
    now), so it keeps its rows and, from then on, can be moved too.
    """
    recorded = store.get_info(IDENTITY_ROOT)
    if recorded is not None:
        return recorded or None
    legacy = store.count("methods") > 0
    return str(store.root.resolve()) if legacy else None


@dataclass
class RunSummary:
    run_id: int
    status: str
    stages: list[StageReport]
    #: (stage, item, reason) for every failure this run recorded
    failures: list[tuple[str, str, str]]

    @property
    def models_loaded(self) -> list[str]:
        return [m for s in self.stages for m in s.models_loaded]


@dataclass(frozen=True)
class StatusRow:
    what: str
    done: int
    #: None: unknown, not counted (the ingest row without a rescan: images added to the
    #: source since the last run are found only by listing it); see :attr:`pending_known`
    pending: int | None
    failed: int

    @property
    def pending_known(self) -> bool:
        """Whether :attr:`pending` was counted (``semcomp status`` shows ``unknown`` if not)."""
        return self.pending is not None


class Study:
    """Open with :meth:`open`; run with :meth:`run`; inspect with :meth:`status`."""

    def __init__(self, root: Path, config: StudyConfig, store: Store):
        self.root = root
        self.config = config
        self.store = store

    # ---- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, *, read_only: bool = False) -> Study:
        """Open to write (holding the study's writer lock until closed) or ``read_only``."""
        root = Path(root).resolve()
        load_config(root)  # a missing or broken study.toml is reported before any store is made
        return cls.on_store(root, Store(root, read_only=read_only))

    @classmethod
    def on_store(cls, root: Path, store: Store) -> Study:
        """The study at ``root`` over an opened store; an older study's method identities
        are computed from the folder it was made in (see :func:`identity_root`)."""
        try:
            anchor = identity_root(store)
            return cls(root, load_config(root, anchor or None), store)
        except BaseException:
            store.close()
            raise

    @classmethod
    def open_to_read(cls, root: Path | str) -> Study:
        """Open for reading, never waiting for a writer.

        Reading needs a store at the current schema: one that does not exist yet, or is
        older, is created or migrated first, under the writer lock (refused at once, naming
        the writer, if another process holds it).
        """
        root = Path(root).resolve()
        load_config(root)  # a missing or broken study.toml is reported before any store is made
        if (root / DB_NAME).exists():
            try:
                return cls.on_store(root, Store(root, read_only=True))
            except SchemaOutdatedError:
                pass
        elif not is_writable(root):
            raise StoreError(f"{root} has no results yet (no {DB_NAME}) and is read-only")
        return cls.on_store(root, Store(root))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def random_weights(self) -> bool:
        return any(m.random_weights for m in self.config.metric_entries) or any(
            m.random_weights for m in self.config.methods
        )

    # ---- running ---------------------------------------------------------------------

    def run(
        self,
        *,
        progress: bool = True,
        command: str = "semcomp run",
        stages: Iterable[str] | None = None,
        engine: Engine | None = None,
    ) -> RunSummary:
        """Run the pending work of every stage (or of ``stages`` only, in pipeline order).

        Batch stages run their models on ``engine`` (default: this process; see
        :mod:`semcomp.engines`); the results are the same either way. Failures
        of single items are recorded, not raised.
        """
        engine = engine or LocalEngine()
        selected = set(STAGES if stages is None else stages)
        unknown = selected - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        if "ingest" in selected and not self.store.count("originals"):
            # nothing to study; once originals exist, a source gone missing is an ingest
            # failure and the run goes on with what the store holds
            images = self.config.images
            require_images(images.source if images.dataset is None else images.dataset)
        pending = self._pending(selected)  # the source listed once, when the run ingests
        require_extras("semcomp run", *self.extras_needed(selected, pending=pending))
        self.prepare_models(selected, pending=pending)
        packages = package_versions(plugin_sources(self.config))
        log.debug("package versions: %s", packages)
        run_id = self.store.start_run(
            command=command,
            semcomp_version=__version__,
            packages=packages,
            config=portable_value(self.config.model_dump(mode="json"), self.root),
            seed=self.config.seed,
        )
        with self.store.transaction():
            self.store.set_info("name", self.config.name)
            self.store.set_info("random_weights", self.random_weights)
            if self.store.get_info(IDENTITY_ROOT) is None:
                self.store.set_info(IDENTITY_ROOT, identity_root(self.store) or "")
        self._register_methods()
        reports: list[StageReport] = []
        status = "failed"
        try:
            for stage in STAGES:
                if stage not in selected:
                    continue
                report = StageReport(stage)
                context = StageContext(self.store, self.config, run_id, progress, report, engine)
                started = time.perf_counter()
                log.info("run %d: %s", run_id, stage)
                importlib.import_module(f"semcomp.stages.{stage}").run(context)
                report.seconds = time.perf_counter() - started
                log.info(
                    "run %d: %s: %d done, %d already done, %d failed in %.1f s",
                    *(run_id, stage, report.done, report.skipped, report.failed, report.seconds),
                )
                reports.append(report)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            failures = [
                (r["stage"], failure_label(r["item"], r["detail"]), r["reason"])
                for r in sorted(
                    self.store.conn.execute(
                        "SELECT stage, item, reason, detail FROM failures WHERE run_id = ? "
                        "ORDER BY stage, item",
                        (run_id,),
                    ),
                    key=lambda r: stage_order(r["stage"]),
                )
            ]
            self.store.finish_run(
                run_id,
                status=status,
                packages={**packages, **gpu_versions()},
                summary={
                    "stages": [vars(s) for s in reports],
                    "failures": len(failures),
                    "engine": engine.name,
                },
            )
        return RunSummary(run_id=run_id, status=status, stages=reports, failures=failures)

    def models_needed(
        self, stages: Iterable[str], *, pending: dict[str, int] | None = None
    ) -> list[tuple[str, str, Any]]:
        """The models the pending work of ``stages`` loads, as (family, what needs it, source):
        family ``hf`` (a Hugging Face id or folder) or ``clip`` (an :class:`EmbedderConfig`).

        Worked out from the store as :meth:`status` counts it: a finished study needs
        none; pending work upstream (new images, new representations) needs every model
        downstream of it. The image source is listed for new images only when ``stages``
        ingest (without ingest, images not ingested yet get no work); ``pending``: those
        counts (:meth:`_pending`) when already at hand.
        """
        from semcomp.captioners import CAPTIONERS
        from semcomp.reconstructors import RECONSTRUCTORS

        selected = set(stages)
        rows = pending if pending is not None else self._pending(selected)
        new_originals = rows["ingest: originals"] > 0
        upstream = new_originals
        needed: list[tuple[str, str, Any]] = []
        for method in self.config.methods:
            represent = rows.get(f"represent: {method.name}", 0) > 0 or new_originals
            candidates = rows.get(f"candidates: {method.name}", 0) > 0
            upstream = upstream or represent or candidates
            if not isinstance(method, TextualMethod):
                continue
            owner = f"method {method.name!r}"
            reconstructor = RECONSTRUCTORS.get(method.reconstructor)
            uses = [("hf", owner, m) for m in reconstructor.hf_models(method.reconstructor_params)]
            if represent and "caption" in selected:
                captioner = CAPTIONERS.get(method.captioner)
                for point in method.caption_points():
                    needed += [
                        ("hf", owner, m) for m in captioner.hf_models(point.captioner_params)
                    ]
                needed += uses  # the caption stage reads prompts with its tokenizer
            if (represent or candidates) and "reconstruct" in selected:
                needed += uses
                if method.select is not None:  # best-of-N scores its candidates
                    metric = method.select.metric
                    embedders = metric.metric_class.embedders(metric.validated)
                    needed += [("clip", owner, embedder) for embedder in embedders]
                    if not embedders:
                        needed.append(("metric", owner, metric))
        if "embed" in selected:
            for embedder in self.config.clip_models:
                if upstream or rows.get(f"embed: {embedder.label}", 0) > 0:
                    needed.append(("clip", "similarity", embedder))
        if "score" in selected:
            for metric in self.config.metric_entries:
                if metric.kind in ("embedding", "set"):
                    continue  # embeddings come from the embed stage; set metrics check theirs
                if not (upstream or rows.get(f"score: {metric.scores()[0].key}", 0) > 0):
                    continue
                owner = f"metric {metric.label!r}"
                embedders = metric.metric_class.embedders(metric.validated)
                needed += [("clip", owner, embedder) for embedder in embedders]
                if not embedders:
                    needed.append(("metric", owner, metric))
        unique: dict[str, tuple[str, str, Any]] = {}
        for family, owner, source in needed:
            key = {"hf": source, "clip": getattr(source, "embedder_id", "")}.get(
                family, f"metric:{getattr(source, 'label', '')}"
            )
            unique.setdefault(key, (family, owner, source))
        return list(unique.values())

    def _pending(self, stages: set[str]) -> dict[str, int]:
        """Pending items per status row, for planning a run of ``stages``: the image source
        is listed (for new images) only when they ingest."""
        return {row.what: row.pending or 0 for row in self.status(rescan="ingest" in stages)}

    def extras_needed(
        self, stages: Iterable[str], *, pending: dict[str, int] | None = None
    ) -> list[str]:
        """The pip extras (``semcomp.extras``) the pending work of ``stages`` imports, from
        the plugins that do it; pending as in :meth:`models_needed`."""
        from semcomp.captioners import CAPTIONERS
        from semcomp.codecs import CODECS
        from semcomp.metrics import EMBEDDERS
        from semcomp.reconstructors import RECONSTRUCTORS

        selected = set(stages)
        rows = pending if pending is not None else self._pending(selected)
        new_originals = rows["ingest: originals"] > 0
        upstream = new_originals
        extras: list[str | None] = []
        for method in self.config.methods:
            represent = rows.get(f"represent: {method.name}", 0) > 0 or new_originals
            candidates = rows.get(f"candidates: {method.name}", 0) > 0
            upstream = upstream or represent or candidates
            if not (represent or candidates):
                continue
            if isinstance(method, TextualMethod):
                if represent and "caption" in selected:
                    extras.append(getattr(CAPTIONERS.get(method.captioner), "extra", None))
                # the caption stage reads prompts with the reconstructor's tokenizer
                if (represent and "caption" in selected) or "reconstruct" in selected:
                    plugin = RECONSTRUCTORS.get(method.reconstructor)
                    extras.append(getattr(plugin, "extra", None))
                if method.select is not None and "reconstruct" in selected:
                    extras.append(method.select.metric.metric_class.extra)
            elif method.kind == "pixel" and selected & {"encode", "decode"}:
                extras.append(getattr(CODECS.get(method.codec), "extra", None))
            elif method.kind == "embedding" and "embedding_codecs" in selected:
                extras.append(method.codec_class.extra)
        if "embed" in selected:
            for embedder in self.config.clip_models:
                if upstream or rows.get(f"embed: {embedder.label}", 0) > 0:
                    extras.append(getattr(EMBEDDERS.get(embedder.kind), "extra", None))
        if "score" in selected:
            for metric in self.config.metric_entries:
                if upstream or rows.get(f"score: {metric.scores()[0].key}", 0) > 0:
                    extras.append(metric.metric_class.extra)
        return [extra for extra in dict.fromkeys(extras) if extra is not None]

    def prepare_models(
        self, stages: Iterable[str], *, pending: dict[str, int] | None = None
    ) -> None:
        """Before any stage starts: build the tiny models (``model = "tiny"``) the pending
        work needs, and check every other model it needs can be loaded (a folder, the local
        cache, or a hub that answers). Every missing model is named in one error."""
        from semcomp.errors import ModelUnavailableError
        from semcomp.models import HubReachability

        needed = self.models_needed(stages, pending=pending)
        if not needed:
            return
        reachable = HubReachability()
        problems: list[str] = []
        for family, owner, source in needed:
            if family == "metric":
                problem = source.metric_class.weights_problem(source.validated, reachable)
                if problem:
                    problems.append(f"  {problem} (needed by {owner})")
                continue
            model = source if family == "hf" else source.model
            tiny = tiny_model_kind(self.root, model)
            if tiny is not None:
                ensure_tiny_model(self.root, tiny)
                continue
            if family == "hf":
                problem = hf_model_problem(source, "model", reachable)
            else:
                from semcomp.metrics.clip import weights_problem

                problem = weights_problem(source, reachable)
            if problem:
                problems.append(f"  {problem} (needed by {owner})")
        if problems:
            raise ModelUnavailableError(
                f"{len(problems)} model(s) this run needs cannot be loaded; nothing was run:\n"
                + "\n".join(problems)
            )

    def scope(self) -> dict[str, tuple[list[str], int]]:
        """What the study file asks for: method id → (operating point labels, replicates)."""
        return {
            m.method_id: (m.operating_point_labels(), getattr(m, "replicates", 1))
            for m in self.config.methods
        }

    def _register_methods(self) -> None:
        with self.store.transaction():
            for method in self.config.methods:
                described = method.model_dump(mode="json", exclude={"name", "random_weights"})
                self.store.upsert(
                    "methods",
                    {
                        "id": method.method_id,
                        "name": method.name,
                        "kind": method.kind,
                        "codec": method.payload_codec,
                        "params": to_json(portable_value(described, self.root)),
                        "created_at": utc_now(),
                    },
                    key=("id",),
                )

    # ---- status ----------------------------------------------------------------------

    def status(self, *, rescan: bool = False) -> list[StatusRow]:
        """Done / pending / failed counts per stage and method, from the store alone.

        One grouped query per table, whatever the number of originals and methods.
        ``rescan`` lists the image source to count images not ingested yet; without it
        (the default) the ingest row's ``pending`` is ``None`` (unknown: not counted), and
        nothing outside the store is read (``semcomp status`` scans only with ``--rescan``).
        """
        conn = self.store.conn
        configured = [m.method_id for m in self.config.methods]
        originals = int(
            conn.execute("SELECT COUNT(DISTINCT original_id) FROM sources").fetchone()[0]
        )
        represented = dict(
            conn.execute("SELECT method_id, COUNT(*) FROM representations GROUP BY method_id")
        )
        # per method, how many candidates and how many of them are images (all but the few
        # whose file is not); the artifacts similarity needs, and how many of them each
        # embedder has embedded
        embedders = self.config.clip_models
        candidates: dict[str, int] = dict(
            conn.execute("SELECT method_id, COUNT(*) FROM candidates GROUP BY method_id")
        )
        not_images = dict(
            conn.execute(
                "SELECT c.method_id, COUNT(*) FROM candidates c "
                f"WHERE c.artifact_hash IN ({NOT_IMAGES}) GROUP BY c.method_id"
            )
        )
        images = {m: count - not_images.get(m, 0) for m, count in candidates.items()}
        context = StageContext(self.store, self.config, 0, False, StageReport("status"))
        needed_keys = needed_artifacts(self.store, context.method_filter("c.method_id"))
        needed = len(needed_keys)
        embedded = {  # an artifact has one embedding per embedder (its key)
            e.embedder_id: int(
                keys_among(
                    needed_keys,
                    self.store.hash_keys(
                        "SELECT artifact_hash FROM embeddings WHERE embedder_id = ?",
                        [e.embedder_id],
                    ),
                ).sum()
            )
            for e in embedders
        }
        failed: dict[tuple[str, str | None], int] = {}  # (stage, method id or captioner key)
        ingest_failed, embed_failed = 0, []
        for stage, method_id, captioner_key, item, count in conn.execute(
            "SELECT stage, json_extract(detail, '$.method_id') AS m, "
            "json_extract(detail, '$.captioner_key') AS k, "
            "CASE WHEN stage = 'embed' THEN item END AS i, COUNT(*) FROM failures "
            "GROUP BY stage, m, k, i"
        ):
            if stage == "ingest":
                ingest_failed += count
            elif stage == "embed":
                embed_failed.append((item, count))
            for key in {method_id, captioner_key} - {None}:
                failed[(stage, key)] = failed.get((stage, key), 0) + count
        waiting = None
        if rescan:
            ingested = {r[0] for r in conn.execute("SELECT path FROM sources")}
            known = ingested | {
                r[0] for r in conn.execute("SELECT item FROM failures WHERE stage = 'ingest'")
            }
            stored = self.config.stored_path
            waiting = sum(
                1
                for s in self.config.images.find_sources()
                if not isinstance(s, SourceProblem) and stored(s.path) not in known
            )
        rows = [StatusRow("ingest: originals", originals, waiting, ingest_failed)]
        for method in self.config.methods:
            method_id = method.method_id
            done = represented.get(method_id, 0)
            not_represented = failed.get(("encode", method_id), 0) + failed.get(
                ("caption", method_id), 0
            )
            if isinstance(method, TextualMethod):
                keys = [p.captioner_key for p in method.caption_points()]
                # a caption missing blocks its original at every side size
                repeats = 1 if method.side is None else 0
                not_represented += sum(
                    (repeats or keys.count(key)) * failed.get(("caption", key), 0)
                    for key in dict.fromkeys(keys)
                )
            expected = originals * len(method.operating_point_labels())
            rows.append(
                StatusRow(
                    f"represent: {method.name}",
                    done,
                    max(0, expected - done - not_represented),
                    not_represented,
                )
            )
            made = candidates.get(method_id, 0)
            no_candidate = failed.get(("decode", method_id), 0) + failed.get(
                ("reconstruct", method_id), 0
            )
            replicates = getattr(method, "replicates", 1)
            rows.append(
                StatusRow(
                    f"candidates: {method.name}",
                    made,
                    max(0, done * replicates - made - no_candidate),
                    no_candidate,
                )
            )
        all_candidates = sum(candidates.get(m, 0) for m in configured)
        image_candidates = sum(images.get(m, 0) for m in configured)
        for embedder in embedders:
            have = embedded.get(embedder.embedder_id, 0)
            unreadable = sum(
                n for item, n in embed_failed if item.endswith(f"|{embedder.embedder_id}")
            )
            rows.append(
                StatusRow(f"embed: {embedder.label}", have, needed - have - unreadable, unreadable)
            )

        def scalar(sql: str, params: list[Any]) -> int:
            return int(conn.execute(sql, params).fetchone()[0] or 0)

        entries = [m for m in self.config.metric_entries if m.kind != "set"]
        keys = [  # set metrics: one value per method × operating point, not per candidate
            m.scores()[-1].key if m.kind == "embedding" else m.scores()[0].key for m in entries
        ]
        scored = self._scored(keys, configured, candidates) if keys else {}
        for metric, key in zip(entries, keys, strict=True):
            done = scored.get(key, 0)
            if metric.kind == "embedding":  # unreadable images are counted under embed
                rows.append(StatusRow(f"score: {key}", done, all_candidates - done, 0))
                continue
            suffix = f"|{metric.label}"
            failed_here = scalar(
                "SELECT COUNT(*) FROM failures WHERE stage = 'score' AND substr(item, ?) = ?",
                [-len(suffix), suffix],
            )
            eligible = image_candidates if metric.kind == "pairwise" else all_candidates
            rows.append(
                StatusRow(f"score: {key}", done, max(0, eligible - done - failed_here), failed_here)
            )
        return rows

    def _scored(
        self, metrics: list[str], configured: list[str], candidates: dict[str, int]
    ) -> dict[str, int]:
        """Scores per metric of the configured methods' candidates: every score of each
        metric, counted on the scores' index by metric, less those of candidates of methods
        no longer in the study file (found by the candidates' method)."""
        conn = self.store.conn
        scored = dict.fromkeys(metrics, 0)
        scored.update(
            conn.execute(
                "SELECT metric, COUNT(*) FROM scores "
                f"WHERE metric IN ({', '.join('?' for _ in metrics)}) GROUP BY metric",
                metrics,
            )
        )
        others = [m for m in candidates if m not in configured]
        if others:
            for metric, count in conn.execute(
                "SELECT s.metric, COUNT(*) FROM candidates c "
                "JOIN scores s ON s.candidate_id = c.id "
                f"WHERE c.method_id IN ({', '.join('?' for _ in others)}) "
                f"AND s.metric IN ({', '.join('?' for _ in metrics)}) GROUP BY s.metric",
                [*others, *metrics],
            ):
                scored[metric] -= count
        return scored

    def unfinished_runs(self, limit: int = 5) -> list[str]:
        """One line for each of the latest ``limit`` runs that did not finish (interrupted,
        failed, or still ``running``), newest first."""
        rows = self.store.conn.execute(
            "SELECT id, status, command, started_at FROM runs WHERE status != 'finished' "
            "ORDER BY id DESC"
        ).fetchall()
        writer = read_writer(self.root)
        lines = []
        for row in rows[:limit]:
            what = f"`{row['command']}`, started {row['started_at']}"
            if row["status"] != "running":
                lines.append(f"run {row['id']} {row['status']} ({what})")
            elif writer is not None and writer.alive is not False:
                lines.append(f"run {row['id']} running ({what}): {writer.describe()}")
            else:  # only a writer can tell for certain; it marks the run on opening
                lines.append(
                    f"run {row['id']} stopped without finishing ({what}); the next run marks "
                    "it interrupted"
                )
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} earlier run(s) that did not finish")
        return lines

    def failures(self) -> list[tuple[str, str, str]]:
        """Every recorded failure as (stage, item label, reason), stages in pipeline order."""
        return [
            (r["stage"], failure_label(r["item"], r["detail"]), r["reason"])
            for r in sorted(
                self.store.conn.execute(
                    "SELECT stage, item, reason, detail FROM failures ORDER BY stage, item"
                ),
                key=lambda r: stage_order(r["stage"]),
            )
        ]


def write_study_file(
    root: Path, images: Path, *, name: str, methods_toml: str, similarity_toml: str = ""
) -> Path:
    """Write a ``study.toml`` (refusing to overwrite one) and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / STUDY_FILE
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it or choose another folder")
    try:
        source = images.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        source = images.resolve().as_posix()
    # JSON strings are valid TOML basic strings: quotes and backslashes come out escaped
    head = f"name = {json.dumps(name)}\nseed = 0\n\n[images]\nsource = {json.dumps(source)}\n\n"
    text = head + f"{methods_toml.strip()}\n"
    if similarity_toml:
        text += f"\n{similarity_toml.strip()}\n"
    path.write_text(text, encoding="utf-8")
    return path


#: The textual-transform paper's JPEG operating points (~80 % and ~90 % smaller files),
#: and the same for WebP.
DEFAULT_METHODS_TOML = """
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]

[[methods]]
name = "webp"
codec = "webp"
reduction = [0.8, 0.9]
"""


def require_images(source: Path | DatasetSource) -> None:
    """A :class:`ConfigError` when ``source`` names no image at all (an empty folder, a
    folder of other files, a manifest without a usable row, a dataset that cannot be
    read): nothing to study."""
    if isinstance(source, DatasetSource):
        if not any(isinstance(s, SourceImage) for s in source.originals().sources):
            raise ConfigError(f"images source {source} holds no images")
        return
    problems = 0
    for found in find_sources(source):
        if not isinstance(found, SourceProblem):
            return
        problems += 1
    if not source.exists():
        raise ConfigError(f"images source {source} does not exist")
    rows = f" ({problems} unusable row(s) or path(s))" if problems else ""
    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    raise ConfigError(
        f"images source {source} holds no images{rows}; a folder needs image files "
        f"({suffixes}), a manifest needs rows naming them"
    )


def init_study(root: Path, images: Path, *, name: str | None = None) -> Study:
    """Create a study folder with a default ``study.toml`` and an empty store."""
    if not images.exists():
        raise ConfigError(f"images source {images} does not exist")
    require_images(images)
    store = Store(root.resolve())  # the writer lock first: no study file beside a run's
    try:
        write_study_file(root, images, name=name or root.name, methods_toml=DEFAULT_METHODS_TOML)
    except BaseException:
        store.close()
        raise
    return Study.on_store(root.resolve(), store)


def stage_order(stage: str) -> tuple[int, str]:
    """Sort key of a stage name: pipeline order (ingest first), then any other stage
    (ratings imports, ...) by name."""
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), stage)


def parse_failure_limit(value: str) -> int | None:
    """``--failures all`` → None (no limit); ``--failures N`` → N per stage (N ≥ 0)."""
    if value.strip().lower() == "all":
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ConfigError(f"--failures must be 'all' or a number ≥ 0, not {value!r}")
    return limit


def summarise_failures(
    failures: Iterable[tuple[str, str, str]], limit: int | None = None
) -> list[str]:
    """Failures grouped by stage in pipeline order (ingest first), one line each.

    ``limit`` caps the lines per stage (None: every failure); a stage with more
    says how many are left out and where the whole list is.
    """
    by_stage: dict[str, list[tuple[str, str]]] = {}
    for stage, item, reason in failures:
        by_stage.setdefault(stage, []).append((item, reason))
    lines = []
    for stage in sorted(by_stage, key=stage_order):
        items = by_stage[stage]
        lines.append(f"  {stage} ({len(items)}):")
        shown = items if limit is None else items[:limit]
        lines += [f"    {item}: {reason}" for item, reason in shown]
        if len(items) > len(shown):
            lines.append(
                f"    ... and {len(items) - len(shown)} more {stage} failure(s) "
                "(all of them: `--failures all`, or report/failures.csv)"
            )
    return lines


__all__ = [
    "STAGES",
    "RunSummary",
    "StageReport",
    "StatusRow",
    "Study",
    "init_study",
    "parse_failure_limit",
    "summarise_failures",
    "write_study_file",
]
