"""``trace``: replay alloc/free/exec events captured on a real machine.

The format (CSV or JSON lines: timestamp, cpu, op, size, type, id) is
documented in :mod:`simcore.workloads.captures.trace` and workloads/README.md;
workloads/data/trace-example.csv is a small example. A capture can come
from bpftrace on ``__vmalloc_node_range``/``vfree``/``bpf_prog_load``, or
from another simulated run with ``sim: {trace_out: FILE}``.

Each event starts at its timestamp (rebased so the first one is at
``at`` when ``rebase`` is on) as a process of its own, on CPU
``cpu mod cpus``, so events overlap as they did when captured. A free or
an exec of an object still being allocated waits for it; one of an id the
trace never allocated (the capture began after it) is skipped and counted.
``time_scale`` stretches (> 1) or compresses (< 1) the gaps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from simcore.constants import PAGE
from simcore.kernel.module import module_loader
from simcore.kernel.vmalloc import VmArea
from simcore.strategies.base import ExecAlloc
from simcore.strict import Strict
from simcore.units import Duration
from simcore.workloads.captures import capture_path
from simcore.workloads.captures.module_split import spec_from_size
from simcore.workloads.captures.recorder import note, outermost
from simcore.workloads.captures.trace import CREATES, TraceEvent, load_trace
from simcore.workloads.execution import run_pieces

if TYPE_CHECKING:
    from simcore.engine import Simulation

DESCRIPTION = "replay of a captured alloc/free/exec trace (CSV or JSON lines)"


class Trace(Strict):
    type: Literal["trace"]
    file: str = Field(description="the trace, CSV or JSON lines")
    rebase: bool = Field(default=True, description="move the first event to `at`")
    at: Duration = Field(default="0ns", ge=0, description="when the trace starts")
    time_scale: float = Field(default=1.0, gt=0, le=1e6)

    def start(self, sim: Simulation, index: int) -> None:
        events = load_trace(capture_path(sim, self.file))
        _Replay(self, sim, events).start()


class _Replay:
    def __init__(self, cfg: Trace, sim: Simulation, events: list[TraceEvent]) -> None:
        self.cfg = cfg
        self.sim = sim
        self.events = events
        self.objs: dict[str, object] = {}  # trace id -> live object
        self.pending: dict[str, object] = {}  # trace id -> event: allocation done
        self.ops = {
            "vmalloc": self._vmalloc,
            "vfree": self._vfree,
            "alloc": self._alloc,
            "free": self._free,
            "bpf_load": self._bpf_load,
            "bpf_free": self._bpf_free,
            "module_load": self._module_load,
            "module_unload": self._module_unload,
            "exec": self._exec,
        }

    def start(self) -> None:
        self.sim.env.process(self._dispatch())

    def _at(self, e: TraceEvent) -> int:
        base = self.events[0].timestamp if self.cfg.rebase else 0
        return self.cfg.at + int((e.timestamp - base) * self.cfg.time_scale)

    def _dispatch(self):
        env = self.sim.env
        for e in self.events:
            t = self._at(e)
            if t > env.now:
                yield env.timeout(t - env.now)
            if e.op in CREATES:
                self.pending[e.id] = env.event()
            env.process(self._run(e))

    def _run(self, e: TraceEvent):
        sim = self.sim
        cpu = e.cpu % sim.nr_cpus
        sim.metrics.inc("workload.trace.events")
        if e.op in CREATES:
            done = self.pending[e.id]
            obj = yield from self.ops[e.op](cpu, e)
            if obj is not None:
                self.objs[e.id] = obj
            else:
                sim.metrics.inc("workload.trace.failed_allocs")
            if self.pending.get(e.id) is done:
                del self.pending[e.id]
            done.succeed()
            return
        wait = self.pending.get(e.id)
        if wait is not None:
            yield wait
        obj = self.objs.get(e.id)
        if obj is None:
            sim.metrics.inc("workload.trace.unmatched")
            return
        if e.op != "exec":
            del self.objs[e.id]
        yield from self.ops[e.op](cpu, e, obj)

    # -- operations --------------------------------------------------------------
    def _vmalloc(self, cpu: int, e: TraceEvent):
        area = yield from self.sim.vmalloc.vmalloc(
            cpu, e.size, range_=e.type or "vmalloc"
        )
        return area

    def _vfree(self, cpu: int, e: TraceEvent, area: VmArea):
        yield from self.sim.vmalloc.vfree(cpu, area)

    def _alloc(self, cpu: int, e: TraceEvent):
        sim = self.sim
        st = sim.exec_strategy
        with outermost(sim) as when:
            obj = yield from st.alloc(cpu, e.size, e.type)
            if obj is not None:
                yield from st.write(cpu, obj, e.size)
                yield from st.finalize(cpu, obj)
        if obj is not None:
            note(sim, when, cpu, "alloc", e.size, e.type, obj)
        return obj

    def _free(self, cpu: int, e: TraceEvent, obj: ExecAlloc):
        sim = self.sim
        with outermost(sim) as when:
            note(sim, when, cpu, "free", 0, "", obj)
            yield from sim.exec_strategy.free(cpu, obj)

    def _bpf_load(self, cpu: int, e: TraceEvent):
        prog = yield from self.sim.bpf.prog_load(cpu, e.size)
        return None if isinstance(prog, int) else prog

    def _bpf_free(self, cpu: int, e: TraceEvent, prog):
        yield from self.sim.bpf.prog_free(cpu, prog)

    def _module_load(self, cpu: int, e: TraceEvent):
        spec = spec_from_size(e.type or e.id, e.size)
        mod = yield from module_loader(self.sim).load(cpu, spec)
        return mod

    def _module_unload(self, cpu: int, e: TraceEvent, mod):
        yield from module_loader(self.sim).unload(cpu, mod)

    def _exec(self, cpu: int, e: TraceEvent, obj):
        sim = self.sim
        with outermost(sim) as when:
            note(sim, when, cpu, "exec", e.size, "", obj)
        where, side = _extent(obj)
        if where is None:
            return
        addr, size, shift = where
        if e.size:
            size = min(size, e.size)
        s = np.uint64(shift)
        first = np.uint64(addr) >> s
        last = np.uint64(addr + max(1, size) - 1) >> s
        pages = np.arange(first, last + np.uint64(1), dtype=np.uint64) << s
        ns = run_pieces(sim, cpu, [(pages, shift)], size, side)
        if ns:
            yield sim.env.timeout(ns)


def _extent(obj) -> tuple[tuple[int, int, int] | None, str]:
    """(address, bytes, mapping shift) an exec touches, and the TLB side."""
    image = getattr(obj, "image", None)  # a BPF program
    if image is not None:
        obj = image
    text = getattr(obj, "text", None) if not isinstance(obj, ExecAlloc) else None
    if text is not None:  # a module
        obj = text
    if isinstance(obj, ExecAlloc):
        return (obj.addr, obj.size, obj.page_shift), "i"
    if isinstance(obj, VmArea):
        return (obj.addr, obj.nr_pages * PAGE, obj.page_shift), "d"
    return None, "i"
