"""Writing files in the exact format of MTurk batch results (both answer layouts)."""

from __future__ import annotations

import csv
import html
import json
import random
from html.parser import HTMLParser
from pathlib import Path

from semcomp.store import Store

STANDARD = [
    "HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime",
    "MaxAssignments", "RequesterAnnotation", "AssignmentDurationInSeconds",
    "AutoApprovalDelayInSeconds", "Expiration", "NumberOfSimilarHITs", "LifetimeInSeconds",
    "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime", "SubmitTime",
    "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
    "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate", "Last7DaysApprovalRate",
]  # fmt: skip


def flatten(answer: dict, prefix: str = "") -> dict[str, str]:
    """A crowd-form answer object as MTurk's flattened ``Answer.*`` columns."""
    flat: dict[str, str] = {}
    for key, value in answer.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat |= flatten(value, name)
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        else:
            flat[name] = str(value)
    return flat


def assignment(
    number: int,
    worker: str,
    inputs: dict[str, str],
    answers: dict,
    *,
    hit: str = "",
    status: str = "Submitted",
    seconds: int = 120,
    minute: int | None = None,
    assignment_id: str = "",
) -> dict:
    minute = number % 60 if minute is None else minute
    return {
        "HITId": hit or f"3HIT{number // 10:06d}",
        "AssignmentId": assignment_id or f"3ASSIGN{number:08d}",
        "WorkerId": worker,
        "AssignmentStatus": status,
        "AcceptTime": f"Fri Jun 08 09:{minute:02d}:00 PDT 2012",
        "SubmitTime": f"Fri Jun 08 10:{minute:02d}:50 PDT 2012",
        "WorkTimeInSeconds": str(seconds),
        "LifetimeApprovalRate": "100% (12/12)",
        "inputs": inputs,
        "answers": answers,
    }


def write_batch_results(
    path: Path,
    assignments: list[dict],
    *,
    layout: str = "json",
    encoding: str = "utf-8",
    extra_columns: dict[str, str] | None = None,
) -> Path:
    """``layout``: ``json`` (one Answer.taskAnswers column) or ``flat`` (Answer.<name>...)."""
    inputs = list(dict.fromkeys(k for a in assignments for k in a["inputs"]))
    if layout == "json":
        answer_columns = ["taskAnswers"]
    else:
        answer_columns = sorted({k for a in assignments for k in flatten(a["answers"])})
    extra = extra_columns or {}
    header = [*STANDARD, *[f"Input.{k}" for k in inputs],
              *[f"Answer.{k}" for k in answer_columns], *extra, "Approve", "Reject"]  # fmt: skip
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for a in assignments:
            row = {c: "" for c in header}
            row |= {k: v for k, v in a.items() if k in STANDARD}
            row["Title"] = "Rate how similar two images are"
            row["Reward"] = "$0.10"
            row["CreationTime"] = "Fri Jun 08 09:00:00 PDT 2012"
            row |= {f"Input.{k}": v for k, v in a["inputs"].items()}
            if layout == "json":
                row["Answer.taskAnswers"] = json.dumps([a["answers"]])
            else:
                for key in answer_columns:
                    row[f"Answer.{key}"] = flatten(a["answers"]).get(key, "")
            row |= extra
            writer.writerow([row[c] for c in header])
    return path


