"""Simulated Survey A/B/C ratings, written as an MTurk batch-results file, and their label.

``semcomp demo`` has no people to ask, so that the Surveys and Agreement pages, Table 1's
rating column and the report's survey files are not empty it imports ratings drawn from
this stated random model, through the real importer, and marks the surveys "simulated
ratings" (:func:`simulated_surveys`): the report and the app say so wherever they show them.

The model, per image candidate (decoded embeddings are not images and are not rated):

- its *quality* ``q`` is its scaled CLIP similarity ``clip_(cos+1)/2[...]`` rescaled over the
  study's rated candidates to [0, 1] (min–max; 0.5 when they are all equal), so that even a
  random-weight CLIP spreads it;
- each of :data:`WORKERS_PER_PAIR` distinct workers out of a pool of :data:`WORKER_POOL`
  answers it once; worker ``w`` has a lenience ``b_w ~ N(0, 0.6)`` (in Survey A points);
- Survey A: ``round(1 + 9 q + b_w + e)`` clipped to 1–10, ``e ~ N(0, 1.2)``;
- Survey B: per question ``round(1 + 4 q + 4/9 b_w + e)`` clipped to 1–5, ``e ~ N(0, 0.6)``
  (any other scale likewise: its span times ``q``, lenience scaled by span / 9);
- Survey C: each of the original's standout objects is named, in order, with probability
  ``q`` (else a distractor from :data:`DISTRACTORS`; at most five, at least one); the
  relation is the original's with probability ``q`` (else "is next to"); each of the
  original's adjectives is chosen with probability ``q`` (else a random other of the
  twelve), at most three.

Everything is seeded by (seed, survey, candidate), so a file written again is identical
and importing it again adds nothing.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semcomp.store import Store, content_key
from semcomp.surveys.definitions import SurveyDefinition
from semcomp.surveys.mturk import STANDARD_COLUMNS

#: how these ratings are labelled wherever they appear
SIMULATED = "simulated ratings"
#: study_info key: survey id → the random model its ratings were drawn from
SIMULATED_KEY = "surveys.simulated"
WORKERS_PER_PAIR = 5
WORKER_POOL = 12
DISTRACTORS = ("person", "car", "tree", "building", "dog", "cloud", "road", "bench")
MODEL = (
    "ratings drawn at random around each candidate's min–max-scaled CLIP similarity q "
    "(A: round(1 + 9q + worker lenience N(0, 0.6) + N(0, 1.2)) in 1–10; B: round(1 + 4q + "
    "4/9 lenience + N(0, 0.6)) in 1–5; C: each of the original's objects, relation and "
    "adjectives kept with probability q), 5 simulated workers per pair — not people"
)


@dataclass(frozen=True)
class SceneFacts:
    """What a person would say stands out in an original (Survey C's answers to aim at)."""

    objects: tuple[str, ...]
    relation: str
    adjectives: tuple[str, ...]


def simulated_surveys(store: Store) -> dict[str, str]:
    """Survey id → the random model of its simulated ratings (empty: all real)."""
    return dict(store.get_info(SIMULATED_KEY, {}) or {})


def survey_of(metric: str) -> str | None:
    """``human.A.median[similarity]`` → ``A``; ``None`` for a metric that is not human."""
    match = re.match(r"^human\.([^.\[]+)\.", metric)
    return match.group(1) if match else None


def simulated_label(store: Store, survey_ids: list[str] | tuple[str, ...]) -> str:
    """``"simulated ratings (Surveys A, B)"`` for those of ``survey_ids`` that are simulated,
    else ``""``."""
    simulated = [s for s in survey_ids if s in simulated_surveys(store)]
    if not simulated:
        return ""
    return f"{SIMULATED} (Survey{'s' if len(simulated) > 1 else ''} {', '.join(simulated)})"


def mark_simulated(store: Store, survey_id: str, model: str = MODEL) -> None:
    """Record that ``survey_id``'s ratings are simulated (call in a transaction)."""
    marked = simulated_surveys(store) | {survey_id: model}
    store.set_info(SIMULATED_KEY, marked)


def rated_candidates(store: Store) -> list[dict]:
    """Image candidates with their original's name and quality ``q`` (see the module)."""
    rows = store.frame(
        "SELECT c.id AS candidate_id, o.id AS original_id, o.name AS original, s.metric, "
        "s.value FROM candidates c "
        "JOIN representations r ON r.id = c.representation_id "
        "JOIN originals o ON o.id = r.original_id "
        "JOIN artifacts a ON a.hash = c.artifact_hash "
        "JOIN scores s ON s.candidate_id = c.id "
        "WHERE a.media_type LIKE 'image/%' AND s.metric LIKE 'clip\\_(cos+1)/2[%' ESCAPE '\\' "
        "ORDER BY s.metric, c.id"
    )
    if rows.empty:
        return []
    rows = rows[rows["metric"] == rows["metric"].iloc[0]]  # one CLIP model: the first
    values = rows["value"].to_numpy(dtype=float)
    spread = values.max() - values.min()
    quality = (values - values.min()) / spread if spread > 0 else np.full(len(values), 0.5)
    rows = rows.assign(q=quality)
    return rows[["candidate_id", "original_id", "original", "q"]].to_dict("records")


def _answers(
    survey: SurveyDefinition,
    q: float,
    lenience: float,
    facts: SceneFacts | None,
    rng: np.random.Generator,
) -> dict[str, str]:
    answers: dict[str, str] = {}
    for question in survey.questions:
        if question.kind == "scale":
            span = question.high - question.low
            scale = span / 9  # Survey A's 1–10 is the reference
            noise = rng.normal(0, max(0.6, 1.2 * scale))
            value = round(question.low + span * q + lenience * scale + noise)
            answers[question.id] = str(int(np.clip(value, question.low, question.high)))
        elif question.kind == "text" and question.max_items == 1:  # Survey C's relation
            keep = facts is not None and rng.random() < q
            answers[question.id] = facts.relation if facts and keep else "is next to"
        elif question.kind == "text":  # Survey C's standout objects
            own = facts.objects if facts else ()
            named = [o if rng.random() < q else str(rng.choice(DISTRACTORS)) for o in own]
            named = list(dict.fromkeys(named))[: question.max_items]
            answers[question.id] = ", ".join(named or [str(rng.choice(DISTRACTORS))])
        else:
            own = [a for a in (facts.adjectives if facts else ()) if a in question.options]
            others = [o for o in question.options if o not in own]
            chosen = [a if rng.random() < q else str(rng.choice(others)) for a in own]
            chosen = list(dict.fromkeys(chosen))[: question.max_items]
            answers[question.id] = ", ".join(chosen or [str(rng.choice(question.options))])
    return answers


def write_simulated_results(
    store: Store,
    survey: SurveyDefinition,
    path: Path,
    *,
    facts: dict[str, SceneFacts] | None = None,
    seed: int = 0,
) -> int:
    """Write an MTurk batch-results CSV of simulated answers to ``survey`` about every rated
    candidate (one HIT per candidate, ``Input.original`` = the original's name,
    ``Input.candidate`` = the candidate id, answers named by question id in
    ``Answer.taskAnswers``); ``facts`` by original name aim Survey C's answers. Returns the
    number of assignments written (0: no candidate has a CLIP score yet)."""
    import json

    candidates = rated_candidates(store)
    shared = {
        name
        for (name,) in store.conn.execute(
            "SELECT name FROM originals GROUP BY name HAVING COUNT(*) > 1"
        )
    }
    pool = np.random.default_rng([seed, 7]).normal(0, 0.6, WORKER_POOL)
    header = [
        *STANDARD_COLUMNS[:4],
        *[c for c in STANDARD_COLUMNS[4:] if c not in ("Approve", "Reject")],
        "Input.original",
        "Input.candidate",
        "Answer.taskAnswers",
        "Approve",
        "Reject",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for number, candidate in enumerate(candidates):
            key = content_key("simulated", survey.id, seed, candidate["candidate_id"])
            rng = np.random.default_rng(int(key[:15], 16))
            workers = rng.choice(WORKER_POOL, WORKERS_PER_PAIR, replace=False)
            for worker in sorted(int(w) for w in workers):
                answers = _answers(
                    survey,
                    candidate["q"],
                    float(pool[worker]),
                    (facts or {}).get(candidate["original"]),
                    rng,
                )
                minute, seconds = number % 50, int(rng.integers(20, 240))
                writer.writerow(
                    {
                        "HITId": f"SIM{survey.id}{key[:20].upper()}",
                        "AssignmentId": f"SIM{survey.id}{key[:16].upper()}W{worker:02d}",
                        "WorkerId": f"ASIMULATED{worker:02d}",
                        "AssignmentStatus": "Approved",
                        "Title": f"Survey {survey.id}: {survey.name} ({SIMULATED})",
                        "Reward": "$0.00",
                        "MaxAssignments": str(WORKERS_PER_PAIR),
                        "AcceptTime": f"Sun Nov 01 09:{minute:02d}:00 UTC 2026",
                        "SubmitTime": f"Sun Nov 01 10:{minute:02d}:00 UTC 2026",
                        "WorkTimeInSeconds": str(seconds),
                        "LifetimeApprovalRate": "100% (0/0)",
                        # the original's name, as a person knows it (its id if not unique)
                        "Input.original": candidate["original_id"]
                        if candidate["original"] in shared
                        else candidate["original"],
                        "Input.candidate": candidate["candidate_id"],
                        "Answer.taskAnswers": json.dumps([answers]),
                    }
                )
                written += 1
    return written
