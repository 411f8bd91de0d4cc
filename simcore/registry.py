"""Registries of the pluggable parts, by name, read without importing them.

A strategy or a workload generator is one file plus one line in its
package's ``__init__``, which fills a registry here with ``"module:Class"``
targets. The workload file is checked against the names (``config`` never
imports a strategy module); the engine imports a class only when a run
uses it. Code outside the project (or a test) calls ``register``.
"""

from __future__ import annotations

import importlib
from typing import Any


class Registry:
    def __init__(self, what: str) -> None:
        self.what = what
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, target: str | type) -> None:
        """Make ``name`` known: a class or a ``"module:Class"`` string."""
        if isinstance(target, str):
            self._targets[name] = target
            self._loaded.pop(name, None)
        else:
            self._targets[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        return list(self._targets)

    def target(self, name: str) -> str:
        return self._targets[name]

    def load(self, name: str) -> Any:
        """The registered class, imported on first use."""
        cls = self._loaded.get(name)
        if cls is None:
            module, _, attr = self._targets[name].partition(":")
            cls = getattr(importlib.import_module(module), attr)
            self._loaded[name] = cls
        return cls


STRATEGIES = Registry("strategy")
WORKLOADS = Registry("workload")
