"""The ``semcomp`` command line: parses, calls one library function, prints.

Library modules are imported inside the commands so that ``semcomp --help``
imports neither torch nor pandas.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from semcomp.errors import SemcompError

app = typer.Typer(
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
) -> None:
    """Options of semcomp itself (the app's help text is set above)."""


models_app = typer.Typer(help="Fetch model weights on a connected machine.", no_args_is_help=True)
app.add_typer(models_app, name="models")
pqvae_app = typer.Typer(
    help="PQVAE-shared: train, evaluate and sweep the CLIP-embedding codec.", no_args_is_help=True
)
app.add_typer(pqvae_app, name="pqvae")
features_app = typer.Typer(help="CLIP features of image folders.", no_args_is_help=True)
app.add_typer(features_app, name="features")

STUDY_ARGUMENT = typer.Argument(..., help="Study folder (holds study.toml).", show_default=False)
FAILURES_OPTION = typer.Option(
    "all", "--failures", help="Failures to print per stage: all, or a number."
)


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
        ..., "--images", help="Image folder (category = first-level subfolder) or CSV manifest."
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
    engine: str = typer.Option(
        "local", help="Where batch stages run their models: local, or ray (a Ray cluster)."
    ),
    address: str = typer.Option(
        None, help="Ray cluster: auto or ray://host:port (default: start a local Ray)."
    ),
    actors: int = typer.Option(None, help="Ray model actors (default: one per GPU, else 1)."),
    gpus_per_actor: float = typer.Option(
        None, help="GPUs each Ray actor holds (default: 1 if the cluster has GPUs, else 0)."
    ),
    workers: int = typer.Option(
        None, help="Local engine: DataLoader processes that decode and preprocess images (0)."
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
            progress=progress,
            command=" ".join(["semcomp", *sys.argv[1:]]),
            stages=stage or None,
            engine=chosen,
        )
    _print_run(summary, failures)
    if profile:
        typer.echo(f"profile ({chosen.name} engine):")
        for line in profile_lines(summary.stages):
            typer.echo(line)


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
    are counted only with --rescan (`semcomp run` ingests them either way).
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
            "stages": [asdict(row) for row in rows],
            "unfinished_runs": unfinished,
            "failures": [
                {"stage": stage, "item": item, "reason": reason} for stage, item, reason in recorded
            ],
        }
        typer.echo(json.dumps(document, ensure_ascii=False, indent=1))
        return
    typer.echo(f"{'stage':<48} {'done':>7} {'pending':>8} {'failed':>7}")
    for row in rows:
        pending = "?" if row.pending is None else row.pending
        typer.echo(f"{row.what:<48} {row.done:>7} {pending:>8} {row.failed:>7}")
    if not rescan:
        typer.echo("new images in the source are not counted (?): `semcomp status --rescan`")
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
    out: Path = typer.Option(None, help="Output folder (default: STUDY/report)."),
    rate: str = typer.Option("bpp", help="Rate axis of the figure: bytes, bits or bpp."),
    pqvae_results: list[Path] = typer.Option(
        None, help="PQVAE eval/sweep result files or folders (besides STUDY/pqvae/)."
    ),
    unpaired: bool = typer.Option(
        False,
        "--unpaired",
        help="Each operating point over its own originals, instead of a method's curve over "
        "the originals with a candidate at all its points and comparisons over the originals "
        "the methods share.",
    ),
    progress: bool = typer.Option(True, help="Show the step under way."),
) -> None:
    """Write rd.csv, summary.csv, per-method JSON, Table 1, comparisons and their figures."""
    from semcomp.analysis.figures import RATE_AXES
    from semcomp.analysis.report import write_report
    from semcomp.study import Study

    if rate not in RATE_AXES:
        raise SemcompError(f"--rate must be one of {', '.join(RATE_AXES)}, not {rate!r}")
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
            progress=progress,
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
    from semcomp.analysis.report import write_report
    from semcomp.demo import add_simulated_ratings, prepare_demo
    from semcomp.study import Study

    started = time.perf_counter()
    outcome = prepare_demo(folder, say=typer.echo)
    with Study.open(outcome.root) as study:
        summary = study.run(progress=progress, command="semcomp demo")
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


