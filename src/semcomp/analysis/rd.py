"""Rate–distortion tables: one row per candidate, and summaries per method and operating point.

Rates are exact: ``rate_bits`` is the payload's length in bits; ``bpp`` divides
by the original image's pixel count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from semcomp.analysis.scores import (  # noqa: F401 - the prefixes' old home
    HUMAN_PREFIX,
    SATISFACTION_PREFIX,
    SCALED_CLIP,
    Scores,
    describe,
)
from semcomp.analysis.stats import mean_and_median_cis
from semcomp.images import LOSSLESS_FORMATS, file_format
from semcomp.store import Store

RATE_UNITS = ("bytes", "bits", "bpp")
#: rate unit → column of an :func:`rd_points` table and of a :func:`summarise` table
RATE_COLUMNS = {"bytes": "rate_bytes", "bits": "rate_bits", "bpp": "bpp"}
SUMMARY_RATE_COLUMNS = {"bytes": "rate_bytes_mean", "bits": "rate_bits_mean", "bpp": "bpp_mean"}
#: the columns of :func:`set_points`: a set metric's value per method × operating point
SET_COLUMNS = ["metric", "method", "operating_point", "n", "value", "ci_low", "ci_high"]
#: which originals an aggregate covers (``image_set`` column; see :mod:`.coverage`):
#: a method's originals with a candidate at every one of its operating points,
PAIRED = "paired"
#: the originals common to the methods compared (and paired within each),
COMMON = "common"
#: or each operating point's own originals (``semcomp report --unpaired``)
UNPAIRED = "unpaired"
ID_COLUMNS = [
    "original_id",
    "original",
    "category",
    "method",
    "kind",
    "codec",
    "operating_point",
    "variant",
    "replicate",
    "seed",
]
#: a textual method with side information: its rate as caption + side + container header
#: bytes (semcomp.codecs.side), which add up to ``rate_bytes``
RATE_SPLIT_COLUMNS = ("caption_bytes", "side_bytes", "header_bytes")
#: representation details copied from its metadata into the table, when present
META_COLUMNS = (
    "quality",
    "achieved",
    "caption",
    "text_codec",
    "prompt_tokens",
    "consumed_utf8_bytes",
    "truncated",
    "entropy_coder",
    "bpd",
    # textual methods with side information: the rate split (semcomp.codecs.side)
    "side",
    "side_size",
    *RATE_SPLIT_COLUMNS,
    # best-of-N: the index's ⌈log2 N⌉ bits and the whole bytes they take in the rate
    "select_bits",
    "index_bytes",
)


#: what a report covers: method id → (operating point labels, replicates)
Scope = Mapping[str, tuple[list[str], int]]


def rd_points(store: Store, scope: Scope | None = None) -> pd.DataFrame:
    """One row per original × method × operating point × replicate, with every metric.

    ``scope`` restricts to the study's configured methods, operating points and
    replicates (rows of points or replicates since removed from the study file
    stay in the store but not in the table); ``None`` returns everything. Only
    current originals count: a source file edited in place replaces its old
    original.
    """
    points = store.frame(
        "SELECT o.id AS original_id, o.name AS original, o.category, o.pixels, "
        "o.file_bytes AS original_bytes, o.format AS original_format, "
        "o.artifact_hash AS original_hash, m.id AS method_id, m.name AS method, m.kind, m.codec, "
        "r.operating_point, r.variant, r.rate_bits, r.meta, c.id AS candidate_id, c.replicate, "
        "c.seed FROM candidates c JOIN representations r ON r.id = c.representation_id "
        "JOIN methods m ON m.id = r.method_id JOIN originals o ON o.id = r.original_id "
        "WHERE o.id IN (SELECT original_id FROM sources) "
        "ORDER BY m.name, r.operating_point, o.name, r.variant, c.replicate"
    )
    if scope is not None and not points.empty:
        configured = pd.MultiIndex.from_tuples(
            [(method, point) for method, (labels, _) in scope.items() for point in labels],
            names=["method_id", "operating_point"],
        )
        replicates = points["method_id"].map({m: r for m, (_, r) in scope.items()})
        keep = (
            pd.MultiIndex.from_frame(points[["method_id", "operating_point"]]).isin(configured)
            & (points["replicate"] < replicates.fillna(0)).to_numpy()
        )
        points = points[keep].reset_index(drop=True)
    points = points.drop(columns=["method_id"])
    if points.empty:
        return pd.DataFrame(columns=[*ID_COLUMNS, "rate_bytes", "rate_bits", "bpp"])
    points["original_format"] = original_formats(store, points)
    points = points.drop(columns=["original_hash"])
    points["rate_bits"] = points["rate_bits"].astype("Int64")  # <NA>: rate unknown
    points["seed"] = points["seed"].astype("Int64")  # <NA>: deterministic codec
    rate_bits = points["rate_bits"].astype("float64")  # NaN where the rate is unknown
    points["rate_bytes"] = rate_bits / 8
    points["bpp"] = rate_bits / points["pixels"]
    for column, values in meta_columns(points.pop("meta")).items():
        points[column] = values
    scores = store.frame("SELECT candidate_id, metric, value FROM scores")
    if not scores.empty:
        wide = scores.pivot(index="candidate_id", columns="metric", values="value")
        points = points.merge(wide, left_on="candidate_id", right_index=True, how="left")
    return points


def metrics_table(store: Store) -> pd.DataFrame:
    """The store's ``metrics`` table, in the order its rows were written (for
    :meth:`semcomp.analysis.scores.Scores.from_frame`)."""
    return store.frame("SELECT * FROM metrics ORDER BY rowid")


def study_scores(store: Store) -> Scores:
    """What each score of the study is (key, display name, direction, range, kind)."""
    return Scores.from_frame(metrics_table(store))


def set_points(store: Store, scope: Scope | None = None) -> pd.DataFrame:
    """Set metrics' values (FID, KID): one row per metric × method × operating point with
    ``n`` (the originals it is over) and its CI, restricted to ``scope`` as
    :func:`rd_points` is. Empty (with :data:`SET_COLUMNS`) in a store without any."""
    has_table = store.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'set_scores'"
    ).fetchone()
    if not has_table:
        return pd.DataFrame(columns=SET_COLUMNS)
    rows = store.frame(
        "SELECT s.metric, m.id AS method_id, m.name AS method, s.operating_point, s.n, "
        "s.value, s.ci_low, s.ci_high FROM set_scores s JOIN methods m ON m.id = s.method_id "
        "ORDER BY s.metric, m.name, s.operating_point"
    )
    if scope is not None and not rows.empty:
        keep = [
            method in scope and point in scope[method][0]
            for method, point in zip(rows["method_id"], rows["operating_point"], strict=True)
        ]
        rows = rows[keep]
    return rows.drop(columns=["method_id"]).reset_index(drop=True)[SET_COLUMNS]


def group_label(*parts: object) -> str:
    """A readable name of a group: ``jpeg · quality=30`` (blank parts left out)."""
    return " · ".join(str(p) for p in parts if p is not None and str(p) not in ("", "nan"))


def meta_columns(meta: pd.Series) -> dict[str, pd.Series]:
    """The :data:`META_COLUMNS` that some row's representation metadata (JSON) holds, each
    a column (None where a row's metadata lacks it). Each distinct JSON text is parsed
    once: rows of one representation, and of many, repeat it."""
    codes, texts = pd.factorize(meta)
    parsed = [json.loads(text) for text in texts]
    columns = {}
    for column in META_COLUMNS:
        values = [m.get(column) for m in parsed]
        if any(value is not None for value in values):
            # as Series.map would have built it from each row's value
            columns[column] = pd.Series(
                pd.Series(values, dtype=object).to_numpy()[codes], index=meta.index
            ).infer_objects()
    return columns


def original_formats(store: Store, points: pd.DataFrame) -> pd.Series:
    """Each row's original file format, WebPs marked lossless or lossy (read from the file's
    chunks, as the store keeps only Pillow's format name)."""
    formats = points["original_format"].astype(object)
    webp = formats == "WEBP"
    digests = points.loc[webp, "original_hash"]
    named = {
        digest: file_format("WEBP", store.read_artifact(digest)) for digest in digests.unique()
    }
    formats = formats.copy()
    formats[webp] = digests.map(named).to_numpy()
    return formats


def lossless_reduction_note(points: pd.DataFrame) -> str | None:
    """What a report should say when ``reduction`` targets met lossless originals."""
    if "original_format" not in points or points.empty:
        return None
    targeted = points[points["operating_point"].astype(str).str.startswith("reduction=")]
    lossless = targeted[targeted["original_format"].isin(LOSSLESS_FORMATS)]
    if lossless.empty:
        return None
    formats = ", ".join(sorted(lossless["original_format"].unique()))
    methods = ", ".join(sorted(lossless["method"].astype(str).unique()))
    return (
        f"reduction targets of {methods} were applied to {lossless['original_id'].nunique()} "
        f"lossless original(s) ({formats}): the reduction is measured against lossless bytes, "
        "so '90 % smaller' than a PNG is a far larger file than 90 % smaller than a JPEG "
        "(see original_format in rd.csv)"
    )


def rate_text(rate_bits: float | None) -> str:
    """A rate for people: whole bytes, or bits when the payload is not a whole number of
    bytes (PQVAE bitstreams)."""
    if rate_bits is None or pd.isna(rate_bits):
        return "rate unknown"
    bits = int(rate_bits)
    return f"{bits // 8:,} bytes" if bits % 8 == 0 else f"{bits:,} bits ({bits / 8:,.1f} bytes)"


def metric_columns(points: pd.DataFrame, scores: Scores | None = None) -> list[str]:
    """The score columns of an :func:`rd_points` table (one value per candidate).

    With ``scores`` (the study's metrics table), every column it lists, whatever its key
    (``psnr``, ``lpips[alex]``), and any bracketed column it does not; without, the
    bracketed columns semcomp writes (``clip_cos[...]``, ``human.A.median[...]``).
    """
    return describe(points, scores).per_candidate(points)


def human_metrics(points: pd.DataFrame, scores: Scores | None = None) -> list[str]:
    """Metric columns that hold human ratings (``human.A.median[similarity]``, ...)."""
    return describe(points, scores).human(points)


def model_metrics(points: pd.DataFrame, scores: Scores | None = None) -> list[str]:
    """Metric columns computed by a model or a formula (CLIP, PSNR, LPIPS, zero-shot, ...):
    every per-candidate score but human ratings."""
    return describe(points, scores).model(points)


#: the name this had when CLIP was the only model metric
clip_metrics = model_metrics


def rate_column(rate: str, *, summary: bool = False) -> str:
    """The column holding ``rate`` (bytes, bits or bpp) in a points or summary table."""
    columns = SUMMARY_RATE_COLUMNS if summary else RATE_COLUMNS
    if rate not in columns:
        raise ValueError(f"rate must be one of {', '.join(RATE_UNITS)}, not {rate!r}")
    return columns[rate]


def per_image_means(points: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per method × operating point × original: the mean of ``columns`` over its
    candidates (diffusion replicates, caption variants), NaN where none has a value."""
    keys = ["method", "operating_point", "original_id"]
    values = points[keys + columns].astype({c: "float64" for c in columns})
    return values.groupby(keys, sort=False, observed=True).mean().reset_index()


def summarise(
    points: pd.DataFrame,
    seed: int = 0,
    image_set: str = UNPAIRED,
    *,
    scores: Scores | None = None,
    set_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per method and operating point: mean rates; mean and median of each metric with 95 % CIs.

    The image is the unit: a method's replicates (diffusion seeds) and caption variants
    of one original are averaged first, then means, medians and their bootstrap CIs are
    taken over originals, as in Table 1, so several samples of one image do not count
    as independent evidence. ``n`` is the number of images; ``{metric} n`` the number
    with a value of that metric (human ratings may exist for only some).
    ``image_set`` names the originals ``points`` was restricted to (:data:`PAIRED`,
    :data:`COMMON`; :data:`UNPAIRED` when each point keeps its own); it is a column.

    ``scores`` says which columns are scores (see :func:`metric_columns`). Set metrics
    (``set_scores``, from :func:`set_points`) join each method × operating point as
    ``{metric} value``, ``{metric} ci_low``, ``{metric} ci_high`` and ``{metric} n``
    (the originals the value is over, which the store fixed when it computed it: it
    may differ from this row's ``n``); see :func:`summary_columns`.
    The CIs of every metric and statistic over the same number of images come from one
    draw of resamples (:func:`semcomp.analysis.stats.mean_and_median_cis`).
    """
    metrics = metric_columns(points, scores)
    rates = ["rate_bytes", "rate_bits", "bpp"]
    codecs = points.groupby(["method", "operating_point"], observed=True)["codec"].first()
    images = per_image_means(points, rates + metrics)
    groups = list(images.groupby(["method", "operating_point"]))
    intervals = iter(
        mean_and_median_cis(
            [group[metric].to_numpy(dtype=float) for _, group in groups for metric in metrics],
            seed,
        )
    )
    rows = []
    for (method, operating_point), group in groups:
        row: dict[str, object] = {
            "method": method,
            "codec": codecs[(method, operating_point)],
            "operating_point": operating_point,
            "n": len(group),
            "image_set": image_set,
            "rate_bytes_mean": group["rate_bytes"].mean(),
            "rate_bits_mean": group["rate_bits"].mean(),
            "bpp_mean": group["bpp"].mean(),
        }
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            scored = np.isfinite(values).any()
            row[f"{metric} n"] = int(np.isfinite(values).sum())
            mean_interval, median_interval = next(intervals)
            row[f"{metric} mean"] = np.nanmean(values) if scored else np.nan
            row[f"{metric} mean_ci_low"], row[f"{metric} mean_ci_high"] = mean_interval
            row[f"{metric} median"] = np.nanmedian(values) if scored else np.nan
            row[f"{metric} median_ci_low"], row[f"{metric} median_ci_high"] = median_interval
        rows.append(row)
    if not rows:  # the columns still say what a summary holds
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    summary = pd.DataFrame(rows)
    if set_scores is not None and not set_scores.empty:
        summary = summary.merge(
            set_columns(set_scores), on=["method", "operating_point"], how="left"
        )
    return summary.sort_values(["method", "bpp_mean"]).reset_index(drop=True)


def set_columns(set_scores: pd.DataFrame) -> pd.DataFrame:
    """:func:`set_points` rows as one row per method × operating point, four columns per
    set metric (``{metric} value``, ``ci_low``, ``ci_high``, ``n``)."""
    keys = ["method", "operating_point"]
    wide = set_scores.pivot_table(
        index=keys, columns="metric", values=["value", "ci_low", "ci_high", "n"], aggfunc="first"
    )
    wide.columns = [f"{metric} {field}" for field, metric in wide.columns]
    # every set metric has its four columns, a value without a CI (KID of one subset) too
    order = [
        f"{metric} {field}"
        for metric in dict.fromkeys(set_scores["metric"])
        for field in ("value", "ci_low", "ci_high", "n")
    ]
    return wide.reindex(columns=order).reset_index()


def summary_columns(metric: str, scores: Scores | None = None) -> tuple[str, str, str, str]:
    """A score's columns in a :func:`summarise` table: (centre, CI low, CI high, n).

    The mean over images for a per-candidate score; the value for a set metric.
    """
    if scores is not None and scores[metric].is_set:
        return (f"{metric} value", f"{metric} ci_low", f"{metric} ci_high", f"{metric} n")
    return (f"{metric} mean", f"{metric} mean_ci_low", f"{metric} mean_ci_high", f"{metric} n")


#: the columns every summary has (metric columns follow them when there are rows)
SUMMARY_COLUMNS = [
    "method",
    "codec",
    "operating_point",
    "n",
    "image_set",
    "rate_bytes_mean",
    "rate_bits_mean",
    "bpp_mean",
]


def compressai_results(
    summary: pd.DataFrame, method: str, description: str, scores: Scores | None = None
) -> dict:
    """CompressAI's results JSON for one method: ``{"name", "description", "results"}``.

    A value that is unknown (the rate of a method without one) is ``null``, so the file
    stays valid JSON. ``n`` and ``image_set`` say which originals each point covers.
    ``results[key]`` is each per-candidate score's mean over images and each set metric's
    value, with ``"{key} ci_low"``/``"{key} ci_high"`` (95 % CIs) and, for a set metric,
    ``"{key} n"``; with ``scores``, ``"metrics"`` says what each key is (display name,
    direction, unit, range, kind).
    """
    rows = summary[summary["method"] == method].sort_values("bpp_mean")

    def values(column: str) -> list:
        return [None if pd.isna(v) else v for v in rows[column].tolist()]

    results: dict[str, list] = {
        "operating_point": rows["operating_point"].tolist(),
        "bpp": values("bpp_mean"),
        "rate_bytes": values("rate_bytes_mean"),
    }
    for column in ("n", "image_set"):
        if column in rows:
            results[column] = values(column)
    keys = []
    for column in rows.columns:
        if column.endswith(" mean") and f"{column.removesuffix(' mean')} mean_ci_low" in rows:
            key = column.removesuffix(" mean")
            keys.append(key)
            results[key] = values(column)
            results[f"{key} ci_low"] = values(f"{key} mean_ci_low")
            results[f"{key} ci_high"] = values(f"{key} mean_ci_high")
        elif column.endswith(" value") and f"{column.removesuffix(' value')} n" in rows:
            key = column.removesuffix(" value")
            keys.append(key)
            results[key] = values(column)
            for field in ("ci_low", "ci_high", "n"):
                results[f"{key} {field}"] = values(f"{key} {field}")
    payload = {"name": method, "description": description, "results": results}
    if scores is not None:
        payload["metrics"] = {
            key: {
                "display": scores[key].display,
                "higher_is_better": scores[key].higher_is_better,
                "unit": scores[key].unit,
                "low": scores[key].low,
                "high": scores[key].high,
                "kind": scores[key].kind,
            }
            for key in keys
        }
    return payload
