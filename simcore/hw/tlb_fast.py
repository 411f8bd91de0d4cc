"""The ``fast`` TLB model: the exact model's LRU algorithm compiled with numba.

State per core is two int64 vectors over all entries of all arrays (tags and
last-use stamps, laid out by :func:`simcore.hw.tlb_geometry.tlb_layout`), a
one-slot clock and the index of its large fully associative arrays, all
held by every SMT sibling of the core: a thread's geometry table (``meta``)
points its shared arrays at the same entries as its sibling's, its private
and partitioned ones at its own. A batch of touches is one compiled call,
so the per-touch cost is a few way compares, or for an indexed array a
hash probe (the kernels and the index: :mod:`simcore.hw.tlb_kernels`).

The results are identical to :mod:`simcore.hw.tlb_exact`, touch for touch:
same array selection, same tags, same LRU victims (an empty way first, else
the least recently used), in the same ways. Kernels are compiled once per
process on first use and cached on disk (``cache=True``); argument types
are fixed (contiguous int64 / uint8 / int8 arrays) so each kernel has a
single specialisation.
"""

from __future__ import annotations

import numpy as np

from simcore.constants import PMD_SHIFT as PAGE_SHIFT_2M
from simcore.constants import PUD_SHIFT as PAGE_SHIFT_1G
from simcore.hw import tlb as _tlb
from simcore.hw import tlb_kernels as _k
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

# The kernels (simcore.hw.tlb_kernels) freeze their constants when they are
# compiled: check them against the model definition at import.
if (
    _k.EMPTY_TAG != _tlb.EMPTY_TAG
    or _k.GLOBAL_BIT != _tlb.GLOBAL_BIT
    or _k.PAGE_SHIFT_2M != PAGE_SHIFT_2M
    or _k.PAGE_SHIFT_1G != PAGE_SHIFT_1G
    or _k.MAX_SHIFT != _tlb.MAX_SHIFT
    or _k.TAG_BITS != _tlb.TAG_SHIFT_BITS
    or _k.SHIFT_MASK != _tlb.SHIFT_MASK
    or _k.LOW_MASK != (1 << _k.TAG_BITS) - 1
):
    raise ImportError("tlb_kernels constants out of step with simcore.hw.tlb")

MAX_SHIFT = _k.MAX_SHIFT
EMPTY_TAG = _k.EMPTY_TAG
_NO_OUTCOMES = np.zeros(0, dtype=np.int8)
# Fully associative arrays of at least this many ways are looked up through
# an index (tlb_kernels' module docstring) instead of way by way: AMD's L2
# DTLB (2,048 and 3,072 ways) and the 48- to 72-way L1 TLBs of AMD and Arm
# cores, whose scans cost more than the index's bookkeeping (measured: the
# host's stretch on zen4-genoa 0.20 -> 0.13 ms with the L1s indexed too).
INDEXED_WAYS = 32


class FastCore:
    """The TLB state of one core, held by each of its hardware threads."""

    __slots__ = ("tags", "stamps", "clock", "aux", "aux_at")

    def __init__(self, entries: int) -> None:
        self.tags = np.full(entries, EMPTY_TAG, dtype=np.int64)
        self.stamps = np.zeros(entries, dtype=np.int64)
        # one clock for the core: LRU order within a shared set compares
        # stamps the two threads wrote
        self.clock = np.zeros(1, dtype=np.int64)
        # the indexes of large fully associative arrays, by first entry
        # (set up by the core's first FastTlb, for all its threads); int32
        # words: a smaller core state misses the caches less (a 64-CPU
        # Genoa run 10 % faster than with int64)
        self.aux = np.zeros(0, dtype=np.int32)
        self.aux_at: dict[int, int] | None = None

    def index_arrays(self, layouts) -> None:
        """Room in ``aux`` for every indexed array of the threads' layouts
        (a shared array once): a list head, tail, first-empty mark, the
        hash's mask and shift, two links per way, a hash table of four
        slots per way (short probe runs)."""
        if self.aux_at is not None:
            return
        at: dict[int, int] = {}
        words: list[np.ndarray] = []
        size = 0
        for lay in layouts:
            for ai, a in enumerate(lay.arrays):
                first = int(lay.meta[ai, 0])
                if not _indexed(a) or first in at:
                    continue
                slots = 1 << (4 * a.ways - 1).bit_length()
                head = [-1, -1, 0, slots - 1, 64 - (slots.bit_length() - 1)]
                block = np.full(_k.AUX_LINKS + 2 * a.ways + slots, -1, np.int32)
                block[: _k.AUX_LINKS] = head
                at[first] = size
                words.append(block)
                size += len(block)
        self.aux = np.concatenate(words) if words else np.zeros(0, np.int32)
        self.aux_at = at


