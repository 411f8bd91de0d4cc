"""Recording a run's allocation events as a trace (``sim.trace_out``).

The recorder listens to the tracepoints of the kernel entry points
workloads call (:mod:`simcore.hooks`): ``vmalloc``/``vfree``,
``bpf_prog_load``/``bpf_prog_free``, the module loader's
``module_load``/``module_unload``, and trace replay's own ``trace_alloc``,
``trace_free`` and ``trace_exec``. It writes one event per *outermost*
call, in the format :mod:`simcore.workloads.captures.trace` reads: the
vmalloc a strategy does inside a program load belongs to that load, which
replay repeats whole. Nesting is tracked per SimPy process, the
simulator's thread of execution, so a replayed trace records back to
itself.

Times are the simulated start of each call, in ns; calls starting in the
same ns keep the order they started in; an allocation's id is its rank in
that order. The file is written when the run ends; ``{strategy}`` in the
path becomes the strategy's name (and is added before the suffix when
several strategies run and the path has no placeholder).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import simpy

from simcore.hooks import Hooks
from simcore.workloads.captures.trace import (
    CREATES,
    TraceEvent,
    format_trace,
    is_jsonl,
)


# tracepoint -> (trace op, what the event records from the call)
def _vmalloc(args, kwargs, area):
    if area is not None:
        return "vmalloc", args[0], kwargs.get("range_", "vmalloc"), area
    return None


def _bpf_load(args, kwargs, prog):
    if prog is not None and not isinstance(prog, int):
        return "bpf_load", args[0], "", prog
    return None


def _module_load(args, kwargs, mod):
    if mod is not None:
        spec = args[0]
        return "module_load", spec.core_bytes, spec.name, mod
    return None


def _trace_alloc(args, kwargs, obj):
    e = args[0]
    return None if obj is None else ("alloc", e.size, e.type, obj)


RECORDED = {
    "vmalloc": _vmalloc,
    "vfree": lambda args, kw, _r: ("vfree", 0, "", args[0]),
    "bpf_prog_load": _bpf_load,
    "bpf_prog_free": lambda args, kw, _r: ("bpf_free", 0, "", args[0]),
    "module_load": _module_load,
    "module_unload": lambda args, kw, ok: (
        ("module_unload", 0, "", args[0]) if ok else None
    ),
    "trace_alloc": _trace_alloc,
    "trace_free": lambda args, kw, _r: ("free", 0, "", args[1]),
    "trace_exec": lambda args, kw, _r: ("exec", args[0].size, "", args[1]),
}


class Recorder:
    def __init__(
        self, env: simpy.Environment, hooks: Hooks, path: str, strategy: str, nr: int
    ) -> None:
        self.env = env
        self.path = _path_for(path, strategy, nr)
        self.events: list[tuple[int, TraceEvent]] = []  # (start order, event)
        self._live: dict[int, tuple[object, str]] = {}  # id(obj) -> (obj, trace id)
        self._seq = 0
        # per SimPy process: the start (time, order) of each open traced call
        self._open: defaultdict[object, list[tuple[int, int]]] = defaultdict(list)
        for name, what in RECORDED.items():
            hooks.subscribe(name, enter=self._enter, exit=self._exit_for(what))

    def _enter(self, cpu: int, args: tuple, kwargs: dict) -> None:
        self._seq += 1
        self._open[self.env.active_process].append((self.env.now, self._seq))

    def _exit_for(self, what):
        def on_exit(cpu: int, args: tuple, kwargs: dict, result) -> None:
            proc = self.env.active_process
            stack = self._open[proc]
            when = stack.pop()
            if stack:
                return  # nested in another traced call: that one is recorded
            del self._open[proc]
            event = what(args, kwargs, result)
            if event is not None:
                self.add(when, cpu, *event)

        return on_exit

    def add(self, when: tuple[int, int], cpu: int, op: str, size: int, typ: str, obj):
        """Record an outermost call that started at ``when`` = (time, start
        order); an allocation's id is its start order."""
        t, seq = when
        key = id(obj)
        if op in CREATES:
            tid = str(seq)
            self._live[key] = (obj, tid)
        else:
            got = self._live.get(key)
            if got is None:
                return  # not allocated through a recorded call
            tid = got[1]
            if op != "exec":
                del self._live[key]
        self.events.append((seq, TraceEvent(int(t), cpu, op, int(size), typ, tid)))

    def close(self) -> None:
        """Events by start time, ties in the order the calls started: the
        order replay starts them in."""
        self.events.sort(key=lambda se: (se[1].timestamp, se[0]))
        events = [e for _, e in self.events]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = format_trace(events, jsonl=is_jsonl("", str(self.path)))
        self.path.write_text(text, encoding="utf-8")


def _path_for(path: str, strategy: str, nr_strategies: int) -> Path:
    if "{strategy}" in path:
        return Path(path.replace("{strategy}", strategy))
    p = Path(path)
    if nr_strategies > 1:
        return p.with_name(f"{p.stem}.{strategy}{p.suffix}")
    return p
