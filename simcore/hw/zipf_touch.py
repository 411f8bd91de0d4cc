"""Touching pages drawn from a Zipf law, part by part, in one call.

The host's code and data (:mod:`simcore.workloads.host`) are a few *parts*
(user text, kernel text, user data, kernel data), each a run of pages drawn
hottest-first from a bounded continuous Zipf law, each page kept once at
its last draw (the rule and its cost in :mod:`simcore.workloads.host`). Drawing,
keeping and looking up a part took a dozen numpy calls and a TLB call per
part, every quantum on every busy CPU: more than the workload's own
batches. :meth:`simcore.hw.tlb.Tlb.lookup_zipf` does it in one call: the
``fast`` model in one compiled kernel, the ``exact`` model here, in plain
Python, as the reference the kernel is tested against.

A part's pages are ``base + rank << shift``, or, for the one *table* part,
``table_addrs[rank]`` at ``table_shifts[rank]`` (the direct map, whose page
size varies by region). Ranks come from the uniforms ``u[off[p]:off[p+1]]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDES = "id"


@dataclass(frozen=True, eq=False)
class ZipfParts:
    """The parts' shapes (arrays of one entry per part) and the table."""

    n: np.ndarray  # int64: pages in the part
    base: np.ndarray  # int64 bit patterns of the first page's address
    shift: np.ndarray  # int64: page shift of the part's mapping
    side: np.ndarray  # int64: 0 instruction side, 1 data side
    table: int  # index of the table part, -1 if none
    table_addrs: np.ndarray  # int64 bit patterns
    table_shifts: np.ndarray  # uint8


def part_pages(
    parts: ZipfParts, p: int, ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The addresses (int64 patterns) and shifts of part ``p``'s ``ranks``."""
    if p == parts.table:
        s = parts.table_shifts[ranks]
        wide = s.astype(np.int64)
        return (parts.table_addrs[ranks] >> wide) << wide, s
    s = int(parts.shift[p])
    addrs = (
        parts.base[p].astype(np.uint64) + (ranks.astype(np.uint64) << np.uint64(s))
    ).view(np.int64)
    return addrs, np.full(len(ranks), s, np.uint8)


def lookup_generic(tlb, parts: ZipfParts, u, off, zipf: float) -> np.ndarray:
    """Stats rows (accesses, L1 misses, walks, 4K, 2M, 1G walks) per part."""
    from simcore.hw.compiled import zipf_last

    out = np.zeros((len(parts.n), 6), np.int64)
    for p in range(len(parts.n)):
        if off[p + 1] == off[p]:
            continue
        ranks = zipf_last(u[off[p] : off[p + 1]], int(parts.n[p]), zipf)
        addrs, shifts = part_pages(parts, p, ranks)
        st = tlb.lookup(addrs, shifts, SIDES[int(parts.side[p])])
        out[p] = (
            st.accesses,
            st.l1_misses,
            st.stlb_misses,
            st.walks_4k,
            st.walks_2m,
            st.walks_1g,
        )
    return out
