"""Engines: the local engine's options, and a real single-node Ray giving the same rows."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from helpers import photo, write_study
from semcomp.cli import main
from semcomp.engines import PHASES, LocalEngine, make_engine
from semcomp.errors import ConfigError, SemcompError
from semcomp.study import Study

#: what each table must hold identically whichever engine ran (run ids and times differ)
COMPARED = {
    "captions": "SELECT id, original_id, captioner_key, variant, text, meta FROM captions",
    "representations": "SELECT id, payload_hash, rate_bits, meta FROM representations",
    "reconstructions": "SELECT key, prompt, seed, replicate, artifact_hash, meta "
    "FROM reconstructions",
    "candidates": "SELECT id, representation_id, replicate, seed, artifact_hash FROM candidates",
    "embedders": "SELECT id, kind, model, preprocess, weights FROM embedders",
    "embeddings": "SELECT artifact_hash, embedder_id, vector FROM embeddings",
    "scores": "SELECT candidate_id, metric, value FROM scores",
    "failures": "SELECT stage, item, reason, retryable FROM failures",
}


def rows(root):
    with Study.open(root, read_only=True) as study:
        conn = study.store.conn
        return {
            table: sorted(tuple(r) for r in conn.execute(f"{sql} ORDER BY 1, 2"))
            for table, sql in COMPARED.items()
        }


@pytest.fixture(scope="module")
def ray_cluster():
    """One real single-node Ray for this module's tests (2 CPUs, a small object store),
    shut down after them: its processes (GCS, raylet, agents, idle workers) would
    otherwise hold memory and take CPU from the worker's later test files."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # as the engine does for a Ray it starts: workers at the tests' priority, not Ray's
    # default niceness 15 (on busy shared cores the model actor would wait for minutes)
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'semcomp[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (ray[data])")
    # Ray's workers import the test tasks (tests/ray_tasks.py) from this folder
    here = os.path.dirname(__file__)
    paths = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        runtime_env={"env_vars": {"PYTHONPATH": paths}},
        include_dashboard=False,
        object_store_memory=150 * 1024**2,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_engine(ray_cluster):
    """One Ray engine (so one model actor) for the tests of this module that do not kill
    it: an actor's start-up (a process importing torch) is paid once, as in a run."""
    with make_engine("ray") as engine:
        yield engine


STUDY_METHODS = """
[[methods]]
name = "blip"
captioner = "blip"
captioner_params = {{ model = "{blip}", max_new_tokens = 8 }}
reconstructor_params = {{ model = "{sd}", steps = 2, width = 64, height = 64 }}
replicates = 2
batch_size = 3

[[methods]]
name = "jpeg"
codec = "jpeg"
quality = [40]
"""


