"""``vmalloc_table``: random lookups in a large vmalloc'ed table.

A large system hash (the dentry cache's, from ``alloc_large_system_hash()``
with ``hashdist``) lives in vmalloc space; every lookup reads one bucket, a
random page of the table. Nick Piggin measured the dTLB misses this costs
with 4K mappings and with huge vmalloc mappings
(20190610043838.27916-4-npiggin@gmail.com). The table is allocated on
CPU 0 with ``vmalloc()`` (``huge: true`` adds ``VM_ALLOW_HUGE_VMAP``, as
``vmalloc_huge()`` does), then CPU 0 performs ``lookups`` lookups in
batches of ``batch``, each batch one pass through its data TLBs
(``dtlb.misses``, ``stlb.misses``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP
from simcore.strict import Strict
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.engine import Simulation

# estimate: a d_hash() bucket walk, hash computation and compare, about
# 40 instructions at ~1 per ns, outside the TLB cost the model adds
LOOKUP_NS = 40
LOOKUP_INSNS = 40


class VmallocTable(Strict):
    type: Literal["vmalloc_table"]
    size: Size = Field(default="8MiB", gt=0)
    huge: bool = False
    lookups: int = Field(default=100_000, ge=1, le=100_000_000)
    batch: int = Field(default=1000, ge=1, le=1_000_000)

    def start(self, sim: Simulation) -> None:
        sim.env.process(self._run(sim))

    def _run(self, sim: Simulation):
        env = sim.env
        flags = VM_ALLOW_HUGE_VMAP if self.huge else 0
        area = yield from sim.vmalloc.vmalloc(0, self.size, flags=flags)
        if area is None:
            sim.metrics.inc("vmap.alloc_failures")
            return
        rng = sim.rng("probe.vmalloc_table")
        shift = np.uint64(area.page_shift)
        left = self.lookups
        while left > 0:
            n = min(self.batch, left)
            left -= n
            offs = rng.integers(0, self.size, size=n, dtype=np.uint64)
            addrs = ((np.uint64(area.addr) + offs) >> shift) << shift
            shifts = np.full(n, area.page_shift, np.uint8)
            lost = sim.executor.run(0, addrs, shifts, "d", n * LOOKUP_INSNS, "kernel")
            yield env.timeout(lost + n * LOOKUP_NS)
