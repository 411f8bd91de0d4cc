"""Every metric name simcore emits, with its unit and meaning.

Names follow the kernel's own counters where one exists (/proc/vmstat,
/proc/meminfo, perf events). ``<name>`` and ``<op>`` stand for a lock or an
allocator operation. ``better`` says which direction a reader wants.
``label`` is what a chart axis or a summary headline says instead of the
dotted name; ``{}`` in it stands for the lock, operation or owner the
wildcard matched. Metrics marked *derived* are not in metrics.json: the
summary computes them from its counters (:mod:`simcore.metrics.derived`).
"""

from __future__ import annotations

import fnmatch
import re

from simcore.metrics.catalog_arena import ARENA
from simcore.metrics.catalog_bpf import BPF_CORE, KV_ALLOC
from simcore.metrics.catalog_reclaim import RECLAIM
from simcore.metrics.catalog_text import TEXT_USERS
from simcore.metrics.info import MetricInfo

__all__ = [
    "CATALOG",
    "HEADLINE",
    "WHAT_IF",
    "MetricInfo",
    "label_of",
    "lookup",
    "rank",
]

# 1 for a strategy no release up to the run's preset shipped: a label the
# summary puts in the column header rather than a row
WHAT_IF = "strategy.what_if"


CATALOG: tuple[MetricInfo, ...] = (
    MetricInfo("itlb.misses", "count", "lower", "L1 iTLB misses", label="iTLB misses"),
    MetricInfo("dtlb.misses", "count", "lower", "L1 dTLB misses", label="dTLB misses"),
    MetricInfo(
        "stlb.misses",
        "count",
        "lower",
        "second-level TLB misses (page walks)",
        label="STLB misses (page walks)",
    ),
    MetricInfo(
        "itlb.mpki",
        "count",
        "lower",
        "iTLB misses per 1,000 instructions",
        label="iTLB misses per 1K instructions",
    ),
    MetricInfo(
        "dtlb.mpki",
        "count",
        "lower",
        "dTLB misses per 1,000 instructions",
        label="dTLB misses per 1K instructions",
    ),
    MetricInfo(
        "pagewalk.cycles",
        "count",
        "lower",
        "cycles spent in page walks",
        label="page-walk cycles",
    ),
    MetricInfo(
        "pagewalk.walks",
        "count",
        "lower",
        "page walks (STLB misses)",
        label="page walks",
    ),
    MetricInfo(
        "itlb.misses.*",
        "count",
        "lower",
        "L1 iTLB misses of one owner's code",
        label="iTLB misses, {} code",
    ),
    MetricInfo(
        "dtlb.misses.*",
        "count",
        "lower",
        "L1 dTLB misses of one owner's data",
        label="dTLB misses, {} data",
    ),
    MetricInfo(
        "stlb.misses.*",
        "count",
        "lower",
        "STLB misses of one owner's touches",
        label="STLB misses, {} touches",
    ),
    MetricInfo(
        "pagewalk.cycles.*",
        "count",
        "lower",
        "walk cycles of one owner's touches",
        label="page-walk cycles, {} touches",
    ),
    MetricInfo(
        "cpu.overhead_pct",
        "pct",
        "lower",
        "share of CPU time lost to page walks, shootdowns, lock spinning, "
        "PTI switches, text-patching INT3 traps and kprobe hits",
        label="CPU time lost",
    ),
    MetricInfo(
        "cpu.*_ns",
        "ns",
        "lower",
        "CPU time by kind (summed over CPUs)",
        label="CPU time in {}",
    ),
    MetricInfo(
        "cpu.instructions",
        "count",
        "none",
        "instructions run by workloads and the host's own code",
    ),
    MetricInfo(
        "host.instructions", "count", "none", "instructions of the host's own code"
    ),
    MetricInfo(
        "host.tlb_drops",
        "count",
        "lower",
        "CR3 writes that dropped TLB entries (PTI without PCID, mm switches)",
        label="TLB drops",
    ),
    MetricInfo(
        "host.ipi_irqs_off_waits",
        "count",
        "lower",
        "IPI targets found with IRQs off (the sender waited)",
    ),
    MetricInfo(
        "host.ipi_idle_wakeups",
        "count",
        "lower",
        "IPI targets woken from an idle state",
    ),
    MetricInfo(
        "tlb.shootdowns",
        "count",
        "lower",
        "kernel-range flushes sent to other CPUs by IPI",
        label="TLB shootdowns",
    ),
    MetricInfo(
        "tlb.ipis",
        "count",
        "lower",
        "flush IPIs sent (one per target CPU)",
        label="flush IPIs",
    ),
    MetricInfo(
        "tlb.full_flushes",
        "count",
        "lower",
        "flushes past the single-page ceiling (flush everything)",
        label="full TLB flushes",
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
        label="direct-map 2M splits",
    ),
    MetricInfo(
        "directmap.level3_splits",
        "count",
        "lower",
        "1G direct-map pages split (/proc/vmstat direct_map_level3_splits)",
        label="direct-map 1G splits",
    ),
    MetricInfo(
        "directmap.4k_bytes",
        "bytes",
        "lower",
        "/proc/meminfo DirectMap4k",
        label="direct map in 4K pages",
    ),
    MetricInfo(
        "directmap.2m_bytes",
        "bytes",
        "none",
        "/proc/meminfo DirectMap2M",
        label="direct map in 2M pages",
    ),
    MetricInfo(
        "directmap.1g_bytes",
        "bytes",
        "higher",
        "/proc/meminfo DirectMap1G",
        label="direct map in 1G pages",
    ),
    MetricInfo(
        "lock.<name>.wait_ns",
        "ns",
        "lower",
        "time waited for the lock, all CPUs",
        label="{} wait time",
    ),
    MetricInfo(
        "lock.<name>.hold_ns",
        "ns",
        "lower",
        "time the lock was held",
        label="{} hold time",
    ),
    MetricInfo(
        "lock.<name>.contended_pct",
        "pct",
        "lower",
        "share of acquisitions that had to wait",
        label="{} contended acquisitions",
    ),
    MetricInfo(
        "lock.<name>.acquisitions",
        "count",
        "none",
        "times the lock was taken",
        label="{} acquisitions",
    ),
    MetricInfo(
        "alloc.<op>.latency_ns.p50",
        "ns",
        "lower",
        "median latency of the operation",
        label="{} latency, median",
    ),
    MetricInfo(
        "alloc.<op>.latency_ns.p99",
        "ns",
        "lower",
        "99th percentile latency",
        label="{} latency, 99th percentile",
    ),
    # time per load and per text update: the mean of the operation's whole
    # path, named for the headline (listed before the generic mean)
    MetricInfo(
        "alloc.module_load.latency_ns.mean",
        "ns",
        "lower",
        "mean time of one load_module(), allocation to ROX text",
        label="time per module load",
    ),
    MetricInfo(
        "alloc.bpf_prog_load.latency_ns.mean",
        "ns",
        "lower",
        "mean time of one BPF program load, JIT image allocation to ROX",
        label="time per BPF prog load",
    ),
    MetricInfo(
        "alloc.bpf_trampoline_update.latency_ns.mean",
        "ns",
        "lower",
        "mean time of one BPF trampoline rewrite (a text update)",
        label="time per text update",
    ),
    MetricInfo(
        "alloc.<op>.latency_ns.mean",
        "ns",
        "lower",
        "mean latency",
        label="{} latency, mean",
    ),
    MetricInfo(
        "alloc.<op>.count",
        "count",
        "none",
        "operations completed",
        label="{} operations",
    ),
    MetricInfo(
        "mem.exec.requested_bytes",
        "bytes",
        "none",
        "executable bytes asked for",
        label="executable memory requested",
    ),
    MetricInfo(
        "mem.exec.allocated_bytes",
        "bytes",
        "lower",
        "executable bytes set aside",
        label="executable memory allocated",
    ),
    MetricInfo(
        "mem.exec.waste_bytes",
        "bytes",
        "lower",
        "allocated minus requested",
        label="executable memory wasted",
    ),
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
        "mem.pagetable_pages",
        "pages",
        "lower",
        "kernel page-table pages in use",
        label="kernel page-table pages",
    ),
    MetricInfo(
        "vmap.lazy_purges",
        "count",
        "lower",
        "runs of __purge_vmap_area_lazy",
        label="lazy vmap purges",
    ),
    MetricInfo(
        "vmap.lazy_pages", "pages", "none", "vmap_lazy_nr at the end of the run"
    ),
    MetricInfo(
        "vmap.used_bytes",
        "bytes",
        "none",
        "KVA in busy areas (guards included)",
        label="vmap space in use",
    ),
    MetricInfo(
        "vmap.alloc_failures",
        "count",
        "lower",
        "KVA allocations that failed",
        label="vmap allocation failures",
    ),
    MetricInfo("vmap.pool_hits", "count", "none", "allocations served by a node pool"),
    MetricInfo(
        "vmap.pool_misses", "count", "none", "node-pool misses (global lock taken)"
    ),
    MetricInfo(
        "vmalloc.huge_fallbacks", "count", "lower", "huge vmalloc retried with 4K pages"
    ),
    *KV_ALLOC,
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
        "buddy.order*_failures",
        "count",
        "lower",
        "allocations of the order that failed",
    ),
    *RECLAIM,
    MetricInfo(
        "directmap.pagetable_pages",
        "pages",
        "lower",
        "page-table pages the direct map gained by splits",
    ),
    MetricInfo(
        "text_poke.pokes", "count", "lower", "__text_poke() calls", label="text pokes"
    ),
    MetricInfo(
        "text_poke.int3_hits",
        "count",
        "lower",
        "INT3 traps of other CPUs into poke_int3_handler() while sites were armed",
    ),
    MetricInfo(
        "text_poke.sync_rounds",
        "count",
        "lower",
        "text_poke_bp sync IPI rounds (arm64: kick_all_cpus_sync() rounds)",
    ),
    MetricInfo(
        "text_poke.stop_machine",
        "count",
        "lower",
        "stop_machine() rendezvous to patch text (arm64 aarch64_insn_patch_text())",
        label="stop_machine patches",
    ),
    MetricInfo(
        "pageattr.einval",
        "count",
        "lower",
        "arm64 set_memory_*() calls refused with -EINVAL (not one page-mapped "
        "VM_ALLOC area): the memory kept its permissions",
        label="arm64 set_memory -EINVAL",
    ),
    MetricInfo(
        "pageattr.ptes_changed",
        "count",
        "lower",
        "vmalloc PTEs whose permissions arm64 change_memory_common() changed",
        label="arm64 PTE permission changes",
    ),
    MetricInfo(
        "text_poke.sync_ipis",
        "count",
        "lower",
        "IPIs of text_poke_bp syncs",
        label="text_poke sync IPIs",
    ),
    *BPF_CORE,
    *TEXT_USERS,
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
    MetricInfo(
        WHAT_IF,
        "count",
        "none",
        "1 when no release up to the run's preset shipped the strategy"
        " (a what-if; see `simcore list strategies`), else 0",
    ),
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
    *ARENA,
    # derived: computed by the summary from the counters above, where the
    # denominator exists (simcore.metrics.derived)
    MetricInfo(
        "tlb.shootdowns_per_load",
        "count",
        "lower",
        "derived: tlb.shootdowns / (module.loads + bpf.progs_loaded)",
        label="shootdowns per load",
    ),
    MetricInfo(
        "tlb.ipis_per_load",
        "count",
        "lower",
        "derived: tlb.ipis / (module.loads + bpf.progs_loaded)",
        label="flush IPIs per load",
    ),
    MetricInfo(
        "text_poke.sync_ipis_per_poke",
        "count",
        "lower",
        "derived: text_poke.sync_ipis / text_poke.pokes",
        label="sync IPIs per text poke",
    ),
    MetricInfo(
        "mem.exec.waste_pct",
        "pct",
        "lower",
        "derived: mem.exec.waste_bytes / mem.exec.allocated_bytes",
        label="executable memory wasted",
    ),
)

