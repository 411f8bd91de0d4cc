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
