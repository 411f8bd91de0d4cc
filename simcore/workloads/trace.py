"""``trace``: replay alloc/free/exec events captured on a real machine.

The format (CSV or JSON lines: timestamp, cpu, op, size, type, id) is
documented in :mod:`simcore.workloads.captures.trace` and workloads/README.md;
workloads/data/trace-example.csv is a small example. A capture can come
from bpftrace on ``__vmalloc_node_range``/``vfree``/``bpf_prog_load``, or
from another simulated run with ``kernel: {trace_out: FILE}``.

Each event starts at its timestamp (rebased so the first one is at
``at`` when ``rebase`` is on) as a process of its own, on CPU
``cpu mod cpus``, so events overlap as they did when captured. A free or
an exec of an object still being allocated waits for it; one of an id the
trace never allocated (the capture began after it) is skipped and counted.
``time_scale`` stretches (> 1) or compresses (< 1) the gaps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from simcore.constants import PAGE
from simcore.kernel.execmem import ExecAlloc
from simcore.kernel.vmalloc import VmArea
from simcore.strict import Strict
from simcore.units import Duration
from simcore.workloads.captures import capture_path
from simcore.workloads.captures.module_split import spec_from_size
from simcore.workloads.captures.trace import CREATES, TraceEvent, load_trace
from simcore.workloads.execution import run_pieces

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "replay of a captured alloc/free/exec trace (CSV or JSON lines)"


class Trace(Strict):
    # fields naming capture files, whose contents go into the config hash
    CAPTURES: ClassVar[tuple[str, ...]] = ("file",)

    type: Literal["trace"]
    file: str = Field(description="the trace, CSV or JSON lines")
    rebase: bool = Field(default=True, description="move the first event to `at`")
    at: Duration = Field(default="0ns", ge=0, description="when the trace starts")
    time_scale: float = Field(default=1.0, gt=0, le=1e6)

    def start(self, kernel: Kernel, index: int) -> None:
        events = load_trace(capture_path(kernel, self.file))
        _Replay(self, kernel, events).start()


class _Replay:
    def __init__(self, cfg: Trace, kernel: Kernel, events: list[TraceEvent]) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.hooks = kernel.hooks
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
        self.kernel.env.process(self._dispatch())

    def _at(self, e: TraceEvent) -> int:
        base = self.events[0].timestamp if self.cfg.rebase else 0
        return self.cfg.at + int((e.timestamp - base) * self.cfg.time_scale)

    def _dispatch(self):
        env = self.kernel.env
        for e in self.events:
            t = self._at(e)
            if t > env.now:
                yield env.timeout(t - env.now)
            if e.op in CREATES:
                self.pending[e.id] = env.event()
            env.process(self._run(e))

    def _run(self, e: TraceEvent):
        kernel = self.kernel
        cpu = e.cpu % kernel.nr_cpus
        kernel.metrics.inc("workload.trace.events")
        if e.op in CREATES:
            done = self.pending[e.id]
            obj = yield from self.ops[e.op](cpu, e)
            if obj is not None:
                self.objs[e.id] = obj
            else:
                kernel.metrics.inc("workload.trace.failed_allocs")
            if self.pending.get(e.id) is done:
                del self.pending[e.id]
            done.succeed()
            return
        wait = self.pending.get(e.id)
        if wait is not None:
            yield wait
        obj = self.objs.get(e.id)
        if obj is None:
            kernel.metrics.inc("workload.trace.unmatched")
            return
        if e.op != "exec":
            del self.objs[e.id]
        yield from self.ops[e.op](cpu, e, obj)

    # -- operations --------------------------------------------------------------
    def _vmalloc(self, cpu: int, e: TraceEvent):
        area = yield from self.kernel.vmalloc.vmalloc(
            cpu, e.size, range_=e.type or "vmalloc"
        )
        return area

    def _vfree(self, cpu: int, e: TraceEvent, area: VmArea):
        yield from self.kernel.vmalloc.vfree(cpu, area)

    # The replay's own events are tracepoints too ("trace_alloc",
    # "trace_free", "trace_exec"): a recorder listening to a replayed run
    # writes them back, and the kernel calls inside them nest, so they are
    # not recorded a second time.
    def _traced(self, name: str, cpu: int, e: TraceEvent, obj, gen):
        return self.hooks.wrap(name, cpu, (e, obj), {}, gen)

    def _alloc(self, cpu: int, e: TraceEvent):
        return (
            yield from self._traced("trace_alloc", cpu, e, None, self._do_alloc(cpu, e))
        )

    def _do_alloc(self, cpu: int, e: TraceEvent):
        st = self.kernel.exec_alloc
        obj = yield from st.alloc(cpu, e.size, e.type)
        if obj is not None:
            yield from st.write(cpu, obj, e.size)
            yield from st.finalize(cpu, obj)
        return obj

    def _free(self, cpu: int, e: TraceEvent, obj: ExecAlloc):
        free = self.kernel.exec_alloc.free(cpu, obj)
        yield from self._traced("trace_free", cpu, e, obj, free)

    def _bpf_load(self, cpu: int, e: TraceEvent):
        prog = yield from self.kernel.bpf.prog_load(cpu, e.size)
        return None if isinstance(prog, int) else prog

    def _bpf_free(self, cpu: int, e: TraceEvent, prog):
        yield from self.kernel.bpf.prog_free(cpu, prog)

    def _module_load(self, cpu: int, e: TraceEvent):
        spec = spec_from_size(e.type or e.id, e.size)
        mod = yield from self.kernel.modules.load(cpu, spec)
        return mod

    def _module_unload(self, cpu: int, e: TraceEvent, mod):
        yield from self.kernel.modules.unload(cpu, mod)

    def _exec(self, cpu: int, e: TraceEvent, obj):
        yield from self._traced("trace_exec", cpu, e, obj, _nothing())
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
        kernel = self.kernel
        ns = run_pieces(kernel, cpu, [(pages, shift)], size, side, _owner(obj))
        if ns:
            yield kernel.env.timeout(ns)


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


def _owner(obj) -> str:
    """Whose code or data a replayed exec touches, for attribution."""
    if getattr(obj, "image", None) is not None:
        return "bpf"
    if getattr(obj, "text", None) is not None and not isinstance(obj, ExecAlloc):
        return "modules"
    kind = getattr(obj, "kind", "")
    if kind.startswith("bpf"):
        return "bpf"
    if kind.startswith("module"):
        return "modules"
    return "kernel"


def _nothing():
    return
    yield
