"""One registry class; one instance per plugin family.

Entries are lazy ``"module:attribute"`` strings so that listing or validating
names never imports torch. Third parties add entries through the Python entry
point group given to the registry (e.g. ``semcomp.codecs``): an entry point
named ``avif`` whose object is ``semcomp_avif:AvifCodec`` makes
``codec = "avif"`` valid in a study file.

Each family has a base class: an entry point whose object is not a subclass of
it is refused with one line naming the distribution. A plugin name that is
already a built-in's, or another distribution's, is refused with a warning
naming both (on the ``semcomp`` logger, and in ``semcomp plugins``); a study
that names it gets an error saying why.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, EntryPoints, entry_points
from typing import Any

from semcomp.errors import ConfigError

log = logging.getLogger(__name__)

#: every plugin family: its title (as ``semcomp plugins`` and the README name it) → its
#: registry, as a lazy ``"module:ATTRIBUTE"`` string
PLUGIN_FAMILIES = {
    "captioners": "semcomp.captioners:CAPTIONERS",
    "reconstructors": "semcomp.reconstructors:RECONSTRUCTORS",
    "pixel codecs": "semcomp.codecs:CODECS",
    "text codecs": "semcomp.codecs:TEXT_CODECS",
    "embedding codecs": "semcomp.codecs.embedding:EMBEDDING_CODECS",
    "embedders": "semcomp.metrics:EMBEDDERS",
    "metrics": "semcomp.metrics:METRICS",
    "survey definitions": "semcomp.surveys.definitions:SURVEYS",
}


@dataclass(frozen=True)
class PluginSource:
    """Where a registered name comes from: semcomp itself, or an installed distribution."""

    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution is None

    def __str__(self) -> str:
        return "built-in" if self.builtin else f"{self.distribution} {self.version}"


BUILTIN = PluginSource()


@dataclass(frozen=True)
class Entry:
    """One registered name: what it points at and where it comes from."""

    name: str
    target: str
    source: PluginSource


def import_target(target: str) -> Any:
    """The object a ``"package.module:Attribute.path"`` string names."""
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


#: every installed distribution's entry points, read once per ``sys.path``: reading them
#: walks every distribution's metadata (a few hundred in a full environment), and each
#: family used to do it for its own group
_installed: dict[tuple[str, ...], EntryPoints] = {}


def installed_entry_points(group: str) -> EntryPoints:
    """The entry points of ``group`` in the distributions on today's ``sys.path``."""
    where = tuple(sys.path)
    if where not in _installed:
        _installed.clear()
        _installed[where] = entry_points()
    return _installed[where].select(group=group)


def _source(ep: EntryPoint) -> PluginSource:
    dist = ep.dist
    if dist is None:  # an entry point built by hand, not read from an installed distribution
        return PluginSource("an unknown distribution", "?")
    return PluginSource(dist.metadata["Name"] or dist.name, dist.version)


