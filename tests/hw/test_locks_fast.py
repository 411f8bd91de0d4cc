"""The fast lock model against the exact one (simcore.hw.locks_fast)."""

import pytest

from simcore.hw.locks import SpinLock
from tests.hw.helpers import make_sim

FAST = ["sim.lock_model=fast"]


def _section(lock: SpinLock, cpu: int, ns: int, log: list):
    extra = yield from lock.take_lagged(cpu)
    yield lock.section(cpu, ns + extra)
    lock.leave(cpu)
    lag = lock.lag[cpu] if lock.lag is not None else 0
    log.append((cpu, lock.env.now + lag))


def _three_sections(sets):
    sim = make_sim("{profile: small-test}", sets=sets)
    env, m = sim.env, sim.machine
    lock = m.spinlock("test_lock")
    ends: list = []
    for cpu in (0, 1, 2):
        env.process(_section(lock, cpu, 100, ends))
    first = next(env._eid)
    env.run(until=10_000)
    return m, ends, next(env._eid) - first


def test_a_wait_in_line_is_computed_not_simulated():
    m, ends, events = _three_sections(FAST)
    unc = m.uncontended_ns
    hand = int(m.topo.c2c_ns(0, 1))
    # CPU 0 holds it from 0; 1 and 2 follow, each after the hand-off's
    # line transfer, and pay no uncontended cost
    assert ends == [
        (0, 100 + unc),
        (1, 100 + unc + hand + 100),
        (2, 100 + unc + 2 * (hand + 100)),
    ]
    st = m.lock_stats["test_lock"]
    assert (st.acquisitions, st.contended) == (3, 2)
    assert st.wait_ns == (100 + unc + hand) + (100 + unc + 2 * hand + 100)
    # the exact model gets the same times with three section timeouts and
    # two hand-off events, which the fast one computes
    m_exact, ends_exact, events_exact = _three_sections([])
    assert sorted(ends_exact) == ends
    assert m_exact.lock_stats["test_lock"] == st
    assert events_exact - events >= 5


def test_exact_waiters_queue_behind_a_fast_hold_and_get_it_at_its_end():
    sim = make_sim("{profile: small-test}", sets=FAST)
    env, m = sim.env, sim.machine
    lock = m.spinlock("test_lock")
    got = []

    def exact_taker():
        yield env.timeout(10)
        extra = yield from lock.take(1)  # a path without the fast model
        got.append((env.now, extra))
        yield env.timeout(50)
        lock.release(1)

    env.process(_section(lock, 0, 500, []))
    env.process(exact_taker())
    env.run(until=10_000)
    # the fast hold ends at 500 + uncontended; the hand-off adds the line
    assert got == [(500 + m.uncontended_ns + int(m.topo.c2c_ns(0, 1)), 0)]
    assert lock.owner is None and not lock.waiters


def test_a_fast_taker_queues_behind_an_exact_holder():
    sim = make_sim("{profile: small-test}", sets=FAST)
    env, m = sim.env, sim.machine
    lock = m.spinlock("test_lock")
    ends: list = []

    def exact_holder():
        assert lock.acquire(0) is None
        yield env.timeout(1_000)
        lock.release(0)

    env.process(exact_holder())
    env.process(_section(lock, 1, 100, ends))
    env.run(until=10_000)
    assert ends == [(1, 1_000 + int(m.topo.c2c_ns(0, 1)) + 100)]


WORKLOAD = """\
name: agree
seed: 1
duration: {duration}
machine: {{profile: skylake-sp, cpus: {cpus}}}
kernel: {{preset: "{preset}"}}
workloads:
  - {{type: vmalloc_stress, nr_pages: 1, max_pages: {max_pages}}}
"""


def _run(write, preset, cpus, max_pages, duration, model):
    from simcore.config.load import load_workload
    from simcore.engine import Simulation

    p = write(
        WORKLOAD.format(
            preset=preset, cpus=cpus, max_pages=max_pages, duration=duration
        )
    )
    sim = Simulation(load_workload(p, sets=[f"sim.lock_model={model}"]), "module_alloc")
    return sim.run().metrics


# global locks saturated (6.1, 64 CPUs), per-node locks moderately
# contended (latest, 16 CPUs, the quickstart's machine), and multi-page
# areas through the high-order page path (latest, 1-4 pages)
CASES = [("6.1", 64, 1, "2ms"), ("latest", 16, 1, "1ms"), ("latest", 64, 4, "1ms")]


@pytest.mark.parametrize("preset,cpus,max_pages,duration", CASES)
def test_fast_and_exact_models_agree(write, preset, cpus, max_pages, duration):
    exact = _run(write, preset, cpus, max_pages, duration, "exact")
    fast = _run(write, preset, cpus, max_pages, duration, "fast")
    assert set(exact) == set(fast)  # the same counters
    keys = [
        f"alloc.{op}.{stat}"
        for op in ("vmalloc", "vfree")
        for stat in ("count", "latency_ns.mean", "latency_ns.p50", "latency_ns.p99")
    ]
    keys += [k for k in exact if k.startswith("lock.") and k.endswith(".wait_ns")]
    for k in keys:
        a, b = exact[k], fast[k]
        if a < 1_000 and k.endswith("wait_ns"):
            continue  # a lock that almost never waits: ns, not a rate
        assert b == pytest.approx(a, rel=0.02), (k, a, b)
    assert fast["sim.events"] < 0.75 * exact["sim.events"]
