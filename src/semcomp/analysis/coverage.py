"""Which originals an aggregate covers, and what it leaves out.

DESIGN's rule "aggregates compare like with like", as two functions over an
:func:`semcomp.analysis.rd.rd_points` table:

- :func:`curve_images` — (a) a method's curve uses the originals that have a
  candidate at *every one* of its operating points, so its mean at one point
  and at the next describe the same images (a target that fails for some
  images would otherwise make a curve run backwards);
- :func:`common_images` — (b) a comparison between methods uses the originals
  common to the methods compared, after (a), and states that ``n``.

Nothing is dropped silently: every original left out and every method dropped
comes back with its reason (the report writes them to ``left_out.csv`` and
``dropped.csv``; the app shows them). :data:`UNPAIRED` is the per-point
behaviour (each operating point over its own originals), for those who ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from semcomp.analysis.rd import COMMON, PAIRED, UNPAIRED

LEFT_OUT_COLUMNS = ["output", "method", "original_id", "original", "reason"]
DROPPED_COLUMNS = ["output", "method", "reason"]
#: why a method without a rate is not on a rate axis
NO_RATE = "no rate (its candidates have no known size): shown apart from the rate axis"


def methods_without_rate(points: pd.DataFrame) -> list[str]:
    """Methods none of whose candidates has a rate (e.g. imported reconstructions without
    captions): they keep their similarity, but have no place on a rate axis."""
    if points.empty or "rate_bits" not in points:
        return []
    has_rate = points["rate_bits"].notna().groupby(points["method"], observed=True).any()
    return sorted(map(str, has_rate.index[~has_rate]))


def _left_out(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=LEFT_OUT_COLUMNS)


def _dropped(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=DROPPED_COLUMNS)


def _names(points: pd.DataFrame) -> dict[str, str]:
    names = points[["original_id", "original"]].drop_duplicates("original_id", keep="last")
    return dict(zip(names["original_id"], names["original"], strict=True))


def curve_images(points: pd.DataFrame, output: str = "curves") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule (a): each method's rows restricted to the originals with a candidate at every one
    of its operating points.

    Returns ``(kept rows, left out)``; ``left out`` has one row per method and original
    left out, naming the operating points it has no candidate at.
    """
    if points.empty:
        return points, _left_out([])
    names = _names(points)
    complete_pairs: list[tuple] = []
    left: list[dict] = []
    for method, rows in points.groupby("method", sort=True, observed=True):
        all_points = sorted(map(str, rows["operating_point"].unique()))
        pairs = rows[["original_id", "operating_point"]].drop_duplicates()
        counted = pairs.groupby("original_id", observed=True).size()  # points per original
        complete = counted.index[counted == len(all_points)]
        complete_pairs += [(method, original) for original in complete]
        short = pairs[pairs["original_id"].isin(counted.index[counted < len(all_points)])]
        have = short.groupby("original_id", observed=True)["operating_point"].agg(
            lambda ops: set(map(str, ops))
        )
        for original, ops in have.items():
            missing = [p for p in all_points if p not in ops]
            left.append(
                {
                    "output": output,
                    "method": method,
                    "original_id": original,
                    "original": names.get(original),
                    "reason": f"no candidate at operating point(s) {', '.join(missing)} "
                    f"(a curve uses the originals with a candidate at all {len(all_points)})",
                }
            )
    keep = pd.MultiIndex.from_frame(points[["method", "original_id"]]).isin(complete_pairs)
    return points[keep], _left_out(left)


@dataclass
class Coverage:
    """The rows a comparison between methods uses, and what it left out."""

    output: str
    #: the rows compared: the methods kept, over the originals common to them
    points: pd.DataFrame
    #: ``common`` (the originals common to the methods) or ``unpaired`` (each point its own)
    image_set: str
    #: originals covered (the common set; with ``unpaired``, every original present)
    n: int
    methods: list[str] = field(default_factory=list)
    left_out: pd.DataFrame = field(default_factory=lambda: _left_out([]))
    dropped: pd.DataFrame = field(default_factory=lambda: _dropped([]))
    #: one line saying n and, when it is smaller than it could be, which methods limited it
    note: str = ""


