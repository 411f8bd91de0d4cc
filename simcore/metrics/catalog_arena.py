"""Catalog entries of BPF arenas and the user-range flushes their zaps
send; :mod:`simcore.metrics.catalog` lists them after the core metrics."""

from __future__ import annotations

from simcore.metrics.info import MetricInfo

ARENA: tuple[MetricInfo, ...] = (
    MetricInfo(
        "tlb.user_shootdowns",
        "count",
        "lower",
        "user-range flushes sent by IPI to the CPUs of an mm (arena zaps)",
    ),
    MetricInfo("tlb.user_ipis", "count", "lower", "user-range flush IPIs sent"),
    MetricInfo("tlb.user_full_flushes", "count", "lower", "user flushes of a whole mm"),
    MetricInfo(
        "tlb.user_local_flushes",
        "count",
        "none",
        "user-range flushes needing no other CPU",
    ),
    MetricInfo(
        "tlb.user_broadcast_flushes",
        "count",
        "lower",
        "user-range flushes by INVLPGB or TLBI broadcast",
    ),
    MetricInfo(
        "mem.arena.kva_bytes", "bytes", "none", "vmalloc KVA reserved by arenas"
    ),
    MetricInfo(
        "mem.arena.allocated_bytes",
        "bytes",
        "none",
        "arena pages allocated by programs or user faults, not freed",
    ),
    MetricInfo(
        "mem.arena.backed_bytes",
        "bytes",
        "lower",
        "pages arenas hold from the page allocator",
    ),
    MetricInfo(
        "mem.arena.peak_backed_bytes",
        "bytes",
        "lower",
        "peak of mem.arena.backed_bytes",
    ),
    MetricInfo(
        "mem.arena.waste_bytes",
        "bytes",
        "lower",
        "held minus allocated: unused huge-page parts, pending frees, scratch",
        label="arena memory wasted",
    ),
    MetricInfo(
        "mem.arena.pending_free_bytes",
        "bytes",
        "lower",
        "freed arena pages held until their batched flush",
    ),
    MetricInfo("arena.arenas", "count", "none", "arenas alive"),
    MetricInfo("arena.create_failures", "count", "lower", "arena_map_alloc() failures"),
    MetricInfo("arena.allocs", "count", "none", "bpf_arena_alloc_pages() successes"),
    MetricInfo("arena.alloc_pages", "pages", "none", "pages those calls allocated"),
    MetricInfo(
        "arena.alloc_failures", "count", "lower", "bpf_arena_alloc_pages() failures"
    ),
    MetricInfo("arena.frees", "count", "none", "bpf_arena_free_pages() calls"),
    MetricInfo(
        "arena.freed_pages", "pages", "none", "allocated pages those calls freed"
    ),
    MetricInfo(
        "arena.deferred_frees",
        "count",
        "none",
        "frees from non-sleepable programs, queued for the worker",
    ),
    MetricInfo("arena.free_worker_runs", "count", "none", "arena_free_worker() runs"),
    MetricInfo(
        "arena.kernel_flushes",
        "count",
        "lower",
        "flush_tlb_kernel_range() calls by arena code (all CPUs)",
    ),
    MetricInfo(
        "arena.kernel_flushes_per_free",
        "count",
        "lower",
        "arena.kernel_flushes / arena.frees",
    ),
    MetricInfo("arena.user_flushes", "count", "lower", "user flushes after arena zaps"),
    MetricInfo(
        "arena.batched_flushes", "count", "none", "flushes of a batch of freed spans"
    ),
    MetricInfo("arena.user_faults", "count", "none", "arena_vm_fault() successes"),
    MetricInfo(
        "arena.user_fault_allocs", "count", "none", "user faults that allocated a page"
    ),
    MetricInfo("arena.user_sigsegv", "count", "lower", "user faults ending in SIGSEGV"),
    MetricInfo(
        "arena.kernel_faults",
        "count",
        "lower",
        "BPF accesses to unmapped pages fixed up by ex_handler_bpf()",
    ),
    MetricInfo(
        "arena.scratch_installs",
        "count",
        "lower",
        "BPF faults that mapped the scratch page and reported",
    ),
    MetricInfo(
        "arena.scratch_replaced",
        "count",
        "none",
        "scratch PTEs cleared and flushed for a real page",
    ),
    MetricInfo("arena.huge_maps", "count", "none", "2 MiB regions mapped by a PMD"),
    MetricInfo("arena.huge_unmaps", "count", "none", "2 MiB regions released"),
    MetricInfo(
        "arena.huge_fallbacks", "count", "lower", "regions mapped 4K for want of 2 MiB"
    ),
    MetricInfo(
        "arena.irqoff_ns",
        "ns",
        "lower",
        "time with IRQs off in the arena spinlock (spinning and holding)",
    ),
    MetricInfo(
        "arena.irqoff_max_ns", "ns", "lower", "longest IRQs-off arena lock section"
    ),
    MetricInfo("arena.*_accesses", "count", "none", "arena page touches (bpf, user)"),
    MetricInfo("arena.*.stlb_misses", "count", "lower", "STLB misses of those touches"),
    MetricInfo(
        "arena.*.stlb_misses_per_access",
        "count",
        "lower",
        "STLB misses per arena page touch",
    ),
    MetricInfo(
        "arena.*.faulted_accesses",
        "count",
        "lower",
        "touches that took a fault (user first touch, BPF unmapped page)",
    ),
)
