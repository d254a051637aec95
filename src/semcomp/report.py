"""``semcomp report``: the tables, JSON and figures of a study, written to ``report/``."""

from __future__ import annotations

import json
import re
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from semcomp.analysis.figures import (
    GRID_ORIGINALS,
    RANDOM_WEIGHTS_NOTE,
    grid_cells,
    image_grid,
    paper_width,
    rd_figure,
    save_figure,
    saved_in_background,
    wait_for_figures,
)
from semcomp.analysis.rd import (
    compressai_results,
    lossless_reduction_note,
    rd_points,
    set_points,
    study_scores,
    summarise,
    summary_columns,
)
from semcomp.analysis.scores import Scores, default_figure_keys, describe, headline
from semcomp.errors import AnalysisError, ConfigError
from semcomp.study import Study

if TYPE_CHECKING:
    from semcomp.analysis.coverage import Coverage


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

    #: reading, summary, rd figure, Table 1, rate comparisons, agreement, zero-shot against
    #: bpp, embedding codecs, surveys, caption scores, writing the figures (their worker
    #: finishing), README
    TOTAL = 12

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


def headline_metric(points: pd.DataFrame, scores: Scores | None = None) -> str | None:
    """The metric a comparison leads with: Survey A satisfaction, else scaled CLIP, else
    any other model metric, else any human rating (:func:`semcomp.analysis.scores.headline`)."""
    return headline(describe(points, scores), points)


def chosen_metrics(scores: Scores, points: pd.DataFrame, metrics: list[str] | None) -> list[str]:
    """The metrics ``--metrics`` names, checked against the study's (every model and set
    metric and the satisfaction index by default)."""
    if metrics is None:
        return default_figure_keys(scores, points)
    known = [*scores.per_candidate(points), *scores.set_keys()]
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ConfigError(
            f"--metrics: no metric {', '.join(map(repr, unknown))} in this study; it has "
            + (", ".join(known) or "none yet")
        )
    return list(dict.fromkeys(metrics))


#: the sign conventions of bd_rate.csv
BD_NOTE = (
    "bd_rate.csv: bd_rate_percent < 0 means the test method needs fewer bits than the anchor "
    "for the same score, for every metric (a lower-is-better metric is negated before the fit); "
    "bd_metric is the test's score minus the anchor's at equal rate, in the metric's units: "
    "better when positive for a higher-is-better metric, when negative for a lower-is-better one "
    "(column better_bd_metric)"
)