def common_images(
    points: pd.DataFrame,
    output: str,
    *,
    unpaired: bool = False,
    dropped: list[tuple[str, str]] = (),
) -> Coverage:
    """Rule (b): the rows of every method in ``points`` over the originals common to them.

    First each method keeps the originals with a candidate at every one of its operating
    points (:func:`curve_images`); then the comparison keeps the originals every method
    has. A method left with no original is dropped; if no original is common to all, the
    method with the fewest originals is dropped (and named) until some are. ``dropped``
    names methods the caller already left out (e.g. no rate), so they are reported too.
    With ``unpaired``, every row is kept (each method and point over its own originals).
    """
    gone = [{"output": output, "method": m, "reason": why} for m, why in dropped]
    methods = sorted(map(str, points["method"].unique())) if not points.empty else []
    if unpaired or points.empty:
        n = int(points["original_id"].nunique()) if not points.empty else 0
        return Coverage(
            output=output,
            points=points,
            image_set=UNPAIRED if unpaired else COMMON,
            n=n,
            methods=methods,
            dropped=_dropped(gone),
            note=f"{output}: n = {n} originals"
            + (" (unpaired: each method and operating point over its own)" if unpaired else ""),
        )
    kept, left_out = curve_images(points, output)
    sets = {m: set(kept.loc[kept["method"] == m, "original_id"].unique()) for m in methods}
    for method in [m for m in methods if not sets[m]]:
        gone.append(
            {
                "output": output,
                "method": method,
                "reason": "no original has a candidate at every one of its operating points",
            }
        )
        del sets[method]
    common = set.intersection(*sets.values()) if sets else set()
    while not common and len(sets) > 1:
        fewest = min(sets, key=lambda m: (len(sets[m]), m))
        gone.append(
            {
                "output": output,
                "method": fewest,
                "reason": f"its {len(sets[fewest])} originals share none with the other methods "
                "compared (with it, no original would be common to all)",
            }
        )
        del sets[fewest]
        common = set.intersection(*sets.values())
    union = set().union(*sets.values()) if sets else set()
    names = _names(points)
    left = [left_out]
    rows = []
    for method, originals in sets.items():
        for original in sorted(originals - common):
            lacking = [m for m, s in sets.items() if original not in s]
            rows.append(
                {
                    "output": output,
                    "method": method,
                    "original_id": original,
                    "original": names.get(original),
                    "reason": f"not common to the methods compared: no usable candidate of "
                    f"{', '.join(lacking)}",
                }
            )
    left.append(_left_out(rows))
    limited = [f"{m} ({len(s)})" for m, s in sorted(sets.items()) if len(s) < len(union)]
    note = f"{output}: n = {len(common)} originals common to {len(sets)} method(s)"
    if limited:
        note += f" (of {len(union)}; limited by {', '.join(limited)})"
    if gone:
        note += "; left out: " + ", ".join(f"{g['method']} ({g['reason']})" for g in gone)
    compared = kept[kept["method"].isin(list(sets)) & kept["original_id"].isin(common)]
    return Coverage(
        output=output,
        points=compared,
        image_set=COMMON,
        n=len(common),
        methods=sorted(sets),
        left_out=pd.concat([f for f in left if not f.empty] or [_left_out([])], ignore_index=True),
        dropped=_dropped(gone),
        note=note,
    )


