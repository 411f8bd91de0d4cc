"""The touch table gives the stream building it object by object would."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.hw import touchtable
from simcore.hw.touchtable import TouchTable
from simcore.strategies.base import ExecAlloc

BASE = 0xFFFF_FFFF_A000_0000


@dataclass(slots=True)
class Prog:  # compares by value and does not hash, as BpfProg
    proglen: int
    image: ExecAlloc


def make_prog(slot: int, size: int, shift: int) -> Prog:
    # programs at distinct addresses, as live images are
    return Prog(size, ExecAlloc(BASE + slot * (1 << 22) + 64, size, "bpf_prog", shift))


def naive(live, picks):
    images = [live[i].image for i in picks]
    addrs = np.concatenate([im.touches() for im in images])
    shifts = np.concatenate([im.touch_shifts() for im in images])
    return addrs, shifts, sum(im.size for im in images)


def check(table, live, picks):
    got = table.gather(live, np.asarray(picks, dtype=np.int64))
    want = naive(live, picks)
    assert got[0].dtype == np.uint64 and got[1].dtype == np.uint8
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])
    assert got[2] == want[2]


op = st.one_of(
    st.tuples(
        st.just("load"),
        st.integers(1, 20_000),
        st.sampled_from((12, 12, 21)),
    ),
    st.tuples(st.just("free"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("run"), st.integers(0, 10**6), st.integers(1, 40)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(op, min_size=1, max_size=120))
def test_gather_equals_building_the_stream(ops):
    table = TouchTable(attrgetter("image"))
    live: list[Prog] = []
    rng = np.random.default_rng(len(ops))
    slot = 0
    for kind, a, b in ops:
        if kind == "load":
            live.append(make_prog(slot, a, b))
            slot += 1
        elif kind == "free" and live:
            i = a % len(live)  # swap-remove, as the bpf_jit workload does
            live[i] = live[-1]
            live.pop()
        elif kind == "run" and live:
            check(table, live, rng.integers(0, len(live), b).tolist())


def test_replacement_at_same_length_is_seen():
    table = TouchTable(attrgetter("image"))
    live = [make_prog(i, 100, 12) for i in range(4)]
    check(table, live, [0, 1, 2, 3])
    live[2] = make_prog(9, 9000, 12)  # unload + load between two quanta
    check(table, live, [2, 2, 0])


def test_equal_valued_programs_are_kept_apart():
    # dataclasses compare by value and do not hash: rows are keyed by id
    table = TouchTable(attrgetter("image"))
    a = make_prog(0, 100, 12)
    twin = make_prog(0, 100, 12)
    assert a == twin and a is not twin
    live = [a, twin, make_prog(1, 5000, 12)]
    check(table, live, [0, 1, 2, 1])
    live[0] = live.pop()
    check(table, live, [0, 1])


def test_rows_follow_the_live_set(monkeypatch):
    monkeypatch.setattr(touchtable, "SLACK_ROWS", 8)
    table = TouchTable(attrgetter("image"))
    live: list[Prog] = []
    for n in range(2000):  # churn through 2,000 programs, ~10 live
        live.append(make_prog(n, 300, 12))
        if len(live) > 10:
            live[n % 10] = live[-1]
            live.pop()
        check(table, live, [len(live) - 1, 0])
        assert len(table._owners) <= 2 * len(live) + 8 + len(live)


@pytest.mark.parametrize("shift", (12, 21))
def test_multi_page_images(shift):
    table = TouchTable(attrgetter("image"))
    live = [make_prog(i, (i + 1) * (1 << shift) - 7, shift) for i in range(5)]
    check(table, live, [4, 0, 3, 3, 1])


def test_images_partly_demoted_keep_a_shift_per_touch():
    # a module text over three PMDs whose middle one was split by CPA
    table = TouchTable(attrgetter("image"))
    mixed = Prog(1, ExecAlloc(BASE + (1 << 30), 5 << 20, "module_text", 12))
    mixed.image.remap(12, (21, 12, 21))
    live = [make_prog(0, 300, 12), mixed]
    check(table, live, [1, 0, 1])
    addrs, shifts, _ = table.gather(live, np.array([1], np.int64))
    assert shifts.tolist() == [21] + [12] * 512 + [21]
    assert int(addrs[1]) == BASE + (1 << 30) + (1 << 21)
