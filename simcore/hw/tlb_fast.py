"""The ``fast`` TLB model: the exact model's LRU algorithm compiled with numba.

State per core is two int64 vectors over all entries of all arrays (tags and
last-use stamps, laid out by :func:`simcore.hw.tlb_geometry.tlb_layout`) and
a one-slot clock, all three held by every SMT sibling of the core: a
thread's geometry table (``meta``) points its shared arrays at the same
entries as its sibling's, its private and partitioned ones at its own. A
batch of touches is one compiled call, so the per-touch cost is a few way
compares.

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
from simcore.hw.compiled import zipf_last
from simcore.hw.tlb import (
    Tlb,
    TlbGeometry,
    TlbStats,
    check_shift,
    prepare_batch,
    range_bounds,
    side_level,
    tlb_layout,
    to_i64,
)

__all__ = ["FastCore", "FastTlb", "warm_up"]

# numba freezes globals into the compiled (and disk-cached) kernels, and the
# cache is keyed on this file only: keep the constants here, checked against
# the model definition at import.
EMPTY_TAG = -1
GLOBAL_BIT = 63
MAX_SHIFT = 63
TAG_BITS = 8  # tag = vpn << TAG_BITS | thread bits | page shift
SHIFT_MASK = 63
LOW_MASK = 255  # thread bits and page shift
if (
    EMPTY_TAG != _tlb.EMPTY_TAG
    or GLOBAL_BIT != _tlb.GLOBAL_BIT
    or PAGE_SHIFT_2M != _tlb.PAGE_SHIFT_2M
    or PAGE_SHIFT_1G != _tlb.PAGE_SHIFT_1G
    or MAX_SHIFT != _tlb.MAX_SHIFT
    or TAG_BITS != _tlb.TAG_SHIFT_BITS
    or SHIFT_MASK != _tlb.SHIFT_MASK
    or LOW_MASK != (1 << TAG_BITS) - 1
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
def _lookup_kernel(
    addrs, shifts, l1, l2, tb, tags, stamps, clock, meta, route, stats, out
):
    # l1, l2: the levels an access looks up (its L1, then ITLB2 or STLB);
    # tb: the thread's bits in a tag.
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
            tag1 = (vpn1 << TAG_BITS) | tb | s1
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
            a2 = route[l2, s, 0]
            hit2 = False
            slot2 = -1
            tag2 = np.int64(0)
            if a2 >= 0:
                s2 = route[l2, s, 1]
                vpn2 = _vpn(addr, s2)
                tag2 = (vpn2 << TAG_BITS) | tb | s2
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
def _zipf_parts_kernel(
    u, off, n, base, shift, side, table, taddrs, tshifts, zipf,
    seconds, tb, tags, stamps, clock, meta, route, out,
):  # fmt: skip
    """simcore.hw.zipf_touch.lookup_generic compiled: per part, ranks from
    its uniforms (zipf_last), its pages, one _lookup_kernel pass."""
    st = np.zeros(6, np.int64)
    no_out = np.zeros(0, np.int8)
    for p in range(n.shape[0]):
        if off[p + 1] == off[p]:
            continue
        ranks = zipf_last(u[off[p] : off[p + 1]], n[p], zipf)
        m = ranks.shape[0]
        addrs = np.empty(m, np.int64)
        shifts = np.empty(m, np.uint8)
        if p == table:
            for i in range(m):
                s = np.int64(tshifts[ranks[i]])
                addrs[i] = (taddrs[ranks[i]] >> s) << s
                shifts[i] = tshifts[ranks[i]]
        else:
            for i in range(m):
                addrs[i] = base[p] + (ranks[i] << shift[p])
                shifts[i] = shift[p]
        l1 = side[p]
        _lookup_kernel(
            addrs, shifts, l1, seconds[l1], tb, tags, stamps, clock, meta,
            route, st, no_out,
        )  # fmt: skip
        for j in range(6):
            out[p, j] = st[j]


@njit(cache=True)
def _invalidate_kernel(first, last, tb, tags, stamps, meta, array_shifts):
    """Drop the thread's entries overlapping the bytes [first, last] (int64
    bit patterns) from the arrays ``meta`` gives it."""
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
                    tag = (v << TAG_BITS) | tb | s
                    base = _set_base(meta, ai, v)
                    for e in range(base, base + ways):
                        if tags[e] == tag:
                            tags[e] = EMPTY_TAG
                            stamps[e] = 0
            else:
                lo = (v0 << TAG_BITS) | tb | s
                hi = (v1 << TAG_BITS) | tb | s
                low = tb | s
                for e in range(lo_entry, lo_entry + sets * ways):
                    t = tags[e]
                    if t != EMPTY_TAG and lo <= t <= hi and (t & LOW_MASK) == low:
                        tags[e] = EMPTY_TAG
                        stamps[e] = 0


@njit(cache=True)
def _flush_kernel(tb, tags, stamps, meta, include_global):
    """Drop the thread's entries (not its global ones unless asked) from the
    arrays ``meta`` gives it; a sibling's entries of a shared array stay."""
    for ai in range(meta.shape[0]):
        lo_entry = meta[ai, 0]
        for e in range(lo_entry, lo_entry + meta[ai, 1] * meta[ai, 2]):
            t = tags[e]
            if t == EMPTY_TAG or (t & LOW_MASK & ~SHIFT_MASK) != tb:
                continue
            if not include_global:
                s = t & SHIFT_MASK
                if ((t >> TAG_BITS) >> (GLOBAL_BIT - s)) & 1:
                    continue
            tags[e] = EMPTY_TAG
            stamps[e] = 0


