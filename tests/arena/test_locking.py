"""The two locking eras under contention.

6.13 (mutex era): arena->lock is a sleeping mutex held across allocation,
PTE work, flushes and faults. latest (spinlock era): an rqspinlock taken
with IRQs off over the range tree and kernel PTEs, so its holders (and
spinners) run with interrupts disabled for the whole section.
"""

import pytest

from tests.arena import ERAS, new_arena, quiet_sim, run_arena
from tests.kernel import run

BODY = """\
    size: 64MiB
    alloc: {{pages: 16}}
    populate: {{pages: 256}}
    churn: {{rate: {rate}/s, lifetime: 50us}}
    bpf: {{cpus: {cpus}, rate: 0/s}}
    user: {{cpus: 1, rate: 4000000/s, pattern: uniform}}
"""


def load(preset: str, cpus: int, rate: int) -> dict[str, float]:
    return run_arena(
        BODY.format(cpus=cpus, rate=rate), "arena_4k", preset, duration="10ms"
    )


@pytest.mark.parametrize("preset", ERAS)
def test_alloc_and_fault_latency_rise_under_contention(preset):
    quiet = load(preset, 1, 20_000)
    busy = load(preset, 3, 240_000)
    lock = "arena_lock" if preset == "6.13" else "arena_spinlock"
    print(
        preset,
        "alloc mean quiet/busy",
        quiet["alloc.arena_alloc.latency_ns.mean"],
        busy["alloc.arena_alloc.latency_ns.mean"],
        "fault mean",
        quiet["alloc.arena_fault.latency_ns.mean"],
        busy["alloc.arena_fault.latency_ns.mean"],
        "contended %",
        busy[f"lock.{lock}.contended_pct"],
    )
    assert busy[f"lock.{lock}.contended_pct"] > 5 * max(
        quiet[f"lock.{lock}.contended_pct"], 0.1
    )
    assert busy[f"lock.{lock}.wait_ns"] > 10 * max(quiet[f"lock.{lock}.wait_ns"], 1)
    for op in ("arena_alloc", "arena_fault"):
        assert busy[f"alloc.{op}.count"] > 100
        assert (
            busy[f"alloc.{op}.latency_ns.mean"]
            > 1.2 * quiet[f"alloc.{op}.latency_ns.mean"]
        ), op
        assert busy[f"alloc.{op}.latency_ns.p99"] > quiet[f"alloc.{op}.latency_ns.p99"]


def test_spinlock_era_charges_irq_off_time_to_the_holder():
    m = load("latest", 3, 240_000)
    hold = m["lock.arena_spinlock.hold_ns"]
    wait = m["lock.arena_spinlock.wait_ns"]
    assert hold > 0 and wait > 0
    # from raw_res_spin_lock_irqsave() to the unlock: spinning and holding
    # (a section still open when the run ends has its wait counted only)
    assert m["cpu.irq_off_ns"] == m["arena.irqoff_ns"]
    assert 0.99 * (hold + wait) <= m["cpu.irq_off_ns"] <= hold + wait
    assert "cpu.irq_off_ns" not in load("6.13", 3, 240_000)


@pytest.mark.parametrize(("preset", "irq_off"), [("6.13", False), ("latest", True)])
def test_a_large_allocation_keeps_irqs_off_throughout(preset, irq_off):
    sim = quiet_sim("arena_4k", preset)
    arena = new_arena(sim, 4096)
    t0 = sim.env.now
    assert run(sim, arena.alloc_pages(0, 0, 1024))
    took = sim.env.now - t0
    c = sim.metrics.counters
    zero = sim.profile.kernel_costs.page_zero_ns.value
    assert took > 1024 * zero  # every page zeroed under the lock
    if irq_off:
        assert c["arena.irqoff_max_ns"] >= took - 100
    else:
        assert c["arena.irqoff_max_ns"] == 0
        assert sim.machine.lock_stats["arena_lock"].hold_ns >= took - 100
