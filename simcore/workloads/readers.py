"""``readers``: tools reading /proc/vmallocinfo and /proc/kcore at a rate.

Monitoring agents cat /proc/vmallocinfo (``vmalloc_info_show()`` walks
every busy area under the vmap locks, see :meth:`Vmalloc.vmallocinfo`);
debuggers and live-crash tools (drgn, crash, sdb) read vmalloc memory
through /proc/kcore (``vread_iter()``, :meth:`Vmalloc.vread`), which
takes the busy-tree locks the allocator needs. Each reader is a process on
its own CPU (``cpus`` readers on CPUs 0, 1, ...) with exponential gaps at
``rate``. A kcore read copies ``size`` bytes at a random address of the
first ``span`` bytes of its range (default: twice the KVA in use, where
lowest-fit allocation puts the busy areas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.strict import Strict
from simcore.units import Rate, Size
from simcore.workloads.execution import exp_ns

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "/proc/vmallocinfo and /proc/kcore readers at a rate"

# estimate: a floor for the default span, so that reads before much is
# allocated still spread over a few hundred pages rather than one
MIN_SPAN = 1 << 20


class VmallocinfoReaders(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="reads per second per reader")
    cpus: int = Field(default=1, ge=1, description="readers, on CPUs 0, 1, ...")


class KcoreReaders(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="reads per second per reader")
    cpus: int = Field(default=1, ge=1)
    size: Size = Field(default="4K", gt=0, description="bytes per read")
    range: Literal["vmalloc", "modules"] = "vmalloc"
    span: Size | None = Field(default=None, gt=0, description="addresses read from")


class Readers(Strict):
    type: Literal["readers"]
    vmallocinfo: VmallocinfoReaders = Field(default_factory=VmallocinfoReaders)
    kcore: KcoreReaders = Field(default_factory=KcoreReaders)

    def start(self, kernel: Kernel, index: int) -> None:
        tag = f"workload.{index}.readers"
        vi, kc = self.vmallocinfo, self.kcore
        if vi.rate > 0:
            for cpu in range(min(vi.cpus, kernel.nr_cpus)):
                rng = kernel.rng(f"{tag}.vmallocinfo.cpu{cpu}")
                kernel.env.process(
                    _every(kernel, rng, vi.rate, _vmallocinfo(kernel, cpu))
                )
        if kc.rate > 0:
            for cpu in range(min(kc.cpus, kernel.nr_cpus)):
                rng = kernel.rng(f"{tag}.kcore.cpu{cpu}")
                kernel.env.process(
                    _every(kernel, rng, kc.rate, _kcore(kernel, cpu, kc, rng))
                )


def _every(kernel: Kernel, rng, rate: float, read):
    gap = 1e9 / rate
    while True:
        yield kernel.env.timeout(exp_ns(rng, gap))
        yield from read()


def _vmallocinfo(kernel: Kernel, cpu: int):
    def read():
        lines = yield from kernel.vmalloc.vmallocinfo(cpu)
        kernel.metrics.inc("workload.readers.vmallocinfo_reads")
        kernel.metrics.inc("workload.readers.vmallocinfo_lines", len(lines))

    return read


def _kcore(kernel: Kernel, cpu: int, cfg: KcoreReaders, rng):
    start = kernel.layout.ranges[cfg.range][0]

    def read():
        span = cfg.span or max(MIN_SPAN, 2 * kernel.vmalloc.used_bytes)
        addr = start + int(rng.integers(span))
        yield from kernel.vmalloc.vread(cpu, addr, cfg.size)
        kernel.metrics.inc("workload.readers.kcore_reads")

    return read
