"""Catalog entries of memory pressure: the page allocator's slow path,
page reclaim (:mod:`simcore.kernel.vmscan`; names as /proc/vmstat's where
it has one), what a failed allocation leaves behind, and the ``pressure``
workload's memory; :mod:`simcore.metrics.catalog` lists them after the
page allocator's own counters."""

from __future__ import annotations

from simcore.metrics.info import MetricInfo

RECLAIM: tuple[MetricInfo, ...] = (
    MetricInfo(
        "buddy.slowpath_allocs",
        "count",
        "lower",
        "allocations that took the slow path: no page above the low watermark",
    ),
    MetricInfo(
        "buddy.reclaim_retries",
        "count",
        "lower",
        "direct reclaim rounds repeated by should_reclaim_retry()",
    ),
    MetricInfo(
        "buddy.reclaim_failures",
        "count",
        "lower",
        "allocations that failed after direct reclaim (no OOM killer modelled)",
        label="allocations failed under pressure",
    ),
    MetricInfo(
        "buddy.compact_skipped_failures",
        "count",
        "lower",
        "costly __GFP_NORETRY allocations failed without reclaim: compaction "
        "skipped, every zone short of its low watermark plus compact_gap()",
    ),
    MetricInfo("vmscan.kswapd_wakeups", "count", "none", "kswapd woken"),
    MetricInfo(
        "vmscan.pageoutrun", "count", "none", "balance_pgdat() runs (pageoutrun)"
    ),
    MetricInfo(
        "vmscan.kswapd_failures",
        "count",
        "lower",
        "balance_pgdat() runs that reclaimed nothing",
    ),
    MetricInfo(
        "vmscan.allocstall",
        "count",
        "lower",
        "direct reclaim entered by an allocating task (allocstall)",
        label="direct reclaim stalls",
    ),
    MetricInfo("vmscan.pgscan_kswapd", "pages", "none", "pages kswapd scanned"),
    MetricInfo("vmscan.pgsteal_kswapd", "pages", "none", "pages kswapd reclaimed"),
    MetricInfo("vmscan.pgscan_direct", "pages", "none", "pages direct reclaim scanned"),
    MetricInfo(
        "vmscan.pgsteal_direct", "pages", "none", "pages direct reclaim reclaimed"
    ),
    MetricInfo("vmscan.shrink_slab_calls", "count", "none", "shrink_slab() calls"),
    MetricInfo(
        "vmscan.slabs_scanned", "count", "none", "objects shrinkers were asked to scan"
    ),
    MetricInfo(
        "vmscan.shrinker.<name>.freed",
        "count",
        "none",
        "objects (pages, for the page caches) a shrinker freed",
        label="{} shrinker freed",
    ),
    MetricInfo(
        "pageattr.enomem",
        "count",
        "lower",
        "page-table splits of set_memory_*() that found no page (-ENOMEM): "
        "the rest of the range kept its permissions",
    ),
    MetricInfo(
        "mem.exec.staging_failures",
        "count",
        "lower",
        "perm_alloc staging buffers not had (the RFC writes through NULL)",
    ),
    MetricInfo(
        "workload.pressure.anon_pages",
        "pages",
        "none",
        "anonymous pages the pressure workload holds at the end",
    ),
    MetricInfo(
        "workload.pressure.file_pages",
        "pages",
        "none",
        "page-cache pages the pressure workload holds at the end",
    ),
)
