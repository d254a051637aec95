"""Class tables of the named datasets: ids, human-readable names and prompt templates.

Each table is a data file (``classes/<dataset>.toml``) validated when it is
loaded: ``ids`` (the labels as the dataset writes them: folder names, WordNet
ids, breed names) and ``names`` (what a prompt says) have the same length,
ids are unique, no name is empty or a WordNet id, and every template holds
exactly one ``{c}`` and no other brace. A table may borrow its ids and names
(``ids_from``) or its templates (``templates_from``) from another table.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources

from semcomp.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

WORDNET_ID = re.compile(r"^n\d{8}$")


def normalised(label: str) -> str:
    """Case, underscores, hyphens and runs of spaces do not tell two class labels apart."""
    return re.sub(r"[\s_\-]+", " ", str(label).strip().lower())


@dataclass(frozen=True)
class ClassTable:
    name: str
    title: str
    ids: tuple[str, ...]
    names: tuple[str, ...]
    #: prompt templates with ``{}`` where the class name goes (``{c}`` in the data file)
    templates: tuple[str, ...]
    #: the Hugging Face column that holds this dataset's label, when it is not ``label``
    label_column: str | None = None
    #: ids may be a subset of the table (Tiny-ImageNet's 200 of ImageNet's 1000 WordNet ids)
    borrowed: bool = False
    #: labels that are not classes (Caltech-101's clutter folder): their images are left out
    exclude: tuple[str, ...] = ()

    def lookup(self) -> dict[str, int]:
        """Normalised id or name → row (a name two rows share is left out; ids always count)."""
        by_name: dict[str, int] = {}
        ambiguous: set[str] = set()
        for row, name in enumerate(self.names):
            key = normalised(name)
            if key in by_name:
                ambiguous.add(key)
            by_name[key] = row
        rows = {key: row for key, row in by_name.items() if key not in ambiguous}
        rows.update({normalised(class_id): row for row, class_id in enumerate(self.ids)})
        return rows


def _template(text: object, where: str) -> str:
    if not isinstance(text, str) or text.count("{c}") != 1:
        raise ConfigError(f"{where}: template {text!r} must hold exactly one {{c}}")
    if text.replace("{c}", "").count("{") or text.replace("{c}", "").count("}"):
        raise ConfigError(f"{where}: template {text!r} has a brace besides {{c}}")
    return text.replace("{c}", "{}")


def _strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    values = data.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {key} must be a non-empty list")
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{where}: every entry of {key} must be a non-empty string")
    return tuple(values)


def packaged_toml(folder: str, name: str, missing: str) -> str:
    """The text of ``semcomp/datasets/FOLDER/NAME.toml`` (package data); ``missing`` is the
    :class:`ConfigError`'s message when there is no such file."""
    try:
        return (
            resources.files("semcomp.datasets")
            .joinpath(folder, f"{name}.toml")
            .read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        raise ConfigError(missing) from None


@cache
def class_table(name: str) -> ClassTable:
    """The validated table of a named dataset (see the module docstring)."""
    where = f"semcomp/datasets/classes/{name}.toml"
    text = packaged_toml("classes", name, f"no class table for dataset {name!r}")
    data = tomllib.loads(text)
    unknown = set(data) - {"title", "ids", "names", "templates", "label_column"}
    unknown -= {"ids_from", "templates_from", "exclude"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    if "ids_from" in data:
        source = class_table(data["ids_from"])
        ids, names = source.ids, source.names
    else:
        ids, names = _strings(data, "ids", where), _strings(data, "names", where)
    if len(ids) != len(names):
        raise ConfigError(f"{where}: {len(ids)} ids but {len(names)} names")
    if len({normalised(i) for i in ids}) != len(ids):
        twice = sorted({i for i in ids if [normalised(j) for j in ids].count(normalised(i)) > 1})
        raise ConfigError(f"{where}: ids listed twice: {twice[:5]}")
    wordnet = [n for n in names if WORDNET_ID.match(n)]
    if wordnet:
        raise ConfigError(f"{where}: names must be readable, not WordNet ids ({wordnet[:3]})")
    if "templates_from" in data:
        templates = class_table(data["templates_from"]).templates
    else:
        templates = tuple(_template(t, where) for t in _strings(data, "templates", where))
    return ClassTable(
        name=name,
        title=str(data.get("title", name)),
        ids=ids,
        names=tuple(names),
        templates=templates,
        label_column=data.get("label_column"),
        borrowed="ids_from" in data,
        exclude=tuple(data.get("exclude", ())),
    )
