"""Compiled kernels of the ``fast`` TLB model (:mod:`simcore.hw.tlb_fast`).

Every kernel of the model, and every function a kernel calls, is in this one
file: numba caches compiled code on disk keyed on the file a function is
defined in and does not notice a change in another file a kernel calls
into, so a function kept elsewhere could leave a stale kernel behind.

State
-----
Per core: ``tags`` and ``stamps`` over all entries of all arrays (laid out by
:func:`simcore.hw.tlb_geometry.tlb_layout`), a one-slot ``clock`` and
``aux`` (int32), the index of the large fully associative arrays (below). Per
thread: ``meta[a] = (first entry, sets, ways, sets - 1 or -1, aux offset or
-1)`` and ``route``, as in :class:`simcore.hw.tlb_geometry.TlbLayout`.

Large fully associative arrays
------------------------------
AMD's L2 DTLB (2,048 or 3,072 entries, one set) was scanned way by way on
every probe: a few thousand compares per L1 miss, most of an AMD run. Such
an array, and any fully associative one of ``tlb_fast.INDEXED_WAYS`` ways
or more, gets an index in ``aux`` instead, laid out from its offset ``o``:

- ``o + 0``, ``o + 1``: the head (least recently used) and tail of a
  doubly linked list of its valid ways in stamp order; ``o + 2``: a way
  below which none is empty; ``o + 3``, ``o + 4``: the hash table's mask
  and the right shift of the multiplicative hash;
- ``o + 5``: the list's previous links, then its next links (one per way),
  then an open-addressing hash table (linear probing, backward-shift
  deletion) from tag to way, four slots per way, ``-1`` where free. (A
  table of (tag, way) pairs, which spares the probe a load from ``tags``,
  measured no faster.)

Every stamp written is the core's clock, which only grows, so moving a way
to the tail when it is stamped keeps the list in stamp order, and the
head is the way with the smallest stamp. The victim is therefore the one
the scan picks: the first empty way, else the least recently used. Tags,
stamps and victims are the same as without the index, entry for entry.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# numba freezes globals into the compiled (and disk-cached) kernels:
# tlb_fast checks these against the model definition at import.
EMPTY_TAG = -1
GLOBAL_BIT = 63
MAX_SHIFT = 63
TAG_BITS = 8  # tag = vpn << TAG_BITS | thread bits | page shift
SHIFT_MASK = 63
LOW_MASK = 255  # thread bits and page shift
PAGE_SHIFT_2M = 21
PAGE_SHIFT_1G = 30
AUX_LINKS = 5  # aux words of an indexed array before its links
HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio


@njit(cache=True)
def _vpn(addr, shift):
    # Logical (unsigned) shift of an int64 bit pattern.
    return (addr >> shift) & ((np.int64(1) << (64 - shift)) - 1)


@njit(cache=True)
def _set_base(meta, ai, vpn):
    mask = meta[ai, 3]  # sets - 1 when sets is a power of two: skip the divide
    idx = vpn & mask if mask >= 0 else vpn % meta[ai, 1]
    return meta[ai, 0] + idx * meta[ai, 2]


# -- the index of a large fully associative array ------------------------------
@njit(cache=True)
def _hash(tag, shift):
    return np.int64((np.uint64(tag) * HASH_MUL) >> np.uint64(shift))


@njit(cache=True)
def _h_find(tags, aux, o, ways, first, tag):
    """The way holding ``tag``, or -1."""
    mask = aux[o + 3]
    table = o + AUX_LINKS + 2 * ways
    i = _hash(tag, aux[o + 4])
    while True:
        w = aux[table + i]
        if w < 0:
            return -1
        if tags[first + w] == tag:
            return w
        i = (i + 1) & mask


@njit(cache=True)
def _h_insert(tags, aux, o, ways, first, w):
    mask = aux[o + 3]
    table = o + AUX_LINKS + 2 * ways
    i = _hash(tags[first + w], aux[o + 4])
    while aux[table + i] >= 0:
        i = (i + 1) & mask
    aux[table + i] = w


@njit(cache=True)
def _h_delete(tags, aux, o, ways, first, w):
    """Remove way ``w`` (whose tag is still in ``tags``) from the table,
    moving later entries of its probe run back so none is cut off."""
    mask = aux[o + 3]
    hs = aux[o + 4]
    table = o + AUX_LINKS + 2 * ways
    i = _hash(tags[first + w], hs)
    while aux[table + i] != w:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        wj = aux[table + j]
        if wj < 0:
            break
        k = _hash(tags[first + wj], hs)
        # an entry whose home is cyclically in (i, j] stays where it is
        if (i < k <= j) if i <= j else (k > i or k <= j):
            continue
        aux[table + i] = wj
        i = j
    aux[table + i] = -1


@njit(cache=True)
def _l_unlink(aux, o, ways, w):
    prev = o + AUX_LINKS
    nxt = prev + ways
    p = aux[prev + w]
    n = aux[nxt + w]
    if p >= 0:
        aux[nxt + p] = n
    else:
        aux[o] = n
    if n >= 0:
        aux[prev + n] = p
    else:
        aux[o + 1] = p


@njit(cache=True)
def _l_append(aux, o, ways, w):
    prev = o + AUX_LINKS
    nxt = prev + ways
    tail = aux[o + 1]
    aux[prev + w] = tail
    aux[nxt + w] = -1
    if tail >= 0:
        aux[nxt + tail] = w
    else:
        aux[o] = w
    aux[o + 1] = w


# -- one entry of an indexed array: probe, hit, fill; of any array: drop -------
@njit(cache=True)
def _fa_probe(tags, meta, aux, ai, tag):
    first = meta[ai, 0]
    ways = meta[ai, 2]
    o = meta[ai, 4]
    w = _h_find(tags, aux, o, ways, first, tag)
    if w >= 0:
        return first + w
    e = aux[o + 2]
    while e < ways and tags[first + e] != EMPTY_TAG:
        e += 1
    aux[o + 2] = e
    return -1 - (first + (e if e < ways else aux[o]))


@njit(cache=True)
def _fa_hit(meta, aux, ai, e):
    o = meta[ai, 4]
    w = e - meta[ai, 0]
    _l_unlink(aux, o, meta[ai, 2], w)
    _l_append(aux, o, meta[ai, 2], w)


@njit(cache=True)
def _fa_fill(tags, stamps, meta, aux, ai, e, tag, now):
    o = meta[ai, 4]
    ways = meta[ai, 2]
    first = meta[ai, 0]
    w = e - first
    if tags[e] != EMPTY_TAG:
        _h_delete(tags, aux, o, ways, first, w)
        _l_unlink(aux, o, ways, w)
    tags[e] = tag
    stamps[e] = now
    _h_insert(tags, aux, o, ways, first, w)
    _l_append(aux, o, ways, w)


@njit(cache=True)
def _scan(tags, stamps, base, ways, tag):
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
def _drop(tags, stamps, meta, aux, ai, e):
    o = meta[ai, 4]
    if o >= 0:
        ways = meta[ai, 2]
        first = meta[ai, 0]
        w = e - first
        _h_delete(tags, aux, o, ways, first, w)
        _l_unlink(aux, o, ways, w)
        if w < aux[o + 2]:
            aux[o + 2] = w
    tags[e] = EMPTY_TAG
    stamps[e] = 0


@njit(cache=True)
def _batch(
    addrs, shifts, count, l1, l2, tb, tags, stamps, clock, meta, route, aux, stats, out
):
    """The first ``count`` touches, on their L1 (level ``l1``) then their
    second level ``l2`` (ITLB2 or STLB); ``tb``: the thread's tag bits.

    Written out in one loop, calling out only for an indexed array: with
    functions for the probe, hit and fill (even inlined by numba) a touch of
    a set-associative array took twice as long (measured: 30 -> 80 ns).
    """
    now = clock[0]
    record = out.shape[0] != 0
    l1_misses = 0
    walks_4k = 0
    walks_2m = 0
    walks_1g = 0
    for k in range(count):
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
            if meta[a1, 4] >= 0:
                r = _fa_probe(tags, meta, aux, a1, tag1)
            else:
                r = _scan(tags, stamps, _set_base(meta, a1, vpn1), meta[a1, 2], tag1)
            if r >= 0:
                now += 1
                stamps[r] = now
                if meta[a1, 4] >= 0:
                    _fa_hit(meta, aux, a1, r)
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
                if meta[a2, 4] >= 0:
                    r = _fa_probe(tags, meta, aux, a2, tag2)
                else:
                    base = _set_base(meta, a2, vpn2)
                    r = _scan(tags, stamps, base, meta[a2, 2], tag2)
                if r >= 0:
                    now += 1
                    stamps[r] = now
                    if meta[a2, 4] >= 0:
                        _fa_hit(meta, aux, a2, r)
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
                    if meta[a2, 4] >= 0:
                        _fa_fill(tags, stamps, meta, aux, a2, slot2, tag2, now)
                    else:
                        tags[slot2] = tag2
                        stamps[slot2] = now
            if slot1 >= 0:
                now += 1
                if meta[a1, 4] >= 0:
                    _fa_fill(tags, stamps, meta, aux, a1, slot1, tag1, now)
                else:
                    tags[slot1] = tag1
                    stamps[slot1] = now
        if record:
            out[k] = outcome
    clock[0] = now
    stats[0] = count
    stats[1] = l1_misses
    stats[2] = walks_4k + walks_2m + walks_1g
    stats[3] = walks_4k
    stats[4] = walks_2m
    stats[5] = walks_1g


@njit(cache=True)
def lookup_kernel(
    addrs, shifts, l1, l2, tb, tags, stamps, clock, meta, route, aux, stats, out
):
    """A batch of touches; ``stats`` gets accesses, L1 misses, walks and
    walks by class (4K, 2M, 1G); ``out`` (if not empty) each outcome.
    False, before any state changes, if a shift is out of range."""
    # The range check of the shifts (they index ``route``) is done here, a
    # compare per touch, rather than by a numpy reduction per batch in
    # prepare_batch(), which costs microseconds.
    for k in range(shifts.shape[0]):
        if shifts[k] > MAX_SHIFT:
            return False
    _batch(
        addrs, shifts, addrs.shape[0], l1, l2, tb, tags, stamps, clock, meta,
        route, aux, stats, out,
    )  # fmt: skip
    return True


@njit(cache=True)
def invalidate_kernel(first, last, tb, tags, stamps, meta, array_shifts, aux):
    """Drop the thread's entries overlapping the bytes [first, last] (int64
    bit patterns) from the arrays ``meta`` gives it."""
    for ai in range(meta.shape[0]):
        sets = meta[ai, 1]
        lo_entry = meta[ai, 0]
        ways = meta[ai, 2]
        o = meta[ai, 4]
        for j in range(array_shifts.shape[1]):
            s = array_shifts[ai, j]
            if s < 0:
                break
            v0 = _vpn(first, s)
            v1 = _vpn(last, s)
            if o >= 0 and v1 - v0 < ways:
                # an indexed array: look each page up in the index
                for v in range(v0, v1 + 1):
                    tag = (v << TAG_BITS) | tb | s
                    w = _h_find(tags, aux, o, ways, lo_entry, tag)
                    if w >= 0:
                        _drop(tags, stamps, meta, aux, ai, lo_entry + w)
            elif v1 - v0 < sets:
                # Few pages: probe the set each would live in.
                for v in range(v0, v1 + 1):
                    tag = (v << TAG_BITS) | tb | s
                    base = _set_base(meta, ai, v)
                    for e in range(base, base + ways):
                        if tags[e] == tag:
                            _drop(tags, stamps, meta, aux, ai, e)
            else:
                lo = (v0 << TAG_BITS) | tb | s
                hi = (v1 << TAG_BITS) | tb | s
                low = tb | s
                for e in range(lo_entry, lo_entry + sets * ways):
                    t = tags[e]
                    if t != EMPTY_TAG and lo <= t <= hi and (t & LOW_MASK) == low:
                        _drop(tags, stamps, meta, aux, ai, e)


@njit(cache=True)
def flush_kernel(tb, tags, stamps, meta, include_global, aux):
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
            _drop(tags, stamps, meta, aux, ai, e)


# -- numpy's PCG64, drawn in the kernels ----------------------------------------
# The host draws thousands of uniforms per CPU and quantum. Generator.random()
# costs about 3.5 ns a draw behind its per-call and per-draw overhead; the
# same generator stepped here, inside the kernel that uses the draws, needs
# no array between them. It is numpy's PCG64 exactly
# (numpy/random/src/pcg64/pcg64.h: a 128-bit LCG, XSL-RR output, random()
# = (next >> 11) * 2**-53), tested against numpy draw for draw; the 128-bit
# product's high word comes from one LLVM i128 multiply: about 1.5 ns a
# draw. (Four interleaved chains jumping four steps each gave the same
# draws only 5 % faster: the multiplies' throughput, not their latency,
# is the limit.)
PCG_MUL_HI = np.uint64(2549297995355413924)
PCG_MUL_LO = np.uint64(4865540595714422341)
U64_1 = np.uint64(1)
U64_0 = np.uint64(0)
TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@intrinsic
def _mulhi(typingctx, a, b):
    if a != types.uint64 or b != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(p, ir.Constant(wide, 64)), ir.IntType(64))

    return types.uint64(types.uint64, types.uint64), codegen


@njit(cache=True)
def _pcg_jump(sh, sl, mh, ml, ch, cl):
    """The 128-bit state (sh, sl) times (mh, ml) plus (ch, cl): a step."""
    lo = sl * ml
    hi = _mulhi(sl, ml) + sh * ml + sl * mh
    lo2 = lo + cl
    return hi + ch + (U64_1 if lo2 < lo else U64_0), lo2


@njit(cache=True)
def _pcg_out(sh, sl):
    v = sh ^ sl
    rot = sh >> np.uint64(58)
    return (v >> rot) | (v << ((np.uint64(64) - rot) & np.uint64(63)))


@njit(cache=True)
def pcg_raw(st, out, k):
    """The next ``k`` 64-bit outputs of the PCG64 state ``st`` (state
    high, low, increment high, low) into ``out[:k]``."""
    sh, sl, ih, il = st[0], st[1], st[2], st[3]
    for i in range(k):
        sh, sl = _pcg_jump(sh, sl, PCG_MUL_HI, PCG_MUL_LO, ih, il)
        out[i] = _pcg_out(sh, sl)
    st[0] = sh
    st[1] = sl


@njit(cache=True)
def pcg_uniforms(st, out):
    """Fill ``out`` with the next uniforms of ``st``, as Generator.random()."""
    raw = np.empty(out.shape[0], np.uint64)
    pcg_raw(st, raw, out.shape[0])
    for i in range(out.shape[0]):
        out[i] = np.float64(raw[i] >> np.uint64(11)) * TO_UNIT


# -- the host's draws: ranks through a bucket table -------------------------------
# Built by simcore.hw.compiled.zipf_buckets (which says why it is exact):
# a draw whose bucket holds a rank takes it; the others compute it as
# simcore.hw.compiled.zipf_last does, with the exp (or pow) of its uniform.


# -- the host's stretch: draw, keep, touch, count, in one call ---------------------
# parts[p]: pages, first page (int64 bit pattern), page shift, side (0 i,
# 1 d), draws per segment, offset of its bucket table (-1: none), the
# table's lb, 1 for the table part (pages at taddrs/tshifts), owner index.
# costs[p]: cycles of one 4K, 2M, 1G walk; what the walk time is divided
# by (the page walkers on the data side, 1 on the instruction side); GHz.
# out[:K] values, out[K:] 1 where a value was counted (K = len(out) // 2):
# L1 misses i and d, walks, walk cycles, walks again (pagewalk.walks), walk
# ns; then per owner L1 misses i and d, walks, walk cycles.


@njit(cache=True)
def host_kernel(
    rng, parts, buckets, taddrs, tshifts, costs, drops, nseg, zipf,
    tlb, tags, stamps, clock, meta, route, ashifts, aux, scratch, out,
):  # fmt: skip
    """``nseg`` stretches of the host's code on one CPU, ``drops`` (byte
    ranges [first, last]) invalidated between two: each part's ranks drawn
    (:func:`simcore.hw.compiled.zipf_last`'s rule: every page once, at its
    last draw), touched, and counted as Executor.account counts them.
    ``tlb``: thread bits, then the second level of each side; ``scratch``:
    three int64 rows, as long as the most draws of a part and the most
    pages of one."""
    half = out.shape[0] // 2
    out[:] = 0
    tb = tlb[0]
    ranks, last, addrs = scratch[0], scratch[1], scratch[2]
    shifts = np.empty(addrs.shape[0], np.uint8)
    st = np.zeros(6, np.int64)
    no_out = np.zeros(0, np.int8)
    sh, sl, ih, il = rng[0], rng[1], rng[2], rng[3]
    for seg in range(nseg):
        if seg:
            for r in range(drops.shape[0]):
                invalidate_kernel(
                    drops[r, 0], drops[r, 1], tb, tags, stamps, meta, ashifts, aux
                )
        for p in range(parts.shape[0]):
            k = parts[p, 4]
            if k == 0:
                continue
            n = parts[p, 0]
            boff = parts[p, 5]
            drop_bits = np.uint64(64 - parts[p, 6])
            top = np.log(n + 1.0)
            a = 1.0 - zipf
            span = (n + 1.0) ** a - 1.0
            for i in range(k):
                sh, sl = _pcg_jump(sh, sl, PCG_MUL_HI, PCG_MUL_LO, ih, il)
                x = _pcg_out(sh, sl)
                r = np.int64(-1)
                if boff >= 0:
                    r = np.int64(buckets[boff + np.int64(x >> drop_bits)])
                if r < 0:
                    u = np.float64(x >> np.uint64(11)) * TO_UNIT
                    if zipf == 1.0:
                        r = min(np.int64(np.exp(u * top)) - 1, n - 1)
                    else:
                        r = min(np.int64((1.0 + u * span) ** (1.0 / a)) - 1, n - 1)
                ranks[i] = r
                last[r] = i
            # the kept pages, in the order of their last draws
            table = parts[p, 7] != 0
            base = parts[p, 1]
            shift = parts[p, 2]
            m = 0
            for i in range(k):
                r = ranks[i]
                if last[r] != i:
                    continue
                if table:
                    sr = np.int64(tshifts[r])
                    addrs[m] = (taddrs[r] >> sr) << sr
                    shifts[m] = tshifts[r]
                else:
                    addrs[m] = base + (r << shift)
                    shifts[m] = shift
                m += 1
            side = parts[p, 3]
            _batch(
                addrs, shifts, m, side, tlb[1 + side], tb, tags, stamps, clock,
                meta, route, aux, st, no_out,
            )  # fmt: skip
            misses = st[1]
            w4 = st[3]
            w2 = st[4]
            w1 = st[5]
            walks = w4 + w2 + w1
            own = 6 + 4 * parts[p, 8]
            out[side] += misses
            out[half + side] = 1
            out[own + side] += misses
            out[half + own + side] = 1
            out[2] += walks
            out[half + 2] = 1
            out[own + 2] += walks
            out[half + own + 2] = 1
            walk = 0.0
            if walks:
                walk = w4 * costs[p, 0] + w2 * costs[p, 1] + w1 * costs[p, 2]
                cyc = np.int64(walk)
                out[3] += cyc
                out[half + 3] = 1
                out[4] += walks
                out[half + 4] = 1
                out[own + 3] += cyc
                out[half + own + 3] = 1
            out[5] += np.int64(walk / costs[p, 3] / costs[p, 4])
            out[half + 5] = 1
    rng[0] = sh
    rng[1] = sl
