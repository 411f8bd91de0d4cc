"""Named events the kernel emits, as the kernel's tracepoints are.

Model code marks an entry point with :func:`tracepoint`; observers (the
trace recorder, a test) subscribe to its name. A subscriber sees each call
twice: ``enter(cpu, args, kwargs)`` when it starts and ``exit(cpu, args,
kwargs, result)`` when it returns, in simulated time, so it can tell an
outermost call from one nested inside another traced call.

Cost when nobody listens: :func:`tracepoint` hands back the method's own
generator, so a call pays one wrapper call and no extra generator frame.
The hottest entry points (``vmalloc``, ``vfree``) skip even the wrapper:
they test ``hooks.on`` and call :meth:`Hooks.enter` / :meth:`Hooks.exit`
inline, which costs one attribute test per call when nobody listens (the
wrapper's argument packing was 3% of an event-heavy run), the way a
disabled tracepoint is a patched-out jump.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any

Enter = Callable[[int, tuple, dict], None]
Exit = Callable[[int, tuple, dict, Any], None]


class Hooks:
    __slots__ = ("_subs", "on")

    def __init__(self) -> None:
        self._subs: dict[str, list[tuple[Enter | None, Exit | None]]] = {}
        self.on = False  # anybody listening to anything

    def subscribe(
        self, name: str, *, enter: Enter | None = None, exit: Exit | None = None
    ) -> None:
        self._subs.setdefault(name, []).append((enter, exit))
        self.on = True

    def enter(self, name: str, cpu: int, args: tuple, kwargs: dict) -> None:
        for enter, _ in self._subs.get(name, ()):
            if enter is not None:
                enter(cpu, args, kwargs)

    def exit(self, name: str, cpu: int, args: tuple, kwargs: dict, result) -> None:
        for _, exit_ in self._subs.get(name, ()):
            if exit_ is not None:
                exit_(cpu, args, kwargs, result)

    def wrap(self, name: str, cpu: int, args: tuple, kwargs: dict, gen: Generator):
        """``gen`` itself when ``name`` has no subscriber, else a generator
        running it between the subscribers' enter and exit calls."""
        if not self._subs.get(name):
            return gen
        return self._traced(name, cpu, args, kwargs, gen)

    def _traced(self, name, cpu, args, kwargs, gen):
        self.enter(name, cpu, args, kwargs)
        result = yield from gen
        self.exit(name, cpu, args, kwargs, result)
        return result


def tracepoint(name: str):
    """Mark a generator method ``fn(self, cpu, *args, **kwargs)`` of an
    object with a ``hooks`` attribute as the tracepoint ``name``."""

    def deco(fn):
        @functools.wraps(fn)
        def call(self, cpu, *args, **kwargs):
            gen = fn(self, cpu, *args, **kwargs)
            hooks = self.hooks
            if not hooks.on:
                return gen
            return hooks.wrap(name, cpu, args, kwargs, gen)

        return call

    return deco
