"""Which address layout a /proc/vmallocinfo capture comes from, and where
its areas go on the simulated one.

The capture says nothing about the machine but its addresses, and they are
enough:

- **x86-64** (``Documentation/arch/x86/x86_64/mm.rst``): module areas (and
  BPF JIT images) lie in the top 2 GiB, ``MODULES_VADDR`` to
  ``MODULES_END`` = ``ffffffffff000000``. ``MODULES_VADDR`` is
  ``__START_KERNEL_map + KERNEL_IMAGE_SIZE``: ``ffffffffa0000000``, or
  ``ffffffffc0000000`` when ``CONFIG_RANDOMIZE_BASE`` makes the image
  1 GiB (``arch/x86/include/asm/page_64_types.h``); the range itself is
  never randomised. Everything else is in the vmalloc range: 32 TiB
  (4-level paging) or 12,800 TiB (5-level, ``VMALLOC_SIZE_TB_L5``) from
  ``VMALLOC_START``, which is ``ffffc90000000000`` (4-level) unless
  ``CONFIG_RANDOMIZE_MEMORY`` moved it: ``kernel_randomize_memory()``
  (``arch/x86/mm/kaslr.c``) slides each region by a whole number of PUDs
  (1 GiB). The areas set up early in boot (IRQ stacks, the large system
  hashes) sit at the very start of the range, so the lowest vmalloc
  address rounded down to 1 GiB is the base; percpu chunks
  (``pcpu_get_vm_areas()``) sit at its top end.
- **arm64**, 48-bit VAs with 4 KiB pages (``Documentation/arch/arm64/
  memory.rst``, v6.5+): 2 GiB of modules at ``ffff800000000000``, vmalloc
  from ``ffff800080000000`` to ``fffffbfff0000000``. Neither moves (arm64
  KASLR moves the kernel image, which is mapped inside the vmalloc range
  and listed there, and the linear map). x86-64 never has a vmalloc area
  below ``ffff888000000000`` with 4-level paging, so an arm64 capture is
  one with no module-range area of x86 and its lowest area in
  ``[ffff800000000000, ffff888000000000)``.

Each captured range maps onto the simulated range of the same name: an
area keeps its address when every area of its range already lies inside
the simulated range (a capture of the simulated layout, or KASLR module
addresses, which the non-KASLR module range holds too), else it keeps its
offset from the range's start (a slid vmalloc base, another architecture).
Areas that fall outside every captured range, or past the end of the
simulated one, are not placed; they are counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.constants import PUD_SIZE
from simcore.errors import CaptureError
from simcore.kernel.pgtable import START_KERNEL_MAP  # the top 2 GiB
from simcore.kernel.vmallocinfo import VmallocInfoEntry
from simcore.layout import ARM64, TB_SHIFT, VMALLOC_SIZE_TB, X86_64, X86_64_KASLR

# the x86-64 and arm64 ranges of simcore.layout, under the kernel's names
MODULES_BASE = X86_64.modules_vaddr  # 512 MiB kernel image
MODULES_BASE_KASLR = X86_64_KASLR.modules_vaddr  # 1 GiB (CONFIG_RANDOMIZE_BASE)
MODULES_TOP = X86_64.modules_end
VMALLOC_BASE_L4 = X86_64.vmalloc_start  # __VMALLOC_BASE_L4
VMALLOC_BASE_L5 = 0xFFA0000000000000  # __VMALLOC_BASE_L5
VMALLOC_SIZE_L4 = VMALLOC_SIZE_TB << TB_SHIFT  # VMALLOC_SIZE_TB_L4
VMALLOC_SIZE_L5 = 12800 << TB_SHIFT  # VMALLOC_SIZE_TB_L5
PAGE_OFFSET_L4 = X86_64.page_offset  # __PAGE_OFFSET_BASE_L4: nothing lower on L4
ARM64_MODULES = ARM64.ranges["modules"]
ARM64_VMALLOC = ARM64.ranges["vmalloc"]


@dataclass(frozen=True)
class CapturedLayout:
    """The ranges of the machine a capture was taken on."""

    arch: str  # "x86_64" or "arm64"
    description: str
    ranges: dict[str, tuple[int, int]]
    kaslr: bool = False  # the vmalloc base was randomised


@dataclass(frozen=True, slots=True)
class Placed:
    entry: VmallocInfoEntry
    start: int  # its address on the simulated layout
    range: str


@dataclass
class Placement:
    layout: CapturedLayout
    placed: list[Placed] = field(default_factory=list)
    unplaced: list[tuple[VmallocInfoEntry, str]] = field(default_factory=list)
    slides: dict[str, int] = field(default_factory=dict)  # simulated - captured


def detect_layout(
    entries: list[VmallocInfoEntry], *, file: str = "<vmallocinfo>"
) -> CapturedLayout:
    """The layout ``entries`` were captured on (see the module doc)."""
    if not entries:
        raise CaptureError(
            "the capture lists no areas",
            file=file,
            expected="the output of `sudo cat /proc/vmallocinfo`",
        )
    top = [e for e in entries if e.start >= START_KERNEL_MAP]
    low = [e for e in entries if e.start < START_KERNEL_MAP]
    lowest = min(e.start for e in entries)
    if not top and ARM64_MODULES[0] <= lowest < PAGE_OFFSET_L4:
        return CapturedLayout(
            "arm64",
            "arm64, 48-bit VA: modules at 0xffff800000000000, vmalloc at "
            "0xffff800080000000",
            {"modules": ARM64_MODULES, "vmalloc": ARM64_VMALLOC},
        )
    base, size, levels = VMALLOC_BASE_L4, VMALLOC_SIZE_L4, 4
    if low:
        first = min(e.start for e in low)
        last = max(e.end for e in low)
        if first < PAGE_OFFSET_L4:
            base, size, levels = VMALLOC_BASE_L5, VMALLOC_SIZE_L5, 5
        # kernel_randomize_memory() moves the base in whole PUDs; the lowest
        # area is the range's first unless early areas were freed, and the
        # highest must still fit (percpu chunks sit at the top)
        base = first - first % PUD_SIZE
        if last - base > size:
            base = -(-(last - size) // PUD_SIZE) * PUD_SIZE
    kaslr = base not in (VMALLOC_BASE_L4, VMALLOC_BASE_L5)
    # CONFIG_RANDOMIZE_BASE (which KASLR of the vmalloc base comes with)
    # moves MODULES_VADDR up to 0xffffffffc0000000
    lowest_module = min((e.start for e in top), default=None)
    mod_start = (
        MODULES_BASE
        if (lowest_module is not None and lowest_module < MODULES_BASE_KASLR)
        or (lowest_module is None and not kaslr)
        else MODULES_BASE_KASLR
    )
    what = f"x86-64, {levels}-level paging"
    if kaslr:
        what += f", KASLR: vmalloc base {base:#x} (default {_default(levels):#x})"
    else:
        what += f": vmalloc base {base:#x}"
    what += f", modules from {mod_start:#x}"
    return CapturedLayout(
        "x86_64",
        what,
        {"vmalloc": (base, base + size), "modules": (mod_start, MODULES_TOP)},
        kaslr=kaslr,
    )


def _default(levels: int) -> int:
    return VMALLOC_BASE_L4 if levels == 4 else VMALLOC_BASE_L5


def _range_of(layout: CapturedLayout, addr: int) -> str | None:
    for name, (lo, hi) in layout.ranges.items():
        if lo <= addr < hi:
            return name
    return None


def place(
    entries: list[VmallocInfoEntry],
    layout: CapturedLayout,
    simulated: dict[str, tuple[int, int]],
) -> Placement:
    """Map every area of ``entries`` onto the ``simulated`` ranges."""
    out = Placement(layout)
    members: dict[str, list[VmallocInfoEntry]] = {n: [] for n in layout.ranges}
    for e in entries:
        name = _range_of(layout, e.start)
        if name is None:
            where = (
                "the kernel image"
                if layout.arch == "x86_64" and e.start >= START_KERNEL_MAP
                else "no vmalloc or module range"
            )
            out.unplaced.append((e, f"in {where} of the captured layout"))
        else:
            members[name].append(e)
    for name, group in members.items():
        sim = simulated.get(name)
        if sim is None:
            out.unplaced += [(e, f"no {name} range is simulated") for e in group]
            continue
        lo, hi = sim
        inside = all(lo <= e.start and e.end <= hi for e in group)
        slide = 0 if inside else lo - layout.ranges[name][0]
        out.slides[name] = slide
        cap_end = layout.ranges[name][1]
        for e in group:
            start = e.start + slide
            if e.end > cap_end or start + e.size > hi:
                out.unplaced.append((e, f"past the end of the simulated {name} range"))
            else:
                out.placed.append(Placed(e, start, name))
    out.placed.sort(key=lambda p: p.entry.line)
    return out