def _indexed(a) -> bool:
    return a.sets == 1 and a.ways >= INDEXED_WAYS


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
        core.index_arrays([tlb_layout(geometry, threads, t) for t in range(threads)])
        self._core = core
        self._tag_arr = core.tags
        self._stamps = core.stamps
        self._clock = core.clock
        self._aux = core.aux
        self._tb = lay.thread_bits
        # the layout's meta with a fifth column: the array's index in aux
        meta = np.full((lay.meta.shape[0], 5), -1, dtype=np.int64)
        meta[:, :4] = lay.meta
        for ai, a in enumerate(lay.arrays):
            if _indexed(a):
                meta[ai, 4] = core.aux_at[int(lay.meta[ai, 0])]
        self._meta = meta
        self._route = lay.route
        self._ashifts = lay.array_shifts
        self._stats = np.zeros(6, dtype=np.int64)
        self._one_addr = np.zeros(1, dtype=np.int64)
        self._one_shift = np.zeros(1, dtype=np.uint8)
        self._one_out = np.zeros(1, dtype=np.int8)
        # thread bits, then the second level of the instruction and data side
        self._tlb = np.array([self._tb, *self._second], dtype=np.int64)

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
        ok = _k.lookup_kernel(
            a, s, l1, self._second[l1], self._tb, self._tag_arr, self._stamps,
            self._clock, self._meta, self._route, self._aux, st, out,
        )  # fmt: skip
        if not ok:
            raise ValueError(f"page shifts outside [0, {MAX_SHIFT}]")
        if outcomes is not None and out is not outcomes:
            outcomes[:] = out
        return TlbStats(*st.tolist())

    def lookup_one(self, addr: int, shift: int, side: str) -> int:
        l1 = side_level(side)
        self._one_addr[0] = to_i64(addr)
        self._one_shift[0] = check_shift(shift)
        _k.lookup_kernel(
            self._one_addr, self._one_shift, l1, self._second[l1], self._tb,
            self._tag_arr, self._stamps, self._clock, self._meta, self._route,
            self._aux, self._stats, self._one_out,
        )  # fmt: skip
        return int(self._one_out[0])

    def host_stretch(self, state, host, nseg: int, out: np.ndarray) -> None:
        """``nseg`` stretches of the host's code in one compiled call
        (:func:`simcore.hw.tlb_kernels.host_kernel`): ``state`` is the CPU's
        PCG64 state, ``host`` the parts (:class:`simcore.hw.zipf_touch.HostDraws`)."""
        _k.host_kernel(
            state, host.parts, host.buckets, host.taddrs, host.tshifts,
            host.costs, host.drops, nseg, host.zipf, self._tlb, self._tag_arr,
            self._stamps, self._clock, self._meta, self._route, self._ashifts,
            self._aux, host.scratch, out,
        )  # fmt: skip

    def invalidate_range(self, start: int, end: int) -> None:
        bounds = range_bounds(start, end)
        if bounds is None:
            return
        first, last = bounds
        _k.invalidate_kernel(
            np.int64(to_i64(first)), np.int64(to_i64(last)), self._tb,
            self._tag_arr, self._stamps, self._meta, self._ashifts, self._aux,
        )  # fmt: skip

    def flush_all(self, include_global: bool = True) -> None:
        _k.flush_kernel(
            self._tb, self._tag_arr, self._stamps, self._meta,
            bool(include_global), self._aux,
        )  # fmt: skip

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
    _warm_host(FastTlb(geo))
    _warm_compiled()


def _warm_compiled() -> None:
    """simcore.hw.compiled's kernels, with the argument types of the run."""
    from simcore.hw.compiled import footprint, gather, zipf_last

    addrs = np.array([0, 1 << 21], dtype=np.int64)
    footprint(addrs, np.array([12, 21], np.uint8), np.zeros(7, np.int64))
    one = np.ones(1, np.int64)
    gather(np.zeros(1, np.int64), one - 1, one, one, addrs.view(np.uint64),
           np.full(2, 12, np.uint8))  # fmt: skip
    zipf_last(np.array([0.5]), 4, 1.0)


def _warm_host(tlb: FastTlb) -> None:
    from simcore.hw.zipf_touch import HostDraws, Pcg64Stream, ZipfParts

    zp = ZipfParts(
        n=np.array([4, 8]),
        base=np.zeros(2, np.int64),
        shift=np.array([12, 0]),
        side=np.array([0, 1]),
        table=1,
        table_addrs=np.arange(8, dtype=np.int64) << 12,
        table_shifts=np.full(8, 12, np.uint8),
    )
    draws = HostDraws(zp, [0, 1], 1.0, [[0, 1 << 12]])
    draws.set_counts([3, 3])
    stream = Pcg64Stream(np.random.default_rng(0))
    tlb.host_stretch(stream.state, draws, 2, np.zeros(28, np.int64))
    stream.random(2)
