"""mm/shrinker.c (mm/vmscan.c before v6.7): shrinkers and shrink_slab().

Caches that hold memory the kernel can take back register a shrinker: a
``count_objects()`` saying how much is freeable and a ``scan_objects()``
freeing up to ``nr_to_scan`` of it. Under memory pressure kswapd (and
direct reclaim) call ``shrink_slab()`` at a reclaim ``priority`` (12,
DEF_PRIORITY, down to 0 as pressure grows), and ``do_shrink_slab()`` asks
each shrinker for a share of its objects:

- ``delta = (freeable >> priority) * 4 / seeks`` (``seeks`` DEFAULT_SEEKS,
  2), plus the work deferred from earlier calls (``nr_deferred >>
  priority``), at most twice what is freeable;
- scanned in batches of ``batch`` (SHRINK_BATCH, 128) while at least a
  batch, or everything freeable, is left; a scan returning SHRINK_STOP
  ends it;
- what was asked and not scanned is deferred to the next call.

The shrinkers here: vmalloc's ``vmap-node`` (7679ba6b36db, v6.9: every
per-node pool decayed whole) and those the strategies register (the RFC
caches of perm_alloc and __GFP_UNMAPPED). What drives ``shrink_slab()`` is
a workload (``reclaim``): watermarks, page-cache reclaim and kswapd's own
loop are not modelled.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DEF_PRIORITY = 12
DEFAULT_SEEKS = 2
SHRINK_BATCH = 128
SHRINK_STOP = -1  # a scan_objects() that cannot make progress


@dataclass
class Shrinker:
    name: str
    count_objects: Callable[[], int]
    # scan_objects(cpu, nr_to_scan): a generator returning objects freed,
    # or SHRINK_STOP
    scan_objects: Callable[[int, int], Generator[Any, Any, int]]
    seeks: int = DEFAULT_SEEKS
    batch: int = SHRINK_BATCH
    nr_deferred: int = 0


class Shrinkers:
    """The registered shrinkers and shrink_slab()."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.list: list[Shrinker] = []
        # shrinker_rwsem / the SRCU walk: the list read, a node a shrinker
        # (estimate, as a tree node in kernel_costs.rb_node_visit_ns)
        self.visit_ns = kernel.profile.kernel_costs.rb_node_visit_ns.value

    def register(self, shrinker: Shrinker) -> None:
        """shrinker_register() (register_shrinker() before v6.7)."""
        self.list.append(shrinker)

    def shrink_slab(self, cpu: int, priority: int = DEF_PRIORITY):
        """shrink_slab(): do_shrink_slab() on every shrinker; returns
        objects freed."""
        freed = 0
        for s in self.list:
            yield self.env.timeout(int(self.visit_ns))
            freed += yield from self._do_shrink_slab(cpu, s, priority)
        self.metrics.inc("vmscan.shrink_slab_calls")
        return freed

    def _do_shrink_slab(self, cpu: int, s: Shrinker, priority: int):
        freeable = s.count_objects()
        if freeable <= 0:
            return 0
        nr, s.nr_deferred = s.nr_deferred, 0
        delta = (freeable >> priority) * 4 // s.seeks
        total_scan = min((nr >> priority) + delta, 2 * freeable)
        freed = scanned = 0
        while total_scan >= s.batch or total_scan >= freeable:
            nr_to_scan = min(s.batch, total_scan)
            ret = yield from s.scan_objects(cpu, nr_to_scan)
            if ret == SHRINK_STOP:
                break
            freed += ret
            total_scan -= nr_to_scan
            scanned += nr_to_scan
            self.metrics.inc("vmscan.slabs_scanned", nr_to_scan)
            if total_scan <= 0:
                break
        s.nr_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
        if freed:
            self.metrics.inc(f"vmscan.shrinker.{s.name}.freed", freed)
        return freed
