"""The ``semcomp`` command line: parses, calls one library function, prints.

Library modules are imported inside the commands so that ``semcomp --help``
imports neither torch nor pandas.

Exit statuses (the README lists them too): :data:`EXIT_OK`, :data:`EXIT_FAILURES`,
:data:`EXIT_USAGE`, :data:`EXIT_ERROR`, :data:`EXIT_INTERRUPTED`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from semcomp.errors import ConfigError, SemcompError, UsageError

#: the command did what it was asked
EXIT_OK = 0
#: the command finished, but some items failed (each recorded with its reason:
#: ``semcomp status`` lists them), or an import kept nothing
EXIT_FAILURES = 1
#: a usage or configuration error: a wrong option or argument, an invalid study.toml,
#: an unknown or refused plugin name; nothing ran
EXIT_USAGE = 2
#: the command stopped on an error it names in one line (the study is being written by
#: another process or is read-only, model weights or an extra missing, the disk full, ...)
EXIT_ERROR = 3
#: interrupted (Ctrl-C): what was committed stays; run the command again to finish
EXIT_INTERRUPTED = 130


def exit_status(exc: BaseException) -> int:
    """The exit status of a command that raised ``exc`` (see the ``EXIT_*`` constants)."""
    if isinstance(exc, UsageError | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR


class _NamedArgument(TyperArgument):
    """An argument shown as the name a user types (``STUDY``), not ``{study} <path>``."""

    def _usage_display_name(self) -> str:
        name = self.metavar or (self.name or "value").upper()
        name = name if self.required else f"[{name}]"
        return f"{name}..." if self.nargs != 1 else name

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None  # the name says it


def _name_values(command: object) -> None:
    """Every value in ``command``'s help by the name a user types, as argparse names them:
    arguments and options by their name in capitals (``STUDY``, ``--out OUT``) unless a
    ``metavar`` says better; flags with no value at all. Typer's type placeholders
    (``<bool>``, ``<list[Path]>``, ``{study}``) stay out, and so do Rich's boxes: help is
    click's plain text, which also names the options typer adds itself without them."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            if type(param) is TyperArgument:
                param.__class__ = _NamedArgument  # same state; its own usage and help
        elif isinstance(param, TyperOption) and param.metavar is None:
            flag = param.is_flag or getattr(param, "count", False)
            param.metavar = "" if flag else (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _name_values(sub)


class _Semcomp(TyperGroup):
    """The root command: values named as users type them in every help text, and a
    command's :class:`SemcompError` or Ctrl-C as one line and an ``EXIT_*`` status."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        _name_values(self)

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except SemcompError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exit_status(exc)) from None
        except KeyboardInterrupt as exc:
            typer.echo("interrupted: what was done is kept; run it again to finish", err=True)
            raise typer.Exit(exit_status(exc)) from None


app = typer.Typer(
    cls=_Semcomp,
    name="semcomp",
    help="Semantic image compression studies: textual transforms, compressed CLIP "
    "embeddings and pixel codecs on one rate–semantic-distortion axis.",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from semcomp import __version__

        typer.echo(f"semcomp {__version__}")
        raise typer.Exit()


class _EchoHandler(logging.Handler):
    """``semcomp`` log records as ``level: message`` lines on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"{record.levelname.lower()}: {self.format(record)}", err=True)


def set_verbosity(verbose: int = 0, quiet: bool = False) -> None:
    """-q: errors only (no warnings, no progress bars); default: warnings; -v: what each
    stage and plugin does; -vv: debugging. Sets the ``semcomp`` logger's level."""
    level = (
        logging.ERROR
        if quiet
        else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    )
    logger = logging.getLogger("semcomp")
    logger.setLevel(level)
    if not any(isinstance(handler, _EchoHandler) for handler in logger.handlers):
        logger.addHandler(_EchoHandler())


def _bars(progress: bool) -> bool:
    """Progress bars unless switched off, or -q asked for errors only."""
    return progress and logging.getLogger("semcomp").getEffectiveLevel() <= logging.WARNING


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print semcomp's version and exit.",
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        show_default=False,
        help="More messages on stderr: -v what each stage and plugin does, -vv debugging.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Errors only: no warnings, no progress bars."
    ),
) -> None:
    """Options of semcomp itself (the app's help text is set above)."""
    if verbose and quiet:
        raise UsageError("--verbose and --quiet contradict each other: give one")
    set_verbosity(verbose, quiet)


models_app = typer.Typer(help="Fetch model weights on a connected machine.", no_args_is_help=True)
app.add_typer(models_app, name="models")
pqvae_app = typer.Typer(
    help="PQVAE-shared: train, evaluate and sweep the CLIP-embedding codec.", no_args_is_help=True
)
app.add_typer(pqvae_app, name="pqvae")
features_app = typer.Typer(help="CLIP features of image folders.", no_args_is_help=True)
app.add_typer(features_app, name="features")
clipcap_app = typer.Typer(
    help="ClipCap captioning from (compressed) CLIP features: train and evaluate.",
    no_args_is_help=True,
)
app.add_typer(clipcap_app, name="clipcap")
referring_app = typer.Typer(
    help="Referring-object identification from (compressed) SAM-region CLIP features.",
    no_args_is_help=True,
)
app.add_typer(referring_app, name="referring")

STUDY_ARGUMENT = typer.Argument(..., help="Study folder (holds study.toml).", show_default=False)
FAILURES_OPTION = typer.Option(
    "all", "--failures", metavar="all|N", help="Failures to print per stage: all, or a number."
)
#: where a command's models run, the same options everywhere (``make_engine`` reads them)
ADDRESS_OPTION = typer.Option(
    None, help="Ray cluster: auto or ray://host:port (default: start a local Ray)."
)
ACTORS_OPTION = typer.Option(None, help="Ray model actors (default: one per GPU, else 1).")
GPUS_PER_ACTOR_OPTION = typer.Option(
    None, help="GPUs each Ray actor holds (default: 1 if the cluster has GPUs, else 0)."
)


def engine_option(what: str) -> typer.models.OptionInfo:
    """``--engine``: ``what`` runs locally or on a Ray cluster."""
    return typer.Option("local", metavar="local|ray", help=f"Where {what} run: local, or ray.")


def _print_run(summary: object, failures: str = "all") -> None:
    from semcomp.study import parse_failure_limit, summarise_failures

    typer.echo(f"run {summary.run_id}: {summary.status}")
    for stage in summary.stages:
        models = f", loaded {', '.join(stage.models_loaded)}" if stage.models_loaded else ""
        typer.echo(
            f"  {stage.stage:<16} {stage.done:>6} done {stage.skipped:>6} already done "
            f"{stage.failed:>4} failed  {stage.seconds:6.1f} s{models}"
        )
    if summary.failures:
        typer.echo(f"{len(summary.failures)} failure(s) recorded in this run:")
        for line in summarise_failures(summary.failures, parse_failure_limit(failures)):
            typer.echo(line)