@app.command("app")
def app_command(
    study: Path = STUDY_ARGUMENT,
    port: int = typer.Option(8501, help="Port on 127.0.0.1."),
    browser: bool = typer.Option(True, help="Open a browser tab (--no-browser: serve only)."),
    pqvae_results: list[Path] = typer.Option(
        None, help="PQVAE eval/sweep result files or folders (besides STUDY/pqvae/)."
    ),
) -> None:
    """Explore a study's results in the browser (Streamlit, localhost only, read-only)."""
    import os
    import subprocess

    from semcomp.app import MAIN_SCRIPT, PQVAE_RESULTS_ENV, STUDY_ENV
    from semcomp.config import STUDY_FILE

    root = study.resolve()
    if not (root / STUDY_FILE).exists() and not (root / "study.db").exists():
        raise SemcompError(f"{study} is not a study folder (no {STUDY_FILE}, no study.db)")
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
    clip: str = typer.Option(None, help="open_clip model name, e.g. ViT-L-14-336."),
    pretrained: str = typer.Option("openai", help="open_clip weights tag (with --clip)."),
    hf: list[str] = typer.Option(
        None, help="Hugging Face model id (BLIP, diffusers pipelines, ...); repeatable."
    ),
) -> None:
    """Download model weights into the local cache (run where there is a network)."""
    from semcomp.analysis.clip import fetch_open_clip_weights
    from semcomp.config import EmbedderConfig
    from semcomp.models import fetch_hf_model

    if not clip and not hf:
        raise SemcompError("name a model: --clip NAME [--pretrained TAG] and/or --hf ORG/NAME")
    if clip:
        path = fetch_open_clip_weights(EmbedderConfig(model=clip, pretrained=pretrained))
        typer.echo(f"{clip}/{pretrained}: {path}")
    for repo_id in hf or []:
        typer.echo(f"{repo_id}: {fetch_hf_model(repo_id)}")


@features_app.command("extract")
def features_extract(
    images: Path = typer.Argument(..., help="Folder of class subfolders: IMAGES/<class>/<file>."),
    out: Path = typer.Argument(..., help="Output folder (images/ shards, text.safetensors)."),
    model: str = typer.Option("ViT-L-14-336", help="open_clip model (or local-dir:/path)."),
    pretrained: str = typer.Option("openai", help="open_clip weights tag."),
    batch_size: int = typer.Option(64, help="Images per forward pass."),
    workers: int = typer.Option(
        None, help="Local engine: DataLoader processes that decode and preprocess (2)."
    ),
    shard_size: int = typer.Option(10_000, help="Images per output shard."),
    templates: str = typer.Option("ensemble", help="Class prompt templates: single or ensemble."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    engine: str = typer.Option("local", help="local, or ray (a Ray cluster)."),
    address: str = typer.Option(
        None, help="Ray cluster: auto or ray://host:port (default: start a local Ray)."
    ),
    actors: int = typer.Option(None, help="Ray model actors (default: one per GPU, else 1)."),
    gpus_per_actor: float = typer.Option(None, help="GPUs each Ray actor holds."),
) -> None:
    """Embed an image folder (resumable, in shards) and its class names as text prompts."""
    from semcomp.analysis.features import extract_features
    from semcomp.config import EmbedderConfig
    from semcomp.engines import make_engine

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
            progress=progress,
            engine=chosen,
        )
    typer.echo(
        f"{summary.images} images in {summary.classes} classes: {summary.shards_written} shard(s) "
        f"written, {summary.shards_skipped} already there, {summary.failures} not decodable -> "
        f"{summary.out}"
    )


