"""kernel/bpf/range_tree.c semantics against a set of free page offsets."""

from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.kernel.bpf.range_tree import ENOENT, RangeTree

SPAN = 200

ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "clear", "find"]),
        st.integers(0, SPAN - 1),
        st.integers(1, 40),
    ),
    max_size=60,
)


def runs(free: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for p in sorted(free):
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


@settings(max_examples=150, deadline=None)
@given(ops)
def test_matches_a_bitmap(sequence):
    rt = RangeTree()
    free: set[int] = set()
    rt.set(0, SPAN)
    free.update(range(SPAN))
    for op, start, length in sequence:
        length = min(length, SPAN - start)
        if op == "set":
            rt.set(start, length)
            free.update(range(start, start + length))
        elif op == "clear":
            rt.clear(start, length)
            free.difference_update(range(start, start + length))
        else:
            got = rt.find(length)
            fits = [b - a + 1 for a, b in runs(free) if b - a + 1 >= length]
            if not fits:
                assert got == ENOENT
                continue
            # best fit: the start of a smallest free range that holds it
            size = next(b - a + 1 for a, b in runs(free) if a == got)
            assert size == min(fits)
            assert rt.is_set(got, length)
        rt.check()
        assert rt.ranges() == runs(free)
        assert rt.free == len(free)
        assert rt.free_in(start, length) == len(
            free & set(range(start, start + length))
        )


def test_whole_arena_is_one_node():
    rt = RangeTree()
    rt.set(0, 1 << 20)
    assert len(rt) == 1
    rt.clear(5, 1)
    assert rt.ranges() == [(0, 4), (6, (1 << 20) - 1)]
    rt.set(5, 1)
    assert len(rt) == 1


def test_equal_sizes_prefer_the_newest():
    # __range_size_insert() puts equal sizes to the right and __find_range()
    # keeps going right: of two equal best fits the later-inserted wins
    rt = RangeTree()
    rt.set(0, 4)
    rt.set(10, 4)
    assert rt.find(3) == 10
    rt.clear(0, 4)
    rt.set(0, 4)  # re-inserted: now the newest
    assert rt.find(3) == 0


def test_costs_are_counted_and_reset():
    rt = RangeTree()
    rt.set(0, 100)
    visits, nodes = rt.take_cost()
    assert visits > 0 and nodes == 1
    rt.clear(10, 5)  # a split: one node allocated
    assert rt.take_cost()[1] == 1
    assert rt.take_cost() == (0, 0)
