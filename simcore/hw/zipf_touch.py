"""Touching pages drawn from a Zipf law, part by part, in one call.

The host's code and data (:mod:`simcore.workloads.host`) are a few *parts*
(user text, kernel text, user data, kernel data), each a run of pages drawn
hottest-first from a bounded continuous Zipf law, each page kept once at
its last draw (the rule and its cost in :mod:`simcore.workloads.host`). Drawing,
keeping and looking up a part took a dozen numpy calls and a TLB call per
part, every quantum on every busy CPU: more than the workload's own
batches. :meth:`simcore.hw.tlb.Tlb.lookup_zipf` does it in one call per
stretch, here, in plain Python (the generic path, and the reference); the
``fast`` model does a CPU's whole catch-up in one compiled kernel
(:func:`simcore.hw.tlb_kernels.host_kernel`), fed by :class:`HostDraws`
and :class:`Pcg64Stream` below.

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


MASK64 = (1 << 64) - 1


class Pcg64Stream:
    """The uniforms of a numpy PCG64 Generator, drawn by compiled code.

    Takes the generator's state once; from then on the stream, not the
    generator, is drawn from (the generator must not be used again). Its
    draws are the generator's, value for value
    (:func:`simcore.hw.tlb_kernels.pcg_uniforms`).
    """

    def __init__(self, rng: np.random.Generator) -> None:
        bits = rng.bit_generator
        if type(bits) is not np.random.PCG64:
            raise TypeError(f"expected a PCG64 generator, got {type(bits).__name__}")
        st = bits.state["state"]
        s, inc = int(st["state"]), int(st["inc"])
        m = MASK64
        self.state = np.array([s >> 64, s & m, inc >> 64, inc & m], dtype=np.uint64)

    def random(self, k: int) -> np.ndarray:
        from simcore.hw.tlb_kernels import pcg_uniforms

        out = np.empty(k, dtype=np.float64)
        pcg_uniforms(self.state, out)
        return out


# Bucket tables of the rank draw (simcore.hw.compiled.zipf_buckets), by
# (pages, Zipf exponent): the same for every CPU and run of a process.
_BUCKETS: dict[tuple[int, float], np.ndarray] = {}


def bucket_bits(n: int) -> int:
    """Buckets (as a power of two) for a part of ``n`` pages: 16 per page
    leaves at most one draw in 16 to the exp; at most 2**16 (256 KiB).
    Measured on the host's draws: an exp for every draw cost 50 us of a
    skylake-sp CPU-quantum's 110; fewer buckets were no faster."""
    return min(16, max(4, (n - 1).bit_length() + 4))


def zipf_buckets(n: int, zipf: float) -> np.ndarray:
    """The bucket table of a part of ``n`` pages (made on first use)."""
    table = _BUCKETS.get((n, zipf))
    if table is None:
        from simcore.hw.compiled import zipf_buckets as build

        table = np.empty(1 << bucket_bits(n), dtype=np.int32)
        build(n, zipf, bucket_bits(n), table)
        _BUCKETS[n, zipf] = table
    return table


class HostDraws:
    """What :func:`simcore.hw.tlb_kernels.host_kernel` needs of the host's
    parts, built once and updated in place (the layout of its ``parts``
    and ``costs`` rows is given there)."""

    def __init__(self, zp: ZipfParts, owners, zipf: float, drops) -> None:
        self.zipf = float(zipf)
        self.owners = np.asarray(owners, dtype=np.int64)
        self.drops = np.array(drops, dtype=np.int64).reshape(-1, 2)
        p = len(zp.n)
        self.parts = np.zeros((p, 9), dtype=np.int64)
        self.costs = np.ones((p, 5), dtype=np.float64)
        # ranks drawn, where each page was drawn last, the kept pages
        self.scratch = np.zeros((3, 0), dtype=np.int64)
        self.zp: ZipfParts | None = None
        self.set_parts(zp)

    def set_parts(self, zp: ZipfParts) -> None:
        """The parts' pages (again after the direct map changed)."""
        if zp is self.zp:
            return
        self.zp = zp
        tables, at = [], 0
        for i, n in enumerate(zp.n.tolist()):
            table = zipf_buckets(n, self.zipf)
            tables.append(table)
            row = (n, int(zp.base[i]), int(zp.shift[i]), int(zp.side[i]))
            self.parts[i, :4] = row
            self.parts[i, 5:] = (at, bucket_bits(n), i == zp.table, self.owners[i])
            at += len(table)
        self.buckets = np.concatenate(tables)
        self.taddrs = zp.table_addrs
        self.tshifts = zp.table_shifts
        self._room(int(zp.n.max()))

    def set_counts(self, ks) -> None:
        self.parts[:, 4] = ks
        self._room(max(ks))

    def _room(self, width: int) -> None:
        if self.scratch.shape[1] < width:
            self.scratch = np.zeros((3, width), dtype=np.int64)

    def set_costs(self, p: int, per_walk, divisor: float, ghz: float) -> None:
        self.costs[p] = (*per_walk, divisor, ghz)
