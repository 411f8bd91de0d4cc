"""fix_align_alloc_test's alignment, THREAD_ALIGN << 1, follows the
architecture: 32 KiB on x86-64 (THREAD_ALIGN = THREAD_SIZE = 16 KiB), 64 KiB
on arm64 (VMAP_STACK: THREAD_ALIGN = 2 * THREAD_SIZE = 32 KiB)."""

from __future__ import annotations

import pytest

from simcore.workloads.vmalloc_cases import fix_align
from tests.workloads import simulation

WL = """\
name: fa
duration: 2ms
machine: {{profile: {profile}}}
kernel: {{preset: latest}}
workloads:
  - {{type: vmalloc_stress, run_test_mask: 16, nr_threads: 1, test_loop_count: 20}}
"""


@pytest.mark.parametrize(
    ("profile", "align"),
    [("skylake-sp", 32 << 10), ("small-test", 32 << 10), ("neoverse-v1", 64 << 10)],
)
def test_fix_align_follows_the_architecture(tmp_path, profile, align):
    sim = simulation(tmp_path, WL.format(profile=profile))
    assert fix_align(sim.kernel) == align
    seen = []
    sim.ctx.hooks.subscribe(
        "vmalloc",
        exit=lambda cpu, args, kw, area: seen.append((kw["align"], args[0], area)),
    )
    m = sim.run().metrics
    assert m["test_vmalloc.fix_align_alloc_test.passed"] == 1
    assert len(seen) == 20
    for a, size, area in seen:
        # __vmalloc_node(5 * PAGE_SIZE, THREAD_ALIGN << 1, ...)
        assert (a, size) == (align, 5 << 12)
        assert area.addr % align == 0