def _model_config(
    preset: str, architecture: str, d_sub: int | None, k: int | None, bits: int, dim: int
) -> object:
    from semcomp.codecs.pqvae.model import PAPER_PRESET

    if preset != "paper":
        raise SemcompError(f"unknown preset {preset!r} (presets: paper)")
    update: dict = {"architecture": architecture, "input_dim": dim, "scalar_bits": bits}
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
    epochs: int = typer.Option(60),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-5),
    split: str = typer.Option("class", help="class (hold out whole classes) or random."),
    validation: float = typer.Option(0.2, help="Fraction held out (the paper: 200 of 1000)."),
    seed: int = typer.Option(0),
    patience: int = typer.Option(10, help="Epochs without improvement before stopping."),
    kmeans_init: bool = typer.Option(False, help="Initialise codebooks by k-means."),
    reinit_dead: bool = typer.Option(False, help="Re-initialise unused codewords each epoch."),
    device: str = typer.Option("cpu"),
    progress: bool = typer.Option(True),
) -> None:
    """Train an embedding codec; resumes when --out holds an unfinished run."""
    from semcomp.codecs.pqvae.data import load_embeddings, load_text_embeddings
    from semcomp.codecs.pqvae.train import TrainConfig, Trainer

    embeddings = load_embeddings(data, labels)
    config = _model_config(preset, architecture, d_sub, k, scalar_bits, embeddings.dim)
    training = TrainConfig(
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
    all_rows: bool = typer.Option(False, help="Use every row, not only held-out classes."),
    out: Path = typer.Option(None, help="Write the result as JSON here."),
) -> None:
    """Zero-shot accuracy of decoded embeddings vs raw, cosine distortion and exact rate.

    Also every coder's coded bits, ideal bits under the model's prior, their ratio and
    encode/decode speed (embeddings/s, coder only), per embedding and, with
    --stream-size N, in batch streams of N.
    """
    import json
    from dataclasses import asdict

    import pandas as pd

    from semcomp.codecs.pqvae.checkpoint import load_checkpoint
    from semcomp.codecs.pqvae.data import load_embeddings, load_text_embeddings
    from semcomp.codecs.pqvae.evaluate import evaluate, held_out

    _check_pqvae_coder(coder, stream_size)
    loaded = load_checkpoint(checkpoint)
    embeddings = load_embeddings(data, labels)
    classes = None
    if not all_rows:
        embeddings, classes = held_out(loaded, embeddings)
    result = evaluate(
        loaded,
        embeddings,
        load_text_embeddings(text) if text else None,
        coder,
        classes,
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
    d_sub: list[int] = typer.Option([8, 16, 32], help="Subvector sizes (repeatable)."),
    k: list[int] = typer.Option([2, 4, 8, 16], "--k", help="Codebook sizes (repeatable)."),
    epochs: int = typer.Option(30),
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

    rates.csv: every coder's coded and ideal bits, ratio and speed, per method.
    """
    from semcomp.codecs.pqvae.data import load_embeddings, load_text_embeddings
    from semcomp.codecs.pqvae.evaluate import sweep
    from semcomp.codecs.pqvae.model import PAPER_PRESET
    from semcomp.codecs.pqvae.train import TrainConfig

    _check_pqvae_coder(coder, stream_size)
    embeddings = load_embeddings(data)
    results = sweep(
        embeddings,
        load_text_embeddings(text) if text else None,
        out,
        d_subs=d_sub,
        sizes=k,
        base=PAPER_PRESET,
        train_config=TrainConfig(epochs=epochs, lr=lr, seed=seed),
        coder=coder,
        log=typer.echo,
        progress=progress,
        stream_size=stream_size,
    )
    typer.echo(results[["method", "bpd", "top1", "cosine"]].to_string(index=False))
    typer.echo(
        f"written: {out / 'results.csv'}, {out / 'rates.csv'}, {out / 'table1.csv'}, "
        f"{out / 'ablation.png'}"
    )


# ---- human ratings: `semcomp ratings ...` and `semcomp survey ...` -----------------------

ratings_app = typer.Typer(
    help="Human ratings: import MTurk or long-format results, summarise them.",
    no_args_is_help=True,
)
app.add_typer(ratings_app, name="ratings")
survey_app = typer.Typer(help="Survey definitions and MTurk survey files.", no_args_is_help=True)
app.add_typer(survey_app, name="survey")
SURVEY_OPTION = typer.Option(
    ..., "--survey", help="Built-in survey A, B or C, or a survey definition .toml."
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
        )
    for line in summary.lines():
        typer.echo(line)
    if not summary.kept:  # the lines above say why; the exit status says it to scripts
        raise SemcompError(summary.nothing_kept())


@ratings_app.command("summary")
def ratings_summary(
    study: Path = STUDY_ARGUMENT,
    survey: str = typer.Option("A", help="Survey A, B or C, or a survey definition .toml."),
    synonyms: Path = typer.Option(None, help="Synonym map TOML for free answers (Survey C)."),
) -> None:
    """Per-method tables (mean of medians with 95 % CI; B dimensions; C top answers), alpha."""
    from semcomp.study import Study
    from semcomp.surveys import aggregate
    from semcomp.surveys.definitions import builtin_surveys, load_survey
    from semcomp.surveys.simulated import SIMULATED, simulated_surveys

    if survey.lower().endswith(".toml"):
        survey = load_survey(survey).id
    elif survey.upper() in builtin_surveys():
        survey = survey.upper()  # built-in ids in any case: b is B
    with Study.open(study, read_only=True) as opened:
        store = opened.store
        definitions = aggregate.survey_definitions(store)
        if survey not in definitions:
            known = ", ".join(definitions) or "none"
            raise SemcompError(f"no ratings for survey {survey!r} in {study} (surveys: {known})")
        definition = definitions[survey]
        answers = aggregate.kept_ratings(store, survey, include_excluded=True)
        answers = answers[answers["is_check"] == 0]
        if answers["excluded"].notna().all():  # nothing kept: say so in one line
            rules = answers["excluded"].value_counts()
            unmatched = len(aggregate.unmatched_answers(store, survey))
            typer.echo(
                f"survey {survey}: no kept ratings ({len(answers)} answers imported, "
                + ", ".join([*(f"{n} excluded as {rule}" for rule, n in rules.items()), ""])
                + f"{unmatched} about images the study does not know)"
            )
            return
        synonym_map = aggregate.load_synonyms(synonyms)
        simulated = simulated_surveys(store)
        if survey in simulated:
            typer.echo(f"{SIMULATED}: {simulated[survey]}")
        if any(q.numeric for q in definition.questions):
            typer.echo(aggregate.method_summary(store, survey).to_string(index=False))
        if sum(q.kind == "scale" for q in definition.questions) > 1:  # Survey B's dimensions
            typer.echo(aggregate.dimension_summary(store, survey).to_string(index=False))
        if any(not q.numeric for q in definition.questions):
            typer.echo(
                aggregate.top_answers(store, survey, synonyms=synonym_map).to_string(index=False)
            )
            overlap = aggregate.answer_overlap(store, survey, synonyms=synonym_map)
            typer.echo(overlap.to_string(index=False))
        typer.echo(aggregate.reliability(store, survey, synonym_map).to_string(index=False))


@survey_app.command("list")
def survey_list() -> None:
    """The built-in survey definitions and their questions."""
    from semcomp.surveys.definitions import builtin_surveys

    for definition in builtin_surveys().values():
        typer.echo(f"{definition.id}: {definition.name} ({definition.subject})")
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
    """Entry point; ``main([...])`` is callable from tests. User errors print one line."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        app(args=args or ["--help"], prog_name="semcomp")  # plain `semcomp`: help, exit 0
    except SemcompError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main()
