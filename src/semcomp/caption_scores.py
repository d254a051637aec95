"""A study's captions scored against its human reference captions (``semcomp captions score``).

The textual-transform study captions each original three ways; when a study has
human captions (a method with ``captioner = "human"``: they are stored with
captioner ``human``), those are the references, and every other caption the study
sends as a payload (a textual method's BLIP or LLM caption, or captions imported
with an external method) is scored against them with the caption metrics of
``semcomp clipcap eval`` (BLEU-4, ROUGE-L, CIDEr-D, and METEOR where Java is):
one row per method and operating point, over the originals that have references
(each caption variant is one candidate of its original), with the mean payload bytes
sent (the rate; empty for a method without one). The human captions
themselves are the references and are not scored.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: the captioner whose captions are the references
REFERENCE_CAPTIONER = "human"
#: the columns of ``caption_scores.csv``, before the metrics
COLUMNS = ["method", "operating_point", "originals", "captions", "mean_bytes"]

REFERENCES = (
    "SELECT original_id, text FROM captions WHERE captioner = ? AND trim(text) != '' "
    "ORDER BY original_id, variant"
)
#: every representation whose payload is a caption, with the captioner that wrote it
CANDIDATES = """
    SELECT m.name AS method, r.operating_point, r.original_id, r.variant, r.rate_bits,
           json_extract(r.meta, '$.caption') AS text, c.captioner
    FROM representations r
    JOIN methods m ON m.id = r.method_id
    LEFT JOIN captions c ON c.id = json_extract(r.meta, '$.caption_id')
    WHERE json_extract(r.meta, '$.caption') IS NOT NULL
    ORDER BY m.name, r.operating_point, r.original_id, r.variant
"""


def reference_captions(store: Any) -> dict[str, list[str]]:
    """The human captions of each original that has some."""
    references: dict[str, list[str]] = {}
    for original_id, text in store.conn.execute(REFERENCES, (REFERENCE_CAPTIONER,)):
        references.setdefault(original_id, []).append(text)
    return references


def study_caption_scores(store: Any, *, meteor: bool | None = None) -> pd.DataFrame:
    """One row per method and operating point whose captions meet human references (empty
    without references): ``COLUMNS``, the metrics, and the tokenizer used."""
    from semcomp.downstream.caption_eval import METRICS, score_caption_sets

    references = reference_captions(store)
    if not references:
        return pd.DataFrame(columns=[*COLUMNS, *METRICS, "tokenizer"])
    candidates = pd.read_sql_query(CANDIDATES, store.conn)
    candidates = candidates[
        (candidates["captioner"] != REFERENCE_CAPTIONER)
        & candidates["original_id"].isin(list(references))
    ]
    groups = dict(list(candidates.groupby(["method", "operating_point"], sort=True)))
    wanted, sets = {}, {}  # every caption of every group scored in one call (one Java start)
    for name, group in groups.items():
        keys = [f"{o}|{v}" for o, v in zip(group["original_id"], group["variant"], strict=True)]
        wanted.update({k: references[o] for k, o in zip(keys, group["original_id"], strict=True)})
        sets[name] = dict(zip(keys, group["text"], strict=True))
    scored = score_caption_sets(wanted, sets, meteor=meteor, subsets=True) if sets else {}
    rows = []
    for (method, point), group in groups.items():
        scores = scored[method, point]
        rows.append(
            {
                "method": method,
                "operating_point": point,
                "originals": group["original_id"].nunique(),
                "captions": len(group),
                "mean_bytes": group["rate_bits"].mean() / 8,  # the payload sent (none: empty)
                **{m: scores.scores.get(m) for m in METRICS},
                "tokenizer": scores.tokenizer,
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, *METRICS, "tokenizer"])


def write_caption_scores(store: Any, folder: Any) -> tuple[list[Any], list[str]]:
    """The report's ``caption_scores.csv`` when the study has human references: the files
    written and notes (METEOR left to ``semcomp captions score``: its Java start-up would
    slow every report down)."""
    from pathlib import Path

    from semcomp.extras import missing_extras

    if not reference_captions(store):
        return [], []
    if missing_extras("downstream"):
        return [], [
            "caption_scores.csv not written: the study has human captions, but scoring "
            'captions needs the downstream extra (pip install "semcomp[downstream]")'
        ]
    table = study_caption_scores(store, meteor=False)
    if table.empty:
        return [], ["caption_scores.csv not written: no caption besides the human ones"]
    path = Path(folder) / "caption_scores.csv"
    table.to_csv(path, index=False)
    return [path], []
