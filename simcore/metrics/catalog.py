"""Every metric name simcore emits, with its unit and meaning.

Names follow the kernel's own counters where one exists (/proc/vmstat,
/proc/meminfo, perf events). ``<name>`` and ``<op>`` stand for a lock or an
allocator operation. ``better`` says which direction a reader wants.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    pattern: str
    unit: str  # count, ns, bytes, pct, pages, s, 1/s
    better: str  # lower | higher | none
    description: str


CATALOG: tuple[MetricInfo, ...] = (
    MetricInfo("itlb.misses", "count", "lower", "L1 iTLB misses"),
    MetricInfo("dtlb.misses", "count", "lower", "L1 dTLB misses"),
    MetricInfo("stlb.misses", "count", "lower", "second-level TLB misses (page walks)"),
    MetricInfo("itlb.mpki", "count", "lower", "iTLB misses per 1,000 instructions"),
    MetricInfo("dtlb.mpki", "count", "lower", "dTLB misses per 1,000 instructions"),
    MetricInfo("pagewalk.cycles", "count", "lower", "cycles spent in page walks"),
    MetricInfo("pagewalk.walks", "count", "lower", "page walks (STLB misses)"),
    MetricInfo("itlb.misses.*", "count", "lower", "L1 iTLB misses of one owner's code"),
    MetricInfo("dtlb.misses.*", "count", "lower", "L1 dTLB misses of one owner's data"),
    MetricInfo("stlb.misses.*", "count", "lower", "STLB misses of one owner's touches"),
    MetricInfo(
        "pagewalk.cycles.*", "count", "lower", "walk cycles of one owner's touches"
    ),
    MetricInfo(
        "cpu.overhead_pct",
        "pct",
        "lower",
        "share of CPU time lost to page walks, shootdowns and lock spinning",
    ),
    MetricInfo("cpu.*_ns", "ns", "lower", "CPU time by kind (summed over CPUs)"),
    MetricInfo("cpu.instructions", "count", "none", "instructions run by workloads"),
    MetricInfo(
        "tlb.shootdowns",
        "count",
        "lower",
        "kernel-range flushes sent to other CPUs by IPI",
    ),
    MetricInfo("tlb.ipis", "count", "lower", "flush IPIs sent (one per target CPU)"),
    MetricInfo(
        "tlb.full_flushes",
        "count",
        "lower",
        "flushes past the single-page ceiling (flush everything)",
    ),
    MetricInfo("tlb.local_flushes", "count", "none", "flushes on a 1-CPU machine"),
    MetricInfo(
        "tlb.broadcast_flushes",
        "count",
        "lower",
        "flushes by INVLPGB or TLBI broadcast (no IPIs)",
    ),
    MetricInfo(
        "directmap.level2_splits",
        "count",
        "lower",
        "2M direct-map pages split (/proc/vmstat direct_map_level2_splits)",
    ),
    MetricInfo(
        "directmap.level3_splits",
        "count",
        "lower",
        "1G direct-map pages split (/proc/vmstat direct_map_level3_splits)",
    ),
    MetricInfo("directmap.4k_bytes", "bytes", "lower", "/proc/meminfo DirectMap4k"),
    MetricInfo("directmap.2m_bytes", "bytes", "none", "/proc/meminfo DirectMap2M"),
    MetricInfo("directmap.1g_bytes", "bytes", "higher", "/proc/meminfo DirectMap1G"),
    MetricInfo(
        "lock.<name>.wait_ns", "ns", "lower", "time waited for the lock, all CPUs"
    ),
    MetricInfo("lock.<name>.hold_ns", "ns", "lower", "time the lock was held"),
    MetricInfo(
        "lock.<name>.contended_pct",
        "pct",
        "lower",
        "share of acquisitions that had to wait",
    ),
    MetricInfo("lock.<name>.acquisitions", "count", "none", "times the lock was taken"),
    MetricInfo(
        "alloc.<op>.latency_ns.p50", "ns", "lower", "median latency of the operation"
    ),
    MetricInfo("alloc.<op>.latency_ns.p99", "ns", "lower", "99th percentile latency"),
    MetricInfo("alloc.<op>.latency_ns.mean", "ns", "lower", "mean latency"),
    MetricInfo("alloc.<op>.count", "count", "none", "operations completed"),
    MetricInfo(
        "mem.exec.requested_bytes", "bytes", "none", "executable bytes asked for"
    ),
    MetricInfo(
        "mem.exec.allocated_bytes", "bytes", "lower", "executable bytes set aside"
    ),
    MetricInfo("mem.exec.waste_bytes", "bytes", "lower", "allocated minus requested"),
    MetricInfo(
        "mem.exec.regions",
        "count",
        "none",
        "shared executable regions live (BPF packs, ROX-cache areas)",
    ),
    MetricInfo(
        "mem.exec.region_allocs", "count", "lower", "shared executable regions created"
    ),
    MetricInfo(
        "mem.exec.region_frees", "count", "none", "shared executable regions released"
    ),
    MetricInfo(
        "mem.exec.oversize_allocs",
        "count",
        "none",
        "objects larger than a shared region, given an allocation of their own",
    ),
    MetricInfo(
        "mem.exec.cache_refills",
        "count",
        "lower",
        "blocks taken out of the direct map into a page cache (perm_alloc, "
        "__GFP_UNMAPPED)",
    ),
    MetricInfo(
        "mem.exec.cache_free_pages",
        "pages",
        "none",
        "pages such a cache holds unused at the end",
    ),
    MetricInfo(
        "mem.pagetable_pages", "pages", "lower", "kernel page-table pages in use"
    ),
    MetricInfo("vmap.lazy_purges", "count", "lower", "runs of __purge_vmap_area_lazy"),
    MetricInfo(
        "vmap.lazy_pages", "pages", "none", "vmap_lazy_nr at the end of the run"
    ),
    MetricInfo(
        "vmap.used_bytes", "bytes", "none", "KVA in busy areas (guards included)"
    ),
    MetricInfo("vmap.alloc_failures", "count", "lower", "KVA allocations that failed"),
    MetricInfo("vmap.pool_hits", "count", "none", "allocations served by a node pool"),
    MetricInfo(
        "vmap.pool_misses", "count", "none", "node-pool misses (global lock taken)"
    ),
    MetricInfo(
        "vmalloc.huge_fallbacks", "count", "lower", "huge vmalloc retried with 4K pages"
    ),
    MetricInfo("vmap.blocks", "count", "none", "vmap_blocks created (new_vmap_block)"),
    MetricInfo("vmap.block_frees", "count", "none", "vmap_blocks freed"),
    MetricInfo("vmap.free_blocks", "count", "none", "KVA free-tree blocks at the end"),
    MetricInfo("vmap.purge_helpers", "count", "none", "purge_vmap_node() helper runs"),
    MetricInfo(
        "vmap.reclaims", "count", "lower", "reclaim_and_purge_vmap_areas() on failure"
    ),
    MetricInfo("vmap.unmap_aliases", "count", "none", "calls of vm_unmap_aliases()"),
    MetricInfo("vread.bytes_copied", "bytes", "none", "vread_iter() bytes copied"),
    MetricInfo("vread.bytes_zeroed", "bytes", "none", "vread_iter() bytes zero-filled"),
    MetricInfo("buddy.free_pages", "pages", "none", "free pages in the buddy lists"),
    MetricInfo("buddy.pcp_pages", "pages", "none", "pages on per-CPU free lists"),
    MetricInfo(
        "buddy.order*_failures", "count", "lower", "high-order allocations that failed"
    ),
    MetricInfo(
        "directmap.pagetable_pages",
        "pages",
        "lower",
        "page-table pages the direct map gained by splits",
    ),
    MetricInfo("text_poke.pokes", "count", "lower", "__text_poke() calls"),
    MetricInfo(
        "text_poke.sync_rounds", "count", "lower", "text_poke_bp sync IPI rounds"
    ),
    MetricInfo("text_poke.sync_ipis", "count", "lower", "IPIs of text_poke_bp syncs"),
    MetricInfo("bpf.progs_loaded", "count", "none", "BPF programs loaded"),
    MetricInfo("bpf.progs_freed", "count", "none", "BPF programs freed"),
    MetricInfo(
        "bpf.jit_limit_failures", "count", "lower", "loads refused by bpf_jit_limit"
    ),
    MetricInfo("bpf.load_failures", "count", "lower", "loads without memory"),
    MetricInfo("bpf.trampolines", "count", "none", "BPF trampolines live at the end"),
    MetricInfo("bpf.dispatcher_updates", "count", "none", "BPF dispatcher rewrites"),
    MetricInfo("module.loads", "count", "none", "modules loaded (load_module)"),
    MetricInfo("module.unloads", "count", "none", "modules unloaded (delete_module)"),
    MetricInfo(
        "module.load_failures", "count", "lower", "loads that failed (no memory, deps)"
    ),
    MetricInfo(
        "module.dup_loads", "count", "none", "loads of a module already (being) loaded"
    ),
    MetricInfo(
        "module.unload_refused", "count", "none", "unloads refused: module in use"
    ),
    MetricInfo(
        "module.init_frees", "count", "none", "init memory areas freed (do_free_init)"
    ),
    MetricInfo(
        "module.boot_ns", "ns", "lower", "boot: start to end of the last module load"
    ),
    MetricInfo(
        "test_vmalloc.*.avg_usec",
        "count",
        "lower",
        "test_vmalloc avg usec of a test (all loops), mean over workers",
    ),
    MetricInfo(
        "test_vmalloc.*.loop_ns", "ns", "lower", "test_vmalloc time per loop of a test"
    ),
    MetricInfo("test_vmalloc.*.passed", "count", "none", "test_vmalloc runs passed"),
    MetricInfo("test_vmalloc.*.failed", "count", "none", "test_vmalloc runs failed"),
    MetricInfo(
        "test_vmalloc.workers_unfinished",
        "count",
        "none",
        "test_vmalloc workers still running when the simulation ended",
    ),
    MetricInfo("workload.*", "count", "none", "work done by a workload generator"),
    MetricInfo("sim.events", "count", "none", "SimPy events processed"),
    MetricInfo(
        "sim.wall_s", "s", "lower", "wall-clock time (timing.json, not metrics.json)"
    ),
    MetricInfo(
        "sim.events_per_s",
        "1/s",
        "higher",
        "simulator speed (timing.json, not metrics.json)",
    ),
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


def _glob(pattern: str) -> str:
    return pattern.replace("<name>", "*").replace("<op>", "*")


def lookup(name: str) -> MetricInfo | None:
    for info in CATALOG:
        if fnmatch.fnmatchcase(name, _glob(info.pattern)):
            return info
    return None


def rank(name: str) -> int:
    """Position in the catalog, which lists metrics in reading order; unknown
    names go last."""
    for i, info in enumerate(CATALOG):
        if fnmatch.fnmatchcase(name, _glob(info.pattern)):
            return i
    return len(CATALOG)
