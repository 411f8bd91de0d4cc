"""What chart axes and titles call a metric or a swept parameter.

A chart pasted into a thread must read without the simulator's dotted
names: ``alloc.vmalloc.latency_ns.p99`` is "vmalloc latency, 99th
percentile (us)", ``workloads[0].nr_threads`` is "worker threads
(nr_threads)". Metric labels come from the catalog
(:func:`simcore.metrics.catalog.label_of`); parameter labels from the
table below, which keeps the config's own name in brackets where a kernel
developer knows it by that name (test_vmalloc's ``nr_threads``).
"""

from __future__ import annotations

import re

from simcore.metrics.catalog import label_of

# whole config paths whose last part alone would not say enough
_PATHS = {
    "machine.cpus": "CPUs",
    "machine.sockets": "sockets",
    "machine.profile": "hardware profile",
    "kernel.preset": "kernel version (preset)",
    "duration": "simulated time",
    "sim.tlb_model": "TLB model",
}
# last path parts, wherever they sit (a workload, the machine, a strategy)
_LEAVES = {
    "cpus": "CPUs",
    "nr_threads": "worker threads",
    "nr_pages": "pages per allocation",
    "max_pages": "largest allocation, pages",
    "programs": "BPF programs",
    "modules": "modules",
    "fragmentation": "fragmented share of memory",
    "lazy_max_pages": "lazy purge threshold, pages",
    "vmap_nodes": "vmap nodes",
    "dram_bytes": "DRAM",
}


def metric_axis(metric: str, unit_name: str) -> str:
    """An axis label: the metric's human label and the axis unit, which
    is left out where it would only say "count"."""
    label = label_of(metric)
    if unit_name in ("", "count"):
        return label
    return f"{label} ({unit_name})"


def param_label(key: str) -> str:
    """A swept parameter's human name from its config path."""
    if key in _PATHS:
        return _PATHS[key]
    leaf = re.split(r"[.\[\]]+", key.strip(".[]"))[-1]
    human = _LEAVES.get(leaf, leaf.replace("_", " "))
    return human if human.replace(" ", "_") == leaf else f"{human} ({leaf})"
