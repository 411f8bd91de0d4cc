"""Shootdown latency against CPU and socket count (hardware.md section 4)."""

import statistics

from tests.hw.helpers import make_sim

KSTART = 0xFFFFC90000000000


def shootdown_ns(
    machine: str, samples: int = 400, pages: int = 1
) -> tuple[float, dict]:
    sim = make_sim(machine)
    f = sim.machine.flush
    lat = [f.kernel_range(0, KSTART, KSTART + pages * 4096) for _ in range(samples)]
    return statistics.median(lat), dict(sim.metrics.counters)


def test_grows_sublinearly_with_cpus():
    m = {
        n: shootdown_ns(f"{{profile: skylake-sp, sockets: 1, cpus: {n}}}")[0]
        for n in (2, 4, 8, 16, 28)
    }
    print("median shootdown ns by CPUs:", m)
    assert m[2] < m[4] < m[8] < m[16] < m[28]
    # 14x the targets costs far less than 14x the time: parallel IPIs,
    # wait for the slowest (Haswell: 1 -> 3 remote CPUs +15%, not +200%)
    assert m[28] / m[2] < 2.0
    # the 1-remote-CPU point sits near the Haswell measurement (0.6-0.8 us
    # incremental, namit RFC); allow a wide band for the other machine
    assert 500 < m[2] < 2500


def test_step_across_sockets():
    one, _ = shootdown_ns(
        "{profile: skylake-sp, sockets: 1, cores_per_socket: 56, cpus: 56}"
    )
    two, _ = shootdown_ns(
        "{profile: skylake-sp, sockets: 2, cores_per_socket: 28, cpus: 56}"
    )
    print(f"56 CPUs: one socket {one:.0f} ns, two sockets {two:.0f} ns")
    assert two - one > 50  # at least most of one extra cross-socket transfer


def test_counts_and_full_flush_past_ceiling():
    _, c = shootdown_ns("{profile: small-test}", samples=10, pages=33)
    assert c["tlb.shootdowns"] == 10 and c["tlb.ipis"] == 30
    assert c.get("tlb.full_flushes", 0) == 0
    _, c = shootdown_ns("{profile: small-test}", samples=10, pages=34)
    assert c["tlb.full_flushes"] == 10


def test_broadcast_sends_no_ipis():
    lat, c = shootdown_ns("{profile: neoverse-n1, cpus: 64}", samples=50)
    assert c.get("tlb.ipis", 0) == 0 and c.get("tlb.shootdowns", 0) == 0
    assert c["tlb.broadcast_flushes"] == 50
    # and broadcast cost does not grow with CPUs
    lat4, _ = shootdown_ns("{profile: neoverse-n1, cpus: 4}", samples=50)
    assert lat == lat4


def test_flush_invalidates_modelled_tlbs():
    sim = make_sim("{profile: small-test}")
    import numpy as np

    addrs = np.array([KSTART, KSTART + 4096], dtype=np.uint64)
    shifts = np.array([12, 12], dtype=np.uint8)
    for cpu in range(4):
        sim.machine.tlb(cpu).lookup(addrs, shifts, "d")
    sim.machine.flush.kernel_range(0, KSTART, KSTART + 4096)
    for cpu in range(4):
        st = sim.machine.tlb(cpu).lookup(addrs, shifts, "d")
        assert st.stlb_misses == 1  # the flushed page walks again, the other hits
