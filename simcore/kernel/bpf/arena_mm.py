"""kernel/bpf/arena.c, the user side: the process that mmap()s an arena
(:class:`UserMm`), the arena's one user VMA, and the addresses a page has
in the two views.

Kernel functions modelled:

- ``arena_get_unmapped_area()`` + ``arena_map_mmap()``: one user VMA that
  never crosses a 4 GiB boundary (``get_unmapped_area(len * 2)``, rounded
  up to 4 GiB when it would), remembered under ``arena->lock``;
- ``compute_pgoff()``: a page's offset in the arena from the low 32 bits
  of its user address; BPF programs see it at ``kern_vm_start + (u32)uaddr``;
- ``munmap()`` of the VMA: every user PTE zapped, one flush to the CPUs of
  the mm, then ``arena_vm_close()`` takes the VMA off the list.
"""

from __future__ import annotations

from simcore.constants import PAGE_SHIFT, SZ_4G
from simcore.constants import PAGE_SIZE as PAGE
from simcore.errors import SimulationError

# the low 32 bits of a user address: where a page sits in the arena
LO32 = (1 << 32) - 1
# Top of the mmap area, where get_unmapped_area() hands out top-down.
# Estimate: x86-64 TASK_SIZE is 0x7ffffffff000; mmap_base sits below the
# stack gap and randomisation, about here.
MMAP_BASE = 0x7F00_0000_0000


class UserMm:
    """The user process that mmap()s arenas: the CPUs it runs on (its
    ``mm_cpumask``, which user-range flushes target) and a top-down
    ``get_unmapped_area()``."""

    def __init__(self, cpus) -> None:
        self.cpus = tuple(sorted(set(cpus)))
        self.top = MMAP_BASE

    def get_unmapped_area(self, length: int, align: int = PAGE) -> int:
        addr = (self.top - length) & ~(align - 1)
        self.top = addr
        return addr


class ArenaVma:
    """The arena's user VMA and the addresses of its pages, mixed into
    :class:`~simcore.kernel.bpf.arena.BpfArena` (whose fields it uses)."""

    # -- addresses -------------------------------------------------------------
    def kaddr(self, pgoff: int) -> int:
        """kern_vm_start + (u32)uaddr: where BPF programs see the page."""
        return self.kern_vm_start + (self.user_vm_start & LO32) + (pgoff << PAGE_SHIFT)

    def uaddr(self, pgoff: int) -> int:
        return self.user_vm_start + (pgoff << PAGE_SHIFT)

    def compute_pgoff(self, uaddr: int) -> int:
        return ((uaddr - (self.user_vm_start & LO32)) & LO32) >> PAGE_SHIFT

    @property
    def nr_pages(self) -> int:
        """Pages the user VMA covers (0 before mmap)."""
        return (self.user_vm_end - self.user_vm_start) >> PAGE_SHIFT

    # -- mmap ----------------------------------------------------------------------
    def mmap(self, cpu: int, mm: UserMm):
        """arena_get_unmapped_area() + arena_map_mmap(): the one user VMA,
        as long as the arena, not crossing a 4 GiB boundary."""
        length = self.max_entries << PAGE_SHIFT
        align = self.strategy.user_align
        ret = mm.get_unmapped_area(length * 2 + (align if align > PAGE else 0), align)
        if (ret >> 32) != ((ret + length - 1) >> 32):
            ret = -(-ret // SZ_4G) * SZ_4G
        if (ret >> 32) != ((ret + length - 1) >> 32):
            raise SimulationError(f"arena VMA at {ret:#x} crosses 4 GiB")
        # remember_vma(): one kmalloc under arena->lock
        yield from self.mutex.hold(cpu, self.slab_ns)
        self.mm = mm
        self.user_vm_start = ret
        self.user_vm_end = ret + length
        return True

    # -- teardown ---------------------------------------------------------------------------------
    def munmap(self, cpu: int):
        """munmap() of the VMA: every user PTE zapped (one mm flush), then
        arena_vm_close() takes it off the list under arena->lock."""
        if self.mm is None:
            return
        ns = len(self.user) * self.pte_ns
        if self.user:
            lo, hi = min(self.user), max(self.user) + 1
            ns += self.flush_user(cpu, lo, hi)
            self.user.clear()
        yield self.env.timeout(int(ns))
        yield from self.mutex.hold(cpu, self.slab_ns)
