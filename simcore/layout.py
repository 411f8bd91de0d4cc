"""Kernel virtual address layout, per architecture.

The model places vmalloc areas, module text and the direct (linear) map at
the addresses the kernel does, because which page-table pages an area
shares and which 2 MiB region it falls in follow from the address.

- ``x86_64``: 4-level paging without KASLR,
  ``Documentation/arch/x86/x86_64/mm.rst``: direct map at
  ``ffff888000000000``, vmalloc ``ffffc90000000000`` for 32 TiB, modules
  ``ffffffffa0000000``-``fffffffffeffffff`` (``MODULES_VADDR`` is
  ``__START_KERNEL_map + KERNEL_IMAGE_SIZE``, 512 MiB without KASLR).
- ``x86_64_kaslr``: ``CONFIG_RANDOMIZE_BASE`` makes ``KERNEL_IMAGE_SIZE``
  1 GiB (``arch/x86/include/asm/page_64_types.h``), so the module area
  starts at ``ffffffffc0000000`` and holds 1,008 MiB;
  ``CONFIG_RANDOMIZE_MEMORY`` (``arch/x86/mm/kaslr.c``,
  ``kernel_randomize_memory()``) moves the direct-map and vmalloc bases
  per boot at PUD granularity: :func:`randomized` draws them.
- ``arm64``: 48-bit VA with 4 KiB pages, ``Documentation/arch/arm64/memory.rst``
  (v6.5+, after the module VA rework 3e35d303ab7d): linear map from
  ``ffff000000000000``, 2 GiB of modules at ``ffff800000000000``, vmalloc
  from ``ffff800080000000`` up to the fixmap at ``fffffbfff0000000``.
- ``arm64_bpf_region`` (v5.0 to v5.16): 91fc957c9b1d gave BPF programs a
  128 MiB ``BPF_JIT_REGION`` at the bottom of the kernel half
  (``KASAN_SHADOW_END``, ``ffff800000000000`` without KASAN), the 128 MiB
  module region (``MODULES_VSIZE``) right above it and vmalloc above
  that; b89ddf4cca43 (v5.17) removed the BPF region.
- ``arm64_modules_128m`` (v5.17 to v6.4): 128 MiB of modules at
  ``ffff800000000000``, vmalloc from ``ffff800008000000``; BPF programs
  come from vmalloc. Module PLTs let module_alloc() fall back to 2 GiB
  from the module base, which is vmalloc space: the modules range here is
  that 2 GiB (one free tree serves every range, as in the kernel).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simcore.constants import PUD_SIZE


@dataclass(frozen=True, slots=True)
class AddressLayout:
    name: str
    arch: str
    page_offset: int  # direct map / linear map base
    vmalloc_start: int
    vmalloc_end: int
    modules_vaddr: int
    modules_end: int
    # arm64 v5.0-v5.16 BPF_JIT_REGION; 0, 0 where BPF has no range of its own
    bpf_vaddr: int = 0
    bpf_end: int = 0
    # arm64: KIMAGE_VADDR, the kernel image inside the vmalloc range
    # (MODULES_END, arch/arm64/include/asm/memory.h); 0 on x86, whose
    # image has a range of its own
    kimage_vaddr: int = 0

    @property
    def ranges(self) -> dict[str, tuple[int, int]]:
        """vmalloc ranges by name, as ``__vmalloc_node_range()`` callers pass them."""
        out = {
            "vmalloc": (self.vmalloc_start, self.vmalloc_end),
            "modules": (self.modules_vaddr, self.modules_end),
        }
        if self.bpf_end:
            out["bpf"] = (self.bpf_vaddr, self.bpf_end)
        return out


X86_64 = AddressLayout(
    name="x86_64",
    arch="x86_64",
    page_offset=0xFFFF888000000000,
    vmalloc_start=0xFFFFC90000000000,
    vmalloc_end=0xFFFFC90000000000 + (32 << 40),
    modules_vaddr=0xFFFFFFFFA0000000,
    modules_end=0xFFFFFFFFFF000000,
)

X86_64_KASLR = replace(X86_64, name="x86_64_kaslr", modules_vaddr=0xFFFFFFFFC0000000)

ARM64 = AddressLayout(
    name="arm64",
    arch="arm64",
    page_offset=0xFFFF000000000000,
    vmalloc_start=0xFFFF800080000000,
    vmalloc_end=0xFFFFFBFFF0000000,
    modules_vaddr=0xFFFF800000000000,
    modules_end=0xFFFF800080000000,
    kimage_vaddr=0xFFFF800080000000,
)

ARM64_BPF_REGION = replace(
    ARM64,
    name="arm64_bpf_region",
    bpf_vaddr=0xFFFF800000000000,
    bpf_end=0xFFFF800008000000,
    modules_vaddr=0xFFFF800008000000,
    modules_end=0xFFFF800010000000,
    vmalloc_start=0xFFFF800010000000,
    kimage_vaddr=0xFFFF800010000000,
)

ARM64_MODULES_128M = replace(
    ARM64,
    name="arm64_modules_128m",
    modules_end=0xFFFF800000000000 + (2 << 30),
    vmalloc_start=0xFFFF800008000000,
    kimage_vaddr=0xFFFF800008000000,
)

LAYOUTS = {
    lay.name: lay
    for lay in (X86_64, X86_64_KASLR, ARM64, ARM64_BPF_REGION, ARM64_MODULES_128M)
}
DEFAULT_FOR_ARCH = {"x86_64": X86_64, "arm64": ARM64}
# arm64's layout by the era's kernel.va_layout
ARM64_ERAS = {
    "bpf_region": ARM64_BPF_REGION,
    "modules_128m": ARM64_MODULES_128M,
    "modules_2g": ARM64,
}


def layout_for(arch: str, va_layout: str | None) -> AddressLayout:
    """The layout a kernel of this era lays out on ``arch``."""
    if arch == "arm64" and va_layout is not None:
        return ARM64_ERAS[va_layout]
    return DEFAULT_FOR_ARCH[arch]


TB_SHIFT = 40
CPU_ENTRY_AREA_BASE = 0xFFFFFE0000000000  # vaddr_end of kaslr.c, 4-level
PHYSICAL_PADDING_TB = 10  # CONFIG_RANDOMIZE_MEMORY_PHYSICAL_PADDING default 0xa
VMALLOC_SIZE_TB = 32  # VMALLOC_SIZE_TB_L4
STRUCT_PAGE_BYTES = 64  # sizeof(struct page) on x86-64 (include/linux/mm_types.h)


def randomized(layout: AddressLayout, rng, memory_bytes: int) -> AddressLayout:
    """``kernel_randomize_memory()`` (``arch/x86/mm/kaslr.c``) for one boot.

    The direct map (physical memory plus the padding, in whole TiB), vmalloc
    and vmemmap regions keep their order; the entropy left between the
    direct-map base and the CPU entry area after their sizes is shared out:
    each region, in turn, slides by a random PUD-aligned share of what is
    left divided by the regions still to place. ``rng`` is a numpy
    Generator standing in for ``prandom`` seeded from ``kaslr_get_random_long()``.
    """
    if layout.arch != "x86_64":
        return layout
    tb = 1 << TB_SHIFT
    direct_tb = -(-memory_bytes // tb) + PHYSICAL_PADDING_TB
    vmemmap_tb = -(-(direct_tb * tb // 4096 * STRUCT_PAGE_BYTES) // tb)
    sizes = [direct_tb * tb, VMALLOC_SIZE_TB * tb, vmemmap_tb * tb]
    vaddr = X86_64.page_offset
    remain = CPU_ENTRY_AREA_BASE - vaddr - sum(sizes)
    bases = []
    for i, size in enumerate(sizes):
        entropy = remain // (len(sizes) - i)
        slide = int(rng.integers(0, entropy // PUD_SIZE + 1)) * PUD_SIZE
        vaddr += slide
        remain -= slide
        bases.append(vaddr)
        vaddr = ((vaddr + size) // PUD_SIZE + 1) * PUD_SIZE  # round_up(vaddr + 1)
    return replace(
        layout,
        page_offset=bases[0],
        vmalloc_start=bases[1],
        vmalloc_end=bases[1] + sizes[1],
    )