@pytest.fixture(scope="module")
def textual_reference(tmp_path_factory, tiny_clip, tiny_blip, tiny_sd):
    """A study with BLIP captions, SD reconstructions (2 seeds) and JPEG, run locally;
    returns a maker of fresh copies of its study file."""
    base = tmp_path_factory.mktemp("engines")
    images = base / "images"
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (images / category).mkdir(parents=True)
        for seed in seeds:
            photo(160, 120, seed).save(images / category / f"img{seed}.png")
    (images / "landscape" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    methods = STUDY_METHODS.format(blip=tiny_blip, sd=tiny_sd)
    reference = write_study(base / "local", images, tiny_clip, methods=methods)
    with Study.open(reference) as study:
        summary = study.run(progress=False)

    def fresh(name):
        other = base / name
        other.mkdir()
        shutil.copy(reference / "study.toml", other / "study.toml")
        return other

    return reference, summary, fresh


def test_ray_engine_gives_the_local_engines_rows(textual_reference, ray_engine):
    reference, local, fresh = textual_reference
    on_ray = fresh("ray")
    with Study.open(on_ray) as study:
        remote = study.run(progress=False, engine=ray_engine)
    expected, got = rows(reference), rows(on_ray)
    assert len(expected["candidates"]) == 4 * 2 + 4 and len(expected["embeddings"]) > 12
    for table in COMPARED:
        assert got[table] == expected[table], table
    assert [s.done for s in remote.stages] == [s.done for s in local.stages]
    assert remote.models_loaded == local.models_loaded == ["blip", "diffusers", "tiny"]
    for stage in (s for s in remote.stages if s.stage in {"caption", "reconstruct", "embed"}):
        assert stage.items > 0 and {"decode", "model", "write"} <= set(stage.phases)
        assert all(seconds >= 0 for seconds in stage.phases.values()), stage.phases
    with Study.open(on_ray, read_only=True) as study:
        assert json.loads(study.store.runs().iloc[-1]["summary"])["engine"] == "ray"
    # a finished study re-run on Ray does no model work
    with Study.open(on_ray) as study:
        again = study.run(progress=False, engine=ray_engine)
    assert again.models_loaded == [] and all(s.done == 0 for s in again.stages)


def test_ray_run_resumes_a_partial_local_run(textual_reference, ray_engine, monkeypatch):
    """Captions done locally; a Ray run interrupted mid-reconstruction (after its first
    batch was written); a second Ray run finishes: the rows equal an uninterrupted run's."""
    from semcomp.store import Store

    reference, _, fresh = textual_reference
    partial = fresh("partial")
    with Study.open(partial) as study:
        study.run(progress=False, stages=["ingest", "encode", "caption"])
    put_artifact = Store.put_artifact
    written = []

    def interrupted(self, data, *, suffix, media_type):
        if suffix == ".png" and len(written) == 3:  # the first batch to finish is in
            raise KeyboardInterrupt
        written.append(suffix)
        return put_artifact(self, data, suffix=suffix, media_type=media_type)

    monkeypatch.setattr(Store, "put_artifact", interrupted)
    with pytest.raises(KeyboardInterrupt), Study.open(partial) as study:
        study.run(progress=False, engine=ray_engine)
    monkeypatch.setattr(Store, "put_artifact", put_artifact)
    with Study.open(partial, read_only=True) as study:
        # the batch that finished first is kept, the interrupted one is not: 3 images, or
        # the last batch's 2 (the actor runs its batches side by side, in any order)
        assert study.store.count("reconstructions") in (2, 3)
        assert study.store.count("reconstructions") < len(rows(reference)["reconstructions"])
        assert study.store.runs().iloc[-1]["status"] == "interrupted"
    with Study.open(partial) as study:  # the engine that was interrupted goes on
        summary = study.run(progress=False, engine=ray_engine)
    assert summary.models_loaded == ["diffusers", "tiny"]
    assert rows(partial) == rows(reference)


def test_features_extract_on_ray_writes_the_same_shards(tmp_path, tiny_clip, ray_cluster, capsys):
    from semcomp.codecs.pqvae.data import load_embeddings

    images = tmp_path / "images"
    for label, name in enumerate(["cat", "dog"]):
        (images / name).mkdir(parents=True)
        for i in range(7):
            photo(40, 32, seed=10 * label + i).save(images / name / f"{i}.png")
    (images / "dog" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really")
    common = ["--model", tiny_clip, "--shard-size", "5", "--batch-size", "2", "--no-progress"]
    for engine, out in (("local", "a"), ("ray", "b")):
        with pytest.raises(SystemExit) as done:
            main(
                [
                    "features",
                    "extract",
                    str(images),
                    str(tmp_path / out),
                    *common,
                    "--engine",
                    engine,
                ]
            )
        assert done.value.code == 0
    assert "3 shard(s) written" in capsys.readouterr().out
    local, remote = (
        load_embeddings(tmp_path / "a" / "images"),
        load_embeddings(tmp_path / "b" / "images"),
    )
    assert local.embeddings.shape == (14, 32)
    np.testing.assert_array_equal(remote.embeddings, local.embeddings)
    np.testing.assert_array_equal(remote.labels, local.labels)
    assert (tmp_path / "b" / "failures.csv").read_text() == (
        tmp_path / "a" / "failures.csv"
    ).read_text()
    text_a = load_embeddings(tmp_path / "a" / "text.safetensors").embeddings
    text_b = load_embeddings(tmp_path / "b" / "text.safetensors").embeddings
    np.testing.assert_array_equal(text_a, text_b)


@pytest.mark.parametrize("workers", [0, 1])
def test_profile_reports_throughput_and_phases(tmp_path, image_folder, tiny_clip, capsys, workers):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with pytest.raises(SystemExit) as done:
        main(["run", str(root), "--no-progress", "--profile", "--workers", str(workers)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "profile (local engine):" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("embed "))
    assert int(line.split()[1]) == 4 + 8  # 4 originals, 8 JPEG candidates
    with Study.open(root, read_only=True) as study:
        summary = study.store.runs().iloc[-1]["summary"]
    embed = next(s for s in json.loads(summary)["stages"] if s["stage"] == "embed")
    assert set(embed["phases"]) == set(PHASES)
    assert all(seconds >= 0 for seconds in embed["phases"].values())
    assert embed["items"] == 12 and embed["phases"]["model"] > 0
    # CLIP's transform runs while loading (in the worker process with --workers 1): it is
    # preprocessing, not decoding
    assert embed["phases"]["preprocess"] > 0 and embed["phases"]["decode"] > 0


def test_engine_options_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="unknown engine"):
        make_engine("spark")
    with pytest.raises(ConfigError, match="--address is for --engine ray"):
        make_engine("local", address="auto")
    with pytest.raises(ConfigError, match="--actors, --gpus-per-actor is for --engine ray"):
        make_engine("local", actors=2, gpus_per_actor=1)
    pytest.importorskip("ray")
    with pytest.raises(ConfigError, match="--workers is for the local engine"):
        make_engine("ray", workers=2)
    with pytest.raises(ConfigError, match="ray://host:port"):
        make_engine("ray", address="10.0.0.1:6379")
    from semcomp.engines.ray import RayEngine

    with pytest.raises(ConfigError, match="load_in must be one of auto, actor, tasks, not 'gpu'"):
        RayEngine(load_in="gpu")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(SemcompError, match=r"pip install 'semcomp\[ray\]'"):
        make_engine("ray")


def test_engine_ray_without_ray_is_one_clear_message(
    tmp_path, image_folder, tiny_clip, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "ray", None)
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    with pytest.raises(SystemExit) as failed:
        main(["run", str(root), "--engine", "ray"])
    assert failed.value.code == 3
    assert (
        capsys.readouterr().err.strip()
        == "error: --engine ray needs the 'ray' extra: pip install 'semcomp[ray]'"
    )


def test_unreachable_ray_is_one_clear_message_before_any_stage(tmp_path, image_folder, tiny_clip):
    """In a fresh process: this one may hold the session's Ray, which an engine would use."""
    import subprocess

    pytest.importorskip("ray")
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    address = "ray://127.0.0.1:1"
    command = [sys.executable, "-m", "semcomp.cli", "run", str(root), "--engine", "ray"]
    failed = subprocess.run(
        [*command, "--address", address], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 3
    error = failed.stderr.strip()
    assert error.startswith(f"error: cannot reach Ray at {address}: "), error
    assert "ray start --head" in error and "Traceback" not in error
    assert not (root / "study.db").exists()  # the study was not even opened


def test_ray_actor_errors_keep_their_one_line_message(tmp_path, ray_engine):
    """A model that cannot load inside an actor: Ray's wrapping is taken off."""
    from semcomp.config import EmbedderConfig
    from semcomp.errors import ModelUnavailableError
    from semcomp.stages.embed import EmbedImages, embedder_factory

    photo(32, 32, 1).save(tmp_path / "a.png")
    missing = EmbedderConfig(model="ViT-B-32", pretrained="openai")
    factory = embedder_factory(missing, device="cpu", batch_size=2)
    with pytest.raises(ModelUnavailableError) as raised:
        list(ray_engine.run(factory, EmbedImages(), [[tmp_path / "a.png"]]))
    message = str(raised.value)
    assert "hub is unreachable" in message and "semcomp models fetch" in message
    assert "Ray" not in message and "Traceback" not in message
    assert raised.value.__cause__ is None


def test_ray_pool_is_checked_against_the_cluster(tmp_path, tiny_clip, ray_cluster):
    from semcomp.config import EmbedderConfig
    from semcomp.engines.ray import RayEngine
    from semcomp.stages.embed import EmbedImages, embedder_factory

    factory = embedder_factory(EmbedderConfig(model=tiny_clip), device="cpu", batch_size=2)
    batches = [[tmp_path / "a.png"], [tmp_path / "b.png"]]
    engine = RayEngine(gpus_per_actor=1)
    with pytest.raises(ConfigError, match="without GPUs"):
        engine.__enter__()  # the pool starts, and is checked, when the engine is entered
    assert engine.hosts == []
    assert ray_cluster.is_initialized()  # the engine leaves a Ray it did not start running
    with pytest.raises(ConfigError, match="without GPUs"):  # and so does a run without `with`
        list(engine.run(factory, EmbedImages(), batches))


def test_ray_loads_in_the_actor_or_in_tasks_and_keeps_its_actor_and_model_across_stages(
    ray_engine,
):
    """On one node batches load in the model actor (beside the model, in its threads);
    with ``load_in="tasks"`` in Ray tasks, not in the actor. One actor serves every stage
    of the engine, and keeps its model for a stage with the same model (built once)."""
    from ray_tasks import WhereItRuns
    from semcomp.captioners.fixed import FixedParams
    from semcomp.engines import PluginFactory

    options = {"device": "cpu", "batch_size": 1}
    same = PluginFactory("captioner", "fixed", FixedParams(), options)
    other = PluginFactory("captioner", "fixed", FixedParams(text="another"), options)
    assert ray_engine.load_in == "auto" and not ray_engine.load_in_tasks  # a one-node Ray
    stages = []
    for factory, load_in in ((same, "auto"), (same, "tasks"), (other, "auto")):
        ray_engine.load_in_tasks = load_in == "tasks"
        try:
            batches = [["a"], ["b"], ["c"]]
            stages.append(
                [r for o in ray_engine.run(factory, WhereItRuns(), batches) for r in o.results]
            )
        finally:
            ray_engine.load_in_tasks = False
    loaders = [{loader for loader, _, _ in stage} for stage in stages]
    actors = {actor for stage in stages for _, actor, _ in stage}
    stamps = [{stamp for _, _, stamp in stage} for stage in stages]
    assert len(actors) == 1 and os.getpid() not in actors
    assert loaders[0] == loaders[2] == actors  # loaded in the actor
    assert not loaders[1] & actors and os.getpid() not in loaders[1]  # loaded in tasks
    assert len(stamps[0]) == 1 and stamps[1] == stamps[0]  # the same model, built once
    assert stamps[2] != stamps[0]  # another model replaced it


def test_ray_actor_builds_and_runs_its_model_on_one_thread_and_loads_beside_it(ray_engine):
    """The actor's calls run in up to three threads at once, but the model is built and
    run on one thread of its own, for every batch (torch's OpenMP keeps a team per thread
    that runs the model: teams in three threads slowed a small model twice over), while
    the batches load beside it, each in a thread that ends with its load."""
    from ray_tasks import WhichThread
    from semcomp.captioners.fixed import FixedParams
    from semcomp.engines import PluginFactory

    factory = PluginFactory(
        "captioner", "fixed", FixedParams(text="threads"), {"device": "cpu", "batch_size": 1}
    )
    batches = [[str(i)] for i in range(12)]
    results = [r for o in ray_engine.run(factory, WhichThread(), batches) for r in o.results]
    built = {b for b, _, _, _ in results}
    loaders = {loader for _, loader, _, _ in results}
    models = {m for _, _, m, _ in results}
    assert len(results) == 12 and len(models) == 1 and built == models
    assert not loaders & models
    # each batch loads in a thread that ends with its load (an OpenMP team its
    # preprocessing starts ends there, instead of living on in one of Ray's call threads)
    assert {name for _, _, _, name in results} == {"semcomp-load"}


def test_a_batch_that_kills_its_ray_actor_is_retried_then_stops_the_stage(tmp_path, ray_cluster):
    """A dead actor is replaced and its batch retried; a batch that kills every actor
    stops the stage with one clear line instead of being retried forever."""
    import threading

    from ray_tasks import KillsItsActor
    from semcomp.captioners.fixed import FixedParams
    from semcomp.engines import PluginFactory

    factory = PluginFactory("captioner", "fixed", FixedParams(), {"device": "cpu", "batch_size": 1})
    batches = [["a"], ["b"], ["kill"], ["c"]]

    def run(task):
        got: dict = {}

        def work():
            try:
                with make_engine("ray") as engine:
                    got["results"] = {
                        o.index: o.results for o in engine.run(factory, task, batches)
                    }
            except Exception as exc:  # handed to the assertions below
                got["error"] = exc

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        thread.join(timeout=240)
        assert not thread.is_alive(), "the Ray run made no progress after its actor died"
        return got

    once = run(KillsItsActor(once_marker=tmp_path / "killed-once"))
    assert (tmp_path / "killed-once").exists()
    assert once.get("results") == {0: ["a"], 1: ["b"], 2: ["kill"], 3: ["c"]}

    always = run(KillsItsActor())
    error = always.get("error")
    assert isinstance(error, SemcompError), always
    message = str(error)
    assert "died on the same batch 3 times" in message and "fixed" in message
    assert "resumes" in message and "\n" not in message


def test_compressai_codec_on_ray_gives_the_local_engines_bitstreams(
    tmp_path, tiny_clip, ray_engine
):
    images = tmp_path / "images" / "photos"
    images.mkdir(parents=True)
    for seed in (1, 2, 3):
        photo(64 + 16 * seed, 48, seed).save(images / f"img{seed}.png")
    method = (
        '[[methods]]\nname = "learned"\ncodec = "compressai"\nquality = [1, 2]\nbatch_size = 2\n'
        'random_weights = true\nparams = { model = "bmshj2018-factorized", weights = "random" }\n'
    )
    found = {}
    for engine_name, engine in (("local", LocalEngine()), ("ray", ray_engine)):
        root = write_study(tmp_path / engine_name, images.parent, tiny_clip, methods=method)
        with Study.open(root) as study:
            summary = study.run(
                progress=False, stages=["ingest", "encode", "decode"], engine=engine
            )
        assert [s.done for s in summary.stages] == [3, 6, 6]
        tables = rows(root)
        found[engine_name] = (tables["representations"], tables["candidates"])
    assert found["ray"] == found["local"]


def test_prefetched_keeps_order_runs_ahead_in_a_thread_and_raises_at_its_turn():
    import threading

    from semcomp.engines import prefetched

    threads, made = set(), []

    def produce(index):
        threads.add(threading.current_thread().name)
        made.append(index)
        if index == 4:
            raise ValueError("batch 4 does not load")
        return index * 10

    got = []
    with pytest.raises(ValueError, match="batch 4"):
        for value in prefetched(produce, 8, depth=2):
            got.append(value)
    assert got == [0, 10, 20, 30]
    assert threads == {"semcomp-prefetch"} and made == [0, 1, 2, 3, 4]  # nothing after 4

    # a caller that stops early stops the thread: at most depth + 1 batches were made ahead
    made.clear()
    values = prefetched(produce, 100, depth=2)
    assert next(values) == 0
    values.close()
    assert len(made) <= 4
    assert not any(t.name == "semcomp-prefetch" for t in threading.enumerate())
    assert list(prefetched(produce, 3, depth=0)) == [0, 10, 20]  # depth 0: a plain loop


def test_local_engine_loads_ahead_in_a_thread_and_gives_the_same_rows(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    """The default local engine decodes in its prefetch thread; rows are those of loading
    in turn (prefetch 0) and of DataLoader workers."""
    import threading

    import semcomp.stages.embed as embed

    decode, threads = embed.decode_image, []

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return decode(*args, **kwargs)

    monkeypatch.setattr(embed, "decode_image", recording)
    roots = [write_study(tmp_path / name, image_folder, tiny_clip) for name in "abc"]
    engines = [LocalEngine(prefetch=0), LocalEngine(), LocalEngine(workers=2)]
    for root, engine in zip(roots, engines, strict=True):
        threads.clear()
        with Study.open(root) as study:
            study.run(progress=False, engine=engine)
        if engine.prefetch and not engine.workers:
            assert set(threads) == {"semcomp-prefetch"}, threads  # batch size 4: 3 batches
        elif not engine.workers:
            assert set(threads) == {"MainThread"}
    assert rows(roots[0]) == rows(roots[1]) == rows(roots[2])
