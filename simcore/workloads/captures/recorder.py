"""Recording a run's allocation events as a trace (``sim.trace_out``).

The recorder sits in front of the kernel entry points workloads call:
``vmalloc()``/``vfree()``, ``bpf_prog_load``/``bpf_prog_free``, the module
loader's ``load``/``unload``, and writes one event per *outermost* call,
in the format :mod:`simcore.workloads.captures.trace` reads: the vmalloc
a strategy does inside a program load belongs to that load, which replay
repeats whole. Nesting is tracked per SimPy process, the simulator's
thread of execution. Trace replay reports the ``alloc``/``free``/``exec``
events it runs itself (:func:`note`), so a replayed trace records back to
itself.

Times are the simulated start of each call, in ns; calls starting in the
same ns keep the order they started in; an allocation's id is its rank in
that order. The file is written when the run ends; ``{strategy}``
in the path becomes the strategy's name (and is added before the suffix
when several strategies run and the path has no placeholder).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from simcore.workloads.captures.trace import (
    CREATES,
    TraceEvent,
    format_trace,
    is_jsonl,
)

if TYPE_CHECKING:
    from simcore.engine import Simulation


class Recorder:
    def __init__(self, sim: Simulation, path: str) -> None:
        self.sim = sim
        self.env = sim.env
        self.path = _path_for(path, sim.strategy_name, len(sim.resolved.cfg.strategy))
        self.events: list[tuple[int, TraceEvent]] = []  # (start order, event)
        self._live: dict[int, tuple[object, str]] = {}  # id(obj) -> (obj, trace id)
        self._seq = 0
        self._depth: defaultdict[object, int] = defaultdict(int)
        vm = sim.vmalloc
        vm.vmalloc = self._wrap(vm.vmalloc, self._on_vmalloc)
        vm.vfree = self._wrap(vm.vfree, self._on_vfree)
        bpf = sim.bpf
        bpf.prog_load = self._wrap(bpf.prog_load, self._on_bpf_load)
        bpf.prog_free = self._wrap(bpf.prog_free, self._on_bpf_free)

    def wrap_loader(self, loader) -> None:
        loader.load = self._wrap(loader.load, self._on_module_load)
        loader.unload = self._wrap(loader.unload, self._on_module_unload)

    def _wrap(self, fn, after):
        @functools.wraps(fn)
        def wrapper(cpu, *args, **kwargs):
            proc = self.env.active_process
            self._depth[proc] += 1
            t, seq = self.env.now, self.next_seq()
            try:
                result = yield from fn(cpu, *args, **kwargs)
            finally:
                self._depth[proc] -= 1
                if not self._depth[proc]:
                    del self._depth[proc]
            if proc not in self._depth:
                after((t, seq), cpu, args, kwargs, result)
            return result

        return wrapper

    # -- what each entry point records ---------------------------------------
    def _on_vmalloc(self, when, cpu, args, kwargs, area) -> None:
        if area is not None:
            rng = kwargs.get("range_", "vmalloc")
            self.add(when, cpu, "vmalloc", args[0], rng, area)

    def _on_vfree(self, when, cpu, args, kwargs, _res) -> None:
        self.add(when, cpu, "vfree", 0, "", args[0])

    def _on_bpf_load(self, when, cpu, args, kwargs, prog) -> None:
        if prog is not None and not isinstance(prog, int):
            self.add(when, cpu, "bpf_load", args[0], "", prog)

    def _on_bpf_free(self, when, cpu, args, kwargs, _res) -> None:
        self.add(when, cpu, "bpf_free", 0, "", args[0])

    def _on_module_load(self, when, cpu, args, kwargs, mod) -> None:
        if mod is not None:
            spec = args[0]
            self.add(when, cpu, "module_load", spec.core_bytes, spec.name, mod)

    def _on_module_unload(self, when, cpu, args, kwargs, ok) -> None:
        if ok:
            self.add(when, cpu, "module_unload", 0, "", args[0])

    # -- events ----------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

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


def install_recorder(sim: Simulation, path: str) -> Recorder:
    rec = Recorder(sim, path)
    sim.recorder = rec
    return rec


@contextmanager
def outermost(sim: Simulation):
    """Around work a workload records itself (``note``): calls it makes
    into recorded entry points are nested, so not recorded again. Yields
    when the work starts, (time, start order), for ``note``."""
    rec = getattr(sim, "recorder", None)
    if rec is None:
        yield (sim.env.now, 0)
        return
    proc = sim.env.active_process
    rec._depth[proc] += 1
    try:
        yield (sim.env.now, rec.next_seq())
    finally:
        rec._depth[proc] -= 1
        if not rec._depth[proc]:
            del rec._depth[proc]


def note(sim: Simulation, when, cpu: int, op: str, size: int, typ: str, obj) -> None:
    """Record an event a workload ran itself (started at ``when``, from
    ``outermost``), when the run is recorded."""
    rec = getattr(sim, "recorder", None)
    if rec is not None:
        rec.add(when, cpu, op, size, typ, obj)
