"""Making MTurk surveys from a study: HIT input CSV, HTML template, images to upload.

``semcomp survey make STUDY --survey A --base-url URL --out DIR`` writes

- ``DIR/images/``: the original and candidate images under opaque names
  (``<item id>_a.png``, ``<item id>_b.png``; ``<item id>.png`` for one-image surveys), to
  upload so that ``URL/<name>`` serves them. Every image is re-encoded losslessly as PNG
  (pixels unchanged), so neither the extension nor the file format tells a worker which
  side is the JPEG candidate;
- ``DIR/hits.csv``: the HIT input CSV, one row per HIT, columns ``item<k>_id`` and
  ``item<k>_left_url``/``item<k>_right_url`` (or ``item<k>_image_url``);
- ``DIR/template.html``: the HIT layout (crowd-html-elements) with the survey's exact
  question wording, HTML-escaped; answers are named ``item<k>__<question>``;
- ``DIR/items.csv``: for the researcher (do not upload), which item is which pair and side.

Items are shuffled; each pair's side order (original left or right) is randomised
and recorded; attention checks (an original next to itself) are inserted at random
positions; the last HIT is filled up with repeats of earlier items so every HIT has the
same slots. The item → (original, candidate) map is stored in ``survey_items``, so
importing the results needs no mapping file.
"""

from __future__ import annotations

import csv
import html
import os
import random
from dataclasses import dataclass, field
from itertools import cycle, islice
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from semcomp.errors import ConfigError
from semcomp.images import sha256_hex
from semcomp.store import Store, content_key, utc_now
from semcomp.surveys.definitions import Question, SurveyDefinition, slug
from semcomp.surveys.importer import register_survey
from semcomp.surveys.mapping import GENERATED_FIELD

if TYPE_CHECKING:
    from semcomp.analysis.rd import Scope

CROWD_ELEMENTS = "https://assets.crowd.aws/crowd-html-elements.js"


@dataclass(frozen=True)
class SurveyItem:
    id: str
    hit: int
    slot: int
    original_id: str
    candidate_id: str | None
    left_side: str
    is_check: bool
    files: tuple[str, ...]


@dataclass
class MadeSurvey:
    out: Path
    batch: str
    hits: int
    items: int
    checks: int
    repeats: int
    hits_csv: Path
    template: Path
    images: Path
    #: what was left out and why (candidates that are not images)
    notes: list[str] = field(default_factory=list)


def answer_name(slot: int, question_id: str) -> str:
    return GENERATED_FIELD.replace("{slot}", str(slot)).replace("{question}", question_id)


def _study_candidates(
    store: Store, methods: list[str] | None, scope: Scope | None, notes: list[str]
) -> list[dict]:
    """The candidates to ask about; those that are not images (decoded embeddings) are
    left out with a note in ``notes``."""
    rows = store.conn.execute(
        "SELECT c.id AS candidate_id, c.artifact_hash, ca.relpath AS candidate_path, "
        "o.id AS original_id, oa.relpath AS original_path, m.name AS method, "
        "m.id AS method_id, r.operating_point, c.replicate, ca.media_type "
        "FROM candidates c JOIN representations r ON r.id = c.representation_id "
        "JOIN methods m ON m.id = r.method_id JOIN originals o ON o.id = r.original_id "
        "JOIN artifacts ca ON ca.hash = c.artifact_hash "
        "JOIN artifacts oa ON oa.hash = o.artifact_hash "
        "WHERE o.id IN (SELECT original_id FROM sources) ORDER BY c.id"
    ).fetchall()
    found = [dict(r) for r in rows]
    if scope is not None:  # what the study file asks for now (as in the report)
        found = [
            r
            for r in found
            if r["method_id"] in scope
            and r["operating_point"] in scope[r["method_id"]][0]
            and r["replicate"] < scope[r["method_id"]][1]
        ]
    if methods:
        known = {r["method"] for r in found}
        unknown = sorted(set(methods) - known)
        if unknown:
            raise ConfigError(
                f"no candidates of method(s) {unknown}; methods with candidates: "
                f"{', '.join(sorted(known)) or 'none (run the study first)'}"
            )
        found = [r for r in found if r["method"] in methods]
    shown = [r for r in found if r["media_type"].startswith("image/")]
    if len(shown) < len(found):
        left = sorted({r["method"] for r in found if not r["media_type"].startswith("image/")})
        notes.append(
            f"left out {len(found) - len(shown)} candidates that are not images (decoded "
            f"embeddings) of method(s) {', '.join(left)}: a survey shows images"
        )
        if not shown:
            raise ConfigError(f"no image candidates to ask about: {notes[-1]}")
    if not shown:
        raise ConfigError("the study has no candidate images yet; run `semcomp run STUDY` first")
    return shown


