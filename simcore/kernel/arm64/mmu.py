"""arch/arm64/mm/mmu.c: how ``map_mem()`` lays out the linear map at boot.

- ``rodata=full`` (the default since c55191e96caa, v4.20, through
  CONFIG_RODATA_FULL_DEFAULT_ENABLED): ``map_mem()`` passes
  NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS, so every page of RAM has its own
  PTE. Nothing is ever split, and every linear-map access needs a 4K
  translation: far less dTLB reach for slab and page-cache data.
- ``rodata=on``: block mappings (1 GiB PUD blocks with a 4 KiB granule
  where aligned, 2 MiB PMD blocks elsewhere), never changed afterwards:
  the linear alias of vmalloc memory keeps its permissions.
- ``rodata=full`` on a kernel that maps the linear map with blocks and
  splits them on demand (``kernel.linear_map_split``), which it does only
  when every CPU has BBML2_NOABORT (``cpu.bbml2_noabort``): blocks at boot,
  split where a permission change needs a page.
"""

from __future__ import annotations


def linear_map_page(rodata: str | None, split_era: bool | None, bbml2: bool) -> str:
    """The linear map's leaf size at boot: "4K" or "1G" (DirectMap's)."""
    if rodata != "full":
        return "1G"
    return "1G" if split_era and bbml2 else "4K"
