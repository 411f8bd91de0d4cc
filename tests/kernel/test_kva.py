"""The free-KVA tree against a brute-force sorted-list first fit."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.constants import PAGE
from simcore.kernel.kva import KvaSpace

BASE = 0x10_0000_0000
SPAN = 1 << 30


def first_fit(blocks, size, align, vstart, vend):
    """Lowest block in address order where an aligned request fits."""
    for s, e in blocks:
        nva = (max(s, vstart) + align - 1) & -align
        if nva + size <= e:
            return nva if nva + size <= vend else None
    return None


def lowest_roomy(blocks, size, align, vstart, vend):
    """Lowest block whose part above vstart holds size + align - 1 bytes.

    With align > PAGE_SIZE the kernel searches for that length, so it never
    answers above this block (it may answer lower, where a node it passes
    happens to fit exactly).
    """
    for s, e in blocks:
        base = max(s, vstart)
        if e - base >= size + align - 1:
            nva = (base + align - 1) & -align
            return nva if nva + size <= vend else None
    return None


def fragment(n: int) -> KvaSpace:
    """A tree with n + 1 free blocks: n one-page holes, then the rest."""
    k = KvaSpace(BASE, BASE + SPAN)
    addrs = [k.alloc(PAGE)[0] for _ in range(2 * n)]
    for a in addrs[::2]:
        k.free(a, PAGE)
    assert len(k) == n + 1
    return k


op = st.one_of(
    st.tuples(
        st.just("alloc"),
        st.integers(1, 24),  # pages
        st.sampled_from([0, 0, 0, 1, 2, 3, 5]),  # align = PAGE << n
        st.integers(0, 96),  # vstart offset, pages
    ),
    st.tuples(st.just("free"), st.integers(0, 10_000)),
    st.tuples(st.just("reserve"), st.integers(0, 511), st.integers(1, 8)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=1, max_size=120))
def test_tree_matches_brute_force_first_fit(ops):
    span = 512 * PAGE
    k = KvaSpace(BASE, BASE + span)
    live: list[tuple[int, int]] = []
    free = [(BASE, BASE + span)]  # the reference: a sorted list of blocks

    def ref_take(a, size):
        for i, (s, e) in enumerate(free):
            if s <= a and a + size <= e:
                parts = [(s, a)] if s < a else []
                parts += [(a + size, e)] if a + size < e else []
                free[i : i + 1] = parts
                return
        raise AssertionError("reference lost a block")

    def ref_give(a, size):
        free.append((a, a + size))
        free.sort()
        merged = [free[0]]
        for s, e in free[1:]:
            if s == merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        free[:] = merged

    for o in ops:
        if o[0] == "alloc":
            _, pages, shift, off = o
            size, align, vstart = pages * PAGE, PAGE << shift, BASE + off * PAGE
            lo = first_fit(free, size, align, vstart, BASE + span)
            got, visits, fit = k.alloc(size, align, vstart=vstart, vend=BASE + span)
            assert visits >= 1
            if align == PAGE:
                assert got == lo
            else:
                hi = lowest_roomy(free, size, align, vstart, BASE + span)
                if hi is not None:
                    assert got is not None and lo <= got <= hi
                if got is not None:
                    assert got % align == 0 and got >= vstart
            if got is None:
                assert fit == "NONE"
                continue
            assert fit in ("FL", "LE", "RE", "NE")
            ref_take(got, size)
            live.append((got, size))
        elif o[0] == "free" and live:
            a, size = live.pop(o[1] % len(live))
            assert k.free(a, size) >= 1
            ref_give(a, size)
        elif o[0] == "reserve":
            _, page, pages = o
            a, size = BASE + page * PAGE, pages * PAGE
            wholly_free = any(s <= a and a + size <= e for s, e in free)
            if wholly_free:
                k.reserve(a, size)
                ref_take(a, size)
                live.append((a, size))
            else:
                with pytest.raises(ValueError):
                    k.reserve(a, size)
        k.check()
        assert k.blocks() == free
        assert k.free_bytes() == sum(e - s for s, e in free)


def test_fit_types_as_va_clip_names_them():
    k = KvaSpace(BASE, BASE + 16 * PAGE)
    assert k.alloc(PAGE)[2] == "LE"  # cut at the left edge
    a, _, fit = k.alloc(PAGE, vstart=BASE + 8 * PAGE)
    assert (a, fit) == (BASE + 8 * PAGE, "NE")  # carved from the middle
    assert len(k) == 2
    a, _, fit = k.alloc(PAGE, vstart=BASE + 15 * PAGE)
    assert (a, fit) == (BASE + 15 * PAGE, "RE")  # the right edge
    a, _, fit = k.alloc(7 * PAGE, vstart=BASE + PAGE)
    assert (a, fit) == (BASE + PAGE, "FL")  # [1, 8) exactly
    assert len(k) == 1


def test_free_merges_with_both_neighbours():
    k = KvaSpace(BASE, BASE + 3 * PAGE)
    a, b, c = (k.alloc(PAGE)[0] for _ in range(3))
    assert len(k) == 0
    k.free(a, PAGE)
    k.free(c, PAGE)
    assert len(k) == 2
    k.free(b, PAGE)
    assert k.blocks() == [(BASE, BASE + 3 * PAGE)]
    k.check()


def test_overlapping_free_is_refused():
    k = KvaSpace(BASE, BASE + 8 * PAGE)
    a = k.alloc(2 * PAGE)[0]
    k.free(a, 2 * PAGE)
    with pytest.raises(ValueError):
        k.free(a, PAGE)


def test_vend_limits_the_answer():
    k = KvaSpace(BASE, BASE + 8 * PAGE)
    assert k.alloc(4 * PAGE, vend=BASE + 3 * PAGE)[0] is None
    assert k.alloc(2 * PAGE, vend=BASE + 3 * PAGE)[0] == BASE


def test_visits_grow_logarithmically():
    rng = random.Random(7)

    def mean_visits(n: int) -> float:
        k = fragment(n)
        total = 0
        for _ in range(400):
            # a one-page request lands in a random hole above vstart
            vstart = BASE + 2 * PAGE * rng.randrange(n)
            a, visits, _ = k.alloc(PAGE, vstart=vstart)
            total += visits + k.free(a, PAGE)
        return total / 400

    small, large = mean_visits(100), mean_visits(10_000)
    assert large > small  # it is a tree walk, not a constant
    assert large < 4 * small


def test_a_32_tib_range_is_one_block():
    k = KvaSpace(0xFFFFC90000000000, 0xFFFFC90000000000 + (32 << 40))
    assert len(k) == 1 and k.height() == 1
    assert k.free_bytes() == 32 << 40
