"""Compiled (numba) helpers of the execution path.

Imported on first use, not with the modules using them, so that a run
which executes no code (a vmalloc stress test, ``simcore check``) does not
pay for importing numba. Kernels are cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Walk classes by the touch's page shift (below 21: 4K, below 30: 2M, else
# 1G, as simcore.hw.tlb counts walks) and the page size each class's
# footprint is counted in. numba freezes this into the disk-cached kernel.
_CLASS_SHIFT = (12, 21, 30)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53: numpy's random() scale


@njit(cache=True)
def _distinct_sorted(v, shift):
    """Distinct values of ``v >> shift``, ``v`` sorted: an arithmetic shift
    keeps the order, so equal results are adjacent."""
    n = 0
    for i in range(v.shape[0]):
        if i == 0 or (v[i] >> shift) != (v[i - 1] >> shift):
            n += 1
    return n


@njit(cache=True)
def footprint(addrs, shifts, out):
    """``out[0]``: distinct 2M regions of all touches; ``out[1 + c]``:
    distinct pages of walk class ``c`` (4K, 2M, 1G) among its touches; and,
    when ``out`` has room for them, ``out[4:7]``: distinct 1G, 512G and 256T
    regions of all touches (the PDPT, PML4 and PML5 entries the page walker
    needs, :meth:`simcore.hw.pagewalk.PageWalker.walk_cycles`).

    np.unique per class cost more than the TLB lookup itself (a sort and a
    dozen numpy calls each). Here one sort serves the regions and, when the
    batch is all of one class (the usual case: one strategy's mapping
    size), that class's pages too. Shifting int64 bit patterns
    arithmetically groups addresses exactly as the unsigned shift does, so
    the counts are the same.
    """
    n = addrs.shape[0]
    for c in range(out.shape[0]):
        out[c] = 0
    if n == 0:
        return
    v = addrs.copy()
    v.sort()
    out[0] = _distinct_sorted(v, 21)
    if out.shape[0] >= 7:
        out[4] = _distinct_sorted(v, 30)
        out[5] = _distinct_sorted(v, 39)
        out[6] = _distinct_sorted(v, 48)
    cls = np.zeros(n, np.int8)
    for i in range(n):
        s = shifts[i]
        cls[i] = 0 if s < 21 else (1 if s < 30 else 2)
    uniform = True
    for i in range(1, n):
        if cls[i] != cls[0]:
            uniform = False
            break
    if uniform:
        out[1 + cls[0]] = _distinct_sorted(v, _CLASS_SHIFT[cls[0]])
        return
    for c in range(3):
        m = 0
        for i in range(n):
            if cls[i] == c:
                v[m] = addrs[i]
                m += 1
        part = v[:m]
        part.sort()
        out[1 + c] = _distinct_sorted(part, _CLASS_SHIFT[c])


@njit(cache=True)
def gather(picks, first, count, size, flat, flat_shift):
    """For each pick ``p``: ``count[p]`` touches of ``flat`` from
    ``first[p]``, with their page shifts from ``flat_shift``; returns
    (addresses, shifts, sum of ``size[p]``).
    :class:`simcore.hw.touchtable.TouchTable`'s gather. The shift is kept
    per touch, not per image, because an image may sit partly under a
    demoted (4K) PMD and partly under huge ones.

    One compiled pass instead of the eight numpy calls a ragged gather
    takes (count, cumsum, repeat, arange, ...): at ~100 picks a quantum
    their fixed costs, not the copying, were the time.
    """
    total = 0
    for p in picks:
        total += count[p]
    addrs = np.empty(total, np.uint64)
    shifts = np.empty(total, np.uint8)
    k = 0
    nbytes = 0
    for p in picks:
        f = first[p]
        for j in range(count[p]):
            addrs[k] = flat[f + j]
            shifts[k] = flat_shift[f + j]
            k += 1
        nbytes += size[p]
    return addrs, shifts, nbytes


@njit(cache=True)
def last_positions(keys, n):
    """Positions, in order, of the last occurrence of each distinct key of
    ``keys`` (integers in ``[0, n)``): one pass to note where each key was
    seen last, one to keep those positions. np.unique would sort."""
    last = np.full(n, -1, np.int64)
    for i in range(keys.shape[0]):
        last[keys[i]] = i
    out = np.empty(keys.shape[0], np.int64)
    m = 0
    for i in range(keys.shape[0]):
        if last[keys[i]] == i:
            out[m] = i
            m += 1
    return out[:m]


@njit(cache=True)
def zipf_last(u, n, s):
    """Page ranks in ``[0, n)`` drawn from a bounded continuous Zipf(``s``)
    by inverse CDF of the uniforms ``u`` (as
    ``simcore.workloads.footprint.Touches`` draws them), each rank kept
    once, at its last draw, in draw order: the draw and
    :func:`last_positions` in one pass, without the arrays between them."""
    k = u.shape[0]
    ranks = np.empty(k, np.int64)
    if s == 1.0:
        top = np.log(n + 1.0)
        for i in range(k):
            ranks[i] = min(np.int64(np.exp(u[i] * top)) - 1, n - 1)
    else:
        a = 1.0 - s
        span = (n + 1.0) ** a - 1.0
        for i in range(k):
            ranks[i] = min(np.int64((1.0 + u[i] * span) ** (1.0 / a)) - 1, n - 1)
    return ranks[last_positions(ranks, n)]


# Zipf ranks through a bucket table, for simcore.hw.tlb_kernels.host_kernel.
# A rank is min(int(exp(u * log(n + 1))) - 1, n - 1) (or the pow form for
# s != 1): an exp per draw, most of the draw's cost. The uniforms' top bits
# pick one of 2**lb buckets; a bucket all of whose uniforms give one rank
# holds it and the draw needs no exp. Whether a bucket is such is decided
# from its two ends with a margin of 2**-40 either way: the rank is a
# monotone function of u computed with a few roundings and one libm call,
# each off by well under 2**-50, so a uniform inside the bucket lands
# between the widened ends, and equal ranks there mean equal ranks inside.
# Other buckets hold -1 and their draws take the exp, as zipf_last does.
BUCKET_MARGIN = 2.0**-40


@njit(cache=True)
def _zipf_value(u, n, s):
    if s == 1.0:
        return np.exp(u * np.log(n + 1.0))
    a = 1.0 - s
    span = (n + 1.0) ** a - 1.0
    return (1.0 + u * span) ** (1.0 / a)


@njit(cache=True)
def zipf_buckets(n, s, lb, out):
    """``out[b]``: the rank of every uniform whose top ``lb`` bits are b,
    or -1 where they differ (see above)."""
    per = np.int64(1) << (53 - lb)
    for b in range(np.int64(1) << lb):
        lo = _zipf_value(np.float64(b * per) * _TO_UNIT, n, s)
        hi = _zipf_value(np.float64((b + 1) * per - 1) * _TO_UNIT, n, s)
        r_lo = min(np.int64(lo * (1.0 - BUCKET_MARGIN)) - 1, n - 1)
        r_hi = min(np.int64(hi * (1.0 + BUCKET_MARGIN)) - 1, n - 1)
        out[b] = r_lo if r_lo == r_hi else -1
