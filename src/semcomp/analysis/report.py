"""``semcomp report``: the tables, JSON and figures of a study, written to ``report/``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from semcomp.analysis.figures import RANDOM_WEIGHTS_NOTE, label_panel, rd_figure
from semcomp.analysis.rd import (
    SATISFACTION_PREFIX,
    SCALED_CLIP,
    clip_metrics,
    compressai_results,
    human_metrics,
    lossless_reduction_note,
    rd_points,
    summarise,
)
from semcomp.errors import AnalysisError
from semcomp.study import Study


@dataclass
class ReportFiles:
    folder: Path
    rd_csv: Path
    summary_csv: Path
    method_json: list[Path]
    figures: list[Path]
    failures_csv: Path
    rows: int
    #: tables and figures of the comparisons (Table 1, iso-satisfaction, ...), in order written
    extra: list[Path]
    #: what could not be drawn and why (no human ratings, too few points for BD-rate, ...)
    notes: list[str]


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "method"


class Steps:
    """The report's progress: one bar (stderr) naming the step under way, since the
    bootstrap CIs and the figures of a large study take seconds each."""

    #: reading, summary, rd figure, Table 1, rate comparisons, agreement, embedding codecs,
    #: surveys, README
    TOTAL = 9

    def __init__(self, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.TOTAL, desc="report", unit="step", disable=not enabled)
        self.started = False

    def __call__(self, what: str) -> None:
        """Start step ``what`` (the previous one is done)."""
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_postfix_str(what)

    def close(self) -> None:
        self.bar.update(self.TOTAL - self.bar.n)
        self.bar.close()


def headline_metric(points: pd.DataFrame) -> str | None:
    """The metric a comparison leads with: Survey A satisfaction, else scaled CLIP, else any."""
    humans = human_metrics(points)
    satisfaction = [m for m in humans if m.startswith(SATISFACTION_PREFIX)]
    clip = clip_metrics(points)
    scaled = [m for m in clip if m.startswith(SCALED_CLIP)]
    for candidates in (satisfaction, scaled, clip, humans):
        if candidates:
            return candidates[0]
    return None


def bd_rate_table(summary: pd.DataFrame, metric: str, rate: str) -> pd.DataFrame:
    """BD-rate of every method against every other on ``metric``, or why it is undefined."""
    from semcomp.analysis.curves import bd_rate

    methods = sorted(summary["method"].unique()) if not summary.empty else []
    rows = []
    for anchor in methods:
        for test in methods:
            if anchor == test:
                continue
            try:
                value, reason = bd_rate(summary, anchor, test, metric, rate), ""
            except AnalysisError as exc:
                value, reason = float("nan"), str(exc)
            rows.append(
                {
                    "anchor": anchor,
                    "test": test,
                    "metric": metric,
                    "rate": rate,
                    "bd_rate_percent": value,
                    "reason": reason,
                }
            )
    return pd.DataFrame(rows)


@dataclass
class Comparisons:
    """What :func:`write_comparisons` wrote and what it left out."""

    written: list[Path]
    notes: list[str]
    #: every original an output left out, with the reason (``left_out.csv``)
    left_out: list[pd.DataFrame]
    #: every method an output dropped, with the reason (``dropped.csv``)
    dropped: list[pd.DataFrame]
    #: per comparison: the originals it covers (``n``) and which methods limited them
    coverage: list[str]


def write_comparisons(
    study: Study,
    points: pd.DataFrame,
    folder: Path,
    *,
    rate: str,
    pqvae_results: list[Path] | tuple[Path, ...] = (),
    unpaired: bool = False,
    step: Steps | None = None,
) -> Comparisons:
    """Table 1, iso-satisfaction, Pareto front, BD-rate, agreement and embedding-codec files.

    Each comparison between methods covers the originals common to the methods it
    compares (:func:`semcomp.analysis.coverage.common_images`) and says so: an
    ``n`` and ``image_set`` column, a note naming the methods that limited ``n``, and
    the originals and methods it left out; ``unpaired`` keeps every row instead.
    """
    from semcomp.analysis.agreement import MISSING_HUMAN, agreement
    from semcomp.analysis.coverage import (
        agreement_comparison,
        common_images,
        rate_comparison,
        with_rate_less,
    )
    from semcomp.analysis.curves import default_iso_level, iso_satisfaction, pareto_front
    from semcomp.analysis.embedding_results import embedding_results
    from semcomp.analysis.figures import (
        RATE_AXES,
        agreement_figure,
        embedding_figure,
        rd_chart,
        save_figure,
        table1_figure,
    )
    from semcomp.analysis.table1 import table1
    from semcomp.surveys.simulated import SIMULATED, simulated_surveys, survey_of

    seed, random_weights = study.config.seed, study.random_weights
    step = step or Steps(False)
    written: list[Path] = []
    notes: list[str] = []
    left_out: list[pd.DataFrame] = []
    dropped: list[pd.DataFrame] = []
    coverage_notes: list[str] = []
    simulated = simulated_surveys(study.store)

    def simulated_of(metric: str | None) -> str:
        """``"simulated ratings"`` when ``metric`` holds a simulated survey's ratings."""
        return SIMULATED if metric and survey_of(metric) in simulated else ""

    def table(frame: pd.DataFrame, name: str, metric: str | None = None) -> None:
        path = folder / name
        if simulated_of(metric) and not frame.empty:  # the label travels with the file
            rated = frame["rated_images"] > 0 if "rated_images" in frame else True
            frame = frame.assign(rating_source=np.where(rated, SIMULATED, ""))
        frame.to_csv(path, index=False)
        written.append(path)

    def covered(coverage) -> pd.DataFrame:
        coverage_notes.append(coverage.note)
        left_out.append(coverage.left_out)
        dropped.append(coverage.dropped)
        return coverage.points

    def stated(frame: pd.DataFrame, coverage) -> pd.DataFrame:
        return frame.assign(n=coverage.n, image_set=coverage.image_set)

    step("Table 1")
    compared = common_images(points, "table1", unpaired=unpaired)
    first = table1(covered(compared), seed=seed)
    table(stated(first.table, compared), "table1.csv", first.satisfaction_metric)
    figure = table1_figure(first.table, first.satisfaction_metric)
    label_panel(figure, simulated_of(first.satisfaction_metric), axis=1)
    written += save_figure(figure, folder / "table1")
    marked = f" ({SIMULATED})" if simulated_of(first.satisfaction_metric) else ""
    notes.append(f"Table 1{marked}: {first.note}")
    metric = headline_metric(points)
    step("iso-satisfaction, Pareto front, BD-rate")
    rated = None if metric is None else rate_comparison(points, metric, unpaired=unpaired)
    rated_points = covered(rated) if rated is not None else None
    if metric is None:
        notes.append("no similarity scores yet: no iso-satisfaction, Pareto front or BD-rate")
    elif rated_points.empty:
        notes.append(
            f"no method with a rate has a {metric} score: no iso-satisfaction, Pareto front "
            "or BD-rate (dropped.csv says why for each method)"
        )
    else:
        drawn = with_rate_less(points, rated)  # methods without a rate: bands in the figure
        drawn_summary = summarise(drawn, seed=seed, image_set=rated.image_set)
        common_summary = drawn_summary[drawn_summary["method"].isin(rated.methods)]
        level = default_iso_level(rated_points, metric)
        per_image, per_method = iso_satisfaction(rated_points, metric, level, rate)
        table(per_image, "iso_satisfaction_images.csv", metric)
        table(stated(per_method, rated), "iso_satisfaction.csv", metric)
        _, mean_rate, _ = RATE_AXES[rate]
        front = pareto_front(common_summary, mean_rate, f"{metric} mean")
        table(stated(front, rated), "pareto.csv", metric)
        bd = bd_rate_table(common_summary, metric, rate)
        table(stated(bd, rated) if not bd.empty else bd, "bd_rate.csv", metric)
        if simulated_of(metric):
            notes.append(f"iso-satisfaction, Pareto front and BD-rate use {metric}: {SIMULATED}")
        if not bd.empty and bd["bd_rate_percent"].isna().all():
            notes.append(f"BD-rate undefined for every pair: {bd['reason'].iloc[0]}")
        figure = rd_chart(
            drawn,
            drawn_summary,
            metric,
            rate=rate,
            iso_level=level,
            pareto=True,
            title=study.config.name,
            random_weights=random_weights,
        )
        label_panel(figure, simulated_of(metric))
        written += save_figure(figure, folder / "rd_iso_pareto")
    humans, models = human_metrics(points), clip_metrics(points)
    if humans and models:
        human = next((m for m in humans if m.startswith(SATISFACTION_PREFIX)), humans[0])
        both = agreement_comparison(points, models[0], human, unpaired=unpaired)
        agreeing = covered(both)
        step(f"agreement: bootstrap over {agreeing['original_id'].nunique():,} images")
        correlations = agreement(agreeing, models[0], human, seed=seed)
        table(correlations.assign(image_set=both.image_set), "agreement.csv", human)
        figure = agreement_figure(agreeing, models[0], human, correlations)
        label_panel(figure, simulated_of(human))
        written += save_figure(figure, folder / "agreement")
        if simulated_of(human):
            notes.append(f"agreement: {human} holds {SIMULATED}, not people's")
    else:
        notes.append(f"agreement: {MISSING_HUMAN}")
    step("embedding codecs")
    embedding = embedding_results(study.root, pqvae_results)
    notes += [f"PQVAE results {path}: {reason}" for path, reason in embedding.problems]
    if not embedding.table.empty:
        table(embedding.table, "embedding_codecs.csv")
        written += save_figure(embedding_figure(embedding.table), folder / "embedding_codecs")
    return Comparisons(
        written=written,
        notes=notes,
        left_out=left_out,
        dropped=dropped,
        coverage=coverage_notes,
    )


