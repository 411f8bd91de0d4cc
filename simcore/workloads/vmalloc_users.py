"""``vmalloc_users``: large vmalloc'ed data the kernel looks things up in.

Huge vmalloc mappings were built for data, not code: Nicholas Piggin's
series (121e6f3258fe, v5.13) measured 59,800 TLB misses of a ``git diff``
falling to 2,100 once the system hashes were 2M-mapped on a 2-node
POWER9. Whether a large vmalloc() gets 2M pages depends on the caller and
the era: from v5.18 (559089e0a93d) only ``vmalloc_huge()`` callers such as
``alloc_large_system_hash()`` ask for them; in v5.18-rc1 on x86 every
caller of a PMD per node got them unless it passed ``VM_NO_HUGE_VMAP``
(:attr:`simcore.kernel.vmalloc.Vmalloc.huge_by_default`).

At start this generator allocates, on ``cpu``:

- with ``system_hashes``, the dentry and inode hash tables as
  ``alloc_large_system_hash()`` sizes them (fs/dcache.c ``dcache_init()``:
  8-byte buckets, one per 2^13 bytes of memory; fs/inode.c
  ``inode_init()``: one per 2^14, scaled down past 64 GiB, rounded up to a
  power of two: :func:`system_hash_bytes`), through ``vmalloc_huge()`` when ``hashdist`` holds, i.e.
  on a machine of more than one node (``fixup_hashdist()``, v5.12). With
  one node they come from memblock in the linear map
  (``dcache_init_early()``) and are not vmalloc users: none is made;
- each of ``users``: ``count`` areas of ``size`` by plain ``vmalloc()``
  (``bpf_map_area_alloc()``'s ``__vmalloc_node_range()`` passes no huge
  flag) or ``vmalloc_huge()`` (``huge: ask``).

Then every CPU of ``cpus`` does ``rate`` lookups a second, each one data
touch at a uniformly random offset of one area (a hash bucket, a map
slot), areas picked by their ``weight``; the touches go through the dTLB
model in one batch per quantum, attributed to ``owner``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from simcore.constants import PAGE_SHIFT
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP
from simcore.strict import Strict
from simcore.units import Rate, Size
from simcore.workloads.execution import Picker, at_rate, exec_cpus, run_pieces

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "system hashes and large maps in vmalloc, looked up at a rate"

# (name, log2 bytes of memory per bucket, bucket bytes): dcache_init() and
# inode_init() call alloc_large_system_hash() with scale 13 and 14 and
# buckets of struct hlist_bl_head / struct hlist_head (one pointer)
SYSTEM_HASHES = (("Dentry cache", 13, 8), ("Inode-cache", 14, 8))
# bytes of data a lookup reads per touched page: a bucket pointer and the
# object it leads to (an estimate; it only turns touches into mpki)
LOOKUP_BYTES = 64


class VmallocUser(Strict):
    caller: str = Field(description="the allocating function, for vmallocinfo")
    size: Size = Field(gt=0, description="bytes per area")
    count: int = Field(default=1, ge=1, le=4096)
    huge: Literal["ask", "no"] = Field(
        default="no", description="ask: vmalloc_huge() (VM_ALLOW_HUGE_VMAP)"
    )
    owner: Literal["kernel", "bpf"] = "kernel"
    weight: float = Field(default=1.0, ge=0, description="share of lookups per area")


class VmallocUsers(Strict):
    type: Literal["vmalloc_users"]
    system_hashes: bool = True
    users: list[VmallocUser] = Field(default_factory=list)
    # estimate: a million lookups a second per CPU, of the order of the
    # dentry-hash lookups of a path-walk-heavy job; a workload states its own
    rate: Rate = Field(default="1000000/s", ge=0, description="lookups per CPU")
    cpus: int | None = Field(default=None, ge=1, description="first N CPUs; all")
    cpu: int = Field(default=0, ge=0, description="the CPU allocating at start")

    def start(self, kernel: Kernel, index: int) -> None:
        run = _Run(self, kernel, f"workload.{index}.vmalloc_users")
        kernel.env.process(run.setup(min(self.cpu, kernel.nr_cpus - 1)))


# alloc_large_system_hash(): ADAPT_SCALE_BASE (64 GiB) in pages, and one
# more step of scale for every 4x of memory beyond it (ADAPT_SCALE_SHIFT 2)
ADAPT_SCALE_NPAGES = (64 << 30) >> PAGE_SHIFT
ADAPT_SCALE_SHIFT = 2


def system_hash_bytes(kernel_pages: int, scale: int, bucket: int) -> int:
    """alloc_large_system_hash() with the default size (no high_limit, as
    the dentry and inode hashes ask): ``nr_kernel_pages`` rounded up to a
    MiB; ``scale`` raised by one for each 4x of memory past 64 GiB
    (ADAPT_SCALE); one bucket per 2^scale bytes, at least a page of them,
    rounded up to a power of two; at most 1/16 of memory; then
    ``bucketsize << ilog2(numentries)``."""
    mib = (1 << 20) >> PAGE_SHIFT
    entries = -(-kernel_pages // mib) * mib
    adapt = ADAPT_SCALE_NPAGES
    while adapt < entries:
        scale += 1
        adapt <<= ADAPT_SCALE_SHIFT
    if scale > PAGE_SHIFT:
        entries >>= scale - PAGE_SHIFT
    else:
        entries <<= PAGE_SHIFT - scale
    entries = max(entries, (1 << PAGE_SHIFT) // bucket)
    entries = 1 << (entries - 1).bit_length()  # roundup_pow_of_two()
    most = min((kernel_pages << PAGE_SHIFT >> 4) // bucket, 0x80000000)
    entries = min(entries, most)
    return bucket << (entries.bit_length() - 1)


class _Run:
    def __init__(self, cfg: VmallocUsers, kernel: Kernel, tag: str) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = tag
        self.areas: list = []  # (VmArea, owner, size asked)
        self.weights: list[float] = []

    def _plan(self) -> list[tuple[str, int, int, str, float]]:
        """(caller, size, flags, owner, weight) of every area to make."""
        kernel = self.kernel
        plan = []
        buddy = kernel.page_alloc.buddy
        if self.cfg.system_hashes and len(buddy.zones) > 1:  # hashdist
            for name, scale, bucket in SYSTEM_HASHES:
                size = system_hash_bytes(buddy.total_pages, scale, bucket)
                plan.append((name, size, VM_ALLOW_HUGE_VMAP, "kernel", 1.0))
        for u in self.cfg.users:
            flags = VM_ALLOW_HUGE_VMAP if u.huge == "ask" else 0
            plan += [(u.caller, u.size, flags, u.owner, u.weight)] * u.count
        return plan

    def setup(self, cpu: int):
        kernel = self.kernel
        vm = kernel.vmalloc
        for caller, size, flags, owner, weight in self._plan():
            area = yield from vm.vmalloc(cpu, size, flags=flags, caller=caller)
            if area is None:
                kernel.metrics.inc("workload.vmalloc_users.failures")
                continue
            self.areas.append((area, owner, size))
            self.weights.append(weight)
            kernel.metrics.inc(
                "workload.vmalloc_users.huge_bytes"
                if area.page_shift > PAGE_SHIFT
                else "workload.vmalloc_users.small_bytes",
                size,
            )
        if not self.areas or sum(self.weights) <= 0 or self.cfg.rate <= 0:
            return
        self.picker = Picker.fixed(self.weights)
        for c in exec_cpus(kernel, self.cfg.cpus):
            rng = kernel.rng(f"{self.tag}.cpu{c}")
            kernel.env.process(at_rate(kernel, c, rng, self.cfg.rate, self._step(rng)))

    def _step(self, rng):
        kernel = self.kernel

        def step(cpu: int, k: int) -> None:
            n = len(self.areas)
            counts = np.bincount(self.picker.pick(rng, n, k), minlength=n)
            by_owner: dict[str, list] = {}
            for i in np.flatnonzero(counts).tolist():
                area, owner, size = self.areas[i]
                s = np.uint64(area.page_shift)
                offs = (rng.random(int(counts[i])) * size).astype(np.uint64)
                addrs = ((np.uint64(area.addr) + offs) >> s) << s
                by_owner.setdefault(owner, []).append((addrs, area.page_shift))
            for owner, pieces in by_owner.items():
                n = sum(len(a) for a, _ in pieces)
                run_pieces(kernel, cpu, pieces, n * LOOKUP_BYTES, "d", owner)
            kernel.metrics.inc("workload.vmalloc_users.lookups", k)

        return step
