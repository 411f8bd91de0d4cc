"""The ``fast`` TLB model: the exact model's LRU algorithm compiled with numba.

State per CPU is two int64 vectors over all entries of all arrays (tags and
last-use stamps, laid out by :func:`simcore.hw.tlb.tlb_layout`) and a one-slot
clock; the geometry tables are shared by every CPU with that geometry. A batch
of touches is one compiled call, so the per-touch cost is a few way compares.

The results are identical to :mod:`simcore.hw.tlb_exact`, touch for touch:
same array selection, same tags, same LRU victims (an empty way first, else
the least recently used). Kernels are compiled once per process on first use
and cached on disk (``cache=True``); argument types are fixed (contiguous
int64 / uint8 / int8 arrays) so each kernel has a single specialisation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from simcore.constants import PMD_SHIFT as PAGE_SHIFT_2M
from simcore.constants import PUD_SHIFT as PAGE_SHIFT_1G
from simcore.hw import tlb as _tlb
from simcore.hw.tlb import (
    Tlb,
    TlbGeometry,
    TlbStats,
    check_shift,
    prepare_batch,
    range_bounds,
    side_level,
    to_i64,
)

__all__ = ["FastTlb", "warm_up"]

# numba freezes globals into the compiled (and disk-cached) kernels, and the
# cache is keyed on this file only: keep the constants here, checked against
# the model definition at import.
EMPTY_TAG = -1
STLB = 2
GLOBAL_BIT = 63
MAX_SHIFT = 63
if (
    EMPTY_TAG != _tlb.EMPTY_TAG
    or STLB != _tlb.STLB
    or GLOBAL_BIT != _tlb.GLOBAL_BIT
    or PAGE_SHIFT_2M != _tlb.PAGE_SHIFT_2M
    or PAGE_SHIFT_1G != _tlb.PAGE_SHIFT_1G
    or MAX_SHIFT != _tlb.MAX_SHIFT
    or _tlb.TAG_SHIFT_BITS != 6
):
    raise ImportError("tlb_fast constants out of step with simcore.hw.tlb")

_NO_OUTCOMES = np.zeros(0, dtype=np.int8)


@njit(cache=True)
def _vpn(addr, shift):
    # Logical (unsigned) shift of an int64 bit pattern.
    return (addr >> shift) & ((np.int64(1) << (64 - shift)) - 1)


@njit(cache=True)
def _set_base(meta, ai, vpn):
    mask = meta[ai, 3]  # sets - 1 when sets is a power of two: skip the divide
    idx = vpn & mask if mask >= 0 else vpn % meta[ai, 1]
    return meta[ai, 0] + idx * meta[ai, 2]


@njit(cache=True)
def _probe(tags, stamps, base, ways, tag):
    """Entry index of ``tag`` in the set at ``base``, or ``-1 - victim``.

    The victim is the first way with the smallest stamp: empty ways carry
    stamp 0 and valid ones >= 1, so an empty way wins, else the LRU way.
    """
    victim = base
    oldest = stamps[base]
    for j in range(base, base + ways):
        if tags[j] == tag:
            return j
        st = stamps[j]
        if st < oldest:
            oldest = st
            victim = j
    return -1 - victim


@njit(cache=True)
def _lookup_kernel(addrs, shifts, l1, tags, stamps, clock, meta, route, stats, out):
    # The range check of the shifts (they index ``route``) is done here, a
    # compare per touch before any state changes, rather than by a numpy
    # reduction per batch in prepare_batch(), which costs microseconds.
    for k in range(shifts.shape[0]):
        if shifts[k] > MAX_SHIFT:
            return False
    now = clock[0]
    record = out.shape[0] != 0
    l1_misses = 0
    walks_4k = 0
    walks_2m = 0
    walks_1g = 0
    for k in range(addrs.shape[0]):
        addr = addrs[k]
        s = np.int64(shifts[k])
        outcome = 0

        a1 = route[l1, s, 0]
        slot1 = -1
        tag1 = np.int64(0)
        hit = False
        if a1 >= 0:
            s1 = route[l1, s, 1]
            vpn1 = _vpn(addr, s1)
            tag1 = (vpn1 << 6) | s1
            r = _probe(tags, stamps, _set_base(meta, a1, vpn1), meta[a1, 2], tag1)
            if r >= 0:
                now += 1
                stamps[r] = now
                hit = True
            else:
                slot1 = -1 - r

        if not hit:
            l1_misses += 1
            outcome = 1
            a2 = route[STLB, s, 0]
            hit2 = False
            slot2 = -1
            tag2 = np.int64(0)
            if a2 >= 0:
                s2 = route[STLB, s, 1]
                vpn2 = _vpn(addr, s2)
                tag2 = (vpn2 << 6) | s2
                r = _probe(tags, stamps, _set_base(meta, a2, vpn2), meta[a2, 2], tag2)
                if r >= 0:
                    now += 1
                    stamps[r] = now
                    hit2 = True
                else:
                    slot2 = -1 - r
            if not hit2:
                outcome = 2
                if s >= PAGE_SHIFT_1G:
                    walks_1g += 1
                elif s >= PAGE_SHIFT_2M:
                    walks_2m += 1
                else:
                    walks_4k += 1
                if slot2 >= 0:
                    now += 1
                    tags[slot2] = tag2
                    stamps[slot2] = now
            if slot1 >= 0:
                now += 1
                tags[slot1] = tag1
                stamps[slot1] = now
        if record:
            out[k] = outcome
    clock[0] = now
    stats[0] = addrs.shape[0]
    stats[1] = l1_misses
    stats[2] = walks_4k + walks_2m + walks_1g
    stats[3] = walks_4k
    stats[4] = walks_2m
    stats[5] = walks_1g
    return True


@njit(cache=True)
def _invalidate_kernel(first, last, tags, stamps, meta, array_shifts):
    """Drop entries overlapping the bytes [first, last] (int64 bit patterns)."""
    for ai in range(meta.shape[0]):
        sets = meta[ai, 1]
        lo_entry = meta[ai, 0]
        ways = meta[ai, 2]
        for j in range(array_shifts.shape[1]):
            s = array_shifts[ai, j]
            if s < 0:
                break
            v0 = _vpn(first, s)
            v1 = _vpn(last, s)
            if v1 - v0 < sets:
                # Few pages: probe the set each would live in.
                for v in range(v0, v1 + 1):
                    tag = (v << 6) | s
                    base = _set_base(meta, ai, v)
                    for e in range(base, base + ways):
                        if tags[e] == tag:
                            tags[e] = EMPTY_TAG
                            stamps[e] = 0
            else:
                lo = (v0 << 6) | s
                hi = (v1 << 6) | s
                for e in range(lo_entry, lo_entry + sets * ways):
                    t = tags[e]
                    if t != EMPTY_TAG and lo <= t <= hi and (t & 63) == s:
                        tags[e] = EMPTY_TAG
                        stamps[e] = 0


@njit(cache=True)
def _flush_kernel(tags, stamps, include_global):
    for e in range(tags.shape[0]):
        t = tags[e]
        if t == EMPTY_TAG:
            continue
        if not include_global:
            s = t & 63
            if ((t >> 6) >> (GLOBAL_BIT - s)) & 1:
                continue
        tags[e] = EMPTY_TAG
        stamps[e] = 0


class FastTlb(Tlb):
    """Compiled model: one numba call per batch."""

    model = "fast"

    def __init__(self, geometry: TlbGeometry) -> None:
        super().__init__(geometry)
        n = self.layout.n_entries
        self._tag_arr = np.full(n, EMPTY_TAG, dtype=np.int64)
        self._stamps = np.zeros(n, dtype=np.int64)
        self._clock = np.zeros(1, dtype=np.int64)
        self._stats = np.zeros(6, dtype=np.int64)
        self._one_addr = np.zeros(1, dtype=np.int64)
        self._one_shift = np.zeros(1, dtype=np.uint8)
        self._one_out = np.zeros(1, dtype=np.int8)

    def lookup(
        self, addrs, shifts, side: str, outcomes: np.ndarray | None = None
    ) -> TlbStats:
        l1 = side_level(side)
        a, s = prepare_batch(addrs, shifts, check_uint8=False)
        if outcomes is None:
            out = _NO_OUTCOMES
        else:
            if outcomes.shape[0] != a.shape[0]:
                raise ValueError("outcomes must be as long as addrs")
            if a.shape[0] == 0:
                return TlbStats()
            out = outcomes
            if out.dtype != np.int8 or not out.flags.c_contiguous:
                out = np.zeros(a.shape[0], dtype=np.int8)
        st = self._stats
        ok = _lookup_kernel(
            a,
            s,
            l1,
            self._tag_arr,
            self._stamps,
            self._clock,
            self.layout.meta,
            self.layout.route,
            st,
            out,
        )
        if not ok:
            raise ValueError(f"page shifts outside [0, {MAX_SHIFT}]")
        if outcomes is not None and out is not outcomes:
            outcomes[:] = out
        return TlbStats(*st.tolist())

    def lookup_one(self, addr: int, shift: int, side: str) -> int:
        l1 = side_level(side)
        self._one_addr[0] = to_i64(addr)
        self._one_shift[0] = check_shift(shift)
        _lookup_kernel(
            self._one_addr,
            self._one_shift,
            l1,
            self._tag_arr,
            self._stamps,
            self._clock,
            self.layout.meta,
            self.layout.route,
            self._stats,
            self._one_out,
        )
        return int(self._one_out[0])

    def invalidate_range(self, start: int, end: int) -> None:
        bounds = range_bounds(start, end)
        if bounds is None:
            return
        first, last = bounds
        _invalidate_kernel(
            np.int64(to_i64(first)),
            np.int64(to_i64(last)),
            self._tag_arr,
            self._stamps,
            self.layout.meta,
            self.layout.array_shifts,
        )

    def flush_all(self, include_global: bool = True) -> None:
        _flush_kernel(self._tag_arr, self._stamps, bool(include_global))

    def _tags(self) -> np.ndarray:
        return self._tag_arr


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel now."""
    from simcore.hw.tlb import TlbArray

    geo = TlbGeometry(
        itlb=(TlbArray((12,), 4, 2),),
        dtlb=(TlbArray((12, 21), 4, 4),),
        stlb=(TlbArray((12,), 6, 3),),
    )
    t = FastTlb(geo)
    t.lookup(np.array([0, 1 << 12], dtype=np.int64), 12, "d")
    t.lookup_one(0, 12, "i")
    t.invalidate_page(0)
    t.invalidate_range(0, 1 << 30)
    t.flush_all(False)
    t.flush_all(True)
