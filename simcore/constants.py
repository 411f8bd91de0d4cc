"""Page-size constants, defined once (``include/asm-generic/page.h``,
``arch/x86/include/asm/pgtable_64_types.h``).

Both modelled architectures run 4 KiB base pages with four-level tables of
512 entries, so a PMD maps 2 MiB and a PUD 1 GiB (arm64 with 4 KiB granule:
``arch/arm64/include/asm/pgtable-hwdef.h``).
"""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE = PAGE_SIZE  # the short name the model code uses

PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PMD_ORDER = PMD_SHIFT - PAGE_SHIFT  # 9: a 2 MiB block from the buddy allocator

PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT

PTRS_PER_TABLE = 512
PAGES_PER_PMD = PMD_SIZE >> PAGE_SHIFT
PAGES_PER_PUD = PUD_SIZE >> PAGE_SHIFT

SZ_4G = 1 << 32
