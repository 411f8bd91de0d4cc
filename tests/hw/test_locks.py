"""Spinlock contention: throughput per CPU falls, waits rise, sockets hurt."""

from tests.hw.helpers import make_sim

HOLD, THINK, RUN = 200, 300, 200_000


def contend(machine: str, cpus: list[int]):
    sim = make_sim(machine)
    env = sim.env
    lock = sim.machine.spinlock("test_lock")
    done = dict.fromkeys(cpus, 0)

    def worker(cpu):
        while True:
            ev = lock.acquire(cpu)
            if ev is not None:
                yield ev
            yield env.timeout(HOLD)
            lock.release(cpu)
            done[cpu] += 1
            yield env.timeout(THINK)

    for c in cpus:
        env.process(worker(c))
    env.run(until=RUN)
    st = sim.machine.lock_stats["test_lock"]
    per_cpu = sum(done.values()) / len(cpus)
    return per_cpu, st.wait_ns / max(1, st.acquisitions), st


def test_throughput_falls_and_wait_rises_with_cpus():
    m = "{profile: skylake-sp, sockets: 1}"
    rows = {n: contend(m, list(range(n))) for n in (1, 2, 4, 8, 16)}
    print({n: (round(r[0]), round(r[1])) for n, r in rows.items()})
    per = [rows[n][0] for n in (1, 2, 4, 8, 16)]
    wait = [rows[n][1] for n in (1, 2, 4, 8, 16)]
    assert per == sorted(per, reverse=True) and per[-1] < per[0] / 4
    assert wait == sorted(wait) and wait[0] == 0
    assert rows[16][2].contended / rows[16][2].acquisitions > 0.9


def test_cross_socket_is_worse():
    m = "{profile: skylake-sp, sockets: 2}"
    same = contend(m, [0, 1, 2, 3])  # all on socket 0
    cross = contend(m, [0, 1, 28, 29])  # cores 28+ are on socket 1
    print("same socket", same[:2], "cross socket", cross[:2])
    assert cross[0] < same[0]  # fewer acquisitions per CPU
    assert cross[1] > same[1]  # longer wait per acquisition


def test_mutex_sleepers_pay_wakeup():
    sim = make_sim("{profile: small-test}")
    env = sim.env
    mtx = sim.machine.mutex("test_mutex")
    got = []

    def holder():
        assert mtx.acquire(0) is None
        yield env.timeout(50_000)  # long hold: the waiter gives up spinning
        mtx.release(0)

    def waiter():
        yield env.timeout(1)
        yield mtx.acquire(1)
        got.append(env.now)
        mtx.release(1)

    env.process(holder())
    env.process(waiter())
    env.run()
    wake = sim.profile.locks.mutex_wakeup_ns.value
    assert got[0] >= 50_000 + wake
    # only the spinning part of the wait is lost CPU time
    assert sim.metrics.cpu_ns["lock_spin"] <= 10_000
