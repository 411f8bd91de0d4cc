"""TLB hierarchy of one CPU: the common interface of the two models.

Two models implement the same algorithm and must give identical hits and
misses:

- ``exact`` (:mod:`simcore.hw.tlb_exact`): plain Python, one touch at a time,
  the readable reference;
- ``fast`` (:mod:`simcore.hw.tlb_fast`): the same set-associative LRU compiled
  with numba over numpy state arrays, for the hot path.

Model
-----
A CPU has the L1 instruction TLB (``itlb``), the L1 data TLB (``dtlb``),
the second-level TLB (``stlb``) and, on AMD Zen, a second-level instruction
TLB (``itlb2``); :mod:`simcore.hw.tlb_geometry` describes the levels and how
SMT siblings share them. Each level is a tuple of arrays (:class:`TlbArray`);
an array caches one or more page sizes, given as page shifts (12 = 4 KiB,
21 = 2 MiB, 30 = 1 GiB). Intel's STLB holds 4 KiB and 2 MiB translations in
one array, so an array may list several shifts.

A page touch is ``(virtual address, page shift of the mapping covering it)``.

*Array selection.* At each level the touch uses the array holding its shift.
If the level has no array for that shift, the touch uses the array holding
the largest smaller shift the level has, at that smaller granularity
(``vpn = addr >> smaller_shift``): this is how AMD "smashes" 1 GiB pages into
2 MiB entries and how an ITLB without 1 GiB entries caches a 1 GiB text
mapping. If the level has no array for the shift or any smaller one, it cannot
cache the touch at all: the touch misses there every time and fills nothing.

*Indexing and tags.* ``vpn = addr >> shift`` (addresses are unsigned 64-bit),
set index ``vpn % sets``. The tag packs the VPN, the hardware thread and the
page shift, so 4 KiB and 2 MiB entries in a shared array never alias and a
thread never hits its sibling's entries.

*Lookup.* A touch on side ``"i"`` starts at the ITLB, on side ``"d"`` at the
DTLB. L1 hit: done (the entry becomes most recently used). L1 miss: look up the
second level, ``itlb2`` for instruction touches when the geometry has one,
else the STLB; a hit there fills the L1 (evicting the least recently used way
of the set). A second-level miss is a page walk, which fills the second level
and then the L1. Levels are non-inclusive: a second-level eviction leaves L1
copies in place. Outcomes and counts call any second-level hit an "STLB hit"
and any walk an "STLB miss".

*Walk classes.* A walk ending at a 1 GiB (PUD) or 2 MiB (PMD) leaf skips the
lower levels, so walks are counted by the touch's own page shift: below 21 as
4K, below 30 as 2M, otherwise 1G (x86 4-level leaf levels).

*Global entries.* Addresses in the upper canonical half (bit 63 set,
``addr >= 0xffff800000000000`` for canonical addresses, i.e. negative as
int64) are kernel mappings, which the kernel maps global: a CR3 write
(``flush_all(include_global=False)``) keeps them.

*Invalidation.* ``invalidate_page(addr)`` is INVLPG: every entry of any size
covering ``addr`` goes, at every level. ``invalidate_range(start, end)``
removes every entry overlapping ``[start, end)``. ``flush_all`` empties the
TLB, or only its non-global entries. All of them act on this CPU's entries
only, in shared arrays too.

Addresses are accepted as Python ints (negative values are read as int64 bit
patterns) or numpy int64/uint64 arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from simcore.constants import PAGE_SHIFT as PAGE_SHIFT_4K
from simcore.constants import PMD_SHIFT as PAGE_SHIFT_2M
from simcore.constants import PUD_SHIFT as PAGE_SHIFT_1G
from simcore.hw.tlb_geometry import (
    DTLB,
    EMPTY_TAG,
    ITLB,
    ITLB2,
    LEVELS,
    MAX_SHIFT,
    MIN_ARRAY_SHIFT,
    SHARING,
    SHIFT_MASK,
    STLB,
    TAG_SHIFT_BITS,
    TlbArray,
    TlbGeometry,
    TlbLayout,
    tlb_layout,
)

__all__ = [
    "DTLB",
    "EMPTY_TAG",
    "ITLB",
    "ITLB2",
    "L1_HIT",
    "LEVELS",
    "MAX_SHIFT",
    "MIN_ARRAY_SHIFT",
    "MODELS",
    "PAGE_SHIFT_1G",
    "PAGE_SHIFT_2M",
    "PAGE_SHIFT_4K",
    "SHARING",
    "STLB",
    "STLB_HIT",
    "WALK",
    "Tlb",
    "TlbArray",
    "TlbGeometry",
    "TlbLayout",
    "TlbStats",
    "is_global",
    "tlb_layout",
]


# lookup_one() outcomes
L1_HIT = 0
STLB_HIT = 1
WALK = 2

SIDES = {"i": ITLB, "d": DTLB}
MODELS = ("exact", "fast")

MASK64 = (1 << 64) - 1
GLOBAL_BIT = 63  # upper canonical half: kernel mappings, mapped global
THREAD_MASK = ((1 << TAG_SHIFT_BITS) - 1) & ~SHIFT_MASK


# -- shared by both models -----------------------------------------------------
def to_u64(addr: int) -> int:
    """An address as an unsigned 64-bit Python int (int64 patterns accepted)."""
    addr = int(addr)
    if not -(1 << 63) <= addr <= MASK64:
        raise ValueError(f"address {addr:#x} does not fit in 64 bits")
    return addr & MASK64


def to_i64(addr: int) -> int:
    """The int64 bit pattern of an address."""
    u = to_u64(addr)
    return u - (1 << 64) if u >> 63 else u


def is_global(addr: int) -> bool:
    """Kernel (upper canonical half) mappings are global."""
    return bool(to_u64(addr) >> GLOBAL_BIT)


def make_tag(vpn: int, shift: int, thread_bits: int = 0) -> int:
    return (vpn << TAG_SHIFT_BITS) | thread_bits | shift


def tag_vpn(tag: int) -> int:
    return tag >> TAG_SHIFT_BITS


def tag_shift(tag: int) -> int:
    return tag & SHIFT_MASK


def tag_thread_bits(tag: int) -> int:
    return tag & THREAD_MASK


def tag_is_global(tag: int) -> bool:
    shift = tag_shift(tag)
    return bool((tag_vpn(tag) >> (GLOBAL_BIT - shift)) & 1)


def walk_class(shift: int) -> int:
    """0 = walk ends at a PTE (4K), 1 = at a PMD (2M), 2 = at a PUD (1G)."""
    if shift >= PAGE_SHIFT_1G:
        return 2
    if shift >= PAGE_SHIFT_2M:
        return 1
    return 0


def side_level(side: str) -> int:
    try:
        return SIDES[side]
    except (KeyError, TypeError):
        raise ValueError(f"side must be 'i' or 'd', got {side!r}") from None


def check_shift(shift: int) -> int:
    shift = int(shift)
    if not 0 <= shift <= MAX_SHIFT:
        raise ValueError(f"page shift {shift} outside [0, {MAX_SHIFT}]")
    return shift


_I64 = np.dtype(np.int64)
_U64 = np.dtype(np.uint64)
_U8 = np.dtype(np.uint8)
_array_max = np.maximum.reduce


def prepare_batch(
    addrs, shifts, check_uint8: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Batch inputs as contiguous (int64 address bit patterns, uint8 shifts).

    ``shifts`` may be a scalar, applied to every address. This runs once per
    batch, so the common case (a contiguous int64/uint64 array and a scalar or
    uint8 shifts) avoids copies and extra passes. ``check_uint8=False`` skips
    the range check of shifts already uint8, for a caller that checks them
    in its own pass over the batch.
    """
    # The simulator's own batches (1-D contiguous uint64/int64 addresses,
    # uint8 shifts) take a short path: comparing with dtype instances, not
    # with scalar types (which builds a dtype per test), and the ufunc's
    # reduce without ndarray.max()'s Python layers. The generic checks below
    # cost more than the TLB lookup of a 100-touch batch.
    if type(addrs) is np.ndarray and type(shifts) is np.ndarray:
        dt = addrs.dtype
        if (
            shifts.dtype == _U8
            and dt in (_U64, _I64)
            and addrs.ndim == 1
            and addrs.shape == shifts.shape
            and addrs.flags.c_contiguous
            and shifts.flags.c_contiguous
        ):
            if check_uint8 and addrs.shape[0] and _array_max(shifts) > MAX_SHIFT:
                raise ValueError(f"page shifts outside [0, {MAX_SHIFT}]")
            return (addrs.view(_I64) if dt == _U64 else addrs), shifts
    a = addrs if isinstance(addrs, np.ndarray) else np.asarray(addrs)
    if a.ndim != 1:
        a = a.reshape(-1)
    dt = a.dtype
    if dt == np.uint64:
        a = a.view(np.int64)
    elif dt != np.int64:
        if a.size and dt.kind not in "iu":
            raise TypeError(f"addresses must be an integer array, got {dt}")
        a = a.astype(np.int64)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if isinstance(shifts, (int, np.integer)):
        return a, np.full(a.shape[0], check_shift(shifts), dtype=np.uint8)
    s = shifts if isinstance(shifts, np.ndarray) else np.asarray(shifts)
    if s.ndim == 0:
        return a, np.full(a.shape[0], check_shift(s), dtype=np.uint8)
    if s.ndim != 1:
        s = s.reshape(-1)
    if s.shape[0] != a.shape[0]:
        raise ValueError(f"{a.shape[0]} addresses but {s.shape[0]} page shifts")
    if s.dtype == np.uint8:
        if check_uint8 and s.size and s.max() > MAX_SHIFT:
            raise ValueError(f"page shifts outside [0, {MAX_SHIFT}]")
    elif s.size and s.dtype.kind not in "iu":
        raise TypeError(f"page shifts must be integers, got {s.dtype}")
    else:
        if s.size and (int(s.min()) < 0 or int(s.max()) > MAX_SHIFT):
            raise ValueError(f"page shifts outside [0, {MAX_SHIFT}]")
        s = s.astype(np.uint8)
    if not s.flags.c_contiguous:
        s = np.ascontiguousarray(s)
    return a, s