def candidates(store: Store) -> list[dict]:
    """The study's candidates with their original's file name and a URL of the candidate."""
    rows = store.conn.execute(
        "SELECT c.id, c.artifact_hash, o.id AS original_id, o.source_path, a.relpath, "
        "m.name AS method, r.operating_point FROM candidates c "
        "JOIN representations r ON r.id = c.representation_id "
        "JOIN methods m ON m.id = r.method_id JOIN originals o ON o.id = r.original_id "
        "JOIN artifacts a ON a.hash = c.artifact_hash ORDER BY c.id"
    )
    return [
        dict(r)
        | {
            "original_file": Path(r["source_path"]).name,
            "url": f"https://images.example.org/study/{Path(r['relpath']).name}",
        }
        for r in rows
    ]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class TemplateFields(HTMLParser):
    """The form fields of a rendered ``template.html``, as MTurk's workers see them: per item
    section (slot 1, 2, ...) and per question fieldset (in order), the radio buttons
    (name, value), text inputs (name) and checkboxes (name, label)."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[list[dict]] = []
        self._checkbox: list | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append([])
        elif tag == "fieldset":
            self.sections[-1].append({"radios": [], "inputs": [], "checkboxes": []})
        elif tag == "input" and attributes.get("type") == "radio":
            self.sections[-1][-1]["radios"].append((attributes["name"], attributes["value"]))
        elif tag == "crowd-input":
            self.sections[-1][-1]["inputs"].append(attributes["name"])
        elif tag == "crowd-checkbox":
            self._checkbox = [attributes["name"], ""]

    def handle_data(self, data: str) -> None:
        if self._checkbox is not None:
            self._checkbox[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "crowd-checkbox" and self._checkbox is not None:
            self.sections[-1][-1]["checkboxes"].append(tuple(self._checkbox))
            self._checkbox = None


def simulate(
    out: Path,
    survey,
    workers: int,
    seed: int = 1,
    *,
    scale_form: str = "value",
    failing: frozenset[str] = frozenset(),
) -> tuple[list[dict], set]:
    """MTurk assignments answering every HIT of ``out/hits.csv`` through the field names of
    ``out/template.html`` (not the importer's own naming). Attention checks are answered
    correctly, except by the workers in ``failing`` (who answer them with the lowest value).
    ``scale_form``: ``value`` (``{name: "7"}``) or ``radio`` (MTurk's form of a radio group:
    ``{name: {"1": false, ..., "7": true, ...}}``). Unchosen checkboxes are ``{"on": false}``.
    Returns the assignments and the simulated (worker, original, candidate, question, answer)
    of the items that are not checks."""
    rng = random.Random(seed)
    items = {row["item_id"]: row for row in read_csv(out / "items.csv")}
    form = TemplateFields((out / "template.html").read_text(encoding="utf-8"))
    assert len(form.sections[0]) == len(survey.questions)
    assignments, expected = [], set()
    for hit_number, hit in enumerate(read_csv(out / "hits.csv")):
        for w in range(workers):
            worker = f"A{w:03d}WORKER"
            answers: dict = {}
            for key, item_id in hit.items():
                if not key.endswith("_id"):
                    continue
                item = items[item_id]
                fields = form.sections[int(key[len("item") : -len("_id")]) - 1]
                for question, field in zip(survey.questions, fields, strict=True):
                    if question.kind == "scale":
                        (name,) = {n for n, _ in field["radios"]}
                        values = [v for _, v in field["radios"]]
                        if item["check"] == "0":
                            value = rng.choice(values)
                        else:
                            value = values[0] if worker in failing else values[-1]
                        if scale_form == "radio":
                            answers[name] = {v: v == value for v in values}
                        else:
                            answers[name] = value
                        answer = float(value)
                    elif question.kind == "text":
                        (name,) = field["inputs"]
                        answer = ", ".join(rng.sample(["dog", "tree", "sky", "car"], 2))
                        answers[name] = answer
                    else:
                        boxes = field["checkboxes"]
                        chosen = sorted(rng.sample(range(len(boxes)), 2))
                        for index, (name, _) in enumerate(boxes):
                            answers[name] = {"on": index in chosen}
                        answer = ", ".join(html.unescape(boxes[i][1]) for i in chosen)
                    if item["check"] == "0":
                        expected.add(
                            (worker, item["original_id"], item["candidate_id"], question.id, answer)
                        )
            number = len(assignments)
            assignments.append(
                assignment(
                    number,
                    worker,
                    hit,
                    answers,
                    hit=f"3HIT{survey.id}{hit_number:05d}",
                    assignment_id=f"3ASSIGN{survey.id}{number:08d}",
                )
            )
    return assignments, expected


def import_simulated_survey(
    store: Store, survey_id: str, folder: Path, *, workers: int = 3, layout: str = "json"
):
    """``survey make`` for every candidate, simulated MTurk answers, and their import."""
    from semcomp.surveys.definitions import load_survey
    from semcomp.surveys.importer import import_ratings
    from semcomp.surveys.make import make_survey

    survey = load_survey(survey_id)
    out = folder / f"survey-{survey_id}"
    make_survey(store, survey, base_url="https://images.example.org", out=out, items_per_hit=3)
    assignments, _ = simulate(out, survey, workers=workers)
    results = write_batch_results(folder / f"results-{survey_id}.csv", assignments, layout=layout)
    return import_ratings(store, results, survey)