@app.command()
def init(
    study: Path = STUDY_ARGUMENT,
    images: Path = typer.Option(
        ...,
        "--images",
        metavar="FOLDER|CSV",
        help="Image folder (category = first-level subfolder) or CSV manifest.",
    ),
    name: str = typer.Option(None, help="Study name (default: the folder name)."),
) -> None:
    """Create a study folder with a study.toml to edit and an empty store."""
    from semcomp.study import init_study

    with init_study(study, images, name=name) as created:
        typer.echo(f"created {created.root / 'study.toml'}; edit it, then `semcomp run {study}`")


@app.command()
def run(
    study: Path = STUDY_ARGUMENT,
    progress: bool = typer.Option(True, help="Show progress bars."),
    stage: list[str] = typer.Option(
        None, help="Run only this stage (repeatable): ingest, encode, decode, embed, score."
    ),
    engine: str = engine_option("batch stages' models"),
    address: str = ADDRESS_OPTION,
    actors: int = ACTORS_OPTION,
    gpus_per_actor: float = GPUS_PER_ACTOR_OPTION,
    workers: int = typer.Option(
        None,
        help="Local engine: DataLoader processes that decode and preprocess images (0: a "
        "background thread loads the next batches while the model runs).",
    ),
    profile: bool = typer.Option(
        False, help="Print per-stage throughput and time split (decode, preprocess, model, write)."
    ),
    failures: str = FAILURES_OPTION,
) -> None:
    """Run every pending stage (ingest, encode, decode, embed, score); resumable."""
    from semcomp.engines import make_engine, profile_lines
    from semcomp.study import Study, parse_failure_limit

    parse_failure_limit(failures)  # a bad value is an error before anything runs
    with (
        make_engine(
            engine, workers=workers, address=address, actors=actors, gpus_per_actor=gpus_per_actor
        ) as chosen,
        Study.open(study) as opened,
    ):
        summary = opened.run(
            progress=_bars(progress),
            command=" ".join(["semcomp", *sys.argv[1:]]),
            stages=stage or None,
            engine=chosen,
        )
    _print_run(summary, failures)
    if profile:
        typer.echo(f"profile ({chosen.name} engine):")
        for line in profile_lines(summary.stages):
            typer.echo(line)
    if summary.failures:
        raise typer.Exit(EXIT_FAILURES)


@app.command()
def status(
    study: Path = STUDY_ARGUMENT,
    failures: str = FAILURES_OPTION,
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (stages, runs, every failure) for scripts."
    ),
    rescan: bool = typer.Option(
        False,
        "--rescan",
        help="Also list the image folder (or manifest) to count images not ingested yet.",
    ),
) -> None:
    """What is done, pending and failed, without running anything; failures by stage.

    Read from the study's database alone; images added to the folder since the last run
    are counted only with --rescan (`semcomp run` ingests them either way): without it the
    ingest row's pending is "unknown" (JSON: "pending": null, "pending_known": false).
    """
    from semcomp.study import Study, parse_failure_limit, summarise_failures

    limit = parse_failure_limit(failures)
    with Study.open_to_read(study) as opened:
        rows = opened.status(rescan=rescan)
        recorded = opened.failures()
        random_weights = opened.random_weights
        unfinished = opened.unfinished_runs()
    if as_json:
        import json
        from dataclasses import asdict

        document = {
            "study": str(study),
            "random_weights": random_weights,
            "stages": [{**asdict(row), "pending_known": row.pending_known} for row in rows],
            "unfinished_runs": unfinished,
            "failures": [
                {"stage": stage, "item": item, "reason": reason} for stage, item, reason in recorded
            ],
        }
        typer.echo(json.dumps(document, ensure_ascii=False, indent=1))
        return
    typer.echo(f"{'stage':<48} {'done':>7} {'pending':>8} {'failed':>7}")
    for row in rows:
        pending = row.pending if row.pending_known else "unknown"
        typer.echo(f"{row.what:<48} {row.done:>7} {pending:>8} {row.failed:>7}")
    if not rescan:
        typer.echo(
            "new images in the source are not counted (pending unknown): `semcomp status --rescan`"
        )
    if random_weights:
        typer.echo("note: random-weight similarity model — numbers are not meaningful")
    for line in unfinished:
        typer.echo(line)
    if recorded:
        typer.echo(f"{len(recorded)} failure(s):")
        for line in summarise_failures(recorded, limit):
            typer.echo(line)


@app.command()
def report(
    study: Path = STUDY_ARGUMENT,
    out: Path = typer.Option(None, metavar="FOLDER", help="Output folder (default: STUDY/report)."),
    rate: str = typer.Option(
        "bpp", metavar="bytes|bits|bpp", help="Rate axis of the figure: bytes, bits or bpp."
    ),
    pqvae_results: list[Path] = typer.Option(
        None,
        metavar="PATH",
        help="PQVAE eval/sweep result files or folders (besides STUDY/pqvae/).",
    ),
    unpaired: bool = typer.Option(
        False,
        "--unpaired",
        help="Each operating point over its own originals, instead of a method's curve over "
        "the originals with a candidate at all its points and comparisons over the originals "
        "the methods share.",
    ),
    metrics: str = typer.Option(
        None,
        "--metrics",
        help="Comma-separated metric keys to draw (one rate–distortion panel and figure each) "
        "and compare (Pareto, BD-rate), e.g. 'psnr,lpips[alex]'; default: every model and set "
        "metric and the Survey A satisfaction index.",
    ),
    width: str = typer.Option(
        "double",
        metavar="single|double",
        help="Figure width: single (3.5 in, one paper column) or double (7 in, two columns).",
    ),
    grid: bool = typer.Option(
        False,
        "--grid",
        help="Also write grid.png/pdf: one row per original, its candidate of each method "
        "at the operating point nearest --grid-bpp, captioned with the rate.",
    ),
    grid_bpp: float = typer.Option(
        None,
        metavar="BPP",
        help="The rate of the image grid in bits per pixel (default: the median of the "
        "operating points' mean bpp).",
    ),
    progress: bool = typer.Option(True, help="Show the step under way."),
) -> None:
    """Write rd.csv, summary.csv, per-method JSON, Table 1, comparisons and their figures."""
    from semcomp.analysis.figures import PAPER_WIDTHS, RATE_AXES
    from semcomp.report import write_report
    from semcomp.study import Study

    if rate not in RATE_AXES:
        raise UsageError(f"--rate must be one of {', '.join(RATE_AXES)}, not {rate!r}")
    if width not in PAPER_WIDTHS:
        raise UsageError(f"--width must be one of {', '.join(PAPER_WIDTHS)}, not {width!r}")
    if grid_bpp is not None and not grid_bpp > 0:
        raise UsageError(f"--grid-bpp must be a positive number of bits per pixel, not {grid_bpp}")
    with Study.open(study, read_only=True) as opened:
        folder = out or opened.root / "report"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SemcompError(
                f"cannot write the report to {folder} ({exc.strerror}); choose a folder with --out"
            ) from None
        files = write_report(
            opened,
            out,
            rate=rate,
            pqvae_results=pqvae_results or (),
            unpaired=unpaired,
            metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
            width=width,
            grid=grid,
            grid_bpp=grid_bpp,
            progress=_bars(progress),
        )
    typer.echo(f"report of {files.rows} candidates in {files.folder}")
    for path in [files.rd_csv, files.summary_csv, *files.method_json, *files.figures, *files.extra]:
        typer.echo(f"  {path}")
    for note in files.notes:
        typer.echo(f"note: {note}")


