"""vmalloc_users: the system hashes and large maps, and who gets huge
mappings per caller (VM_ALLOW_HUGE_VMAP, VM_NO_HUGE_VMAP) per strategy.

The shipped huge-vmalloc workload is where vmalloc_huge_modules_nohuge
and module_alloc must differ: under the v5.18-rc1 opt-out semantics the
BPF maps are 2M-mapped and their lookups walk less; from v5.18 only the
vmalloc_huge() callers (the system hashes) are.
"""

from __future__ import annotations

import json

import pytest

from simcore.workloads.vmalloc_users import system_hash_bytes
from tests.workloads import ROOT

GIB_PAGES = (1 << 30) >> 12


def test_system_hashes_are_sized_as_alloc_large_system_hash_does():
    # 8 GiB: 2 Mi pages; dentry one bucket per 8 KiB, inode per 16 KiB
    assert system_hash_bytes(8 * GIB_PAGES, 13, 8) == 8 << 20
    assert system_hash_bytes(8 * GIB_PAGES, 14, 8) == 4 << 20
    # memory is rounded up to a MiB and the entries up to a power of two
    assert system_hash_bytes(8 * GIB_PAGES - 1, 13, 8) == 8 << 20
    assert system_hash_bytes(6 * GIB_PAGES, 13, 8) == 8 << 20
    # past 64 GiB one bucket covers 4x as much memory per 4x of memory
    # (ADAPT_SCALE): 256 GiB gives 128 MiB of dentry hash, not 256 MiB
    assert system_hash_bytes(256 * GIB_PAGES, 13, 8) == 128 << 20
    assert system_hash_bytes(64 * GIB_PAGES, 13, 8) == 64 << 20


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    from simcore.cli import main

    out = tmp_path_factory.mktemp("hv") / "out"
    args = ["run", str(ROOT / "workloads" / "huge-vmalloc.yaml"), "-o", str(out)]
    code = main([*args, "--quiet", "--set", "duration=3ms"])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())["strategies"]


def test_v5_18_maps_only_vmalloc_huge_callers_huge(shipped):
    m = shipped["module_alloc"]
    # the hashes asked (vmalloc_huge), the four 64 MiB maps did not
    assert m["workload.vmalloc_users.small_bytes"] == 4 * (64 << 20)
    assert m["workload.vmalloc_users.huge_bytes"] > 0


def test_nohuge_differs_from_module_alloc_in_the_threads_direction(shipped):
    base, nohuge = shipped["module_alloc"], shipped["vmalloc_huge_modules_nohuge"]
    # huge by default: the maps are 2M-mapped as well
    assert "workload.vmalloc_users.small_bytes" not in nohuge or (
        nohuge["workload.vmalloc_users.small_bytes"] == 0
    )
    assert (
        nohuge["workload.vmalloc_users.huge_bytes"]
        > base["workload.vmalloc_users.huge_bytes"]
    )
    # and their lookups miss the STLB far less
    assert nohuge["stlb.misses.bpf"] < 0.5 * base["stlb.misses.bpf"]
    # modules opted out: they load as under module_alloc
    assert nohuge["module.loads"] == base["module.loads"]
