"""``vmalloc_stress``: vmalloc + vfree in a loop on many CPUs.

The loop body of ``fix_size_alloc_test`` (and, with ``max_pages``,
``random_size_alloc_test``) of lib/test_vmalloc.c: ``vmalloc(n pages)``,
write the first byte, ``vfree``. Every CPU in ``cpus`` runs its own worker,
as test_vmalloc's kthreads do with ``nr_threads``. With ``vm_map_ram: true``
the body is that of ``vm_map_ram_test``: ``vm_map_ram(pages, n)``, write,
``vm_unmap_ram``. ``vmallocinfo:`` names a real /proc/vmallocinfo capture
whose areas are busy (or, for "unpurged" lines, lazily freed) from the
start; a relative path is looked up next to the workload file first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from simcore.config.base import Strict
from simcore.config.units import Duration, Size

if TYPE_CHECKING:
    from simcore.engine import Simulation

DESCRIPTION = (
    "vmalloc/vfree loop on every CPU (lib/test_vmalloc.c fix_size/random_size)"
)


class VmallocStress(Strict):
    type: Literal["vmalloc_stress"]
    cpus: int | None = Field(default=None, ge=1, description="CPUs running a worker")
    nr_pages: int = Field(default=1, ge=1, le=1 << 20)
    size: Size | None = Field(default=None, gt=0, description="instead of nr_pages")
    max_pages: int | None = Field(default=None, ge=1, le=1 << 20)
    loops: int | None = Field(default=None, ge=1, description="iterations per worker")
    think: Duration = Field(default="0ns", ge=0, description="pause between iterations")
    vm_map_ram: bool = Field(
        default=False, description="vm_map_ram/vm_unmap_ram instead of vmalloc/vfree"
    )
    vmallocinfo: str | None = Field(
        default=None, description="a /proc/vmallocinfo capture to seed busy areas"
    )

    @model_validator(mode="after")
    def _range(self) -> VmallocStress:
        if self.size is not None:
            self.nr_pages = -(-self.size // 4096)
        if self.max_pages is not None and self.max_pages < self.nr_pages:
            raise ValueError("max_pages must be at least nr_pages")
        return self

    def start(self, sim: Simulation, index: int) -> None:
        if self.vmallocinfo:
            from simcore.kernel.vmallocinfo import load_vmallocinfo

            path = Path(self.vmallocinfo)
            near = Path(sim.resolved.file).parent / path
            if not path.is_absolute() and near.is_file():
                path = near
            sim.vmalloc.seed_vmallocinfo(load_vmallocinfo(path), file=str(path))
        n = min(self.cpus or sim.nr_cpus, sim.nr_cpus)
        for cpu in range(n):
            rng = sim.rng(f"workload.{index}.vmalloc_stress.cpu{cpu}")
            sim.env.process(self._worker(sim, cpu, rng))

    def _worker(self, sim: Simulation, cpu: int, rng):
        vm = sim.vmalloc
        env = sim.env
        lo, hi = self.nr_pages, self.max_pages or self.nr_pages
        # draw sizes in blocks: one numpy call per 1024 iterations, not per loop
        sizes = iter(())
        done = 0
        pool: list[int] = []
        if self.vm_map_ram:
            # vm_map_ram_test(): the pages are allocated once, up front
            while len(pool) < hi:
                got = yield from sim.page_alloc.alloc_pages_bulk(
                    cpu, min(100, hi - len(pool))
                )
                if not got:
                    break
                pool.extend(got)
        while self.loops is None or done < self.loops:
            try:
                pages = next(sizes)
            except StopIteration:
                sizes = iter(rng.integers(lo, hi + 1, size=1024).tolist())
                pages = next(sizes)
            if self.vm_map_ram:
                addr = yield from vm.vm_map_ram(cpu, pool[:pages])
                if addr is not None:
                    yield from vm.vm_unmap_ram(cpu, addr, pages)
            else:
                area = yield from vm.vmalloc(cpu, pages * 4096)
                if area is not None:
                    yield from vm.vfree(cpu, area)
            done += 1
            sim.metrics.inc("workload.vmalloc_stress.loops")
            if self.think:
                yield env.timeout(self.think)
