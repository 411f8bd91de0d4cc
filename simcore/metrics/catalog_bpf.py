"""Catalog entries of the BPF core (:mod:`simcore.kernel.bpf.core`, its
verifier's memory and its kallsyms), and of the mm/util.c allocation
functions the verifier uses (:mod:`simcore.kernel.util`);
:mod:`simcore.metrics.catalog` lists the first after the text-patching
counters and the second after vmalloc's."""

from __future__ import annotations

from simcore.metrics.info import MetricInfo

BPF_CORE: tuple[MetricInfo, ...] = (
    MetricInfo("bpf.progs_loaded", "count", "none", "BPF programs loaded"),
    MetricInfo("bpf.progs_freed", "count", "none", "BPF programs freed"),
    MetricInfo(
        "bpf.jit_limit_failures", "count", "lower", "loads refused by bpf_jit_limit"
    ),
    MetricInfo("bpf.load_failures", "count", "lower", "loads without memory"),
    MetricInfo("bpf.trampolines", "count", "none", "BPF trampolines live at the end"),
    MetricInfo("bpf.dispatcher_updates", "count", "none", "BPF dispatcher rewrites"),
    MetricInfo(
        "bpf.insn_patches",
        "count",
        "none",
        "verifier instruction patches that resized the aux array "
        "(bpf_patch_insn_data())",
    ),
    MetricInfo(
        "bpf.ksyms",
        "count",
        "none",
        "BPF kallsyms entries (programs, trampoline and dispatcher images) at the end",
    ),
)

KV_ALLOC: tuple[MetricInfo, ...] = (
    MetricInfo(
        "kvmalloc.vmalloc_fallbacks",
        "count",
        "lower",
        "kvmalloc()s past a page whose high-order kmalloc failed, served by vmalloc()",
    ),
    MetricInfo(
        "vrealloc.moves",
        "count",
        "lower",
        "vrealloc()s that outgrew their pages: vmalloc(), copy, vfree()",
    ),
)