#: what each file of a report holds (README.txt lists those written)
FILE_DESCRIPTIONS = {
    "rd.csv": "one row per candidate: rate (empty when unknown) and every similarity score",
    "summary.csv": "per method and operating point: mean rates, mean and median of each "
    "metric with 95 % CIs, n and the image set it used",
    "methods/": "CompressAI-style results JSON per method",
    "rd.png": "similarity against rate, one curve per method; methods without a rate are "
    "horizontal bands labelled 'no rate'",
    "table1.csv": "Table 1: mean size (— without a rate) and mean of median ratings or CLIP "
    "similarity per method and operating point",
    "table1.png": "Table 1 as bars",
    "iso_satisfaction.csv": "per method: the smallest rate reaching the iso-satisfaction level",
    "iso_satisfaction_images.csv": "per image and method: the smallest rate reaching the level",
    "pareto.csv": "operating points on the Pareto front across methods",
    "bd_rate.csv": "BD-rate of every method against every other, or why it is undefined",
    "rd_iso_pareto.png": "the headline metric against rate with the iso-satisfaction line and "
    "the Pareto front",
    "agreement.csv": "rank correlations between CLIP and human ratings, overall and per method",
    "agreement.png": "human rating against CLIP similarity",
    "embedding_codecs.csv": "PQVAE and baseline embedding codecs: accuracy against bpd",
    "embedding_codecs.png": "embedding codecs: accuracy against bpd",
    "left_out.csv": "every original an output left out (per method), with the reason",
    "dropped.csv": "every method an output left out, with the reason",
    "failures.csv": "every recorded failure, with its stage and reason",
}
IMAGE_SET_NOTE = (
    "image_set (summary.csv and every comparison): 'paired' = a method's originals with a "
    "candidate at every one of its operating points; 'common' = the originals common to the "
    "methods compared (and paired within each); 'unpaired' = each operating point over its "
    "own originals (`semcomp report --unpaired`)"
)


