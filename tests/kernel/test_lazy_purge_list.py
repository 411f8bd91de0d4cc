"""kernel.lazy_purge: up to v5.10 each lazily freed area is merged into the
free tree on its own at purge time (an llist, __purge_vmap_area_lazy()
walking it under free_vmap_area_lock); 96e2db456135 (v5.11) merges them into
a sorted purge tree as they are freed, so the purge merges whole blocks."""

from __future__ import annotations

from tests.workloads import simulation

WL = """\
name: purge
duration: 20ms
machine: {{profile: small-test}}
kernel: {{preset: "5.10", lazy_purge: {mode}}}
host: {{enabled: false}}
workloads:
  - {{type: vmalloc_stress, run_test_mask: 1, nr_pages: 2, nr_threads: 1}}
"""


def _run(tmp_path, mode):
    sim = simulation(tmp_path, WL.format(mode=mode))
    m = sim.run().metrics
    sim.vmalloc.check()  # busy, lazy, pooled and free KVA still tile the space
    return m


def test_per_area_purge_holds_the_lock_per_area(tmp_path):
    listed = _run(tmp_path, "list")
    tree = _run(tmp_path, "tree")
    assert listed["vmap.lazy_purges"] >= 1 and tree["vmap.lazy_purges"] >= 1
    # thousands of adjacent 12 KiB areas: one block in the tree, one merge
    # each on the list
    assert (
        listed["alloc.vmap_purge.latency_ns.mean"]
        > 50 * tree["alloc.vmap_purge.latency_ns.mean"]
    )
    # the free tree's lock is held for the whole merge
    assert (
        listed["lock.free_vmap_area_lock.hold_ns"]
        > tree["lock.free_vmap_area_lock.hold_ns"]
    )
    # llist_add() takes no lock: no purge_vmap_area_lock on the list
    assert listed.get("lock.purge_vmap_area_lock.acquisitions", 0) == 0
    assert tree["lock.purge_vmap_area_lock.acquisitions"] > 0
