"""Probes measure what they claim, through the runner."""

from __future__ import annotations

import pytest

from simcore.errors import ConfigError
from simcore.validate.runner import PASS, run_case
from simcore.validate.spec import load_case
from tests.validate import GOOD, write_case


def test_static_key_rounds_per_toggle(tmp_path):
    # three sync rounds per text_poke_bp(): per site, or once per batch
    result = run_case(load_case(write_case(tmp_path, GOOD)))
    assert result.error is None
    assert result.simulated == {
        "per_site": {2.0: 6.0, 4.0: 12.0},
        "batched": {2.0: 3.0, 4.0: 3.0},
    }
    assert result.status == PASS


FLUSH = """\
name: {name}
title: flushes
area: shootdown costs
suitability: direct
source: {{ref: "msg@example.org", where: cover, machine: "4 CPUs"}}
workload:
  duration: 2ms
  machine: {{profile: small-test}}
  kernel: {{preset: "6.1"}}
probe: {{type: tlb_shootdown, kind: user, targets: 0, pages: 1, count: 20}}
series:
  local: {{}}
x: {{param: probe.pages, label: pages, values: [1, 8, 40]}}
measure: {{value: "m('alloc.tlb_flush.latency_ns.mean') * ghz", label: cycles}}
published:
  local: {{1: "260", 8: "2080"}}
criterion: {{quantity: slope, series: local}}
quick: {{}}
"""


def test_local_flush_is_invlpg_per_page_up_to_the_ceiling(tmp_path):
    result = run_case(load_case(write_case(tmp_path, FLUSH)))
    pts = result.simulated["local"]
    # small-test: 260-cycle INVLPG; past 33 pages, one CR3 write (96 cycles)
    assert pts[8.0] == pytest.approx(8 * pts[1.0], rel=0.02)
    assert pts[1.0] == pytest.approx(260, rel=0.02)
    assert pts[40.0] < pts[8.0]


def test_probe_asking_for_more_cpus_than_the_machine_has(tmp_path):
    text = FLUSH.replace("targets: 0", "targets: 9")
    with pytest.raises(ConfigError, match="probe.targets = 9"):
        run_case(load_case(write_case(tmp_path, text)))