class FastCore:
    """The TLB state of one core, held by each of its hardware threads."""

    __slots__ = ("tags", "stamps", "clock")

    def __init__(self, entries: int) -> None:
        self.tags = np.full(entries, EMPTY_TAG, dtype=np.int64)
        self.stamps = np.zeros(entries, dtype=np.int64)
        # one clock for the core: LRU order within a shared set compares
        # stamps the two threads wrote
        self.clock = np.zeros(1, dtype=np.int64)


class FastTlb(Tlb):
    """Compiled model: one numba call per batch.

    ``core`` is the state of the CPU's core (:class:`FastCore`), shared with
    its siblings; a TLB made without one has a core to itself.
    """

    model = "fast"

    def __init__(
        self,
        geometry: TlbGeometry,
        threads: int = 1,
        thread: int = 0,
        core: FastCore | None = None,
    ) -> None:
        super().__init__(geometry, threads, thread)
        lay = self.layout
        if core is None:
            core = FastCore(lay.core_entries)
        elif core.tags.shape[0] != lay.core_entries:
            raise ValueError("core state does not fit the geometry")
        self._core = core
        self._tag_arr = core.tags
        self._stamps = core.stamps
        self._clock = core.clock
        self._tb = lay.thread_bits
        self._stats = np.zeros(6, dtype=np.int64)
        self._one_addr = np.zeros(1, dtype=np.int64)
        self._one_shift = np.zeros(1, dtype=np.uint8)
        self._one_out = np.zeros(1, dtype=np.int8)
        self._seconds = np.array(self._second, dtype=np.int64)

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
            self._second[l1],
            self._tb,
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

    def lookup_zipf(self, parts, u: np.ndarray, off: np.ndarray, zipf: float):
        out = np.zeros((parts.n.shape[0], 6), np.int64)
        _zipf_parts_kernel(
            u, off, parts.n, parts.base, parts.shift, parts.side, parts.table,
            parts.table_addrs, parts.table_shifts, float(zipf),
            self._seconds, self._tb, self._tag_arr, self._stamps, self._clock,
            self.layout.meta, self.layout.route, out,
        )  # fmt: skip
        return out

    def lookup_one(self, addr: int, shift: int, side: str) -> int:
        l1 = side_level(side)
        self._one_addr[0] = to_i64(addr)
        self._one_shift[0] = check_shift(shift)
        _lookup_kernel(
            self._one_addr,
            self._one_shift,
            l1,
            self._second[l1],
            self._tb,
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
            self._tb,
            self._tag_arr,
            self._stamps,
            self.layout.meta,
            self.layout.array_shifts,
        )

    def flush_all(self, include_global: bool = True) -> None:
        _flush_kernel(
            self._tb,
            self._tag_arr,
            self._stamps,
            self.layout.meta,
            bool(include_global),
        )

    def _tags(self) -> np.ndarray:
        return self._view(self._tag_arr)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel now."""
    from simcore.hw.tlb import TlbArray

    geo = TlbGeometry(
        itlb=(TlbArray((12,), 4, 2, "shared"),),
        dtlb=(TlbArray((12, 21), 4, 4, "partitioned"),),
        stlb=(TlbArray((12,), 6, 3),),
        itlb2=(TlbArray((12,), 4, 4),),
    )
    core = FastCore(tlb_layout(geo, 2).core_entries)
    for t in FastTlb(geo, 2, 0, core), FastTlb(geo, 2, 1, core):
        t.lookup(np.array([0, 1 << 12], dtype=np.int64), 12, "d")
        t.lookup_one(0, 12, "i")
        t.invalidate_page(0)
        t.invalidate_range(0, 1 << 30)
        t.flush_all(False)
        t.flush_all(True)