def readme_text(
    head: list[str],
    files: list[Path],
    folder: Path,
    *,
    rate_less: list[str],
    dropped: pd.DataFrame,
    left_out: pd.DataFrame,
    coverage_notes: list[str],
    notes: list[str],
) -> str:
    """The report's README.txt: what each file is, which methods have no rate, which
    methods and originals each output left out and why, and every other note."""
    lines = [*head, "", "## Files"]
    names = sorted(
        {p.relative_to(folder).parts[0] + ("/" if p.parent != folder else "") for p in files}
    )
    for name in names:
        key = name if name in FILE_DESCRIPTIONS else Path(name).with_suffix(".png").name
        described = FILE_DESCRIPTIONS.get(key)
        if name.endswith(".pdf"):
            continue
        lines.append(f"- {name}: {described}" if described else f"- {name}")
    lines += ["", "## Methods without a rate"]
    lines += [
        f"- {m}: kept in rd.csv (empty rate), in Table 1 (size —) and drawn as a horizontal "
        "band labelled 'no rate' in rd.png and rd_iso_pareto.png"
        for m in rate_less
    ] or ["none"]
    lines += ["", "## Image sets (n)", IMAGE_SET_NOTE, *[f"- {n}" for n in coverage_notes]]
    lines += ["", "## Methods dropped from an output (dropped.csv)"]
    lines += [f"- {r.output}: {r.method} — {r.reason}" for r in dropped.itertuples()] or ["none"]
    lines += ["", "## Originals left out (left_out.csv)"]
    if left_out.empty:
        lines.append("none")
    for (output, method), rows in left_out.groupby(["output", "method"], sort=True):
        shown = ", ".join(map(str, rows["original"].head(20)))
        more = f" and {len(rows) - 20} more" if len(rows) > 20 else ""
        lines.append(f"- {output}: {method}: {len(rows)} ({shown}{more})")
    lines += ["", "## Notes", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_report(
    study: Study,
    out: Path | None = None,
    *,
    rate: str = "bpp",
    pqvae_results: list[Path] | tuple[Path, ...] = (),
    unpaired: bool = False,
    progress: bool = False,
) -> ReportFiles:
    """Write ``rd.csv``, ``summary.csv``, CompressAI-style JSON per method, ``rd.png/pdf``.

    Plus the comparisons of :func:`write_comparisons`: ``table1.csv/png/pdf``,
    ``iso_satisfaction*.csv``, ``pareto.csv``, ``bd_rate.csv``,
    ``rd_iso_pareto.png/pdf``, ``agreement.csv/png/pdf`` (with human ratings) and
    ``embedding_codecs.csv/png/pdf`` (with PQVAE evaluation files); and per survey with
    imported ratings ``survey_<id>_*.csv`` (method means of medians, dimensions, top
    answers, overlap, reliability) and ``survey_<id>_dimensions.png/pdf`` (Survey B).

    Each method's curve (summary.csv, rd.png, the JSON) covers the originals with a
    candidate at every one of its operating points; ``left_out.csv`` and
    ``dropped.csv`` list the originals and methods any output left out, and
    ``README.txt`` says what each file is. ``unpaired`` gives each operating point its
    own originals instead. ``progress`` shows the step under way on stderr.
    """
    from semcomp.analysis.coverage import curve_coverage, methods_without_rate, missing_points

    folder = Path(out) if out else study.root / "report"
    (folder / "methods").mkdir(parents=True, exist_ok=True)
    config = study.config
    random_weights = study.random_weights
    step = Steps(progress)
    step("reading the study")
    points = rd_points(study.store, study.scope())
    step(f"summary: bootstrap CIs over {points['original_id'].nunique():,} images")
    curves = curve_coverage(points, unpaired=unpaired)
    summary = summarise(curves.points, seed=config.seed, image_set=curves.image_set)
    rd_csv, summary_csv = folder / "rd.csv", folder / "summary.csv"
    points.drop(columns=["candidate_id"], errors="ignore").to_csv(rd_csv, index=False)
    summary.to_csv(summary_csv, index=False)
    method_json = []
    for method in config.methods:
        description = method.describe()
        if random_weights:
            description += f"; {RANDOM_WEIGHTS_NOTE}"
        path = folder / "methods" / f"{_file_name(method.name)}.json"
        payload = (
            compressai_results(summary, method.name, description)
            if not summary.empty
            else {"name": method.name, "description": description, "results": {}}
        )
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        method_json.append(path)
    step("rate–similarity figure")
    figures = rd_figure(
        curves.points,
        summary,
        folder / "rd",
        rate=rate,
        title=config.name,
        random_weights=random_weights,
    )
    from semcomp.surveys.tables import write_survey_files

    comparisons = write_comparisons(
        study,
        points,
        folder,
        rate=rate,
        pqvae_results=pqvae_results,
        unpaired=unpaired,
        step=step,
    )
    extra = comparisons.written
    coverage_notes = [curves.note, *comparisons.coverage]
    comparison_notes = comparisons.notes
    step("surveys")
    survey_files, survey_notes = write_survey_files(study.store, folder, seed=config.seed)
    extra += survey_files
    comparison_notes += survey_notes
    left_out = pd.concat([curves.left_out, *comparisons.left_out], ignore_index=True)
    configured = {m.name: m.operating_point_labels() for m in config.methods}
    dropped = pd.concat(
        [missing_points(points, configured), curves.dropped, *comparisons.dropped],
        ignore_index=True,
    )
    rate_less = methods_without_rate(points)
    for frame, name in ((left_out, "left_out.csv"), (dropped, "dropped.csv")):
        frame.to_csv(folder / name, index=False)
        extra.append(folder / name)
    if rate_less:
        comparison_notes.append(f"no rate (shown apart from the rate axis): {', '.join(rate_less)}")
    failures = study.store.failures()
    failures_csv = folder / "failures.csv"
    failures.to_csv(failures_csv, index=False)
    head = [
        f"# Report of study {config.name}",
        f"candidates: {len(points)}",
        f"failures: {len(failures)}",
    ]
    if random_weights:
        head.insert(1, f"WARNING: {RANDOM_WEIGHTS_NOTE}")
    from semcomp.surveys.simulated import SIMULATED, simulated_surveys

    simulated = simulated_surveys(study.store)
    for model in dict.fromkeys(simulated.values()):
        surveys = ", ".join(s for s, m in simulated.items() if m == model)
        head.insert(1, f"WARNING: {SIMULATED} in survey {surveys}: {model}")
    lossless = lossless_reduction_note(points)
    if lossless:
        comparison_notes = [lossless, *comparison_notes]
    written = [rd_csv, summary_csv, *method_json, *figures, *extra, failures_csv]
    step("README")
    (folder / "README.txt").write_text(
        readme_text(
            head,
            written,
            folder,
            rate_less=rate_less,
            dropped=dropped,
            left_out=left_out,
            coverage_notes=coverage_notes,
            notes=comparison_notes,
        ),
        encoding="utf-8",
    )
    step.close()
    return ReportFiles(
        folder=folder,
        rd_csv=rd_csv,
        summary_csv=summary_csv,
        method_json=method_json,
        figures=figures,
        failures_csv=failures_csv,
        rows=len(points),
        extra=extra,
        notes=coverage_notes + comparison_notes,
    )
