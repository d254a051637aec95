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


def write_comparisons(
    study: Study,
    points: pd.DataFrame,
    summary: pd.DataFrame,
    folder: Path,
    *,
    rate: str,
    pqvae_results: list[Path] | tuple[Path, ...] = (),
) -> tuple[list[Path], list[str]]:
    """Table 1, iso-satisfaction, Pareto front, BD-rate, agreement and embedding-codec files."""
    from semcomp.analysis.agreement import MISSING_HUMAN, agreement
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
    written: list[Path] = []
    notes: list[str] = []
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

    first = table1(points, seed=seed)
    table(first.table, "table1.csv", first.satisfaction_metric)
    figure = table1_figure(first.table, first.satisfaction_metric)
    label_panel(figure, simulated_of(first.satisfaction_metric), axis=1)
    written += save_figure(figure, folder / "table1")
    marked = f" ({SIMULATED})" if simulated_of(first.satisfaction_metric) else ""
    notes.append(f"Table 1{marked}: {first.note}")
    metric = headline_metric(points)
    if metric is None:
        notes.append("no similarity scores yet: no iso-satisfaction, Pareto front or BD-rate")
    else:
        level = default_iso_level(points, metric)
        per_image, per_method = iso_satisfaction(points, metric, level, rate)
        table(per_image, "iso_satisfaction_images.csv", metric)
        table(per_method, "iso_satisfaction.csv", metric)
        _, mean_rate, _ = RATE_AXES[rate]
        table(pareto_front(summary, mean_rate, f"{metric} mean"), "pareto.csv", metric)
        bd = bd_rate_table(summary, metric, rate)
        table(bd, "bd_rate.csv", metric)
        if simulated_of(metric):
            notes.append(f"iso-satisfaction, Pareto front and BD-rate use {metric}: {SIMULATED}")
        if not bd.empty and bd["bd_rate_percent"].isna().all():
            notes.append(f"BD-rate undefined for every pair: {bd['reason'].iloc[0]}")
        figure = rd_chart(
            points,
            summary,
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
        correlations = agreement(points, models[0], human, seed=seed)
        table(correlations, "agreement.csv", human)
        figure = agreement_figure(points, models[0], human, correlations)
        label_panel(figure, simulated_of(human))
        written += save_figure(figure, folder / "agreement")
        if simulated_of(human):
            notes.append(f"agreement: {human} holds {SIMULATED}, not people's")
    else:
        notes.append(f"agreement: {MISSING_HUMAN}")
    embedding = embedding_results(study.root, pqvae_results)
    notes += [f"PQVAE results {path}: {reason}" for path, reason in embedding.problems]
    if not embedding.table.empty:
        table(embedding.table, "embedding_codecs.csv")
        written += save_figure(embedding_figure(embedding.table), folder / "embedding_codecs")
    return written, notes


def write_report(
    study: Study,
    out: Path | None = None,
    *,
    rate: str = "bpp",
    pqvae_results: list[Path] | tuple[Path, ...] = (),
) -> ReportFiles:
    """Write ``rd.csv``, ``summary.csv``, CompressAI-style JSON per method, ``rd.png/pdf``.

    Plus the comparisons of :func:`write_comparisons`: ``table1.csv/png/pdf``,
    ``iso_satisfaction*.csv``, ``pareto.csv``, ``bd_rate.csv``,
    ``rd_iso_pareto.png/pdf``, ``agreement.csv/png/pdf`` (with human ratings) and
    ``embedding_codecs.csv/png/pdf`` (with PQVAE evaluation files); and per survey with
    imported ratings ``survey_<id>_*.csv`` (method means of medians, dimensions, top
    answers, overlap, reliability) and ``survey_<id>_dimensions.png/pdf`` (Survey B).
    """
    folder = Path(out) if out else study.root / "report"
    (folder / "methods").mkdir(parents=True, exist_ok=True)
    config = study.config
    random_weights = study.random_weights
    points = rd_points(study.store, study.scope())
    summary = summarise(points, seed=config.seed)
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
    figures = rd_figure(
        points, summary, folder / "rd", rate=rate, title=config.name, random_weights=random_weights
    )
    from semcomp.surveys.tables import write_survey_files

    extra, comparison_notes = write_comparisons(
        study, points, summary, folder, rate=rate, pqvae_results=pqvae_results
    )
    survey_files, survey_notes = write_survey_files(study.store, folder, seed=config.seed)
    extra += survey_files
    comparison_notes += survey_notes
    failures = study.store.failures()
    failures_csv = folder / "failures.csv"
    failures.to_csv(failures_csv, index=False)
    notes = [f"study: {config.name}", f"candidates: {len(points)}", f"failures: {len(failures)}"]
    if random_weights:
        notes.insert(1, f"WARNING: {RANDOM_WEIGHTS_NOTE}")
    from semcomp.surveys.simulated import SIMULATED, simulated_surveys

    simulated = simulated_surveys(study.store)
    for model in dict.fromkeys(simulated.values()):
        surveys = ", ".join(s for s, m in simulated.items() if m == model)
        notes.insert(1, f"WARNING: {SIMULATED} in survey {surveys}: {model}")
    notes += comparison_notes
    (folder / "README.txt").write_text("\n".join(notes) + "\n", encoding="utf-8")
    return ReportFiles(
        folder=folder,
        rd_csv=rd_csv,
        summary_csv=summary_csv,
        method_json=method_json,
        figures=figures,
        failures_csv=failures_csv,
        rows=len(points),
        extra=extra,
        notes=comparison_notes,
    )
