"""``background``: vary the host's code and data in the TLBs on some CPUs.

Every run already has host activity (:mod:`simcore.workloads.host`, the
workload file's ``host:`` section); a ``background`` entry replaces it on
its ``cpus`` with its own footprint, run every quantum as a process of its
own rather than caught up between the workload's batches. The footprint
and its presets are :class:`~simcore.workloads.footprint.Footprint`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.workloads.execution import exec_cpus
from simcore.workloads.footprint import Footprint, Touches

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "user-space and core-kernel code/data competing for the TLBs"


class Background(Footprint):
    type: Literal["background"]
    preset: Literal["compile", "webserver", "syscall"] = "compile"
    cpus: int | None = Field(default=None, ge=1, description="default: all")

    def start(self, kernel: Kernel, index: int) -> None:
        run = _Run(self, kernel, f"workload.{index}.background")
        cpus = exec_cpus(kernel, self.cpus)
        host = kernel.executor.host
        if host is not None:
            host.exclude(cpus)
        for cpu in cpus:
            kernel.env.process(run.cpu_loop(cpu))


class _Run:
    def __init__(self, cfg: Background, kernel: Kernel, tag: str) -> None:
        self.kernel = kernel
        self.tag = tag
        self.insns = int(cfg.ipc * kernel.profile.clock_ghz.value * kernel.quantum)
        self.touches = Touches(cfg, kernel, tag)
        # every quantum touches the same number of pages of each part
        self.counts = self.touches.counts(self.insns)

    def cpu_loop(self, cpu: int):
        kernel = self.kernel
        env = kernel.env
        rng = kernel.rng(f"{self.tag}.cpu{cpu}")
        execu = kernel.executor
        while True:
            yield env.timeout(kernel.quantum)
            insns = self.insns
            for side, owner, a, s in self.touches.draw(rng, self.counts):
                # the quantum's instructions go with its first code touches
                n, insns = (insns, 0) if side == "i" else (0, insns)
                execu.run(cpu, a, s, side, n, owner=owner)
            kernel.metrics.inc("workload.background.quanta")