def range_bounds(start: int, end: int) -> tuple[int, int] | None:
    """``[start, end)`` as unsigned (first, last) byte, or None when empty."""
    start = to_u64(start)
    end = int(end)
    if end < 0:
        end = to_u64(end)
    if end > (1 << 64):
        raise ValueError(f"range end {end:#x} beyond the 64-bit space")
    if end <= start:
        return None
    return start, end - 1


# -- results ------------------------------------------------------------------
@dataclass(slots=True)
class TlbStats:
    """Counts for a batch of touches; ``stlb_misses`` equals the page walks."""

    accesses: int = 0
    l1_misses: int = 0
    stlb_misses: int = 0
    walks_4k: int = 0
    walks_2m: int = 0
    walks_1g: int = 0

    def __add__(self, other: TlbStats) -> TlbStats:
        if not isinstance(other, TlbStats):
            return NotImplemented
        return TlbStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    @property
    def l1_hits(self) -> int:
        return self.accesses - self.l1_misses

    @property
    def stlb_hits(self) -> int:
        return self.l1_misses - self.stlb_misses

    @property
    def walks(self) -> int:
        return self.stlb_misses

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- interface ----------------------------------------------------------------
class Tlb(ABC):
    """The TLBs of one CPU (see the module docstring for the model)."""

    model: ClassVar[str]

    def __init__(
        self, geometry: TlbGeometry, threads: int = 1, thread: int = 0
    ) -> None:
        """Hardware thread ``thread`` of a core with ``threads`` online."""
        if not isinstance(geometry, TlbGeometry):
            raise TypeError(f"expected TlbGeometry, got {geometry!r}")
        self.geometry = geometry
        self.layout = tlb_layout(geometry, threads, thread)
        # the level an L1 miss looks up next, by L1 level (ITLB, DTLB)
        self._second = (geometry.second_level(ITLB), geometry.second_level(DTLB))

    @abstractmethod
    def lookup(
        self, addrs, shifts, side: str, outcomes: np.ndarray | None = None
    ) -> TlbStats:
        """Touch every ``(addrs[k], shifts[k])`` in order on side "i" or "d".

        ``shifts`` may be a scalar. If ``outcomes`` (an int8 array as long as
        ``addrs``) is given, it receives each touch's outcome: ``L1_HIT``,
        ``STLB_HIT`` or ``WALK``.
        """

    @abstractmethod
    def lookup_one(self, addr: int, shift: int, side: str) -> int:
        """One touch: 0 = L1 hit, 1 = STLB hit, 2 = page walk."""

    def lookup_zipf(self, parts, u: np.ndarray, off: np.ndarray, zipf: float):
        """Draw, keep and touch Zipf-drawn pages part by part
        (:mod:`simcore.hw.zipf_touch`); one stats row per part: accesses,
        L1 misses, walks, 4K, 2M and 1G walks."""
        from simcore.hw.zipf_touch import lookup_generic

        return lookup_generic(self, parts, u, off, zipf)

    def invalidate_page(self, addr: int) -> None:
        """INVLPG: drop every entry, of any size and level, covering ``addr``."""
        addr = to_u64(addr)
        self.invalidate_range(addr, addr + 1)

    @abstractmethod
    def invalidate_range(self, start: int, end: int) -> None:
        """Drop every entry overlapping ``[start, end)``."""

    @abstractmethod
    def flush_all(self, include_global: bool = True) -> None:
        """Drop all entries; with ``include_global=False`` (a CR3 write) keep
        global (kernel) entries."""

    @abstractmethod
    def _tags(self) -> np.ndarray:
        """This CPU's view: the tags of its arrays in layout order, EMPTY_TAG
        for empty entries and for a sibling's entries of a shared array."""

    def _view(self, core_tags: np.ndarray) -> np.ndarray:
        """:meth:`_tags` from the core's tags vector."""
        lay = self.layout
        parts = []
        for ai, a in enumerate(lay.arrays):
            first = int(lay.meta[ai, 0])
            block = core_tags[first : first + a.entries]
            foreign = (block != EMPTY_TAG) & ((block & THREAD_MASK) != lay.thread_bits)
            parts.append(np.where(foreign, EMPTY_TAG, block))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def occupancy(self, level: str | None = None) -> int:
        """Number of valid entries, in all levels or in ``level``."""
        tags = self._tags()
        if level is not None:
            lo, hi = self.layout.level_span[LEVELS.index(self._level_name(level))]
            tags = tags[lo:hi]
        return int(np.count_nonzero(tags != EMPTY_TAG))

    def resident(self, level: str | None = None) -> frozenset[tuple[str, int, int]]:
        """Valid entries as ``(level, page base address, page shift)``."""
        tags = self._tags()
        names = LEVELS if level is None else (self._level_name(level),)
        out = set()
        for name in names:
            lo, hi = self.layout.level_span[LEVELS.index(name)]
            for t in tags[lo:hi].tolist():
                if t != EMPTY_TAG:
                    s = tag_shift(t)
                    out.add((name, tag_vpn(t) << s, s))
        return frozenset(out)

    @staticmethod
    def _level_name(level: str) -> str:
        if level not in LEVELS:
            raise ValueError(f"unknown TLB level {level!r}, expected one of {LEVELS}")
        return level

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.occupancy()} valid entries>"