def bd_rate_table(
    summary: pd.DataFrame, metric: str, rate: str, scores: Scores | None = None
) -> pd.DataFrame:
    """BD-rate and BD-metric of every method against every other on ``metric``, or why
    they are undefined (sign conventions: :data:`BD_NOTE`)."""
    from semcomp.analysis.curves import bd_metric, bd_rate

    info = (scores or Scores())[metric]
    statistic = summary_columns(metric, scores)[0].removeprefix(f"{metric} ")
    # each method's efficient points found once for all its pairs
    options = {"statistic": statistic, "higher_is_better": info.higher_is_better, "fronts": {}}
    methods = sorted(summary["method"].unique()) if not summary.empty else []
    rows = []
    for anchor in methods:
        for test in methods:
            if anchor == test:
                continue
            try:
                value, reason = bd_rate(summary, anchor, test, metric, rate, **options), ""
            except AnalysisError as exc:
                value, reason = float("nan"), str(exc)
            try:
                delta = bd_metric(summary, anchor, test, metric, rate, **options)
            except AnalysisError as exc:
                delta = float("nan")
                reason = reason or str(exc)
            rows.append(
                {
                    "anchor": anchor,
                    "test": test,
                    "metric": metric,
                    "display": info.display,
                    "higher_is_better": info.higher_is_better,
                    "rate": rate,
                    "bd_rate_percent": value,
                    "bd_metric": delta,
                    "better_bd_metric": "positive" if info.higher_is_better else "negative",
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
    #: each per-candidate metric's iso-satisfaction level (``iso_satisfaction.csv``)
    iso_levels: dict[str, float]


def write_comparisons(
    study: Study,
    points: pd.DataFrame,
    folder: Path,
    *,
    rate: str,
    pqvae_results: list[Path] | tuple[Path, ...] = (),
    unpaired: bool = False,
    scores: Scores | None = None,
    set_scores: pd.DataFrame | None = None,
    summary: pd.DataFrame | None = None,
    metrics: list[str] | None = None,
    step: Steps | None = None,
    rate_comparisons: dict[str, Coverage] | None = None,
) -> Comparisons:
    """Table 1, iso-satisfaction, Pareto front, BD-rate, agreement and embedding-codec files.

    Each comparison between methods covers the originals common to the methods it
    compares (:func:`semcomp.analysis.coverage.common_images`) and says so: an
    ``n`` and ``image_set`` column, a note naming the methods that limited ``n``, and
    the originals and methods it left out; ``unpaired`` keeps every row instead.

    ``scores`` describes the study's metrics (direction, display name); ``metrics`` are
    the keys of ``pareto.csv`` and ``bd_rate.csv`` (default: every model and set metric
    and the satisfaction index); a set metric's come from ``summary`` (the curves') with
    ``set_scores``. ``iso_satisfaction*.csv`` hold a block per per-candidate metric of
    ``metrics`` (column ``metric``, the headline's first), each at its own level
    (:func:`~semcomp.analysis.curves.default_iso_level`) in its direction and over its own
    rate comparison's originals; ``rd_iso_pareto`` draws the headline metric;
    ``agreement.csv`` correlates every per-candidate metric with the human ratings.
    """
    from semcomp.analysis.agreement import (
        MISSING_HUMAN,
        ORIENTED_NOTE,
        default_human_metric,
        oriented_agreement,
    )
    from semcomp.analysis.coverage import (
        RATE_COMPARISONS,
        agreement_comparison,
        common_images,
        with_rate_less,
    )
    from semcomp.analysis.curves import default_iso_level, metric_iso_satisfaction, pareto_front
    from semcomp.analysis.embedding_results import embedding_results
    from semcomp.analysis.figures import (
        RATE_AXES,
        agreement_figure,
        agreement_metrics_figure,
        embedding_figure,
        rd_chart,
        save_drawn,
        table1_figure,
        zero_shot_figure,
    )
    from semcomp.analysis.table1 import table1
    from semcomp.analysis.zero_shot import accuracy_against_bpp, zero_shot_keys
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

    scores = describe(points, scores)
    chosen = chosen_metrics(scores, points, metrics)
    metric = headline_metric(points, scores)
    if metric is not None and scores[metric].is_set:
        metric = None  # one value per operating point: no per-image iso-satisfaction

    def write_agreement() -> None:
        """agreement.csv and its figures."""
        human = default_human_metric(points, scores)
        models = scores.model(points)
        if human and models:
            lead = metric if metric in models else models[0]
            step(f"agreement: bootstrap over {points['original_id'].nunique():,} images")
            tables = []
            for key in [lead, *(m for m in models if m != lead)]:
                both = agreement_comparison(points, key, human, unpaired=unpaired)
                if key == lead:
                    agreeing = covered(both)
                else:
                    output = f"agreement ({key})"
                    left_out.append(both.left_out.assign(output=output))
                    dropped.append(both.dropped.assign(output=output))
                correlations = oriented_agreement(both.points, key, human, scores=scores, seed=seed)
                if not correlations.empty:
                    tables.append(correlations.assign(image_set=both.image_set))
            correlations = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
            table(correlations, "agreement.csv", human)
            written.extend(
                save_drawn(
                    folder / "agreement",
                    agreement_figure,
                    agreeing,
                    lead,
                    human,
                    correlations,
                    scores,
                    panel_label=simulated_of(human),
                )
            )
            if not correlations.empty:
                written.extend(
                    save_drawn(
                        folder / "agreement_metrics",
                        agreement_metrics_figure,
                        correlations,
                        scores[human].display,
                        panel_label=simulated_of(human),
                    )
                )
            notes.append(f"agreement: {ORIENTED_NOTE}")
            if simulated_of(human):
                notes.append(f"agreement: {human} holds {SIMULATED}, not people's")
        else:
            notes.append(f"agreement: {MISSING_HUMAN}")

    # the agreement first: its bootstrap is the longest step, and its figures then reach
    # the figure worker while the rest is computed; what it adds to the report's lists
    # goes back in its place, after the BD-rate (the files and README as before)
    report_lists = (written, notes, left_out, dropped, coverage_notes)
    before = [len(part) for part in report_lists]
    write_agreement()
    agreement_parts = [part[at:] for part, at in zip(report_lists, before, strict=True)]
    for part, at in zip(report_lists, before, strict=True):
        del part[at:]
    step("Table 1")
    compared = common_images(points, "table1", unpaired=unpaired)
    first = table1(covered(compared), seed=seed, scores=scores, set_scores=set_scores)
    table(stated(first.table, compared), "table1.csv", first.satisfaction_metric)
    written += save_drawn(
        folder / "table1",
        table1_figure,
        first.table,
        first.satisfaction_metric,
        scores,
        panel_label=simulated_of(first.satisfaction_metric),
        label_axis=1,
    )
    marked = f" ({SIMULATED})" if simulated_of(first.satisfaction_metric) else ""
    notes.append(f"Table 1{marked}: {first.note}")
    step("iso-satisfaction, Pareto front, BD-rate")
    made = {} if rate_comparisons is None else rate_comparisons

    def on_rate(key: str) -> Coverage:
        return compared_on_rate(made, points, key, unpaired=unpaired)

    rated = None if metric is None else on_rate(metric)
    rated_points = covered(rated) if rated is not None else None
    fronts: list[pd.DataFrame] = []
    bds: list[pd.DataFrame] = []
    common_summary = None  # the headline metric's summary, when a method with a rate has it
    if metric is None:
        notes.append("no similarity scores yet: no iso-satisfaction, Pareto front or BD-rate")
    elif rated_points.empty:
        notes.append(
            f"no method with a rate has a {metric} score: no iso-satisfaction, Pareto front "
            "or BD-rate (dropped.csv says why for each method)"
        )
    else:
        info = scores[metric]
        drawn = with_rate_less(points, rated)  # methods without a rate: bands in the figure
        drawn_summary = summarise(
            drawn, seed=seed, image_set=rated.image_set, scores=scores, set_scores=set_scores
        )
        common_summary = drawn_summary[drawn_summary["method"].isin(rated.methods)]
        level = default_iso_level(rated_points, metric)
        if simulated_of(metric):
            notes.append(f"iso-satisfaction, Pareto front and BD-rate use {metric}: {SIMULATED}")
        written += save_drawn(
            folder / "rd_iso_pareto",
            rd_chart,
            drawn,
            drawn_summary,
            metric,
            rate=rate,
            iso_level=level,
            pareto=True,
            title=study.config.name,
            random_weights=random_weights,
            scores=scores,
            panel_label=simulated_of(metric),
        )
        if metric not in chosen:
            chosen = [metric, *chosen]
    _, mean_rate, _ = RATE_AXES[rate]
    iso_blocks: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    iso_levels: dict[str, float] = {}

    def iso_block(key: str, compared: pd.DataFrame, extent: dict) -> None:
        """``key``'s iso-satisfaction over ``compared`` (its rate comparison's points), at
        :func:`default_iso_level`, in its direction: one block of each iso file."""
        info = scores[key]
        level, per_image, per_method = metric_iso_satisfaction(
            compared, key, rate, higher_is_better=info.higher_is_better, display=info.display
        )
        if not np.isfinite(level):
            return
        iso_levels[key] = level
        source = {"rating_source": SIMULATED} if simulated_of(key) else {}  # with its block
        iso_blocks[key] = per_image.assign(**source), per_method.assign(**source, **extent)

    for key in chosen:
        info = scores[key]
        if info.is_set:  # its own originals per point (n); the rates of the curves
            source = summary if summary is not None else pd.DataFrame()
            if source.empty or f"{key} value" not in source:
                continue
            source = source.dropna(subset=[mean_rate, f"{key} value"])
            centre = f"{key} value"
            extent = {"image_set": "set metric: each operating point over its own n"}
        elif key == metric and common_summary is not None:
            source, centre = common_summary, f"{key} mean"
            extent = {"n": rated.n, "image_set": rated.image_set}
        else:
            coverage = on_rate(key)
            output = f"{RATE_COMPARISONS} ({key})"
            coverage_notes.append(coverage.note.replace(RATE_COMPARISONS, output, 1))
            left_out.append(coverage.left_out.assign(output=output))
            dropped.append(coverage.dropped.assign(output=output))
            if coverage.points.empty:
                continue
            others = [c for c in scores.per_candidate(points) if c != key]
            source = summarise(
                coverage.points.drop(columns=others, errors="ignore"),
                seed=seed,
                image_set=coverage.image_set,
                scores=scores.restricted([key]),
            )
            centre = f"{key} mean"
            extent = {"n": coverage.n, "image_set": coverage.image_set}
        if not info.is_set:
            iso_block(key, rated_points if key == metric else coverage.points, extent)
        front = pareto_front(source, mean_rate, centre, higher_is_better=info.higher_is_better)
        fronts.append(front.assign(metric=key, **extent))
        bd = bd_rate_table(source, key, rate, scores)
        if not bd.empty:
            bds.append(bd.assign(**extent))
            if bd["bd_rate_percent"].isna().all():
                notes.append(f"BD-rate on {key} undefined for every pair: {bd['reason'].iloc[0]}")
    if iso_blocks:  # one block per metric, the headline's first
        order = sorted(iso_blocks, key=lambda key: key != metric)
        first_columns = ["metric", "method"]
        for part, name in enumerate(("iso_satisfaction_images.csv", "iso_satisfaction.csv")):
            frame = pd.concat([iso_blocks[key][part] for key in order], ignore_index=True)
            table(frame[first_columns + [c for c in frame.columns if c not in first_columns]], name)
    if fronts:
        pareto = pd.concat(fronts, ignore_index=True)
        first_columns = ["metric", "method", "operating_point"]
        pareto = pareto[first_columns + [c for c in pareto.columns if c not in first_columns]]
        table(pareto, "pareto.csv", metric)
        bd = pd.concat(bds, ignore_index=True) if bds else pd.DataFrame()
        table(bd, "bd_rate.csv", metric)
        notes.append(BD_NOTE)
    for part, added in zip(report_lists, agreement_parts, strict=True):
        part.extend(added)  # the agreement's, computed first, in their place
    step("zero-shot accuracy against bpp")
    zero_shot = accuracy_against_bpp(points, scores, seed=seed, unpaired=unpaired)
    if not zero_shot.table.empty:
        for coverage, key in zip(zero_shot.coverages, zero_shot_keys(scores, points), strict=True):
            output = f"zero-shot accuracy against bpp ({key})"
            coverage_notes.append(coverage.note.replace(RATE_COMPARISONS, output, 1))
            left_out.append(coverage.left_out.assign(output=output))
            dropped.append(coverage.dropped.assign(output=output))
        table(zero_shot.table, "zero_shot_bpp.csv")
        written += save_drawn(
            folder / "zero_shot_bpp",
            zero_shot_figure,
            zero_shot.table,
            scores,
            random_weights=random_weights,
        )
    elif zero_shot_keys(scores, points):
        notes.append("zero-shot accuracy against bpp: no method with a rate has zero-shot scores")
    step("embedding codecs")
    embedding = embedding_results(study.root, pqvae_results)
    notes += [f"PQVAE results {path}: {reason}" for path, reason in embedding.problems]
    if not embedding.table.empty:
        table(embedding.table, "embedding_codecs.csv")
        written += save_drawn(folder / "embedding_codecs", embedding_figure, embedding.table)
    return Comparisons(
        written=written,
        notes=notes,
        left_out=left_out,
        dropped=dropped,
        coverage=coverage_notes,
        iso_levels=iso_levels,
    )


#: what each file of a report holds (README.txt lists those written)
FILE_DESCRIPTIONS = {
    "caption_scores.csv": "each method's captions (per operating point) against the human "
    "reference captions: BLEU-4, ROUGE-L, CIDEr-D (`semcomp captions score` adds METEOR)",
    "rd.csv": "one row per candidate: rate (empty when unknown) and every score per candidate "
    "(one column per metric key)",
    "summary.csv": "per method and operating point: mean rates, mean and median of each "
    "metric with 95 % CIs, n and the image set it used; each set metric's value, CI and n",
    "methods/": "CompressAI-style results JSON per method (every metric; what each is under "
    "'metrics')",
    "rd.png": "each chosen metric against rate (one panel each), one curve per method; methods "
    "without a rate are horizontal bands labelled 'no rate'",
    "rd/": "the panels of rd.png one figure per metric, named by its key; a metric with a "
    "value per image has its iso-satisfaction line there, at iso_satisfaction.csv's level",
    "table1.csv": "Table 1: mean size (— without a rate), mean of median ratings and every "
    "metric per method and operating point",
    "table1.png": "Table 1 as bars",
    "iso_satisfaction.csv": "per metric (column metric, the headline metric's block first) "
    "and method: the smallest rate reaching that metric's iso-satisfaction level (at or above "
    "it; at or below for a lower-is-better metric, column reaching), with its n and image_set",
    "iso_satisfaction_images.csv": "per metric, image and method: the smallest rate reaching "
    "the level",
    "pareto.csv": "operating points on the Pareto front across methods, per metric (in its "
    "direction)",
    "bd_rate.csv": "BD-rate and BD-metric of every method against every other, per metric, or "
    "why they are undefined",
    "rd_iso_pareto.png": "the headline metric against rate with the iso-satisfaction line and "
    "the Pareto front",
    "agreement.csv": "rank correlations between each metric and the human ratings, overall "
    "and per method (oriented: lower-is-better metrics negated)",
    "agreement.png": "human rating against the headline metric",
    "agreement_metrics.png": "which metric tracks the human ratings best: Spearman and Kendall "
    "with 95 % CIs per metric",
    "zero_shot_bpp.csv": "zero-shot top-1 accuracy of every method with a rate against bits "
    "per pixel (the PQVAE paper's Fig. 6), per operating point, with 95 % CIs, over the "
    "originals the methods share; bpp_of_mean_pixels is the paper's bpp (mean bits over the "
    "mean pixel count)",
    "zero_shot_bpp.png": "zero-shot top-1 accuracy against bits per pixel, log axis (the "
    "PQVAE paper's Fig. 6)",
    "embedding_codecs.csv": "PQVAE and baseline embedding codecs: accuracy against bpd",
    "embedding_codecs.png": "embedding codecs: accuracy against bpd",
    "grid.png": "image grid for papers: one row per original, its candidate of each method at "
    "the operating point nearest one rate, captioned with the rate (`semcomp report --grid`)",
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


def write_grid(
    study: Study,
    points: pd.DataFrame,
    folder: Path,
    *,
    bpp: float | None = None,
    originals: int = GRID_ORIGINALS,
) -> list[Path]:
    """``grid.png/pdf``: originals × methods at the operating point of each method nearest
    ``bpp`` (see :func:`~semcomp.analysis.figures.grid_cells`); nothing without candidates."""
    store = study.store
    files = store.frame(
        "SELECT c.id AS candidate_id, a.relpath FROM candidates c "
        "JOIN artifacts a ON a.hash = c.artifact_hash WHERE a.media_type LIKE 'image/%'"
    )
    original_files = store.frame(
        "SELECT o.id AS original_id, a.relpath FROM originals o "
        "JOIN artifacts a ON a.hash = o.artifact_hash"
    )
    cells = grid_cells(
        points,
        {i: str(store.artifact_path(p)) for i, p in zip(*original_files.T.to_numpy(), strict=True)},
        {i: str(store.artifact_path(p)) for i, p in zip(*files.T.to_numpy(), strict=True)},
        bpp=bpp,
        originals=originals,
    )
    if cells.empty:
        return []
    title = study.config.name + (f" ({RANDOM_WEIGHTS_NOTE})" if study.random_weights else "")
    return save_figure(image_grid(cells, title=title), folder / "grid")


def write_report(
    study: Study,
    out: Path | None = None,
    *,
    width: str = "double",
    **options,
) -> ReportFiles:
    """:func:`_write_report` with every figure ``width`` wide: ``double`` (7 in, across two
    columns of a paper) or ``single`` (3.5 in, one column). The figures' files are written
    by a second process while the tables are computed
    (:func:`~semcomp.analysis.figures.saved_in_background`)."""
    with paper_width(width), saved_in_background():  # figures written while it computes
        _import_ahead()
        return _write_report(study, out, **options)


#: what the comparisons import when they come to them (the rank correlations' p-values,
#: the BD-rate fits): a second of the report's start on two cores
LATER_IMPORTS = ("scipy.stats", "bjontegaard")


def _import_ahead() -> threading.Thread:
    """Import :data:`LATER_IMPORTS` in a thread while the study is read and summarised
    (SQLite and numpy leave the interpreter to it), after the figure worker was forked.
    Nothing is computed there; an import that fails fails again, and is reported, where
    the report needs it. pyplot is imported (and styled) here first: bjontegaard imports
    it, and a module two threads import at once can be seen half-initialised by one of
    them (the figure worker, where there is one, has imported it already)."""
    import importlib

    from semcomp.analysis.figures import _pyplot

    _pyplot()

    def load() -> None:
        for name in LATER_IMPORTS:
            with suppress(Exception):  # raised again where the module is used
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="semcomp-report-imports", daemon=True)
    thread.start()
    return thread


def compared_on_rate(
    made: dict[str, Coverage], points: pd.DataFrame, key: str, *, unpaired: bool
) -> Coverage:
    """``key``'s rate comparison (:func:`~semcomp.analysis.coverage.rate_comparison`),
    made once per report: kept in ``made`` (key → coverage) for the iso levels and the
    comparisons."""
    from semcomp.analysis.coverage import rate_comparison

    if key not in made:
        made[key] = rate_comparison(points, key, unpaired=unpaired)
    return made[key]


def iso_levels(
    points: pd.DataFrame,
    scores: Scores,
    keys: list[str],
    *,
    unpaired: bool = False,
    rate_comparisons: dict[str, Coverage] | None = None,
) -> dict[str, float]:
    """The iso-satisfaction level of each per-candidate metric of ``keys``, as
    :func:`write_comparisons` writes it (:func:`default_iso_level` over the metric's rate
    comparison), known before the comparisons so that the figures need not wait for them.
    The rate comparisons made go into ``rate_comparisons`` (key → coverage), for
    :func:`write_comparisons` to use rather than make them again."""
    from semcomp.analysis.curves import default_iso_level

    made = {} if rate_comparisons is None else rate_comparisons
    levels = {}
    for key in keys:
        if key in scores and not scores[key].is_set:
            compared = compared_on_rate(made, points, key, unpaired=unpaired).points
            level = default_iso_level(compared, key)
            if np.isfinite(level):
                levels[key] = level
    return levels


def _write_report(
    study: Study,
    out: Path | None = None,
    *,
    rate: str = "bpp",
    pqvae_results: list[Path] | tuple[Path, ...] = (),
    unpaired: bool = False,
    metrics: list[str] | None = None,
    grid: bool = False,
    grid_bpp: float | None = None,
    progress: bool = False,
) -> ReportFiles:
    """Write ``rd.csv``, ``summary.csv``, CompressAI-style JSON per method, ``rd.png/pdf``
    (one panel per metric of ``metrics``, default every model and set metric and the
    satisfaction index) and ``rd/<key>.png/pdf`` (one figure per metric).

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
    own originals instead. ``grid`` adds ``grid.png/pdf`` (:func:`write_grid` at
    ``grid_bpp``). ``progress`` shows the step under way on stderr.
    """
    from semcomp.analysis.coverage import curve_coverage, methods_without_rate, missing_points

    folder = Path(out) if out else study.root / "report"
    (folder / "methods").mkdir(parents=True, exist_ok=True)
    config = study.config
    random_weights = study.random_weights
    step = Steps(progress)
    step("reading the study")
    points = rd_points(study.store, study.scope())
    scores = study_scores(study.store).with_columns(points.columns)
    set_scores = set_points(study.store, study.scope())
    chosen = chosen_metrics(scores, points, metrics)
    step(f"summary: bootstrap CIs over {points['original_id'].nunique():,} images")
    curves = curve_coverage(points, unpaired=unpaired)
    summary = summarise(
        curves.points,
        seed=config.seed,
        image_set=curves.image_set,
        scores=scores,
        set_scores=set_scores,
    )
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
            compressai_results(summary, method.name, description, scores)
            if not summary.empty
            else {"name": method.name, "description": description, "results": {}}
        )
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        method_json.append(path)
    step("rate–similarity figure")
    rate_comparisons: dict[str, Coverage] = {}  # made once, for the iso levels and comparisons
    figures = rd_figure(  # drawn while the comparisons are computed
        curves.points,
        summary,
        folder / "rd",
        rate=rate,
        title=config.name,
        random_weights=random_weights,
        scores=scores,
        metrics=chosen,
        iso_levels=iso_levels(
            points, scores, chosen, unpaired=unpaired, rate_comparisons=rate_comparisons
        ),
    )
    from semcomp.surveys.tables import write_survey_files

    comparisons = write_comparisons(
        study,
        points,
        folder,
        rate=rate,
        pqvae_results=pqvae_results,
        unpaired=unpaired,
        scores=scores,
        set_scores=set_scores,
        summary=summary,
        metrics=chosen,
        step=step,
        rate_comparisons=rate_comparisons,
    )
    extra = comparisons.written
    if grid:
        extra += write_grid(study, points, folder, bpp=grid_bpp)
    coverage_notes = [curves.note, *comparisons.coverage]
    comparison_notes = comparisons.notes
    step("surveys")
    survey_files, survey_notes = write_survey_files(study.store, folder, seed=config.seed)
    extra += survey_files
    comparison_notes += survey_notes
    from semcomp.caption_scores import write_caption_scores

    step("caption scores")
    caption_files, caption_notes = write_caption_scores(study.store, folder)
    extra += caption_files
    comparison_notes += caption_notes
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
    step("writing the figures")
    wait_for_figures()
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
