"""``reclaim``: memory pressure as the shrinkers see it, at a rate.

Under pressure kswapd's balance_pgdat() calls shrink_slab() once per
round at the round's priority, from DEF_PRIORITY (12) down to 1 while the
node stays below its high watermark; direct reclaim does the same in the
allocating task. This generator runs those calls on ``cpu``, ``rate``
times a second at ``priority``, with exponential gaps: a stated amount of
pressure, whatever the free memory (the ``pressure`` workload fills memory
instead, and the watermarks, kswapd and direct reclaim of
:mod:`simcore.kernel.vmscan` decide when and how hard to reclaim). Every
registered shrinker answers (:mod:`simcore.kernel.vmscan`):
vmalloc's vmap-node pools (v6.9+) and a strategy's own cache where it has
one (perm_alloc, unmapped_cache). Each call's time is
``alloc.shrink_slab.latency_ns``, what the shrinkers freed
``vmscan.shrinker.<name>.freed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.kernel.vmscan import DEF_PRIORITY
from simcore.strict import Strict
from simcore.units import Rate
from simcore.workloads.execution import exp_ns

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "memory pressure: shrink_slab() at a rate and reclaim priority"


class Reclaim(Strict):
    type: Literal["reclaim"]
    # estimate: a default of light, steady pressure, ten kswapd rounds a
    # second; a workload states its own
    rate: Rate = Field(
        default="10/s", gt=0, description="shrink_slab() calls per second"
    )
    priority: int = Field(
        default=DEF_PRIORITY, ge=0, le=DEF_PRIORITY, description="12 light .. 0 severe"
    )
    cpu: int = Field(default=0, ge=0, description="kswapd's CPU")

    def start(self, kernel: Kernel, index: int) -> None:
        rng = kernel.rng(f"workload.{index}.reclaim")
        cpu = min(self.cpu, kernel.nr_cpus - 1)
        kernel.env.process(_kswapd(kernel, rng, self.rate, cpu, self.priority))


def _kswapd(kernel: Kernel, rng, rate: float, cpu: int, priority: int):
    env = kernel.env
    gap = 1e9 / rate
    while True:
        yield env.timeout(exp_ns(rng, gap))
        t0 = env.now
        yield from kernel.shrinkers.shrink_slab(cpu, priority)
        kernel.metrics.latency("shrink_slab", env.now - t0)
