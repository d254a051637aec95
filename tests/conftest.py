"""Shared fixtures: offline mode, CPU only, a tiny random-weight CLIP, study builders."""

import os

# Read at import time by huggingface_hub: set before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["DIFFUSERS_VERBOSITY"] = "error"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # each pytest-xdist worker's torch (and the CLI processes it starts) gets its share of
    # the CPUs: more threads than cores make a forward pass many times slower, not faster
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))
    if _share <= 1:
        # every core has a worker: a report's figure worker process would take CPU from
        # another test worker (1-3 s per report for pickling the figures and the fork) and
        # gain no core; figures are written in the report's process (tests/analysis/
        # test_figures.py tests the worker)
        os.environ.setdefault("SEMCOMP_FIGURE_WORKER", "0")

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import photo, write_image_folder
from semcomp.tiny_models import write_tiny_open_clip


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``local-dir:`` id of a tiny random-weight CLIP, built once per session."""
    return write_tiny_open_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Four photos in two category folders."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_blip

    return write_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_blip2

    return write_tiny_blip2(tmp_path_factory.mktemp("models") / "tiny-blip2")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_stable_diffusion

    return write_tiny_stable_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcomp.tiny_models import write_tiny_controlnet

    return write_tiny_controlnet(tmp_path_factory.mktemp("models") / "tiny-controlnet")


@pytest.fixture(scope="session")
def jpeg_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study with candidates (JPEG at two qualities of four photos), built once.

    Not scored (no CLIP model is loaded); tests that write to it copy it first.
    """
    from helpers import write_study
    from semcomp.study import Study

    base = tmp_path_factory.mktemp("jpeg-study")
    images = base / "images"
    for category, seeds in (("landscape", (1, 2)), ("single_object", (3, 4))):
        (images / category).mkdir(parents=True)
        for seed in seeds:
            photo(96, 64, seed).save(images / category / f"img{seed}.png")
    root = write_study(base / "study", images, "unused-clip-model")
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode", "decode"])
    assert summary.status == "finished" and not summary.failures
    return root


@pytest.fixture
def fake_openai():
    """An OpenAI-compatible server on 127.0.0.1 (see fake_openai.py)."""
    from fake_openai import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server


#: the demo made small for the session's end-to-end study: one scene per category, four
#: JPEG and three WebP operating points, a PQVAE-shared trained for two epochs on 18
#: drawn scenes (evaluated on 6)
SMALL_DEMO_PIXEL_METHODS = """
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]
quality = [15, 50]

[[methods]]
name = "webp"
codec = "webp"
reduction = [0.9]
quality = [15, 50]
"""


def build_all_methods_study(root: Path) -> Path:
    """The study of :func:`all_methods_study`, built in ``root``."""
    from helpers import add_human_scores
    from semcomp.demo import SCENE_CAPTIONS, DemoSize, prepare_demo
    from semcomp.study import Study

    size = DemoSize(
        per_category=1, pixel_methods=SMALL_DEMO_PIXEL_METHODS, pqvae_scenes=8, pqvae_epochs=2
    )
    prepare_demo(root, say=lambda _: None, size=size)
    external = root / "external"
    external.mkdir()
    names = sorted(p.stem for p in (root / "images").rglob("*.png"))[:2]
    for seed, name in enumerate(names):
        photo(96, 72, seed).save(external / f"{name}_gr.png")
    lines = [f"{name},{SCENE_CAPTIONS[name][:40]}" for name in names]
    (root / "external.csv").write_text("image,caption\n" + "\n".join(lines) + "\n")
    with (root / "study.toml").open("a") as handle:
        handle.write(
            '\n[[methods]]\nname = "external-gr"\nfolder = "external"\n'
            'pattern = "{name}_gr.png"\ncaptions = "external.csv"\n'
        )
    with Study.open(root) as study:
        study.run(progress=False)
    add_human_scores(root)
    return root


def built_once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]
) -> Path:
    """``build(folder)``'s folder, built by one pytest-xdist worker per run (the others wait
    for it) and copied into each worker's own temporary folder, which its tests may change.
    Without xdist it is built in place."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name) / "study")
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / name  # the run's folder, every worker's
    shared.mkdir(exist_ok=True)
    with FileLock(shared / "build.lock"):
        if not (shared / "built").exists():
            try:
                build(shared / "study")
            except BaseException:
                shutil.rmtree(shared / "study", ignore_errors=True)  # the next worker retries
                raise
            (shared / "built").touch()
    copy = tmp_path_factory.mktemp(name) / "study"
    shutil.copytree(shared / "study", copy)
    return copy


@pytest.fixture(scope="session")
def all_methods_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study with every kind of method and human ratings, built once per run.

    The demo study made small (:data:`SMALL_DEMO_PIXEL_METHODS`: JPEG and WebP, human
    captions and BLIP through a tiny Stable Diffusion, a tiny PQVAE-shared; three
    originals) plus imported external reconstructions with captions for two of them,
    and human score rows for every image candidate. Its study file names its models
    and folders relative to it: each worker's copy is a study of its own.
    """
    return built_once_per_run(tmp_path_factory, "all-methods", build_all_methods_study)


@pytest.fixture(scope="session")
def metric_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEG and WebP sweeps with PSNR, LPIPS, CLIP, FID (a set metric) and Survey A rows
    written straight into the store (see metric_store.py); read-only for tests."""
    from metric_store import write_metric_study

    return write_metric_study(tmp_path_factory.mktemp("metric-study"))


#: the test files that took longest on two cores (CPU seconds, benchmarks/RESULTS.md,
#: "Issue #16: the whole test suite under 6 minutes" and "the test suite, second pass"),
#: longest first. pytest-xdist hands each worker a whole file, in the order of the
#: collection: the longest go first so that the last files handed out are short and the
#: workers finish together. Only the order depends on this list; a long file missing from
#: it runs after these, with the slow ones
LONGEST_FILES = (
    "test_engines.py",
    "test_readme.py",
    "test_zero_shot_bpp.py",
    "app/test_browser.py",
    "test_pqvae_readme.py",
    "downstream/test_clipcap.py",
    "test_resume.py",
    "codecs/test_pqvae.py",
    "test_all_metrics.py",
    "test_extras.py",
    "analysis/test_comparisons.py",
    "app/test_app.py",
    "analysis/test_any_metric.py",
    "test_demo.py",
    "downstream/test_referring.py",
    "test_study.py",
    "test_textual.py",
    "codecs/test_compressai.py",
    "test_side_info.py",
    "test_best_of_n.py",
    "test_one_writer.py",
    "test_pqvae_cli.py",
    "test_paper_reproduction.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of :data:`LONGEST_FILES` run first, longest first, then the other files
    with a ``slow`` test, then the rest (each file in its own order). pytest-xdist keeps
    this order with ``--no-loadscope-reorder`` (pyproject.toml); by default it would
    reorder the files by their number of tests."""
    here = Path(__file__).parent
    rank = {(here / name).resolve(): i for i, name in enumerate(LONGEST_FILES)}
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def order(item: pytest.Item) -> tuple[int, int]:
        if item.path.resolve() in rank:
            return (0, rank[item.path.resolve()])
        return (1, item.path not in slow_files)

    items.sort(key=order)