def curve_coverage(points: pd.DataFrame, *, unpaired: bool = False) -> Coverage:
    """Rule (a) for every method's own curve (summary.csv, rd.png, the method JSON files).

    ``n`` is the number of originals any curve covers; the note names each method that
    lost originals (``jpeg-small: 3 of 4 originals``) and the methods left with none.
    With ``unpaired``, every row is kept.
    """
    output = "curves"
    if unpaired or points.empty:
        return common_images(points, output, unpaired=True)
    kept, left_out = curve_images(points, output)
    methods = sorted(map(str, points["method"].unique()))
    gone = [
        {
            "output": output,
            "method": m,
            "reason": "no original has a candidate at every one of its operating points",
        }
        for m in methods
        if not (kept["method"] == m).any()
    ]
    lost = [
        f"{m}: {kept.loc[kept['method'] == m, 'original_id'].nunique()} of "
        f"{points.loc[points['method'] == m, 'original_id'].nunique()} originals"
        for m in sorted(map(str, left_out["method"].unique()))
    ]
    note = "curves: each method over the originals with a candidate at all its operating points"
    note += f" ({'; '.join(lost)})" if lost else " (every original has all of them)"
    return Coverage(
        output=output,
        points=kept,
        image_set=PAIRED,
        n=int(kept["original_id"].nunique()),
        methods=sorted(map(str, kept["method"].unique())),
        left_out=left_out,
        dropped=_dropped(gone),
        note=note,
    )


#: the comparisons on a rate axis, as the report names them
RATE_COMPARISONS = "iso-satisfaction, Pareto front, BD-rate"


def rate_comparison(points: pd.DataFrame, metric: str, *, unpaired: bool = False) -> Coverage:
    """Rule (b) for the comparisons on a rate axis (iso-satisfaction, Pareto front,
    BD-rate): the candidates with a rate and a ``metric`` score, over the originals common
    to their methods. Methods without a rate, or without ``metric`` scores, are dropped
    and named with that reason."""
    rate_less = methods_without_rate(points)
    scored = (
        set(map(str, points.dropna(subset=[metric])["method"].unique()))
        if metric in points
        else set()
    )
    unscored = sorted(set(map(str, points["method"].unique())) - set(rate_less) - scored)
    reasons = [(m, NO_RATE) for m in rate_less] + [(m, f"no {metric} scores") for m in unscored]
    on_axis = points.dropna(subset=["rate_bits", metric]) if metric in points else points.iloc[:0]
    return common_images(on_axis, RATE_COMPARISONS, unpaired=unpaired, dropped=reasons)


def agreement_comparison(
    points: pd.DataFrame, model_metric: str, human_metric: str, *, unpaired: bool = False
) -> Coverage:
    """Rule (b) for the agreement between a model and a human metric: the candidates with
    both scores, over the originals common to their methods; methods with no such
    candidate are dropped and named."""
    both = points.dropna(subset=[model_metric, human_metric])
    missing = sorted(
        set(map(str, points["method"].unique())) - set(map(str, both["method"].unique()))
    )
    reasons = [(m, f"no candidate with both {model_metric} and {human_metric}") for m in missing]
    return common_images(both, "agreement", unpaired=unpaired, dropped=reasons)


def with_rate_less(points: pd.DataFrame, coverage: Coverage) -> pd.DataFrame:
    """``coverage``'s rows plus those of the methods without a rate over the same originals,
    so that a chart of a comparison on a rate axis draws them as bands beside it."""
    bands = points[
        points["method"].isin(methods_without_rate(points))
        & points["original_id"].isin(coverage.points["original_id"].unique())
    ]
    return pd.concat([coverage.points, bands]) if not bands.empty else coverage.points


def missing_points(points: pd.DataFrame, configured: dict[str, list[str]]) -> pd.DataFrame:
    """Methods and operating points the study asks for (``configured``: method name →
    operating point labels) that have no candidate at all, e.g. a target no original could
    meet: rows for ``dropped.csv`` (output ``curves``), so none vanishes unnamed."""
    have = (
        points.groupby("method", observed=True)["operating_point"].agg(lambda p: set(map(str, p)))
        if not points.empty
        else pd.Series(dtype=object)
    )
    rows = []
    for method, labels in configured.items():
        present = have.get(method, set())
        if not present:
            reason = "no candidate at any operating point (see failures.csv)"
            rows.append({"output": "curves", "method": method, "reason": reason})
            continue
        for label in labels:
            if label not in present:
                reason = f"operating point {label} has no candidate (see failures.csv)"
                rows.append({"output": "curves", "method": method, "reason": reason})
    return _dropped(rows)
