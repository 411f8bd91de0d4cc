"""From one size per module (a capture, a distribution) to a ModuleSpec.

``lsmod`` and ``/proc/modules`` give one number per module: the sum of
its core memory types (``MOD_TEXT``, ``MOD_DATA``, ``MOD_RODATA``,
``MOD_RO_AFTER_INIT``), each page-aligned, since the init types are freed
and zeroed after init (kernel/module/procfs.c ``module_total_size()``,
kernel/module/main.c ``do_init_module()``). How those pages divide among
the types, and what the freed init types were, is not in the capture.
The split below is an **estimate**:

- every module has at least one page of text, data and read-only data,
  and one of ro_after_init (``__jump_table`` is placed there) from four
  pages on: the 16 KiB that small modules show in lsmod is exactly these
  four pages;
- the rest divides 38 : 27 : 30 : 5 among text, rodata, data and
  ro_after_init, and init text adds 1 page plus 3 % of the core pages;
  modules of 8 pages or more also get a page each of init data and init
  rodata. These shares were chosen so that text is about 37 % of all
  module memory, as in the one published population breakdown: 66
  modules after boot of a 255-vCPU VM, 4,149,248 B of text in 11,268,096 B
  (Luis Chamberlain, linux-modules, 25 May 2023, from
  /sys/kernel/debug/modules/stats; exec-memory.md section 10);
- relocations: one per 16 bytes of text and one per 64 bytes of other
  sections (calls to the kernel, ``__fentry__`` sites, ORC and exception
  table entries, data pointers); undefined symbols: one per 32
  relocations (Sony reported 13,757 relocations over 2,749 distinct
  symbols, local ones included, for a large module: elinux.org, "Hardcode
  kernel module info"; the external ones are a fraction of those), about
  130 for a module of average size; exports: one per two pages of text.
  All estimates.
"""

from __future__ import annotations

from simcore.constants import PAGE
from simcore.kernel.module import ModuleSpec

CORE_SHARES = (
    ("module_text", 38),
    ("module_rodata", 27),
    ("module_data", 30),
    ("module_ro_after_init", 5),
)
# pages every module has, by how many core pages it has
MIN_ORDER = ("module_text", "module_data", "module_rodata", "module_ro_after_init")
INIT_TEXT_SHARE = 0.03
INIT_EXTRA_FROM_PAGES = 8
TEXT_BYTES_PER_RELOC = 16
OTHER_BYTES_PER_RELOC = 64
RELOCS_PER_UNDEF = 32
TEXT_PAGES_PER_EXPORT = 2


def split_core_pages(pages: int) -> dict[str, int]:
    """Core pages of one module per memory type (estimate, see above)."""
    out = dict.fromkeys(MIN_ORDER, 0)
    for kind in MIN_ORDER[: min(pages, len(MIN_ORDER))]:
        out[kind] = 1
    rest = pages - sum(out.values())
    if rest > 0:
        total = sum(w for _, w in CORE_SHARES)
        given = 0
        for kind, w in CORE_SHARES:
            n = rest * w // total
            out[kind] += n
            given += n
        out["module_text"] += rest - given
    return out


def spec_from_size(
    name: str,
    core_bytes: int,
    deps: tuple[str, ...] = (),
    *,
    init_ns: int = 0,
    exit_ns: int = 0,
) -> ModuleSpec:
    """A ModuleSpec for a module whose core memory totals ``core_bytes``."""
    pages = max(1, -(-core_bytes // PAGE))
    core = split_core_pages(pages)
    sizes = {k: v * PAGE for k, v in core.items() if v}
    sizes["module_init_text"] = (1 + int(pages * INIT_TEXT_SHARE)) * PAGE
    if pages >= INIT_EXTRA_FROM_PAGES:
        sizes["module_init_data"] = PAGE
        sizes["module_init_rodata"] = PAGE
    text = sizes["module_text"] + sizes["module_init_text"]
    other = sum(sizes.values()) - text
    relocs = text // TEXT_BYTES_PER_RELOC + other // OTHER_BYTES_PER_RELOC
    return ModuleSpec(
        name=name,
        sizes=sizes,
        nr_relocs=relocs,
        deps=tuple(deps),
        nr_undef=relocs // RELOCS_PER_UNDEF,
        nr_exports=core["module_text"] // TEXT_PAGES_PER_EXPORT,
        init_ns=init_ns,
        exit_ns=exit_ns,
    )
