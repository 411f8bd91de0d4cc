"""The ``exact`` TLB model: set-associative true-LRU arrays in plain Python.

One touch at a time, written to be read; :mod:`simcore.hw.tlb_fast` compiles
the same algorithm and must agree with it touch for touch. The model itself
(array selection, tags, fills, global entries) is described in
:mod:`simcore.hw.tlb`, sharing between SMT siblings in
:mod:`simcore.hw.tlb_geometry`: the siblings of a core hold the same
``_LruArray`` objects for their shared arrays.
"""

from __future__ import annotations

import numpy as np

from simcore.hw.tlb import (
    EMPTY_TAG,
    L1_HIT,
    LEVELS,
    MASK64,
    STLB_HIT,
    WALK,
    Tlb,
    TlbArray,
    TlbGeometry,
    TlbStats,
    check_shift,
    make_tag,
    prepare_batch,
    range_bounds,
    side_level,
    tag_is_global,
    tag_shift,
    tag_thread_bits,
    to_u64,
    walk_class,
)

__all__ = ["ExactTlb"]


class _LruArray:
    """One TLB array: ``sets`` sets of ``ways`` entries, true LRU per set.

    Each way holds a tag and the time of its last use; the victim of a fill is
    an empty way if there is one, else the way used longest ago.
    """

    __slots__ = ("sets", "ways", "tags", "last_use", "clock")

    def __init__(self, spec: TlbArray) -> None:
        self.sets = spec.sets
        self.ways = spec.ways
        self.tags = [[EMPTY_TAG] * self.ways for _ in range(self.sets)]
        self.last_use = [[0] * self.ways for _ in range(self.sets)]
        self.clock = 0

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def lookup(self, vpn: int, shift: int, tb: int) -> bool:
        """Hit or miss for thread bits ``tb``; a hit makes the entry most
        recently used."""
        s = vpn % self.sets
        tags = self.tags[s]
        tag = make_tag(vpn, shift, tb)
        if tag not in tags:
            return False
        self.last_use[s][tags.index(tag)] = self._tick()
        return True

    def fill(self, vpn: int, shift: int, tb: int) -> None:
        """Insert a translation known to be absent, evicting the LRU way
        (whichever thread's it is, in a shared array)."""
        s = vpn % self.sets
        tags = self.tags[s]
        if EMPTY_TAG in tags:
            way = tags.index(EMPTY_TAG)
        else:
            last_use = self.last_use[s]
            way = last_use.index(min(last_use))
        tags[way] = make_tag(vpn, shift, tb)
        self.last_use[s][way] = self._tick()

    def _drop(self, s: int, way: int) -> None:
        self.tags[s][way] = EMPTY_TAG
        self.last_use[s][way] = 0

    def invalidate(self, shift: int, first_vpn: int, last_vpn: int, tb: int) -> None:
        """Drop thread ``tb``'s entries of page shift ``shift`` with VPN in
        the closed range."""
        if last_vpn - first_vpn < self.sets:
            # Few pages: look each one up where it would live.
            for vpn in range(first_vpn, last_vpn + 1):
                s = vpn % self.sets
                tag = make_tag(vpn, shift, tb)
                if tag in self.tags[s]:
                    self._drop(s, self.tags[s].index(tag))
            return
        # More pages than sets: scanning every entry is cheaper.
        lo, hi = make_tag(first_vpn, shift, tb), make_tag(last_vpn, shift, tb)
        low_bits = tb | shift
        for s, tags in enumerate(self.tags):
            for way, tag in enumerate(tags):
                if (
                    tag != EMPTY_TAG
                    and lo <= tag <= hi
                    and tag_shift(tag) | tag_thread_bits(tag) == low_bits
                ):
                    self._drop(s, way)

    def flush(self, include_global: bool, tb: int) -> None:
        """Drop thread ``tb``'s entries (not its global ones unless asked)."""
        for s, tags in enumerate(self.tags):
            for way, tag in enumerate(tags):
                if (
                    tag != EMPTY_TAG
                    and tag_thread_bits(tag) == tb
                    and (include_global or not tag_is_global(tag))
                ):
                    self._drop(s, way)