def make_survey(
    store: Store,
    survey: SurveyDefinition,
    *,
    base_url: str,
    out: Path,
    items_per_hit: int = 5,
    checks: int | None = None,
    seed: int = 0,
    methods: list[str] | None = None,
    scope: Scope | None = None,
) -> MadeSurvey:
    """Write the survey files for every current candidate of the study (or of ``methods``).

    ``scope`` (``Study.scope()``) leaves out methods, operating points and replicates no
    longer in the study file, as the report does.
    """
    if not base_url.strip():
        raise ConfigError("--base-url is required: where the images folder will be served")
    checks = (1 if survey.has_checks else 0) if checks is None else checks
    if checks and not survey.has_checks:
        raise ConfigError(
            f"survey {survey.id} defines no attention check (a pair survey with check_min on a "
            "question); use --checks 0"
        )
    if items_per_hit < 1 or not 0 <= checks < items_per_hit:
        raise ConfigError(
            f"--items-per-hit ({items_per_hit}) must be at least 1 and more than --checks "
            f"({checks})"
        )
    notes: list[str] = []
    candidates = _study_candidates(store, methods, scope, notes)
    rng = random.Random(seed)
    batch = content_key(
        survey.id, seed, items_per_hit, checks, [c["candidate_id"] for c in candidates]
    )
    order = list(candidates)
    rng.shuffle(order)
    per_hit = items_per_hit - checks
    hits_count = -(-len(order) // per_hit)
    repeats = hits_count * per_hit - len(order)
    order += islice(cycle(order), repeats)  # fewer items than repeats: cycle through them
    originals = {c["original_id"]: c["original_path"] for c in candidates}
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    items: list[SurveyItem] = []
    for hit in range(hits_count):
        chosen = order[hit * per_hit : (hit + 1) * per_hit]
        slots: list[dict | None] = [*chosen, *([None] * checks)]
        rng.shuffle(slots)
        for slot, candidate in enumerate(slots, start=1):
            item_id = "i" + sha256_hex(f"{batch}|{hit}|{slot}".encode())[:16]
            if candidate is None:  # attention check: an original next to itself
                original_id = rng.choice(sorted(originals))
                paths = (originals[original_id], originals[original_id])
                entry = (original_id, None, "original", True)
            elif survey.subject == "candidate":
                original_id = candidate["original_id"]
                paths = (candidate["candidate_path"],)
                entry = (original_id, candidate["candidate_id"], "candidate", False)
            else:
                original_id = candidate["original_id"]
                left = "original" if rng.random() < 0.5 else "candidate"
                pair = (originals[original_id], candidate["candidate_path"])
                paths = pair if left == "original" else pair[::-1]
                entry = (original_id, candidate["candidate_id"], left, False)
            files = _copy_images(store, images, item_id, paths)
            items.append(SurveyItem(item_id, hit, slot, *entry, files=files))
    hits_csv = _write_hits(out / "hits.csv", survey, items, base_url, items_per_hit)
    _write_items(out / "items.csv", items)
    template = out / "template.html"
    template.write_text(render_template(survey, items_per_hit), encoding="utf-8")
    now = utc_now()
    with store.transaction():
        register_survey(store, survey)
        store.upsert_many(
            "survey_items",
            (
                "id",
                "survey",
                "batch",
                "hit",
                "slot",
                "original_id",
                "candidate_id",
                "left_side",
                "is_check",
                "created_at",
            ),
            [
                (
                    i.id,
                    survey.id,
                    batch,
                    i.hit,
                    i.slot,
                    i.original_id,
                    i.candidate_id,
                    i.left_side,
                    int(i.is_check),
                    now,
                )
                for i in items
            ],
            key=("id",),
        )
    return MadeSurvey(
        out=out,
        batch=batch,
        hits=hits_count,
        items=len(items),
        checks=sum(i.is_check for i in items),
        repeats=repeats,
        hits_csv=hits_csv,
        template=template,
        images=images,
        notes=notes,
    )


#: the one format (and extension) of every survey image
IMAGE_SUFFIX = ".png"


def _copy_images(
    store: Store, images: Path, item_id: str, paths: tuple[str, ...]
) -> tuple[str, ...]:
    """Write the item's images as ``<item>_a.png``/``<item>_b.png`` (or ``<item>.png``)."""
    names = []
    sides = ("a", "b") if len(paths) == 2 else ("",)
    for side, relpath in zip(sides, paths, strict=True):
        name = f"{item_id}{'_' + side if side else ''}{IMAGE_SUFFIX}"
        target = images / name
        if not target.exists():  # an item id names one batch's image: made once, then kept
            _write_png(store.artifact_path(relpath), target)
        names.append(name)
    return tuple(names)


def _write_png(source: Path, target: Path) -> None:
    """``source`` re-encoded as a PNG, written atomically (PNG is lossless: the decoded
    pixels are unchanged; modes PNG cannot hold, such as CMYK, become RGB)."""
    from PIL import Image

    try:
        with Image.open(source) as image:
            image.load()
            if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            partial = target.with_name(target.name + ".partial")
            image.save(partial, format="PNG")
    except OSError as exc:
        raise ConfigError(f"cannot re-encode survey image {source}: {exc}") from None
    os.replace(partial, target)


def _write_hits(
    path: Path, survey: SurveyDefinition, items: list[SurveyItem], base_url: str, per_hit: int
) -> Path:
    base = base_url.rstrip("/") + "/"
    header: list[str] = []
    for slot in range(1, per_hit + 1):
        header.append(f"item{slot}_id")
        if survey.subject == "pair":
            header += [f"item{slot}_left_url", f"item{slot}_right_url"]
        else:
            header.append(f"item{slot}_image_url")
    by_hit: dict[int, dict[str, str]] = {}
    for item in items:
        row = by_hit.setdefault(item.hit, {})
        row[f"item{item.slot}_id"] = item.id
        urls = [base + quote(name) for name in item.files]
        if survey.subject == "pair":
            row[f"item{item.slot}_left_url"], row[f"item{item.slot}_right_url"] = urls
        else:
            row[f"item{item.slot}_image_url"] = urls[0]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for hit in sorted(by_hit):
            writer.writerow(by_hit[hit])
    return path


def _write_items(path: Path, items: list[SurveyItem]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["item_id", "hit", "slot", "original_id", "candidate_id", "left", "check", "files"]
        )
        for i in items:
            writer.writerow(
                [
                    i.id,
                    i.hit + 1,
                    i.slot,
                    i.original_id,
                    i.candidate_id or "",
                    i.left_side,
                    int(i.is_check),
                    " ".join(i.files),
                ]
            )


# ---- the HTML template ----------------------------------------------------------------

_STYLE = """
  .item { border-top: 1px solid #ccc; padding: 1em 0; }
  .images { display: flex; gap: 1em; }
  .images img { max-width: 45vw; max-height: 60vh; }
  .scale label { margin-right: 0.8em; white-space: nowrap; }
  .note { color: #555; font-style: italic; }
"""


def _text(text: str) -> str:
    """Text for the template: HTML-escaped, and ``$`` as ``&#36;`` so that MTurk does not
    read ``${...}`` in a question as one of the HIT's input columns."""
    return html.escape(text, quote=True).replace("$", "&#36;")


def _question_html(question: Question, slot: int) -> str:
    name = _text(answer_name(slot, question.id))
    parts = [f"<fieldset><legend>{_text(question.text)}</legend>"]
    if question.note:
        parts.append(f'<p class="note">{_text(question.note)}</p>')
    if question.kind == "scale":
        parts.append('<div class="scale">')
        for value in range(question.low, question.high + 1):
            label = {question.low: question.low_label, question.high: question.high_label}.get(
                value, ""
            )
            text = f"{value}" + (f" ({_text(label)})" if label else "")
            parts.append(
                f'<label><input type="radio" name="{name}" value="{value}" required> {text}</label>'
            )
        parts.append("</div>")
    elif question.kind == "text":
        hint = f"up to {question.max_items}, separated by commas" if question.max_items > 1 else ""
        label = f' label="{_text(hint)}"' if hint else ""
        parts.append(f'<crowd-input name="{name}"{label} required></crowd-input>')
    else:
        parts.append(f'<div class="choice" data-max="{question.max_items}">')
        for option in question.options:
            option_name = _text(f"{answer_name(slot, question.id)}__{slug(option)}")
            parts.append(f'<crowd-checkbox name="{option_name}">{_text(option)}</crowd-checkbox>')
        parts.append("</div>")
    parts.append("</fieldset>")
    return "\n".join(parts)


def render_template(survey: SurveyDefinition, items_per_hit: int) -> str:
    """The HIT's HTML: ``${item<k>_...}`` placeholders are filled by MTurk from hits.csv."""
    sections = []
    for slot in range(1, items_per_hit + 1):
        if survey.subject == "pair":
            images = (
                f'<img src="${{item{slot}_left_url}}" alt="Image 1 of pair {slot}">'
                f'<img src="${{item{slot}_right_url}}" alt="Image 2 of pair {slot}">'
            )
        else:
            images = f'<img src="${{item{slot}_image_url}}" alt="Image {slot}">'
        questions = "\n".join(_question_html(q, slot) for q in survey.questions)
        sections.append(
            f'<section class="item"><h3>{slot} of {items_per_hit}</h3>\n'
            f'<div class="images">{images}</div>\n{questions}\n</section>'
        )
    instructions = _text(survey.instructions or survey.name)
    return (
        f'<script src="{CROWD_ELEMENTS}"></script>\n<style>{_STYLE}</style>\n'
        f"<crowd-form>\n"
        f'<crowd-instructions link-text="View instructions" link-type="button">\n'
        f"<short-summary><p>{instructions}</p></short-summary>\n"
        f"<detailed-instructions><h3>{_text(survey.name)}</h3><p>{instructions}</p>"
        f"</detailed-instructions>\n</crowd-instructions>\n"
        f"<p>{instructions}</p>\n" + "\n".join(sections) + "\n</crowd-form>\n" + _LIMIT_SCRIPT
    )


#: refuse to submit fewer than one or more choices than a question allows (the importer
#: fails an answer with no option chosen as blank, like any other blank answer)
_LIMIT_SCRIPT = """<script>
document.querySelector('crowd-form').addEventListener('submit', function (event) {
  var problem = '';
  document.querySelectorAll('.choice').forEach(function (group) {
    var boxes = Array.prototype.slice.call(group.querySelectorAll('crowd-checkbox'));
    var chosen = boxes.filter(function (box) { return box.checked; }).length;
    if (chosen < 1) {
      problem = 'Please choose at least one option in each list.';
    } else if (chosen > Number(group.dataset.max)) {
      problem = 'Please choose at most ' + group.dataset.max + ' options in each list.';
    }
  });
  if (problem) {
    event.preventDefault();
    alert(problem);
  }
});
</script>
"""
