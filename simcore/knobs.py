"""Typed kernel knobs: one kernel era's design choices, resolved.

``kernel.preset`` names an era (``simcore/kernel/presets.yaml``, each value
with its source); a workload may override any knob beside it. Once the
workload is resolved, every knob has a value and the model reads them as
attributes of :class:`KernelKnobs`, never from a dict.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from simcore.units import Pages


class KernelKnobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str
    # global vmap_area_lock / free_vmap_area_lock, or per-node pools (v6.9)
    vmap_locking: Literal["global", "per_node"]
    vmap_nodes: int  # nr_vmap_nodes, resolved from the CPU count when 0
    # lazy_max_pages(), resolved from the CPU count when 0; a preset may
    # write it as a size (32MiB = 8192 pages), as a workload may
    lazy_max_pages: Pages
    page_alloc: Literal["single", "bulk", "high_order"]
    # per-CPU page lists for orders 1..3 and THP as well as 0 (v5.14)
    pcp_high_order: bool
    # HAVE_ARCH_HUGE_VMALLOC: vmalloc honours VM_ALLOW_HUGE_VMAP (x86 v5.18,
    # arm64 v6.1); before, every vmalloc mapping is 4K
    huge_vmalloc: bool
    drain_in_workqueue: bool
    lazy_purge: Literal["list", "tree"]
    # BPF_PROG_PACK_SIZE of the era: a page (v5.18, v5.19) or 2M per node
    bpf_prog_pack_size: Literal["4K", "2M"]
    # x86 only (ARCH_OF): the direct map's leaf size and CPA's era choices
    direct_map_page: Literal["1G", "2M"] | None
    cpa_collapse: bool | None
    cpa_nx_alias: bool | None
    cpa_rox: Literal["native", "ro_then_x"] | None
    fragmentation: float
    buddyinfo: str | None
    # captures of a host whose state the run starts from (kernel/host_state.py)
    meminfo: str | None
    vmallocinfo: str | None
    vmstat: str | None
    arena_locking: Literal["mutex", "spinlock"]
    arena_fault: Literal["fixup", "scratch_page"]
    pti: Literal["auto", "on", "off"] | None
    # x86 only: kernel ranges flushed with INVLPGB + TLBSYNC where the CPU
    # has it (v6.15)
    invlpgb: bool | None
    # vread_iter() (/proc/kcore) copies vm_map_ram areas (v6.3)
    vread_vm_map_ram: bool
    # a module's memory: one module_alloc() for the core and one for init,
    # permissions set over their parts (before v6.4), or one allocation per
    # mod_mem_type (ac3b43283923, v6.4)
    module_layout: Literal["core_init", "per_type"]
    # how the BPF verifier's bpf_patch_insn_data() resizes
    # env->insn_aux_data: a new vzalloc()ed array per patch, the old one
    # copied and vfree()d, or vrealloc() (77620d126739, v6.18)
    bpf_insn_aux: Literal["vzalloc", "vrealloc"]
    # calculate_min_free_kbytes()'s ceiling in KiB: 65536, then 262144
    # (ee8eb9a5fe86, v5.7)
    min_free_kbytes_max: int
    # /sys/kernel/mm/transparent_hugepage/enabled at boot: always or madvise
    # start khugepaged, whose set_recommended_min_free_kbytes() may raise
    # min_free_kbytes; never does not
    thp: Literal["always", "madvise", "never"]
    # __vmalloc_node_range(): a NUMA_NO_NODE VM_ALLOW_HUGE_VMAP request is
    # huge when size / num_online_nodes() reaches a PMD, until v6.13
    vmalloc_huge_per_node: bool
    # x86 only: the execmem users whose ranges have EXECMEM_ROX_CACHE, read
    # by the execmem_rox strategy: module text (v6.15), then kprobes and
    # ftrace too (v6.17)
    execmem_rox_users: Literal["modules", "modules_kprobes_ftrace"] | None
    # arm64 only (ARCH_OF): the linear map and text patching
    rodata: Literal["full", "on"] | None
    linear_map_split: bool | None
    jump_label_batch: bool | None
    tlbi_range_kernel: bool | None
    pte_barriers: Literal["per_pte", "batched"] | None
    va_layout: Literal["bpf_region", "modules_128m", "modules_2g"] | None


# Knobs that exist on one architecture only. On the other they resolve to
# None, are left out of the recorded config (and so of its hash), and a
# workload that sets one there gets an input error naming it.
ARCH_OF: dict[str, str] = {
    "direct_map_page": "x86_64",
    "cpa_collapse": "x86_64",
    "cpa_nx_alias": "x86_64",
    "cpa_rox": "x86_64",
    "pti": "x86_64",
    "invlpgb": "x86_64",
    "execmem_rox_users": "x86_64",
    "rodata": "arm64",
    "linear_map_split": "arm64",
    "jump_label_batch": "arm64",
    "tlbi_range_kernel": "arm64",
    "pte_barriers": "arm64",
    "va_layout": "arm64",
}


def applies(knob: str, arch: str) -> bool:
    """Whether ``knob`` means anything on ``arch``."""
    return ARCH_OF.get(knob, arch) == arch


# every knob a preset sets, in the order presets.yaml and the README list them
KNOBS: tuple[str, ...] = tuple(k for k in KernelKnobs.model_fields if k != "preset")
