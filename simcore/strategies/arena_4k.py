"""``arena_4k``: the kernel's BPF arena.

Every page is a zeroed order-0 page behind its own 4K kernel PTE, inserted
one PTE at a time as programs allocate or user space faults; every free
flushes the kernel range on all CPUs (per page in the mutex era, per call
from Dec 2025) and zaps the user view with its own flush. The locking era
comes from ``kernel.arena_locking``. All behaviour is the interface's
default (:class:`~simcore.strategies.arena_base.ArenaStrategy`).
"""

from __future__ import annotations

from simcore.strategies.arena_base import ArenaStrategy


class Arena4K(ArenaStrategy):
    name = "arena_4k"
    first_release = "6.9"
    release_source = (
        "317460317a02 'bpf: Introduce bpf_arena.' (v6.9); kernel.arena_locking "
        "and kernel.arena_fault follow later releases. arm64: the JIT's "
        "PROBE_MEM32 and addr_space_cast, 339af577ec05 and 4dd31243e308 (v6.10)"
    )
    arch_releases = {"arm64": "6.10"}
    summary = "kernel BPF arena: 4K kernel PTEs, each free flushed on all CPUs"
    models = "kernel/bpf/arena.c, Linux 6.9 to 2026 bpf-next (kernel.arena_locking)"
