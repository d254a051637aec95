"""Human captions imported from a CSV: columns ``image``, ``caption`` and optional ``author``.

``image`` is an original's file name (with or without suffix), its display
name, or its id (the SHA-256 of the file). Several rows for one image give
several captions, each its own representation (``variant``). Malformed rows
are reported with their line numbers and skipped.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import ClassVar

from PIL import Image
from pydantic import model_validator

from semcomp.captioners.base import Caption, Captioner, CaptionFailure, OriginalRef
from semcomp.csvtext import CsvProblem, csv_encoding, csv_records, delimiter_hint, open_csv, shorten
from semcomp.errors import ConfigError
from semcomp.params import PluginParams, StudyPath, file_sha256

COLUMNS = ("image", "caption", "author")


class HumanParams(PluginParams):
    csv: StudyPath
    #: the protocol the captioners followed (recorded, e.g. "a-f" from the paper)
    protocol: str = ""
    #: filled in from the file: edited captions are new captions
    csv_sha256: str | None = None

    operational: ClassVar[frozenset[str]] = frozenset({"csv"})

    @model_validator(mode="after")
    def _hash_file(self) -> HumanParams:
        object.__setattr__(self, "csv_sha256", file_sha256(self.csv, "captions CSV"))
        return self


def read_caption_rows(path: Path) -> tuple[dict[str, list[Caption]], list[tuple[str, str]]]:
    """Captions by image reference, and (``file:line``, reason) for every malformed row.

    UTF-8 (with or without a byte-order mark) or, failing that, Windows-1252 text
    (Excel's plain "CSV"); the caption's rate is always its UTF-8 bytes.
    """
    by_image: dict[str, list[Caption]] = defaultdict(list)
    problems: list[tuple[str, str]] = []
    try:
        handle = open_csv(path, csv_encoding(path))
    except OSError as exc:
        raise ConfigError(f"cannot read captions CSV {path}: {exc.strerror}") from None
    with handle:
        records = csv_records(handle)
        first = next(records, None)
        if isinstance(first, CsvProblem):
            raise ConfigError(f"{path}:{first.line}: captions CSV header: {first.reason}")
        header = [h.strip().lower() for h in (first.cells if first else [])]
        missing = [c for c in ("image", "caption") if c not in header]
        unknown = [shorten(c) for c in header if c not in COLUMNS]
        if missing or unknown:
            raise ConfigError(
                f"{path}: captions CSV needs columns image, caption (optional author); "
                + (delimiter_hint(header) or f"missing {missing}, unknown {unknown}")
            )
        for record in records:
            if isinstance(record, CsvProblem):
                problems.append((f"{path}:{record.line}", record.reason))
                continue
            line = f"{path}:{record.line}"
            if len(record.cells) > len(header):
                problems.append((line, "row has more fields than the header"))
                continue
            row = dict(zip(header, record.cells, strict=False))
            image = (row.get("image") or "").strip()
            text = row.get("caption")
            if not image:
                problems.append((line, "empty image reference"))
                continue
            if text is None:
                problems.append((line, "row has no caption field"))
                continue
            author = (row.get("author") or "").strip() or None
            by_image[image].append(Caption(text=text, author=author))
    return dict(by_image), problems


def references(original: OriginalRef) -> list[str]:
    """The ways a CSV may name an original: id, display name, file name, file stem."""
    path = Path(original.source_path)
    return list(dict.fromkeys([original.id, original.name, path.name, path.stem]))


def reference_owners(originals: list[OriginalRef]) -> dict[str, set[str]]:
    """Which originals each reference could name (more than one: ambiguous)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for original in originals:
        for ref in references(original):
            owners[ref].add(original.id)
    return owners


def match_captions(
    by_image: dict[str, list[Caption]],
    original: OriginalRef,
    owners: dict[str, set[str]],
) -> tuple[list[Caption], list[str]]:
    """Captions naming ``original`` unambiguously, and the ambiguous references skipped.

    ``1.jpg`` in two category folders names both: such a row is not attached to
    either; the id (or a unique display name) must be used instead.
    """
    captions: list[Caption] = []
    ambiguous: list[str] = []
    for ref in references(original):
        if ref not in by_image:
            continue
        if len(owners.get(ref, {original.id})) > 1:
            ambiguous.append(ref)
        else:
            captions += by_image[ref]
    return captions, ambiguous


class HumanCaptioner(Captioner):
    name = "human"
    Params = HumanParams
    needs_images = False

    def __init__(self, params: HumanParams, **kwargs):
        super().__init__(params, **kwargs)
        self.by_image, self._problems = read_caption_rows(params.csv)
        self.owners: dict[str, set[str]] = {}

    def prepare(self, originals: list[OriginalRef]) -> None:
        self.owners = reference_owners(originals)

    def caption(
        self, originals: list[OriginalRef], images: list[Image.Image | None]
    ) -> list[list[Caption] | Exception]:
        results: list[list[Caption] | Exception] = []
        for original in originals:
            captions, ambiguous = match_captions(self.by_image, original, self.owners)
            if not captions and ambiguous:
                results.append(
                    CaptionFailure(
                        f"{self.params.csv.name} names {ambiguous[0]!r}, which matches several "
                        "originals; name this one by its id or a unique name",
                        retryable=False,
                    )
                )
            elif not captions:
                # settled: the captioner key changes with the file, so an edit retries
                results.append(
                    CaptionFailure(
                        f"no caption for {original.name!r} in {self.params.csv.name}",
                        retryable=False,
                    )
                )
            else:
                results.append(captions)
        return results

    def identity(self) -> dict:
        return {"captioner": "human", "csv": str(self.params.csv), "protocol": self.params.protocol}

    def problems(self) -> list[tuple[str, str]]:
        return list(self._problems)
