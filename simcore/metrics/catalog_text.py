"""Catalog entries of the kernel's other writers of live text: kprobes
(instruction slots, optprobes), ftrace's ops and trampolines, livepatch
(:mod:`simcore.kernel.kprobes`, :mod:`simcore.kernel.ftrace`,
:mod:`simcore.kernel.livepatch`); :mod:`simcore.metrics.catalog` lists
them after the BPF core's."""

from __future__ import annotations

from simcore.metrics.info import MetricInfo

TEXT_USERS: tuple[MetricInfo, ...] = (
    MetricInfo("kprobes.arms", "count", "none", "kprobe breakpoints written"),
    MetricInfo(
        "kprobes.hits",
        "count",
        "lower",
        "runs of probed instructions (an INT3 trap, or an optimized jump)",
    ),
    MetricInfo("kprobes.disarms", "count", "none", "kprobe breakpoints removed"),
    MetricInfo(
        "kprobes.insn_pages",
        "count",
        "none",
        "kprobe instruction-slot pages at the end",
    ),
    MetricInfo(
        "kprobes.optinsn_pages",
        "count",
        "none",
        "optprobe detour-buffer pages at the end",
    ),
    MetricInfo("kprobes.optimized", "count", "none", "kprobes optimized into jumps"),
    MetricInfo("kprobes.optimizer_runs", "count", "none", "kprobe_optimizer() runs"),
    MetricInfo(
        "kprobes.slot_failures", "count", "lower", "slot pages that could not be had"
    ),
    MetricInfo(
        "ftrace.ops_registered", "count", "none", "ftrace_ops registered at the end"
    ),
    MetricInfo("ftrace.trampolines", "count", "none", "ftrace trampolines at the end"),
    MetricInfo(
        "ftrace.trampoline_failures", "count", "lower", "ftrace trampolines not had"
    ),
    MetricInfo("livepatch.enabled", "count", "none", "live patches enabled at the end"),
    MetricInfo("livepatch.replaced", "count", "none", "live patches replaced"),
    MetricInfo("livepatch.failures", "count", "lower", "patch modules that failed"),
)