# What an RFC thread argues about, in the order the summary leads with it:
# TLB reach, remote flushes, direct-map fragmentation, the time a load or a
# text update takes, memory waste, and the CPU time all of it costs.
HEADLINE: tuple[str, ...] = (
    "itlb.misses",
    "stlb.misses",
    "tlb.shootdowns",
    "tlb.ipis",
    "tlb.shootdowns_per_load",
    "directmap.level2_splits",
    "directmap.level3_splits",
    "alloc.module_load.latency_ns.mean",
    "alloc.bpf_prog_load.latency_ns.mean",
    "alloc.bpf_trampoline_update.latency_ns.mean",
    "mem.exec.waste_bytes",
    "mem.arena.waste_bytes",
    "cpu.overhead_pct",
)


def _glob(pattern: str) -> str:
    return pattern.replace("<name>", "*").replace("<op>", "*")


def lookup(name: str) -> MetricInfo | None:
    for info in CATALOG:
        if fnmatch.fnmatchcase(name, _glob(info.pattern)):
            return info
    return None


def _parts(pattern: str, name: str) -> tuple[str, ...]:
    """What each wildcard of ``pattern`` matched in ``name``."""
    rx = "".join(
        "(.+?)" if tok in ("*", "<name>", "<op>") else re.escape(tok)
        for tok in re.split(r"(\*|<name>|<op>)", pattern)
        if tok
    )
    m = re.fullmatch(rx, name)
    return m.groups() if m else ()


def label_of(name: str) -> str:
    """The human name of a metric: its catalog label with the lock,
    operation or owner filled in; the name itself when uncatalogued."""
    info = lookup(name)
    if info is None:
        return name
    text = info.label or info.description
    parts = _parts(info.pattern, name)
    return text.format(*parts) if "{}" in text and parts else text


def rank(name: str) -> int:
    """Position in the catalog, which lists metrics in reading order; unknown
    names go last."""
    for i, info in enumerate(CATALOG):
        if fnmatch.fnmatchcase(name, _glob(info.pattern)):
            return i
    return len(CATALOG)