class ExactTlb(Tlb):
    """Reference model: one Python-level lookup per touch.

    ``core`` holds the arrays of the CPU's core, keyed by array index and
    owner; the factory passes one dict to all siblings of a core so that
    they find the same objects for shared arrays.
    """

    model = "exact"

    def __init__(
        self,
        geometry: TlbGeometry,
        threads: int = 1,
        thread: int = 0,
        core: dict | None = None,
    ) -> None:
        super().__init__(geometry, threads, thread)
        layout = self.layout
        core = {} if core is None else core
        self._tb = layout.thread_bits
        self._specs = layout.arrays
        self._arrays = []
        for ai, spec in enumerate(layout.arrays):
            key = (ai, "core" if spec.sharing == "shared" else thread)
            if key not in core:
                core[key] = _LruArray(spec)
            self._arrays.append(core[key])
        # _route[level][touch shift] -> (array, shift it is cached at) or None
        self._route: list[list[tuple[_LruArray, int] | None]] = []
        for lvl in range(len(LEVELS)):
            row: list[tuple[_LruArray, int] | None] = []
            for ai, shift in layout.route[lvl].tolist():
                row.append(None if ai < 0 else (self._arrays[ai], shift))
            self._route.append(row)

    # -- lookups --------------------------------------------------------------
    def _touch(self, addr: int, shift: int, l1_level: int) -> int:
        """One touch of an unsigned address; returns the outcome."""
        tb = self._tb
        l1 = self._route[l1_level][shift]
        if l1 is not None:
            l1_array, l1_shift = l1
            l1_vpn = addr >> l1_shift
            if l1_array.lookup(l1_vpn, l1_shift, tb):
                return L1_HIT

        outcome = STLB_HIT
        l2 = self._route[self._second[l1_level]][shift]
        if l2 is None:
            outcome = WALK
        else:
            l2_array, l2_shift = l2
            l2_vpn = addr >> l2_shift
            if not l2_array.lookup(l2_vpn, l2_shift, tb):
                outcome = WALK
                l2_array.fill(l2_vpn, l2_shift, tb)

        if l1 is not None:
            l1_array.fill(l1_vpn, l1_shift, tb)
        return outcome

    def lookup(
        self, addrs, shifts, side: str, outcomes: np.ndarray | None = None
    ) -> TlbStats:
        l1_level = side_level(side)
        a, s = prepare_batch(addrs, shifts)
        if outcomes is not None and outcomes.shape[0] != a.shape[0]:
            raise ValueError("outcomes must be as long as addrs")
        stats = TlbStats(accesses=a.shape[0])
        walks = [0, 0, 0]
        for k, (addr, shift) in enumerate(zip(a.tolist(), s.tolist(), strict=True)):
            outcome = self._touch(addr & MASK64, shift, l1_level)
            if outcome != L1_HIT:
                stats.l1_misses += 1
                if outcome == WALK:
                    walks[walk_class(shift)] += 1
            if outcomes is not None:
                outcomes[k] = outcome
        stats.stlb_misses = sum(walks)
        stats.walks_4k, stats.walks_2m, stats.walks_1g = walks
        return stats

    def lookup_one(self, addr: int, shift: int, side: str) -> int:
        return self._touch(to_u64(addr), check_shift(shift), side_level(side))

    # -- invalidation ---------------------------------------------------------
    def invalidate_range(self, start: int, end: int) -> None:
        bounds = range_bounds(start, end)
        if bounds is None:
            return
        first, last = bounds
        for spec, array in zip(self._specs, self._arrays, strict=True):
            for shift in spec.page_shifts:
                array.invalidate(shift, first >> shift, last >> shift, self._tb)

    def flush_all(self, include_global: bool = True) -> None:
        for array in self._arrays:
            array.flush(include_global, self._tb)

    def _tags(self) -> np.ndarray:
        mine = []
        for array in self._arrays:
            for tags in array.tags:
                for t in tags:
                    ours = t != EMPTY_TAG and tag_thread_bits(t) == self._tb
                    mine.append(t if ours else EMPTY_TAG)
        return np.array(mine, dtype=np.int64)