@app.command()
def demo(
    folder: Path = typer.Option(Path("semcomp-demo"), "--dir", help="Where to put the demo study."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """The main job: a demo study of generated images, JPEG/WebP sweeps, CLIP scores, report."""
    from semcomp.demo import add_simulated_ratings, prepare_demo
    from semcomp.extras import require_extras
    from semcomp.report import write_report
    from semcomp.study import Study

    require_extras("semcomp demo", "clip", "captioning", "diffusion", "pqvae")

    started = time.perf_counter()
    outcome = prepare_demo(folder, say=typer.echo)
    with Study.open(outcome.root) as study:
        summary = study.run(progress=_bars(progress), command="semcomp demo")
        _print_run(summary)
        add_simulated_ratings(study.store, outcome.root / "surveys", say=typer.echo)
    with Study.open(outcome.root, read_only=True) as study:
        files = write_report(study)
    typer.echo(f"demo study: {outcome.root}")
    typer.echo(f"  images:  {outcome.root / 'images'}")
    typer.echo(f"  store:   {outcome.root / 'study.db'}")
    typer.echo(f"  report:  {files.folder} ({files.rows} candidates)")
    typer.echo(f"  figure:  {files.figures[0]}")
    if outcome.random_weights:
        typer.echo("  note:    random weights — numbers are not meaningful")
    typer.echo(f"done in {time.perf_counter() - started:.1f} s")
    if summary.failures:
        raise typer.Exit(EXIT_FAILURES)


@app.command("app")
def app_command(
    study: Path = STUDY_ARGUMENT,
    port: int = typer.Option(8501, help="Port on 127.0.0.1."),
    browser: bool = typer.Option(True, help="Open a browser tab (--no-browser: serve only)."),
    pqvae_results: list[Path] = typer.Option(
        None,
        metavar="PATH",
        help="PQVAE eval/sweep result files or folders (besides STUDY/pqvae/).",
    ),
) -> None:
    """Explore a study's results in the browser (Streamlit, localhost only, read-only)."""
    import os
    import subprocess

    from semcomp.app import MAIN_SCRIPT, PQVAE_RESULTS_ENV, STUDY_ENV
    from semcomp.config import STUDY_FILE
    from semcomp.extras import require_extras

    require_extras("semcomp app", "app")

    root = study.resolve()
    if not (root / STUDY_FILE).exists() and not (root / "study.db").exists():
        raise UsageError(f"{study} is not a study folder (no {STUDY_FILE}, no study.db)")
    env = dict(os.environ)
    env[STUDY_ENV] = str(root)
    env[PQVAE_RESULTS_ENV] = os.pathsep.join(str(p.resolve()) for p in pqvae_results or [])
    command = [
        sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.headless", "false" if browser else "true",
        "--server.showEmailPrompt", "false",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    typer.echo(f"semcomp app: http://127.0.0.1:{port} (Ctrl-C to stop)")
    if os.name == "posix":  # become the server: signals (SIGTERM, Ctrl-C) reach it directly
        sys.stdout.flush()
        os.execve(sys.executable, command, env)
    try:  # Windows has no exec: wait for the server as a child
        raise SystemExit(subprocess.call(command, env=env))
    except KeyboardInterrupt:
        raise SystemExit(0) from None


@models_app.command("fetch")
def models_fetch(
    clip: str = typer.Option(None, metavar="NAME", help="open_clip model name, e.g. ViT-L-14-336."),
    pretrained: str = typer.Option(
        "openai", metavar="TAG", help="open_clip weights tag (with --clip)."
    ),
    hf: list[str] = typer.Option(
        None,
        metavar="ORG/NAME",
        help="Hugging Face model id (BLIP, diffusers pipelines, ...); repeatable.",
    ),
) -> None:
    """Download model weights into the local cache (run where there is a network)."""
    from semcomp.config import EmbedderConfig
    from semcomp.extras import require_extras
    from semcomp.metrics.clip import fetch_open_clip_weights
    from semcomp.models import fetch_hf_model

    if not clip and not hf:
        raise UsageError("name a model: --clip NAME [--pretrained TAG] and/or --hf ORG/NAME")
    require_extras("semcomp models fetch", *(["clip"] if clip else []), *(["hub"] if hf else []))
    if clip:
        path = fetch_open_clip_weights(EmbedderConfig(model=clip, pretrained=pretrained))
        typer.echo(f"{clip}/{pretrained}: {path}")
    for repo_id in hf or []:
        typer.echo(f"{repo_id}: {fetch_hf_model(repo_id)}")


@features_app.command("extract")
def features_extract(
    images: Path = typer.Argument(
        ..., help="The dataset's folder: IMAGES/CLASS/FILE, or a named dataset's root."
    ),
    out: Path = typer.Argument(..., help="Output folder (images/ shards, text.safetensors)."),
    dataset: str = typer.Option(
        "folder",
        help="folder (a folder per class), hf (a Hugging Face parquet or imagefolder copy), "
        "imagenet-1k, tiny-imagenet, oxford-pets, food-101, caltech-101, cifar-10 or cifar-100 "
        "(torchvision's or Hugging Face's layout).",
    ),
    split: str = typer.Option(
        None, help="Split to embed (default: a named dataset's official test split)."
    ),
    label_column: str = typer.Option(None, help="Hugging Face layouts: the label column."),
    model: str = typer.Option("ViT-L-14-336", help="open_clip model (or local-dir:/path)."),
    pretrained: str = typer.Option("openai", help="open_clip weights tag."),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    workers: int = typer.Option(
        None, help="Local engine: DataLoader processes that decode and preprocess (2)."
    ),
    shard_size: int = typer.Option(10_000, help="Images per output shard."),
    templates: str = typer.Option(
        "auto",
        help="Class prompt templates: auto (a named dataset's own, else ensemble), dataset, "
        "single or ensemble.",
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    engine: str = engine_option("the CLIP model's batches"),
    address: str = ADDRESS_OPTION,
    actors: int = ACTORS_OPTION,
    gpus_per_actor: float = GPUS_PER_ACTOR_OPTION,
) -> None:
    """Embed an image folder (resumable, in shards) and its class names as text prompts."""
    from semcomp.config import EmbedderConfig
    from semcomp.engines import make_engine
    from semcomp.extras import require_extras
    from semcomp.features import extract_features

    require_extras("semcomp features extract", "clip")

    if workers is None and engine == "local":
        workers = 2
    with make_engine(
        engine, workers=workers, address=address, actors=actors, gpus_per_actor=gpus_per_actor
    ) as chosen:
        summary = extract_features(
            images,
            out,
            EmbedderConfig(model=model, pretrained=pretrained),
            batch_size=batch_size,
            workers=workers or 0,
            shard_size=shard_size,
            templates=templates,
            device=device,
            progress=_bars(progress),
            engine=chosen,
            dataset=dataset,
            split=split,
            label_column=label_column,
        )
    typer.echo(
        f"{summary.source}: "
        f"{summary.images} images in {summary.classes} classes: {summary.shards_written} shard(s) "
        f"written, {summary.shards_skipped} already there, {summary.failures} not decodable -> "
        f"{summary.out}"
    )


def _model_config(
    preset: str,
    architecture: str,
    d_sub: int | None,
    k: int | None,
    bits: int,
    dim: int,
    schedule: str = "semcomp",
) -> object:
    from semcomp.codecs.pqvae.model import PAPER_PRESET, REFERENCE_MODEL

    if preset != "paper":
        raise UsageError(f"unknown preset {preset!r} (presets: paper)")
    update: dict = {"architecture": architecture, "input_dim": dim, "scalar_bits": bits}
    if schedule == "reference":
        update |= REFERENCE_MODEL
    if d_sub is not None:
        update["d_sub"] = d_sub
    if k is not None:
        update["codebook_size"] = k
    return PAPER_PRESET.model_copy(update=update)


@pqvae_app.command("train")
def pqvae_train(
    data: Path = typer.Argument(..., help="Embeddings (.safetensors/.npz/.npy/.parquet/.pt)."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, history)."),
    text: Path = typer.Option(None, help="Class text embeddings, for zero-shot per epoch."),
    labels: Path = typer.Option(None, help="Labels .npy (with a .npy of embeddings)."),
    preset: str = typer.Option("paper", help="Model preset (paper: 5x5x128, d_sub 16, K 4)."),
    architecture: str = typer.Option(
        "pqvae-shared", help="pqvae-shared, vqvae-kmeans, scalar, float32 or float16."
    ),
    d_sub: int = typer.Option(None, help="Subvector size (overrides the preset)."),
    k: int = typer.Option(None, "--k", help="Codebook size (overrides the preset)."),
    scalar_bits: int = typer.Option(1, help="Bits per dimension for the scalar baseline."),
    schedule: str = typer.Option(
        "semcomp",
        help="semcomp (one Adam, LR x0.1 every 20 epochs, 60 epochs, best validation cosine, "
        "early stopping) or reference (the authors' code: Adam rebuilt every epoch so the LR "
        "stays 1e-5, 100 epochs, best held-out zero-shot top-1, and its model: codebook "
        "U(-1, 1), no conv biases, transposed convs in the residual blocks).",
    ),
    epochs: int = typer.Option(None, help="Epochs (default: 60; reference: 100)."),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-5),
    split: str = typer.Option("class", help="class (hold out whole classes) or random."),
    validation: float = typer.Option(0.2, help="Fraction held out (the paper: 200 of 1000)."),
    val_classes: Path = typer.Option(
        None,
        help="A published split: a file listing the validation classes, one per line (label "
        "number, class id such as a WordNet id, or class name).",
    ),
    seed: int = typer.Option(0),
    patience: int = typer.Option(
        10, help="Epochs without improvement before stopping (not with reference)."
    ),
    kmeans_init: bool = typer.Option(False, help="Initialise codebooks by k-means."),
    reinit_dead: bool = typer.Option(False, help="Re-initialise unused codewords each epoch."),
    device: str = typer.Option("cpu"),
    progress: bool = typer.Option(True),
) -> None:
    """Train an embedding codec; resumes when --out holds an unfinished run."""
    from semcomp.extras import require_extras

    require_extras("semcomp pqvae train", "pqvae")
    from semcomp.codecs.pqvae.data import classes_from_file, load_embeddings, load_text_embeddings
    from semcomp.codecs.pqvae.train import TrainConfig, Trainer

    embeddings = load_embeddings(data, labels)
    config = _model_config(preset, architecture, d_sub, k, scalar_bits, embeddings.dim, schedule)
    training = TrainConfig.for_schedule(
        schedule,
        val_classes=classes_from_file(val_classes, embeddings) if val_classes else None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        split=split,
        validation=validation,
        seed=seed,
        patience=patience,
        kmeans_init=kmeans_init,
        reinit_dead=reinit_dead,
        device=device,
    )
    class_text = load_text_embeddings(text) if text else None
    trainer = Trainer(
        config, training, embeddings, class_text, out, log=typer.echo, progress=progress
    )
    trainer.train()


PQVAE_CODERS_HELP = (
    "fixed, huffman, range (global prior), range-position, range-subspace, range-positional "
    "(per position and subspace), or the older ans and ans-positional"
)


def _check_pqvae_coder(coder: str, stream_size: int) -> None:
    from semcomp.codecs.pqvae.bitstream import CODERS, STREAM_CODERS

    if coder not in CODERS:
        raise typer.BadParameter(f"unknown coder {coder!r}; coders: {', '.join(CODERS)}")
    if stream_size > 1 and coder not in STREAM_CODERS:
        raise typer.BadParameter(
            f"{coder} sends one embedding per stream; batch streams: {', '.join(STREAM_CODERS)}"
        )


@pqvae_app.command("eval")
def pqvae_eval(
    checkpoint: Path = typer.Argument(..., help="A best.safetensors from `semcomp pqvae train`."),
    data: Path = typer.Argument(..., help="Embeddings to evaluate."),
    text: Path = typer.Option(None, help="Class text embeddings for zero-shot accuracy."),
    labels: Path = typer.Option(None, help="Labels .npy (with a .npy of embeddings)."),
    coder: str = typer.Option(
        "range-positional", help=f"The coder of the main rate: {PQVAE_CODERS_HELP}."
    ),
    stream_size: int = typer.Option(
        1, min=1, help="Embeddings per stream (>1: batch streams with a count header)."
    ),
    classes: str = typer.Option(
        "auto",
        help="held-out (the checkpoint's validation classes: its training dataset only), all "
        "(every row and class of DATA), or auto (held-out on the training dataset, else all).",
    ),
    all_rows: bool = typer.Option(False, help="The same as --classes all.", hidden=True),
    out: Path = typer.Option(None, help="Write the result as JSON here."),
) -> None:
    """Zero-shot accuracy of decoded embeddings vs raw, cosine distortion and exact rate.

    Rates: fixed_bits/fixed_bpd (the fixed-length code, the paper's bpd) and bits_mean/bpd
    (the coded streams); with pixel counts (features extract records them), bits per pixel
    as the paper defines it (fixed_bpp_of_mean_pixels: fixed bits over the dataset's mean
    image size; bpp_of_mean_pixels with coded bits) and per image (bpp_per_image: the mean
    of each image's coded bits over its own pixels).

    Also every coder's coded bits, ideal bits under the model's prior, their ratio and
    encode/decode speed (embeddings/s, coder only), per embedding and, with
    --stream-size N, in batch streams of N.
    """
    import json
    from dataclasses import asdict

    import pandas as pd

    from semcomp.extras import require_extras

    require_extras("semcomp pqvae eval", "pqvae")
    from semcomp.codecs.pqvae.checkpoint import load_checkpoint
    from semcomp.codecs.pqvae.data import load_embeddings, load_text_embeddings
    from semcomp.codecs.pqvae.evaluate import evaluate, evaluation_classes

    _check_pqvae_coder(coder, stream_size)
    loaded = load_checkpoint(checkpoint)
    embeddings, competing = evaluation_classes(
        loaded, load_embeddings(data, labels), "all" if all_rows else classes
    )
    result = evaluate(
        loaded,
        embeddings,
        load_text_embeddings(text) if text else None,
        coder,
        competing,
        stream_size,
    )
    row = asdict(result)
    rates = row.pop("rates")
    for key, value in row.items():
        typer.echo(f"{key:>16}: {value}")
    if rates:
        typer.echo(pd.DataFrame(rates).round(3).to_string(index=False))
    if out:
        out.write_text(json.dumps(asdict(result), indent=2))


@pqvae_app.command("sweep")
def pqvae_sweep(
    data: Path = typer.Argument(..., help="Embeddings to train and evaluate on."),
    out: Path = typer.Option(..., "--out", help="Sweep folder (runs, results, Table 1)."),
    text: Path = typer.Option(None, help="Class text embeddings for zero-shot accuracy."),
    d_sub: list[int] = typer.Option(
        [16], help="Subvector sizes (repeatable; Table 1: 16; the Fig. 5 ablation: several)."
    ),
    k: list[int] = typer.Option(
        [4, 8, 16, 32, 64, 1024],
        "--k",
        help="Codebook sizes (repeatable; Table 1 at d_sub 16: 0.52 to 2.604 bpd).",
    ),
    on: list[Path] = typer.Option(
        None,
        "--on",
        help="Also evaluate every model zero-shot on this features folder (from features "
        "extract: images/ and text.safetensors; repeatable): Table 1's datasets.",
    ),
    schedule: str = typer.Option("semcomp", help="Training schedule: semcomp or reference."),
    epochs: int = typer.Option(None, help="Epochs per model (default: the schedule's)."),
    lr: float = typer.Option(1e-5),
    coder: str = typer.Option(
        "range-positional", help=f"The coder of the main rate: {PQVAE_CODERS_HELP}."
    ),
    stream_size: int = typer.Option(
        1, min=1, help="Embeddings per stream (>1: batch streams with a count header)."
    ),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
) -> None:
    """Train over a (d_sub, K) grid with the baselines; write Table 1 and the ablation.

    The defaults fill the paper's Table 1: PQVAE-shared at d_sub 16 and K 4..1024, the VQ-VAE
    k-means baseline at the same (d_sub, K), learned scalar quantisation at 1, 2 and 3 bits
    per dimension, and the float16/float32 upper bounds. table1.csv: a column per nominal
    bpd (fixed-length bits / dimension, the paper's numbers) with the measured coded bpd
    beside it. rates.csv: every coder's coded and ideal bits, ratio and speed, per method.
    """
    from semcomp.extras import require_extras

    require_extras("semcomp pqvae sweep", "pqvae")
    from semcomp.codecs.pqvae.data import load_embeddings, load_text_embeddings
    from semcomp.codecs.pqvae.evaluate import sweep
    from semcomp.codecs.pqvae.train import TrainConfig

    _check_pqvae_coder(coder, stream_size)
    embeddings = load_embeddings(data)
    others = {}
    for folder in on or []:
        other = load_embeddings(folder / "images")
        identity = other.dataset
        name = f"{identity['dataset']} {identity['split']}" if identity else folder.name
        others[name] = (other, load_text_embeddings(folder / "text.safetensors"))
    results = sweep(
        embeddings,
        load_text_embeddings(text) if text else None,
        out,
        d_subs=d_sub,
        sizes=k,
        base=_model_config("paper", "pqvae-shared", None, None, 1, embeddings.dim, schedule),
        train_config=TrainConfig.for_schedule(schedule, epochs=epochs, lr=lr, seed=seed),
        coder=coder,
        log=typer.echo,
        progress=progress,
        stream_size=stream_size,
        others=others,
    )
    shown = ["dataset", "method", "fixed_bpd", "bpd", "top1", "cosine"]
    typer.echo(results[shown].rename(columns={"bpd": "coded_bpd"}).to_string(index=False))
    typer.echo(
        f"written: {out / 'results.csv'}, {out / 'rates.csv'}, {out / 'table1.csv'}, "
        f"{out / 'ablation.png'}"
    )


@clipcap_app.command("train")
def clipcap_train(
    annotations: Path = typer.Argument(..., help="COCO caption file (captions_train2014.json)."),
    features: Path = typer.Argument(..., help="`semcomp features extract` output folder."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint, resume state)."),
    gpt: str = typer.Option("gpt2", help="GPT-2: a local folder or a Hugging Face id."),
    mapping: str = typer.Option("mlp", help="Mapping network: mlp or transformer."),
    prefix_length: int = typer.Option(10, min=1, help="GPT-2 prefix tokens per embedding."),
    tune_gpt: bool = typer.Option(
        None, help="Fine-tune GPT-2 too (default: with mlp, as the paper; not with transformer)."
    ),
    codec: str = typer.Option(
        None, help="Frozen codec in the loop: float32, float16 or a PQVAE checkpoint."
    ),
    coder: str = typer.Option(None, help="Entropy coder of a PQVAE codec (its default)."),
    epochs: int = typer.Option(10, min=1),
    batch_size: int = typer.Option(40, min=1),
    lr: float = typer.Option(2e-5),
    warmup_steps: int = typer.Option(5000, min=0),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    profile: bool = typer.Option(False, help="Print the training throughput of this run."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train a ClipCap mapping network (and GPT-2); resumes when --out holds an unfinished run."""
    from semcomp.extras import require_extras

    require_extras("semcomp clipcap train", "downstream")
    from semcomp.downstream.clipcap import (
        ClipCapConfig,
        TrainConfig,
        Trainer,
        load_captioned_features,
    )
    from semcomp.models import select_device

    if mapping not in ("mlp", "transformer"):
        raise UsageError(f"--mapping must be mlp or transformer, not {mapping!r}")
    data = load_captioned_features(annotations, features)
    model_config = ClipCapConfig(
        gpt=gpt,
        mapping=mapping,
        clip_dim=data.dim,
        prefix_length=prefix_length,
        tune_gpt=mapping == "mlp" if tune_gpt is None else tune_gpt,
    )
    training = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        seed=seed,
        codec=codec,
        coder=coder,
        device=select_device(device),
    )
    typer.echo(f"{len(data.image_ids)} images, {sum(map(len, data.references))} captions")
    trainer = Trainer(model_config, training, data, out, log=typer.echo, progress=_bars(progress))
    trainer.train()
    if profile:
        from semcomp.engines import profile_lines

        typer.echo("profile (this process):")
        for line in profile_lines([trainer.timing()]):
            typer.echo(line)


@clipcap_app.command("eval")
def clipcap_eval(
    checkpoint: Path = typer.Argument(..., help="A `semcomp clipcap train` run folder."),
    annotations: Path = typer.Argument(..., help="COCO caption file of the evaluation split."),
    features: Path = typer.Argument(..., help="`semcomp features extract` output folder."),
    out: Path = typer.Option(..., "--out", help="Folder for captions.csv, metrics.csv, figures."),
    codec: list[str] = typer.Option(
        None, help="float16 or a PQVAE checkpoint (repeatable); float32 is always included."
    ),
    coder: str = typer.Option(None, help="Entropy coder of the PQVAE codecs (their default)."),
    beams: int = typer.Option(1, min=1, help="Beam width (1: greedy)."),
    max_tokens: int = typer.Option(30, min=1, help="Most tokens per caption."),
    batch_size: int = typer.Option(64, min=1),
    meteor: bool = typer.Option(None, help="METEOR (needs Java; default: where Java is)."),
    spice: bool = typer.Option(False, help="SPICE (needs Java; slow)."),
    clip_text: bool = typer.Option(
        True, help="CLIP-text cosine between each codec's caption and the original's."
    ),
    clip_model: str = typer.Option(
        None, help="open_clip model for CLIP-text (default: the features' own model)."
    ),
    clip_pretrained: str = typer.Option(
        None, help="open_clip weights tag for CLIP-text (default: the features' own)."
    ),
    images: Path = typer.Option(
        None, help="Folder of the evaluation images (default: where the features found them)."
    ),
    examples: int = typer.Option(4, min=0, help="Images drawn with their captions (Fig. 7)."),
    gpt: str = typer.Option(None, help="Load GPT-2 from here instead of the recorded source."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    engine: str = engine_option("ClipCap's batches"),
    address: str = ADDRESS_OPTION,
    actors: int = ACTORS_OPTION,
    gpus_per_actor: float = GPUS_PER_ACTOR_OPTION,
    profile: bool = typer.Option(False, help="Print throughput and time split per step."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Caption from original and decoded features; BLEU-4, METEOR, ROUGE-L, CIDEr-D and
    CLIP-text per codec, with figures. Resumable: captions already made are kept."""
    from semcomp.extras import require_extras

    require_extras("semcomp clipcap eval", "downstream", *(["clip"] if clip_text else []))
    from semcomp.downstream.caption_eval import CLIP_TEXT, METRICS, evaluate_captioning
    from semcomp.engines import make_engine, profile_lines

    with make_engine(
        engine, address=address, actors=actors, gpus_per_actor=gpus_per_actor
    ) as chosen:
        evaluation = evaluate_captioning(
            checkpoint,
            annotations,
            features,
            out,
            codecs=codec or [],
            coder=coder,
            beams=beams,
            max_new_tokens=max_tokens,
            batch_size=batch_size,
            device=device,
            meteor=meteor,
            spice=spice,
            gpt=gpt,
            clip_text=clip_text,
            clip_model=clip_model,
            clip_pretrained=clip_pretrained,
            images=images,
            examples=examples,
            engine=chosen,
            progress=_bars(progress),
        )
    results = evaluation.results
    for result in results:
        shown = "  ".join(
            f"{m} {result.scores.scores[m]:.4f}" for m in METRICS if m in result.scores.scores
        )
        if result.clip_text is not None:
            shown += f"  {CLIP_TEXT} {result.clip_text.mean():.4f}"
        typer.echo(f"{result.name}: {result.bits.mean():.1f} bits/image  {shown}")
    for metric, why in results[0].scores.skipped.items():
        typer.echo(f"{metric} skipped: {why}")
    typer.echo(f"written: {', '.join(str(path) for path in evaluation.written)}")
    if profile:
        typer.echo(f"profile ({chosen.name} engine):")
        for line in profile_lines(evaluation.timings):
            typer.echo(line)


captions_app = typer.Typer(
    help="A study's captions scored against its human reference captions.", no_args_is_help=True
)
app.add_typer(captions_app, name="captions")


@captions_app.command("score")
def captions_score(
    study: Path = STUDY_ARGUMENT,
    out: Path = typer.Option(None, help="CSV to write (default: STUDY/caption_scores.csv)."),
    meteor: bool = typer.Option(None, help="METEOR (needs Java; default: where Java is)."),
) -> None:
    """BLEU-4, METEOR, ROUGE-L and CIDEr-D of every method's captions (per operating point)
    against the study's human captions; reads the study, never writes it."""
    from semcomp.extras import require_extras

    require_extras("semcomp captions score", "downstream")
    from semcomp.caption_scores import study_caption_scores
    from semcomp.study import Study

    with Study.open_to_read(study) as opened:
        table = study_caption_scores(opened.store, meteor=meteor)
    if table.empty:
        raise ConfigError(
            f"{study} has no human reference captions to score against (a method with "
            'captioner = "human"), or no other captions'
        )
    out = out or Path(study) / "caption_scores.csv"
    table.to_csv(out, index=False)
    typer.echo(table.drop(columns=["tokenizer"]).to_string(index=False, na_rep="-"))
    typer.echo(f"written: {out}")


@referring_app.command("eval")
def referring_eval(
    annotations: Path = typer.Argument(
        ...,
        help="RefCOCO refs: the refer toolkit's folder or refs(unc).p (instances.json beside "
        "it), a JSON export, or lmms-lab/RefCOCO's Parquet shards (images inside).",
    ),
    images: Path = typer.Argument(
        None, help="Folder holding the annotated images (not for Parquet shards)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for accuracy.csv, choices.csv, figures, cache/."
    ),
    codec: list[str] = typer.Option(
        None, help="float16 or a PQVAE checkpoint (repeatable); float32 is always included."
    ),
    coder: str = typer.Option(None, help="Entropy coder of the PQVAE codecs (their default)."),
    instances: Path = typer.Option(
        None, help="COCO instances.json: boxes of refs that give only an ann_id, file names."
    ),
    split: str = typer.Option(None, help="Only the refs of this split (val, testA, ...)."),
    limit: int = typer.Option(None, min=1, help="Only the first N refs."),
    examples: int = typer.Option(4, min=0, help="Expressions drawn in examples.png (Fig. 8)."),
    sam: str = typer.Option("facebook/sam-vit-base", help="SAM: a Hugging Face id or folder."),
    points_per_side: int = typer.Option(16, min=1, help="SAM point-prompt grid (N×N)."),
    points_per_batch: int = typer.Option(64, min=1, help="SAM point prompts per forward pass."),
    pred_iou_threshold: float = typer.Option(0.88, help="Keep masks SAM scores at least this."),
    stability_threshold: float = typer.Option(0.95, help="Keep masks at least this stable."),
    nms_iou: float = typer.Option(0.7, help="Drop a mask overlapping a better one this much."),
    max_regions: int = typer.Option(64, min=1, help="Most regions per image."),
    model: str = typer.Option("ViT-L-14-336", help="open_clip model (or local-dir:/path)."),
    pretrained: str = typer.Option("openai", help="open_clip weights tag."),
    batch_size: int = typer.Option(32, min=1, help="Regions per CLIP forward pass."),
    sam_batch_size: int = typer.Option(4, min=1, help="Images per SAM image-encoder pass."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    engine: str = engine_option("SAM and CLIP"),
    address: str = ADDRESS_OPTION,
    actors: int = ACTORS_OPTION,
    gpus_per_actor: float = GPUS_PER_ACTOR_OPTION,
    workers: int = typer.Option(
        None, help="Local engine: DataLoader processes that decode and crop images (0)."
    ),
    profile: bool = typer.Option(
        False, help="Print per-step throughput and time split (decode, preprocess, model, write)."
    ),
    failures: str = FAILURES_OPTION,
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """SAM regions → CLIP → each codec; the region best matching each expression; accuracy
    (IoU ≥ 0.5 with the target box) per codec and bits per region. Resumable (cache/)."""
    from semcomp.extras import require_extras

    require_extras("semcomp referring eval", "downstream", "clip")
    from semcomp.config import EmbedderConfig
    from semcomp.downstream.referring import SamSettings, evaluate_referring
    from semcomp.engines import make_engine, profile_lines
    from semcomp.models import select_device
    from semcomp.stages import StageReport
    from semcomp.study import parse_failure_limit, summarise_failures

    limit_failures = parse_failure_limit(failures)
    with make_engine(
        engine, workers=workers, address=address, actors=actors, gpus_per_actor=gpus_per_actor
    ) as chosen:
        results, summary = evaluate_referring(
            annotations,
            images,
            out,
            clip=EmbedderConfig(model=model, pretrained=pretrained),
            codecs=codec or [],
            coder=coder,
            sam=SamSettings(
                model=sam,
                points_per_side=points_per_side,
                points_per_batch=points_per_batch,
                pred_iou_threshold=pred_iou_threshold,
                stability_threshold=stability_threshold,
                nms_iou=nms_iou,
                max_regions=max_regions,
            ),
            instances=instances,
            split=split,
            limit=limit,
            examples=examples,
            batch_size=batch_size,
            sam_batch_size=sam_batch_size,
            device=select_device(device),
            engine=chosen,
            progress=_bars(progress),
            log_line=lambda line: None,
        )
    typer.echo(
        f"{summary['expressions']} expressions on {summary['images_evaluated']} images, "
        f"{summary['regions']} regions"
    )
    for result in results:
        typer.echo(
            f"{result.name}: {result.bits_per_region:.1f} bits/region "
            f"({result.bits_per_image:.1f} bits/image)  accuracy {result.accuracy:.4f}"
        )
    figures = ", accuracy.png/.pdf" + (", examples.png/.pdf" if examples else "")
    typer.echo(f"written: {out / 'accuracy.csv'}, choices.csv, failures.csv, eval.json{figures}")
    if profile:
        typer.echo(f"profile ({chosen.name} engine):")
        for line in profile_lines([StageReport(**step) for step in summary["steps"]]):
            typer.echo(line)
    found = [(f["step"], f["item"], f["reason"]) for f in summary["failures"]]
    if found:
        typer.echo(f"{len(found)} failure(s) recorded (failures.csv):")
        for line in summarise_failures(found, limit_failures):
            typer.echo(line)
        raise typer.Exit(EXIT_FAILURES)


@app.command()
def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for scripts."),
) -> None:
    """Every registered plugin name per family, built-in or from which installed distribution;
    plugins refused (a name clash, not the family's base class), each with its reason.

    Plugins from other distributions are imported to check their class; built-ins are not.
    """
    import json

    from semcomp.registry import PLUGIN_FAMILIES, import_target

    families = []
    for title, location in PLUGIN_FAMILIES.items():
        registry = import_target(location)
        refused = registry.refused()
        for entry in registry.entries():
            if not entry.source.builtin:
                try:
                    registry.get(entry.name)
                except ConfigError as exc:
                    refused[entry.name] = str(exc)
        families.append(
            {
                "family": title,
                "entry_point_group": registry.entry_point_group,
                "base": registry.base.replace(":", "."),
                "objects": "instances" if registry.instances else "subclasses",
                "plugins": [
                    {
                        "name": entry.name,
                        "source": str(entry.source),
                        "distribution": entry.source.distribution,
                        "version": entry.source.version,
                        "target": entry.target,
                    }
                    for entry in registry.entries()
                    if entry.name not in refused
                ],
                "refused": refused,
            }
        )
    if as_json:
        typer.echo(json.dumps({"families": families}, ensure_ascii=False, indent=1))
        return
    for family in families:
        typer.echo(
            f"{family['family']} (entry points: {family['entry_point_group']}; "
            f"{family['objects']} of {family['base']})"
        )
        width = max((len(p["name"]) for p in family["plugins"]), default=0)
        for plugin in family["plugins"]:
            typer.echo(f"  {plugin['name']:<{width}}  {plugin['source']}")
        for name, reason in family["refused"].items():
            typer.echo(f"  refused {name}: {reason}")


# ---- human ratings: `semcomp ratings ...` and `semcomp survey ...` -----------------------

ratings_app = typer.Typer(
    help="Human ratings: import MTurk or long-format results, summarise them.",
    no_args_is_help=True,
)
app.add_typer(ratings_app, name="ratings")
survey_app = typer.Typer(help="Survey definitions and MTurk survey files.", no_args_is_help=True)
app.add_typer(survey_app, name="survey")
SURVEY_OPTION = typer.Option(
    ..., "--survey", help="Survey A, B or C, one a plugin provides, or a definition .toml."
)


@ratings_app.command("import")
def ratings_import(
    study: Path = STUDY_ARGUMENT,
    results: Path = typer.Argument(..., help="MTurk batch-results CSV, or a long-format CSV."),
    survey: str = SURVEY_OPTION,
    mapping: Path = typer.Option(None, help="Mapping TOML (not needed for generated surveys)."),
    format: str = typer.Option("mturk", "--format", help="mturk or long."),
    min_work_seconds: float = typer.Option(
        None,
        help="Exclude shorter assignments (0: no limit). Default: the survey's current setting.",
    ),
    include_rejected: bool = typer.Option(
        None,
        "--include-rejected/--exclude-rejected",
        help="Keep or exclude rejected assignments. Default: the survey's current setting "
        "(excluded at first).",
    ),
    progress: bool = typer.Option(True, help="Show the rows read and the step under way."),
) -> None:
    """Import ratings with quality control; prints the import summary. The quality-control
    options apply to the whole survey; options not given keep the survey's settings."""
    from semcomp.study import Study
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.importer import import_ratings

    definition = load_survey(survey)
    with Study.open(study) as opened:
        summary = import_ratings(
            opened.store,
            results,
            definition,
            mapping=mapping,
            format=format,
            min_work_seconds=min_work_seconds,
            include_rejected=include_rejected,
            progress=_bars(progress),
        )
    for line in summary.lines():
        typer.echo(line)
    if not summary.kept:  # the lines above say why; the exit status says it to scripts
        typer.echo(f"error: {summary.nothing_kept()}", err=True)
        raise typer.Exit(EXIT_FAILURES)
    if summary.failed_count:  # rows that could not be read, listed above
        raise typer.Exit(EXIT_FAILURES)


@ratings_app.command("summary")
def ratings_summary(
    study: Path = STUDY_ARGUMENT,
    survey: str = typer.Option(
        "A", help="Survey A, B or C, a plugin's survey, or a definition .toml."
    ),
    synonyms: Path = typer.Option(None, help="Synonym map TOML for free answers (Survey C)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (every table as a list of rows) for scripts."
    ),
) -> None:
    """Per-method tables (mean of medians with 95 % CI; B dimensions; C top answers), alpha."""
    import json

    from semcomp.study import Study
    from semcomp.surveys import aggregate
    from semcomp.surveys.definitions import builtin_surveys, load_survey
    from semcomp.surveys.simulated import SIMULATED, simulated_surveys

    if survey.lower().endswith(".toml"):
        survey = load_survey(survey).id
    elif survey.upper() in builtin_surveys():
        survey = survey.upper()  # built-in ids in any case: b is B
    document: dict = {"survey": survey}
    tables = {}  # JSON key → table, in the order the text prints them
    with Study.open(study, read_only=True) as opened:
        store = opened.store
        definitions = aggregate.survey_definitions(store)
        if survey not in definitions:
            known = ", ".join(definitions) or "none"
            raise SemcompError(f"no ratings for survey {survey!r} in {study} (surveys: {known})")
        definition = definitions[survey]
        document["name"] = definition.name
        answers = aggregate.kept_ratings(store, survey, include_excluded=True)
        answers = answers[answers["is_check"] == 0]
        document["answers"] = len(answers)
        document["kept"] = int(answers["excluded"].isna().sum())
        if not document["kept"]:  # nothing kept: say so in one line
            rules = answers["excluded"].value_counts()
            unmatched = len(aggregate.unmatched_answers(store, survey))
            document["excluded"] = {str(rule): int(n) for rule, n in rules.items()}
            document["unknown_images"] = unmatched
            document["note"] = (
                f"survey {survey}: no kept ratings ({len(answers)} answers imported, "
                + ", ".join([*(f"{n} excluded as {rule}" for rule, n in rules.items()), ""])
                + f"{unmatched} about images the study does not know)"
            )
        else:
            synonym_map = aggregate.load_synonyms(synonyms)
            simulated = simulated_surveys(store)
            if survey in simulated:
                document["simulated"] = f"{SIMULATED}: {simulated[survey]}"
            if any(q.numeric for q in definition.questions):
                tables["methods"] = aggregate.method_summary(store, survey)
            if sum(q.kind == "scale" for q in definition.questions) > 1:  # Survey B's dimensions
                tables["dimensions"] = aggregate.dimension_summary(store, survey)
            if any(not q.numeric for q in definition.questions):
                tables["top_answers"] = aggregate.top_answers(store, survey, synonyms=synonym_map)
                tables["answer_overlap"] = aggregate.answer_overlap(
                    store, survey, synonyms=synonym_map
                )
            tables["reliability"] = aggregate.reliability(store, survey, synonym_map)
    if as_json:
        for key, table in tables.items():  # pandas writes NaN as null and numpy as numbers
            document[key] = json.loads(table.to_json(orient="records", force_ascii=False))
        typer.echo(json.dumps(document, ensure_ascii=False, indent=1))
        return
    for line in (document.get("note"), document.get("simulated")):
        if line:
            typer.echo(line)
    for table in tables.values():
        typer.echo(table.to_string(index=False))


@survey_app.command("list")
def survey_list() -> None:
    """The registered survey definitions (built-in and from plugins) and their questions."""
    from semcomp.surveys.definitions import SURVEYS, registered_survey

    for name in SURVEYS.names():
        try:
            definition = registered_survey(name)
        except ConfigError as exc:  # a plugin's wrong object: said, the others still listed
            typer.echo(f"warning: {exc}", err=True)
            continue
        source = SURVEYS.source(name)
        origin = "" if source.builtin else f", from {source}"
        typer.echo(f"{definition.id}: {definition.name} ({definition.subject}{origin})")
        for question in definition.questions:
            scale = f" [{question.low}-{question.high}]" if question.kind == "scale" else ""
            typer.echo(f"  {question.id:<11} {question.kind}{scale}: {question.text}")


@survey_app.command("make")
def survey_make(
    study: Path = STUDY_ARGUMENT,
    survey: str = SURVEY_OPTION,
    base_url: str = typer.Option(..., help="URL where the images/ folder will be served."),
    out: Path = typer.Option(..., "--out", help="Output folder (hits.csv, template.html, ...)."),
    items_per_hit: int = typer.Option(5, help="Items per HIT, attention checks included."),
    checks: int = typer.Option(None, help="Attention checks per HIT (default 1; 0 for C)."),
    seed: int = typer.Option(0, help="Seed of the shuffles and side orders."),
    method: list[str] = typer.Option(None, help="Only candidates of this method (repeatable)."),
) -> None:
    """Write an MTurk HIT input CSV, an HTML template and the images to upload."""
    from semcomp.study import Study
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.make import make_survey

    definition = load_survey(survey)
    with Study.open(study) as opened:
        made = make_survey(
            opened.store,
            definition,
            base_url=base_url,
            out=out,
            items_per_hit=items_per_hit,
            checks=checks,
            seed=seed,
            methods=method or None,
            scope=opened.scope(),
        )
    typer.echo(
        f"survey {definition.id}: {made.hits} HITs of {items_per_hit} items "
        f"({made.checks} attention checks, {made.repeats} repeated items to fill the last HIT)"
    )
    typer.echo(f"  upload {made.images} so that {base_url.rstrip('/')}/<file> serves each file")
    typer.echo(f"  HIT input CSV: {made.hits_csv}")
    typer.echo(f"  HIT template:  {made.template}")
    for note in made.notes:
        typer.echo(f"note: {note}")


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``main([...])`` is callable from tests and always ends in ``SystemExit``
    with an ``EXIT_*`` status. User errors print one line."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        app(args=args or ["--help"], prog_name="semcomp")  # plain `semcomp`: help, exit 0
    except SemcompError as exc:  # raised outside a command (the group turns theirs to exits)
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exit_status(exc)) from None


if __name__ == "__main__":  # pragma: no cover
    main()
