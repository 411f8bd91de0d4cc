"""TLB hierarchy of one CPU: geometry, the common interface and the factory.

Two models implement the same algorithm and must give identical hits and
misses:

- ``exact`` (:mod:`simcore.hw.tlb_exact`): plain Python, one touch at a time,
  the readable reference;
- ``fast`` (:mod:`simcore.hw.tlb_fast`): the same set-associative LRU compiled
  with numba over numpy state arrays, for the hot path.

Model
-----
A CPU has three levels: the L1 instruction TLB (``itlb``), the L1 data TLB
(``dtlb``) and the unified second-level TLB (``stlb``). Each level is a tuple
of arrays (:class:`TlbArray`); an array caches one or more page sizes, given
as page shifts (12 = 4 KiB, 21 = 2 MiB, 30 = 1 GiB). Intel's STLB holds 4 KiB
and 2 MiB translations in one array, so an array may list several shifts.

A page touch is ``(virtual address, page shift of the mapping covering it)``.

*Array selection.* At each level the touch uses the array holding its shift.
If the level has no array for that shift, the touch uses the array holding
the largest smaller shift the level has, at that smaller granularity
(``vpn = addr >> smaller_shift``): this is how AMD "smashes" 1 GiB pages into
2 MiB entries and how an ITLB without 1 GiB entries caches a 1 GiB text
mapping. If the level has no array for the shift or any smaller one, it cannot
cache the touch at all: the touch misses there every time and fills nothing.

*Indexing and tags.* ``vpn = addr >> shift`` (addresses are unsigned 64-bit),
set index ``vpn % sets``. The tag packs the page shift with the VPN, so 4 KiB
and 2 MiB entries in a shared array never alias.

*Lookup.* A touch on side ``"i"`` starts at the ITLB, on side ``"d"`` at the
DTLB. L1 hit: done (the entry becomes most recently used). L1 miss: look up the
STLB; an STLB hit fills the L1 (evicting the least recently used way of the
set). STLB miss: a page walk, which fills the STLB and then the L1. Levels are
non-inclusive: an STLB eviction leaves L1 copies in place.

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
TLB, or only its non-global entries.

Addresses are accepted as Python ints (negative values are read as int64 bit
patterns) or numpy int64/uint64 arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import ClassVar

import numpy as np

from simcore.constants import PAGE_SHIFT as PAGE_SHIFT_4K
from simcore.constants import PMD_SHIFT as PAGE_SHIFT_2M
from simcore.constants import PUD_SHIFT as PAGE_SHIFT_1G

__all__ = [
    "L1_HIT",
    "LEVELS",
    "MODELS",
    "PAGE_SHIFT_1G",
    "PAGE_SHIFT_2M",
    "PAGE_SHIFT_4K",
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

LEVELS = ("itlb", "dtlb", "stlb")
ITLB, DTLB, STLB = 0, 1, 2
SIDES = {"i": ITLB, "d": DTLB}
MODELS = ("exact", "fast")

MASK64 = (1 << 64) - 1
GLOBAL_BIT = 63  # upper canonical half: kernel mappings, mapped global

# A tag is (vpn << TAG_SHIFT_BITS) | page_shift; empty entries hold EMPTY_TAG.
# vpn < 2**(64 - shift), so the tag stays below 2**63 for shifts >= 7.
TAG_SHIFT_BITS = 6
EMPTY_TAG = -1
MIN_ARRAY_SHIFT = 7
MAX_SHIFT = 63


# -- geometry -----------------------------------------------------------------
@dataclass(frozen=True)
class TlbArray:
    """One TLB array: ``entries`` entries in ``entries // ways`` sets.

    ``page_shifts`` are the page sizes it caches (12, 21, 30; Intel's STLB
    holds (12, 21) in one array). ``ways == entries`` is fully associative.
    """

    page_shifts: tuple[int, ...]
    entries: int
    ways: int

    def __post_init__(self) -> None:
        shifts = tuple(int(s) for s in self.page_shifts)
        object.__setattr__(self, "page_shifts", shifts)
        if not shifts:
            raise ValueError("TlbArray needs at least one page shift")
        if len(set(shifts)) != len(shifts):
            raise ValueError(f"duplicate page shifts {shifts}")
        for s in shifts:
            if not MIN_ARRAY_SHIFT <= s <= MAX_SHIFT:
                raise ValueError(
                    f"page shift {s} outside [{MIN_ARRAY_SHIFT}, {MAX_SHIFT}]"
                )
        if self.ways < 1:
            raise ValueError(f"ways must be >= 1, got {self.ways}")
        if self.entries < 1 or self.entries % self.ways:
            raise ValueError(
                f"entries ({self.entries}) must be a positive multiple of "
                f"ways ({self.ways})"
            )

    @property
    def sets(self) -> int:
        return self.entries // self.ways

    @property
    def fully_associative(self) -> bool:
        return self.ways == self.entries


@dataclass(frozen=True)
class TlbGeometry:
    """The TLB arrays of one CPU, per level. A level may be empty."""

    itlb: tuple[TlbArray, ...]
    dtlb: tuple[TlbArray, ...]
    stlb: tuple[TlbArray, ...]

    def __post_init__(self) -> None:
        for name in LEVELS:
            arrays = tuple(getattr(self, name))
            object.__setattr__(self, name, arrays)
            seen: set[int] = set()
            for a in arrays:
                if not isinstance(a, TlbArray):
                    raise TypeError(f"{name}: expected TlbArray, got {a!r}")
                dup = seen.intersection(a.page_shifts)
                if dup:
                    raise ValueError(
                        f"{name}: page shift {sorted(dup)} held by two arrays"
                    )
                seen.update(a.page_shifts)

    def level(self, name: str) -> tuple[TlbArray, ...]:
        if name not in LEVELS:
            raise ValueError(f"unknown TLB level {name!r}, expected one of {LEVELS}")
        return getattr(self, name)

    def reach(self, level: str, page_shift: int = PAGE_SHIFT_4K) -> int:
        """Bytes covered by the array of ``level`` holding ``page_shift``."""
        for a in self.level(level):
            if page_shift in a.page_shifts:
                return a.entries << page_shift
        return 0

    @classmethod
    def skylake_sp(cls) -> TlbGeometry:
        """Intel Skylake-SP / Cascade Lake (Optimization Manual Table 2-15)."""
        return cls(
            itlb=(TlbArray((12,), 128, 8), TlbArray((21,), 8, 8)),
            dtlb=(
                TlbArray((12,), 64, 4),
                TlbArray((21,), 32, 4),
                TlbArray((30,), 4, 4),
            ),
            stlb=(TlbArray((12, 21), 1536, 12), TlbArray((30,), 16, 4)),
        )


@dataclass(frozen=True, eq=False)
class TlbLayout:
    """A geometry flattened for the models; shared by all CPUs of a geometry.

    All arrays of all levels live in one entry space, level by level, so one
    CPU's state is one tags vector and one LRU-stamp vector.

    - ``arrays``: every :class:`TlbArray`, itlb first, then dtlb, then stlb;
    - ``level_of``: level index (0 itlb, 1 dtlb, 2 stlb) of each array;
    - ``meta[a] = (first entry, sets, ways, sets - 1 if sets is a power of two
      else -1)``;
    - ``route[level, touch_shift] = (array index, shift used)``, ``-1`` when
      the level cannot cache that touch;
    - ``array_shifts[a]``: the shifts of array ``a``, padded with -1;
    - ``level_span[level] = (first entry, end entry)``.
    """

    geometry: TlbGeometry
    arrays: tuple[TlbArray, ...]
    level_of: tuple[int, ...]
    meta: np.ndarray
    route: np.ndarray
    array_shifts: np.ndarray
    level_span: tuple[tuple[int, int], ...]
    n_entries: int


@lru_cache(maxsize=64)
def tlb_layout(geometry: TlbGeometry) -> TlbLayout:
    arrays: list[TlbArray] = []
    level_of: list[int] = []
    spans: list[tuple[int, int]] = []
    route = np.full((len(LEVELS), MAX_SHIFT + 1, 2), -1, dtype=np.int64)
    entry = 0
    for lvl, name in enumerate(LEVELS):
        first = entry
        for a in geometry.level(name):
            ai = len(arrays)
            arrays.append(a)
            level_of.append(lvl)
            entry += a.entries
            for s in a.page_shifts:
                route[lvl, s] = (ai, s)
        spans.append((first, entry))
        # A touch of a size the level lacks falls back to the next smaller
        # size the level holds (AMD smashing 1G into 2M entries).
        for s in range(1, MAX_SHIFT + 1):
            if route[lvl, s, 0] < 0 and route[lvl, s - 1, 0] >= 0:
                route[lvl, s] = route[lvl, s - 1]
    meta = np.zeros((len(arrays), 4), dtype=np.int64)
    width = max((len(a.page_shifts) for a in arrays), default=1)
    array_shifts = np.full((len(arrays), width), -1, dtype=np.int64)
    first = 0
    for ai, a in enumerate(arrays):
        sets = a.sets
        mask = sets - 1 if sets & (sets - 1) == 0 else -1
        meta[ai] = (first, sets, a.ways, mask)
        array_shifts[ai, : len(a.page_shifts)] = a.page_shifts
        first += a.entries
    for arr in (meta, route, array_shifts):
        arr.setflags(write=False)
    return TlbLayout(
        geometry=geometry,
        arrays=tuple(arrays),
        level_of=tuple(level_of),
        meta=meta,
        route=route,
        array_shifts=array_shifts,
        level_span=tuple(spans),
        n_entries=entry,
    )


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


def make_tag(vpn: int, shift: int) -> int:
    return (vpn << TAG_SHIFT_BITS) | shift


def tag_vpn(tag: int) -> int:
    return tag >> TAG_SHIFT_BITS


def tag_shift(tag: int) -> int:
    return tag & ((1 << TAG_SHIFT_BITS) - 1)


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

    def __init__(self, geometry: TlbGeometry) -> None:
        if not isinstance(geometry, TlbGeometry):
            raise TypeError(f"expected TlbGeometry, got {geometry!r}")
        self.geometry = geometry
        self.layout = tlb_layout(geometry)

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
        """Current tags of all entries, in layout order (EMPTY_TAG if empty)."""

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
