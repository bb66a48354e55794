"""A small typed registry: one per extension point (estimators, granularities, op rules, models).

The same key is used in Python, YAML recipes, the CLI and test ids; ``prunekit list`` prints them.
Registries are filled by explicit tables in each subpackage, not by import side effects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from prunekit.errors import ConfigError, UnknownNameError, closest

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to entries of one kind."""

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def register(self, name: str, entry: T, *, aliases: tuple[str, ...] = ()) -> T:
        """Add ``entry`` under ``name``; refuse a name (or alias) that is already taken."""
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ConfigError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def canonical(self, name: str) -> str:
        """Resolve an alias to its registered name; raise with a suggestion if unknown."""
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        known = sorted([*self._entries, *self._aliases])
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}{closest(key, known)}; "
            f"known: {', '.join(sorted(self._entries))}"
        )

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name.lower() in self._entries or name.lower() in self._aliases
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
