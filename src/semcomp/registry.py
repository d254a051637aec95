"""One registry class; one instance per plugin family.

Entries are lazy ``"module:attribute"`` strings so that listing or validating
names never imports torch. Third parties add entries through the Python entry
point group given to the registry (e.g. ``semcomp.codecs``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from semcomp.errors import ConfigError


class Registry:
    """Names → lazily imported objects for one plugin family."""

    def __init__(self, family: str, entry_point_group: str | None = None):
        self.family = family
        self.entry_point_group = entry_point_group
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        self._entry_points_read = False

    def register(self, name: str, target: str) -> None:
        """Register ``name`` → ``"package.module:Attribute"``; duplicate names are rejected."""
        if name in self._targets:
            raise ValueError(
                f"{self.family} {name!r} is already registered as {self._targets[name]!r}"
            )
        if ":" not in target:
            raise ValueError(
                f"{self.family} target must look like 'module:Attribute', got {target!r}"
            )
        self._targets[name] = target

    def _read_entry_points(self) -> None:
        if self._entry_points_read or self.entry_point_group is None:
            return
        self._entry_points_read = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._targets:
                self._targets[ep.name] = ep.value

    def names(self) -> list[str]:
        self._read_entry_points()
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> None:
        """Raise a :class:`ConfigError` suggesting close matches if ``name`` is unknown."""
        if name in self:
            return
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown {self.family} {name!r}{hint} (known: {', '.join(self.names())})"
        )

    def get(self, name: str) -> Any:
        """Import and return the object registered under ``name``."""
        self.check(name)
        if name not in self._loaded:
            module_name, _, attribute = self._targets[name].partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                obj = getattr(obj, part)
            self._loaded[name] = obj
        return self._loaded[name]
