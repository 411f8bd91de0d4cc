"""vmalloc_stress as lib/test_vmalloc.c: parameters, cases, its report."""

from __future__ import annotations

import re

import pytest

from simcore.errors import ConfigError
from simcore.kernel.vmalloc import VMAP_BLOCK_SIZE
from tests.workloads import simulation

WL = """\
name: tv
duration: {duration}
machine: {{profile: small-test}}
kernel: {kernel}
workloads:
  - {{type: vmalloc_stress, {params}}}
"""

SUMMARY = re.compile(
    r"^\[\s*\d+\.\d{6}\] Summary: (\w+) passed: (\d+) failed: (\d+) "
    r"repeat: (\d+) loops: (\d+) avg: (\d+) usec$"
)
TOOK = re.compile(r"^\[\s*\d+\.\d{6}\] All test took worker(\d+)=(\d+) cycles$")


def _run(tmp_path, params, kernel="{preset: latest}", duration="50ms"):
    sim = simulation(
        tmp_path, WL.format(params=params, kernel=kernel, duration=duration)
    )
    res = sim.run()
    return res.metrics, res.kmsg


def test_report_in_test_vmalloc_format(tmp_path):
    m, log = _run(tmp_path, "run_test_mask: 1, nr_threads: 2, test_loop_count: 200")
    summaries = [SUMMARY.match(line) for line in log if "Summary" in line]
    took = [TOOK.match(line) for line in log if "All test took" in line]
    assert len(summaries) == 2 and all(summaries)
    assert [t.group(1) for t in took] == ["0", "1"]
    for s in summaries:
        name, passed, failed, repeat, loops, usec = s.groups()
        assert (name, passed, failed, repeat, loops) == (
            "fix_size_alloc_test",
            "1",
            "0",
            "1",
            "200",
        )
        assert int(usec) > 0
    avg = m["test_vmalloc.fix_size_alloc_test.avg_usec"]
    assert avg == pytest.approx(sum(int(s.group(6)) for s in summaries) / 2)
    assert m["test_vmalloc.fix_size_alloc_test.loop_ns"] == pytest.approx(
        avg * 1000 / 200
    )
    assert m["workload.vmalloc_stress.loops"] == 400
    assert m["test_vmalloc.workers_unfinished"] == 0


@pytest.mark.parametrize("kernel", ['{preset: "6.1"}', "{vmap_locking: global}"])
def test_time_per_loop_grows_with_threads_under_the_global_lock(tmp_path, kernel):
    per_loop = {}
    for n in (1, 4):
        m, _ = _run(
            tmp_path,
            f"run_test_mask: 1, nr_threads: {n}, test_loop_count: 300",
            kernel=kernel,
        )
        assert m["test_vmalloc.workers_unfinished"] == 0
        per_loop[n] = m["test_vmalloc.fix_size_alloc_test.loop_ns"]
        assert m["lock.free_vmap_area_lock.acquisitions"] >= 300 * n
    assert per_loop[4] > 1.2 * per_loop[1]


def test_every_modelled_case_runs(tmp_path):
    m, log = _run(
        tmp_path,
        "run_test_mask: 1151, nr_threads: 2, test_loop_count: 20, "
        "setup_scale: 0.002, nr_pages: 2, sequential_test_order: true",
        duration="100ms",
    )
    names = {SUMMARY.match(line).group(1) for line in log if "Summary" in line}
    assert names == {
        "fix_size_alloc_test",
        "full_fit_alloc_test",
        "long_busy_list_alloc_test",
        "random_size_alloc_test",
        "fix_align_alloc_test",
        "random_size_align_alloc_test",
        "align_shift_alloc_test",
        "vm_map_ram_test",
    }
    for name in names - {"align_shift_alloc_test"}:
        assert (m[f"test_vmalloc.{name}.passed"], m[f"test_vmalloc.{name}.failed"]) == (
            2,
            0,
        ), name
    # align_shift_alloc_test is meant to fail: 2^63 alignment cannot be met
    assert m["test_vmalloc.align_shift_alloc_test.failed"] == 2
    assert "test_vmalloc.align_shift_alloc_test.loop_ns" not in m
    assert m["alloc.vm_map_ram.count"] == 40
    # every test freed what it took; vm_map_ram keeps its per-CPU block
    assert m["vmap.used_bytes"] <= 2 * VMAP_BLOCK_SIZE


def test_repeats_and_oversubscribed_cpus(tmp_path):
    m, log = _run(
        tmp_path,
        "run_test_mask: 8, nr_threads: 8, test_loop_count: 30, test_repeat_count: 3",
    )
    assert m["test_vmalloc.random_size_alloc_test.passed"] == 8 * 3
    assert m["workload.vmalloc_stress.loops"] == 8 * 3 * 30
    assert m["test_vmalloc.workers_unfinished"] == 0
    assert sum("All test took" in line for line in log) == 8


def test_unfinished_workers_are_reported(tmp_path):
    m, log = _run(tmp_path, "nr_threads: 2", duration="200us")
    assert m["test_vmalloc.workers_unfinished"] == 2
    assert "2 of 2 workers still running" in log[-1]
    assert not any("Summary" in line for line in log)


def test_older_keys_still_read(tmp_path):
    sim = simulation(
        tmp_path,
        WL.format(
            params="cpus: 2, loops: 7, size: 8K",
            kernel="{preset: latest}",
            duration="1ms",
        ),
    )
    cfg = sim.resolved.cfg.workloads[0]
    assert (cfg.nr_threads, cfg.test_loop_count, cfg.nr_pages) == (2, 7, 2)
    assert cfg.run_test_mask == 1
    assert "cpus" not in sim.resolved.data["workloads"][0]
    sim = simulation(
        tmp_path,
        WL.format(params="vm_map_ram: true", kernel="{}", duration="1ms"),
    )
    assert sim.resolved.cfg.workloads[0].run_test_mask == 1024


@pytest.mark.parametrize(
    ("params", "what"),
    [
        ("run_test_mask: 128", "pcpu_alloc_test"),
        ("run_test_mask: 1, vm_map_ram: true", "vm_map_ram"),
        ("nr_threads: 2, cpus: 2", "nr_threads or cpus"),
        ("nr_pages: 4, max_pages: 2", "max_pages"),
    ],
)
def test_bad_parameters(tmp_path, params, what):
    with pytest.raises(ConfigError) as err:
        simulation(tmp_path, WL.format(params=params, kernel="{}", duration="1ms"))
    assert what in str(err.value) and "w.yaml:6" in str(err.value)
