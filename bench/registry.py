"""One registry per kind of component (datasets, models, attacks, methods).

Components live one per file and register themselves by name with a decorator.
A registry tied to a package is lazy: the names are the package's module files
(``bench/methods/trades.py`` → ``trades``), known without importing torch, and a
module is imported the first time its entry is requested. That keeps planning
(Snakefile parsing, spec validation) fast and lets the code version of a run hash
exactly the files it depends on. Tests walk the registries, so a new entry is
smoke-tested automatically.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")

NOT_COMPONENTS = {"__init__", "base"}


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._files: set[str] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    @property
    def directory(self) -> Path | None:
        if self.package is None:
            return None
        return Path(__file__).parent.joinpath(*self.package.split(".")[1:])

    def names(self) -> list[str]:
        if self._files is None:   # component files do not change while a process runs
            self._files = set() if self.directory is None else {
                p.stem for p in self.directory.glob("*.py")
                if p.stem not in NOT_COMPONENTS and not p.stem.startswith("_")}
        return sorted(self._files | set(self._entries))

    def check(self, name: str) -> str:
        """Raise a clear error for unknown names; does not import anything."""
        if name not in self.names():
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return name

    def source_file(self, name: str) -> Path:
        self.check(name)
        if self.directory is None:
            raise ValueError(f"{self.kind} registry has no source files")
        return self.directory / f"{name}.py"

    def get(self, name: str) -> T:
        self.check(name)
        if name not in self._entries and self.package is not None:
            importlib.import_module(f"{self.package}.{name}")
        if name not in self._entries:
            raise UnknownNameError(f"{self.kind} module {name!r} did not register an entry named {name!r}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
