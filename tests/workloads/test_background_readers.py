"""Background TLB pressure and the /proc readers."""

from __future__ import annotations

import pytest

from tests.workloads import run_metrics

WL = """\
name: bg
duration: {duration}
machine: {{profile: small-test}}
kernel: {{preset: "{preset}"}}
workloads:
{entries}
"""


def _metrics(tmp_path, entries, duration="5ms", preset="latest"):
    text = WL.format(entries=entries, duration=duration, preset=preset)
    return run_metrics(tmp_path, text)


@pytest.mark.parametrize("preset", ["compile", "webserver"])
def test_background_fills_the_tlbs(tmp_path, preset):
    m = _metrics(tmp_path, f"  - {{type: background, preset: {preset}}}")
    assert m["workload.background.quanta"] == 4 * 49
    assert m["itlb.misses"] > 0 and m["dtlb.misses"] > 0
    assert m["cpu.instructions"] > 1e6


def test_huge_user_text_takes_fewer_itlb_misses(tmp_path):
    base = "  - {type: background, preset: compile, cpus: 2%s}"
    small = _metrics(tmp_path, base % "")["itlb.misses"]
    huge = _metrics(tmp_path, base % ", user_text_huge: true")["itlb.misses"]
    assert huge < 0.5 * small


def test_kernel_data_follows_direct_map_splits(tmp_path):
    """Module loads split the direct map; the kernel-data pages that sit in
    split regions are then touched at the smaller page size."""
    entries = (
        "  - {type: background, preset: webserver, cpus: 1, kernel_data: 4G}\n"
        "  - {type: module_load, modules: {count: 20}}"
    )
    m = _metrics(tmp_path, entries, duration="20ms")
    assert m["directmap.level3_splits"] + m["directmap.level2_splits"] > 0
    assert m["dtlb.misses"] > 0


@pytest.mark.parametrize("preset", ["6.1", "latest"])
def test_readers_read_at_their_rate(tmp_path, preset):
    entries = (
        "  - {type: vmalloc_stress, nr_threads: 2, max_pages: 4, loops: 300}\n"
        "  - type: readers\n"
        "    vmallocinfo: {rate: 1000/s}\n"
        "    kcore: {rate: 20000/s, cpus: 2, size: 8K}"
    )
    m = _metrics(tmp_path, entries, duration="6ms", preset=preset)
    assert 2 <= m["workload.readers.vmallocinfo_reads"] <= 12
    # from 6.9 on the file also lists lazily freed areas ("unpurged
    # vm_area"); before, the finished test leaves nothing busy to list
    lines = m.get("workload.readers.vmallocinfo_lines", 0)
    assert (lines > 0) == (preset == "latest")
    assert m["alloc.vmallocinfo.count"] == m["workload.readers.vmallocinfo_reads"]
    assert 140 <= m["workload.readers.kcore_reads"] <= 340
    assert m["alloc.vread.count"] == m["workload.readers.kcore_reads"]
