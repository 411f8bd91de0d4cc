"""TLB geometry: the arrays of each level, how SMT siblings use them, and
the flattened layout both TLB models index.

Levels
------
``itlb`` and ``dtlb`` are the first-level instruction and data TLBs,
``stlb`` the second level of the data side, and of the instruction side
too unless the geometry has an ``itlb2``. AMD Zen has a second-level
instruction TLB (``itlb2``): an L1 iTLB miss looks it up, and its misses
go to the page walker, never to the L2 DTLB (``stlb``), which serves data
only. On AMD Family 17h and later, perf's ``iTLB-loads`` counts L1 iTLB
misses that hit the L2 iTLB (PMCx084) and ``iTLB-load-misses`` those that
also miss it (PMCx085), i.e. the walks (commit 0e3b74e26280,
arch/x86/events/amd/core.c); on Intel ``iTLB-load-misses`` counts iTLB
misses that also missed the STLB. So perf's ``iTLB-load-misses`` is the
instruction side's ``stlb.misses`` here, and ``itlb.misses`` is perf's
``iTLB-loads + iTLB-load-misses``.

Sharing between SMT siblings
----------------------------
Each array says how the hardware threads of a core use it:

- ``private``: every thread has an array of the given size (Intel's "8
  entries per thread" large-page ITLB);
- ``shared``: one array for the core, competitively shared: a sibling's
  fills evict this thread's entries;
- ``partitioned``: the core's array statically split between the threads
  that are online: each gets ``1/threads`` of it (the sets are split when
  they divide evenly, else the ways), and neither evicts the other's
  entries. With one thread online it has the whole array, as the hardware
  recombines partitioned resources of an idle sibling.

Entries of a shared array are tagged with the thread that filled them and
serve only that thread: the tag is part of the translation context, as in
Intel's Hyper-Threading DTLB, "each entry includes a logical processor ID
tag" (Marr et al., Intel Technology Journal 6(1), 2002). Invalidations are
per logical processor as well (INVLPG and CR3 writes act on the executing
one): a CPU's flush drops its own entries of a shared array, and a flush of
every CPU (a kernel full flush) empties it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from simcore.constants import PAGE_SHIFT as PAGE_SHIFT_4K

LEVELS = ("itlb", "dtlb", "stlb", "itlb2")
ITLB, DTLB, STLB, ITLB2 = 0, 1, 2, 3
SHARING = ("private", "shared", "partitioned")

# A tag is (vpn << TAG_SHIFT_BITS) | (thread << THREAD_SHIFT) | page_shift;
# empty entries hold EMPTY_TAG. vpn < 2**(64 - shift), so the tag stays
# below 2**63 for shifts >= 9.
TAG_SHIFT_BITS = 8
THREAD_SHIFT = 6
SHIFT_MASK = (1 << THREAD_SHIFT) - 1
MAX_THREADS = 1 << (TAG_SHIFT_BITS - THREAD_SHIFT)
EMPTY_TAG = -1
MIN_ARRAY_SHIFT = 9
MAX_SHIFT = 63


@dataclass(frozen=True)
class TlbArray:
    """One TLB array: ``entries`` entries in ``entries // ways`` sets.

    ``page_shifts`` are the page sizes it caches (12, 21, 30; Intel's STLB
    holds (12, 21) in one array). ``ways == entries`` is fully associative.
    ``sharing`` is how a core's hardware threads use it (module docstring).
    """

    page_shifts: tuple[int, ...]
    entries: int
    ways: int
    sharing: str = "private"

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
        if self.sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, got {self.sharing!r}")

    @property
    def sets(self) -> int:
        return self.entries // self.ways

    @property
    def fully_associative(self) -> bool:
        return self.ways == self.entries

    def part(self, threads: int) -> TlbArray:
        """One thread's share of a partitioned array split ``threads`` ways."""
        if threads == 1:
            return self
        sets, ways = self.sets, self.ways
        # Which half a thread gets is unpublished: split the sets when they
        # divide evenly (the thread acting as an index bit), else the ways.
        if sets > 1 and sets % threads == 0:
            return replace(self, entries=self.entries // threads)
        if ways % threads == 0:
            return replace(self, entries=self.entries // threads, ways=ways // threads)
        raise ValueError(
            f"a {self.entries}-entry {ways}-way array cannot be split "
            f"between {threads} threads"
        )


@dataclass(frozen=True)
class TlbGeometry:
    """The TLB arrays of one core, per level. A level may be empty."""

    itlb: tuple[TlbArray, ...]
    dtlb: tuple[TlbArray, ...]
    stlb: tuple[TlbArray, ...]
    itlb2: tuple[TlbArray, ...] = ()

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

    def second_level(self, l1: int) -> int:
        """The level an L1 miss of level ``l1`` (ITLB or DTLB) looks up."""
        return ITLB2 if l1 == ITLB and self.itlb2 else STLB

    def reach(self, level: str, page_shift: int = PAGE_SHIFT_4K) -> int:
        """Bytes covered by the array of ``level`` holding ``page_shift``."""
        for a in self.level(level):
            if page_shift in a.page_shifts:
                return a.entries << page_shift
        return 0

    @classmethod
    def skylake_sp(cls) -> TlbGeometry:
        """Intel Skylake-SP / Cascade Lake (Optimization Manual Table 2-15),
        sharing as hw_profiles/skylake-sp.yaml states it."""
        return cls(
            itlb=(
                TlbArray((12,), 128, 8, "shared"),
                TlbArray((21,), 8, 8, "private"),
            ),
            dtlb=(
                TlbArray((12,), 64, 4, "partitioned"),
                TlbArray((21,), 32, 4, "partitioned"),
                TlbArray((30,), 4, 4, "partitioned"),
            ),
            stlb=(
                TlbArray((12, 21), 1536, 12, "partitioned"),
                TlbArray((30,), 16, 4, "partitioned"),
            ),
        )


@dataclass(frozen=True, eq=False)
class TlbLayout:
    """A geometry flattened for the models: what one hardware thread sees.

    The TLB state of a core is one tags vector and one LRU-stamp vector
    over all arrays of all levels (``core_entries`` long): a shared array
    once, a private or partitioned one once per thread.

    - ``arrays``: this thread's :class:`TlbArray` of every level in level
      order (itlb, dtlb, stlb, itlb2), partitioned ones at their share;
    - ``level_of``: level index of each array;
    - ``meta[a] = (first entry in the core's state, sets, ways, sets - 1 if
      sets is a power of two else -1)``;
    - ``route[level, touch_shift] = (array index, shift used)``, ``-1`` when
      the level cannot cache that touch;
    - ``array_shifts[a]``: the shifts of array ``a``, padded with -1;
    - ``thread_bits``: this thread's bits in a tag;
    - ``level_span[level]``: (first, end) of the level in this thread's view
      (its arrays one after another, as ``Tlb._tags()`` returns them).
    """

    geometry: TlbGeometry
    threads: int
    thread: int
    arrays: tuple[TlbArray, ...]
    level_of: tuple[int, ...]
    meta: np.ndarray
    route: np.ndarray
    array_shifts: np.ndarray
    thread_bits: int
    level_span: tuple[tuple[int, int], ...]
    n_entries: int
    core_entries: int


def _copies(a: TlbArray, threads: int) -> int:
    """Blocks of ``a``'s (per-thread) size a core holds."""
    return 1 if a.sharing == "shared" else threads


@lru_cache(maxsize=256)
def tlb_layout(geometry: TlbGeometry, threads: int = 1, thread: int = 0) -> TlbLayout:
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads per core must be in [1, {MAX_THREADS}]")
    if not 0 <= thread < threads:
        raise ValueError(f"thread {thread} of a {threads}-thread core")
    arrays: list[TlbArray] = []
    level_of: list[int] = []
    firsts: list[int] = []
    spans: list[tuple[int, int]] = []
    route = np.full((len(LEVELS), MAX_SHIFT + 1, 2), -1, dtype=np.int64)
    base = 0  # in the core's state
    view = 0  # in this thread's view
    for lvl, name in enumerate(LEVELS):
        first_view = view
        for a in geometry.level(name):
            mine = a.part(threads) if a.sharing == "partitioned" else a
            ai = len(arrays)
            arrays.append(mine)
            level_of.append(lvl)
            own = 0 if a.sharing == "shared" else thread
            firsts.append(base + own * mine.entries)
            base += mine.entries * _copies(a, threads)
            view += mine.entries
            for s in a.page_shifts:
                route[lvl, s] = (ai, s)
        spans.append((first_view, view))
        # A touch of a size the level lacks falls back to the next smaller
        # size the level holds (AMD smashing 1G into 2M entries).
        for s in range(1, MAX_SHIFT + 1):
            if route[lvl, s, 0] < 0 and route[lvl, s - 1, 0] >= 0:
                route[lvl, s] = route[lvl, s - 1]
    meta = np.zeros((len(arrays), 4), dtype=np.int64)
    width = max((len(a.page_shifts) for a in arrays), default=1)
    array_shifts = np.full((len(arrays), width), -1, dtype=np.int64)
    for ai, a in enumerate(arrays):
        sets = a.sets
        mask = sets - 1 if sets & (sets - 1) == 0 else -1
        meta[ai] = (firsts[ai], sets, a.ways, mask)
        array_shifts[ai, : len(a.page_shifts)] = a.page_shifts
    for arr in (meta, route, array_shifts):
        arr.setflags(write=False)
    return TlbLayout(
        geometry=geometry,
        threads=threads,
        thread=thread,
        arrays=tuple(arrays),
        level_of=tuple(level_of),
        meta=meta,
        route=route,
        array_shifts=array_shifts,
        thread_bits=thread << THREAD_SHIFT,
        level_span=tuple(spans),
        n_entries=view,
        core_entries=base,
    )