class Registry:
    """Names → lazily imported objects for one plugin family.

    ``base`` is the family's base class as a lazy ``"module:Class"`` string: every
    object the registry hands out is a subclass of it, or with ``instances`` an
    instance of it (a family of data, such as survey definitions, rather than code).
    ``named_by``: an attribute of the object that must equal its registered name (a
    survey definition's ``id``, under which its ratings are stored).
    """

    def __init__(
        self,
        family: str,
        entry_point_group: str | None = None,
        base: str | None = None,
        *,
        instances: bool = False,
        named_by: str | None = None,
    ):
        self.family = family
        self.entry_point_group = entry_point_group
        self.base = base
        self.instances = instances
        #: the attribute of each object that must equal the name it is registered under
        self.named_by = named_by
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, Any] = {}
        #: plugin names refused because of a clash → why (one line naming both sides)
        self._refused: dict[str, str] = {}
        self._entry_points_read = False

    def register(self, name: str, target: str) -> None:
        """Register the built-in ``name`` → ``"package.module:Attribute"``; duplicates are
        rejected."""
        if name in self._entries:
            raise ValueError(
                f"{self.family} {name!r} is already registered as {self._entries[name].target!r}"
            )
        if ":" not in target:
            raise ValueError(
                f"{self.family} target must look like 'module:Attribute', got {target!r}"
            )
        self._entries[name] = Entry(name, target, BUILTIN)

    def _read_entry_points(self) -> None:
        if self._entry_points_read or self.entry_point_group is None:
            return
        self._entry_points_read = True
        offered: dict[str, list[Entry]] = {}
        for ep in installed_entry_points(self.entry_point_group):
            entry = Entry(ep.name, ep.value, _source(ep))
            same = offered.setdefault(ep.name, [])
            if entry not in same:  # one distribution seen twice on sys.path is one offer
                same.append(entry)
        for name, entries in offered.items():
            if name in self._entries:  # built-ins are registered at import, before this
                for entry in entries:
                    self._refuse(
                        name,
                        f"{self.family} {name!r} from {entry.source} ({entry.target}) clashes "
                        f"with the built-in {self.family} {name!r} "
                        f"({self._entries[name].target}); the plugin is refused",
                    )
            elif len(entries) > 1:
                both = " and ".join(f"{e.source} ({e.target})" for e in entries)
                self._refuse(
                    name,
                    f"{self.family} {name!r} is provided by both {both}; both are refused "
                    "until one is uninstalled",
                )
            else:
                self._entries[name] = entries[0]

    def rescan(self) -> None:
        """Forget the plugins read from entry points (built-ins stay): the next lookup reads
        the installed distributions again, e.g. after installing a plugin in this process."""
        self._entries = {n: e for n, e in self._entries.items() if e.source.builtin}
        self._loaded = {n: obj for n, obj in self._loaded.items() if n in self._entries}
        self._refused = {}
        self._entry_points_read = False
        _installed.clear()

    def _refuse(self, name: str, reason: str) -> None:
        self._refused[name] = (
            f"{self._refused[name]}; {reason}" if name in self._refused else reason
        )
        log.warning(reason)

    def names(self) -> list[str]:
        self._read_entry_points()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Every registered name with its target and source, by name."""
        return [self._entries[name] for name in self.names()]

    def refused(self) -> dict[str, str]:
        """Plugin names refused because they clash, with the reason naming both sides."""
        self._read_entry_points()
        return dict(self._refused)

    def source(self, name: str) -> PluginSource:
        self.check(name)
        return self._entries[name].source

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> None:
        """Raise a :class:`ConfigError` suggesting close matches if ``name`` is unknown."""
        if name in self:
            return
        if name in self._refused:
            raise ConfigError(self._refused[name])
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown {self.family} {name!r}{hint} (known: {', '.join(self.names())})"
        )

    def get(self, name: str) -> Any:
        """Import and return the class registered under ``name``.

        A plugin that cannot be imported, or is not a subclass of the family's base
        class, is a :class:`ConfigError` of one line naming its distribution.
        """
        self.check(name)
        if name not in self._loaded:
            entry = self._entries[name]
            where = f"{self.family} {name!r} from {entry.source} ({entry.target})"
            try:
                obj = import_target(entry.target)
            except (ImportError, AttributeError) as exc:
                if entry.source.builtin:
                    raise  # a missing extra or a bug: the built-in's own error says which
                raise ConfigError(
                    f"{where} cannot be imported: {type(exc).__name__}: {exc}"
                ) from None
            if self.base is not None:
                base = import_target(self.base)
                if self.instances:
                    fits, wanted = isinstance(obj, base), "an instance"
                else:
                    fits, wanted = isinstance(obj, type) and issubclass(obj, base), "a subclass"
                if not fits:
                    raise ConfigError(
                        f"{where} is refused: it is not {wanted} of "
                        f"{base.__module__}.{base.__qualname__}"
                    )
                own = getattr(obj, self.named_by, name) if self.named_by else name
                if own != name:
                    raise ConfigError(
                        f"{where} is refused: its {self.named_by} is {own!r}; the entry point "
                        f"must be named by it"
                    )
            self._loaded[name] = obj
            (log.debug if entry.source.builtin else log.info)("%s loaded", where)
        return self._loaded[name]
