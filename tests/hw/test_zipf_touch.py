"""Tlb.lookup_zipf (the generic host path) on the fast and exact models,
and against drawing, keeping and looking up each part by hand."""

from __future__ import annotations

import numpy as np
import pytest

from simcore.hw.compiled import zipf_last
from simcore.hw.tlb import TlbGeometry
from simcore.hw.tlb_exact import ExactTlb
from simcore.hw.tlb_fast import FastTlb
from simcore.hw.zipf_touch import ZipfParts, part_pages

KERNEL = np.uint64(0xFFFF888000000000)


def _parts(rng) -> ZipfParts:
    regions = KERNEL + (np.arange(8, dtype=np.uint64) << np.uint64(21))
    table = (regions[:, None] + (np.arange(512, dtype=np.uint64) << 12)).ravel()
    # half the regions split to 4K, half still 2M: the table part mixes sizes
    shifts = np.repeat(np.array([12, 21] * 4, np.uint8), 512)
    return ZipfParts(
        n=np.array([64, 1, 1024, len(table)]),
        base=np.array(
            [0x555555554000, 0xFFFFFFFF81000000, 0x7F0000000000, 0], np.uint64
        ).view(np.int64),
        shift=np.array([12, 21, 12, 0], np.int64),
        side=np.array([0, 0, 1, 1], np.int64),
        table=3,
        table_addrs=table.view(np.int64),
        table_shifts=shifts,
    )


@pytest.mark.parametrize("zipf", [1.0, 1.3])
def test_fast_kernel_equals_reference_and_leaves_the_same_state(zipf):
    rng = np.random.default_rng(7)
    parts = _parts(rng)
    geo = TlbGeometry.skylake_sp()
    fast, exact = FastTlb(geo), ExactTlb(geo)
    for _ in range(20):
        ks = rng.integers(0, 3000, size=4)
        off = np.concatenate([[0], np.cumsum(ks)]).astype(np.int64)
        u = rng.random(int(off[-1]))
        a = fast.lookup_zipf(parts, u, off, zipf)
        b = exact.lookup_zipf(parts, u, off, zipf)
        assert (a == b).all()
        assert fast.resident() == exact.resident()


def test_each_page_once_at_its_last_draw():
    rng = np.random.default_rng(3)
    parts = _parts(rng)
    u = rng.random(5000)
    ranks = zipf_last(u, 1024, 1.0)
    assert len(set(ranks.tolist())) == len(ranks) < 1024
    # the kept order is the order of each rank's last draw
    drawn = np.minimum(np.exp(u * np.log(1025.0)).astype(np.int64) - 1, 1023)
    last = {int(r): i for i, r in enumerate(drawn)}
    assert ranks.tolist() == sorted(last, key=last.get)
    addrs, shifts = part_pages(parts, 2, ranks)
    assert (shifts == 12).all()
    assert (
        addrs.view(np.uint64)
        == np.uint64(0x7F0000000000) + (ranks.astype(np.uint64) << np.uint64(12))
    ).all()
