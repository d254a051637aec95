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
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Fetch model weights on a connected machine.", no_args_is_help=True)
app.add_typer(models_app, name="models")

STUDY_ARGUMENT = typer.Argument(..., help="Study folder (holds study.toml).", show_default=False)


def _print_run(summary: object) -> None:
    from semcomp.study import summarise_failures

    typer.echo(f"run {summary.run_id}: {summary.status}")
    for stage in summary.stages:
        models = f", loaded {', '.join(stage.models_loaded)}" if stage.models_loaded else ""
        typer.echo(
            f"  {stage.stage:<11} {stage.done:>6} done {stage.skipped:>6} already done "
            f"{stage.failed:>4} failed  {stage.seconds:6.1f} s{models}"
        )
    if summary.failures:
        typer.echo(f"{len(summary.failures)} failure(s) recorded in this run:")
        for line in summarise_failures(summary.failures):
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
) -> None:
    """Run every pending stage (ingest, encode, decode, embed, score); resumable."""
    from semcomp.study import Study

    with Study.open(study) as opened:
        summary = opened.run(
            progress=progress,
            command=" ".join(["semcomp", *sys.argv[1:]]),
            stages=stage or None,
        )
    _print_run(summary)


@app.command()
def status(study: Path = STUDY_ARGUMENT) -> None:
    """What is done, pending and failed, without running anything."""
    from semcomp.study import Study, summarise_failures

    with Study.open(study) as opened:
        rows = opened.status()
        failures = opened.failures()
        random_weights = opened.random_weights
    typer.echo(f"{'stage':<48} {'done':>7} {'pending':>8} {'failed':>7}")
    for row in rows:
        typer.echo(f"{row.what:<48} {row.done:>7} {row.pending:>8} {row.failed:>7}")
    if random_weights:
        typer.echo("note: random-weight similarity model — numbers are not meaningful")
    if failures:
        typer.echo(f"{len(failures)} failure(s):")
        for line in summarise_failures(failures):
            typer.echo(line)


@app.command()
def report(
    study: Path = STUDY_ARGUMENT,
    out: Path = typer.Option(None, help="Output folder (default: STUDY/report)."),
    rate: str = typer.Option("bpp", help="Rate axis of the figure: bytes, bits or bpp."),
) -> None:
    """Write rd.csv, summary.csv, per-method JSON and the rate–similarity figure."""
    from semcomp.analysis.figures import RATE_AXES
    from semcomp.analysis.report import write_report
    from semcomp.study import Study

    if rate not in RATE_AXES:
        raise SemcompError(f"--rate must be one of {', '.join(RATE_AXES)}, not {rate!r}")
    with Study.open(study, read_only=True) as opened:
        files = write_report(opened, out, rate=rate)
    typer.echo(f"report of {files.rows} candidates in {files.folder}")
    for path in [files.rd_csv, files.summary_csv, *files.method_json, *files.figures]:
        typer.echo(f"  {path}")


@app.command()
def demo(
    folder: Path = typer.Option(Path("semcomp-demo"), "--dir", help="Where to put the demo study."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """The main job: a demo study of generated images, JPEG/WebP sweeps, CLIP scores, report."""
    from semcomp.analysis.report import write_report
    from semcomp.demo import prepare_demo
    from semcomp.study import Study

    started = time.perf_counter()
    outcome = prepare_demo(folder, say=typer.echo)
    with Study.open(outcome.root) as study:
        summary = study.run(progress=progress, command="semcomp demo")
        _print_run(summary)
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


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``main([...])`` is callable from tests. User errors print one line."""
    try:
        app(args=argv, prog_name="semcomp")
    except SemcompError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main()
