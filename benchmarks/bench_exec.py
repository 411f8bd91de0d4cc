"""Execution-heavy: BPF program invocations per wall second, ``fast`` TLBs.

1,000 JIT images (the Meta fleet size distribution, the workload's default)
are loaded by 16 CPUs; then every one of 64 CPUs invokes them, Zipf(1.1)
popularity, and the benchmark times a window of steady execution: simulated
invocations and page touches per wall second. The load phase is not timed:
it is the event-heavy path, measured on its own.

The rate is per CPU. One million per second is a packet-processing host:
64 CPUs taking 64 Mpps through one XDP program (100 GbE at minimum frame
size carries 148.8 Mpps). 100,000 per second (the rate of DESIGN.md's
example): batches ten times smaller, so more of the cost is per quantum
rather than per invocation. Targets: at least 8 M invocations per second
of one core at 1 M/s per CPU, 2 M at 100,000/s (rates are per CPU second
of the benchmark process, which on an idle machine is its wall time). The ratio column divides the invocation rate by bare SimPy's event
rate measured in the same child.

    python benchmarks/bench_exec.py [--window 10ms] [--repeat 3]
"""

from __future__ import annotations

import gc
import sys

from common import (
    Stopwatch,
    Table,
    bare_simpy,
    interleaved,
    median,
    simulation,
    standalone,
    warm_up,
)

from simcore.units import parse_duration

WORKLOAD = """\
name: bench-exec
seed: 1
duration: 10s
machine: {{profile: {profile}, cpus: 64}}
kernel: {{preset: latest}}
strategy: {strategy}
sim: {{tlb_model: fast}}
workloads:
  - type: bpf_jit
    programs: {programs}
    load_cpus: 16
    exec: {{rate: {rate}/s, popularity: {{zipf: 1.1}}}}
"""

PROGRAMS = 1000
# (rate per CPU, invocations per CPU second of the benchmark at least)
TARGETS = {1_000_000: 8e6, 100_000: 2e6}
INTEL, AMD = "skylake-sp", "zen4-genoa"
# (strategy, rate per CPU, profile): the targets are judged on the Intel
# rows; the AMD row shows what the large fully associative L2 DTLB costs
CASES = (
    ("bpf_prog_pack", 1_000_000, INTEL),
    ("module_alloc", 1_000_000, INTEL),
    ("bpf_prog_pack", 100_000, INTEL),
    ("bpf_prog_pack", 1_000_000, AMD),
)


def one(
    strategy: str, rate: int, profile: str, window_ns: int
) -> tuple[int, int, float, float, float]:
    """(invocations, page touches, CPU s, wall s, bare SimPy events per CPU
    second) of a window."""
    text = WORKLOAD.format(
        strategy=strategy, rate=rate, programs=PROGRAMS, profile=profile
    )
    sim = simulation(text)
    c = sim.metrics.counters
    step = 500_000
    while c.get("bpf.progs_loaded", 0) < PROGRAMS:
        sim.env.run(until=sim.env.now + step)
    touches = [0]

    def counted(cpu, addrs, shifts, side, instructions, owner="kernel",
                run=sim.executor.run, **kw):  # fmt: skip
        touches[0] += len(addrs)
        return run(cpu, addrs, shifts, side, instructions, owner, **kw)

    sim.executor.run = counted
    inv0 = c["workload.bpf_jit.invocations"]
    with Stopwatch() as sw:
        sim.env.run(until=sim.env.now + window_ns)
    inv = c["workload.bpf_jit.invocations"] - inv0
    events = 200_000
    del sim, c, counted
    gc.collect()
    return inv, touches[0], sw.cpu, sw.wall, events / bare_simpy(events, 64)


def measure(repeat: int = 3, window: str = "10ms") -> Table:
    warm_up()
    window_ns = parse_duration(window)
    t = Table(
        f"Execution-heavy: {PROGRAMS} BPF programs invoked on 64 CPUs, fast TLB "
        f"model, {window} simulated after loading, median of {repeat}",
        [
            "strategy",
            "profile",
            "rate/CPU",
            "invocations",
            "inv/s",
            "touches/s",
            "inv/bare ev",
            "wall s",
        ],
        note="rates per CPU second; inv/bare ev = invocation rate / bare SimPy "
        "event rate, same child",
    )
    worst: dict[int, float] = {}
    bare = []
    done = interleaved(one, [(*case, window_ns) for case in CASES], repeat)
    for strategy, rate, profile in CASES:
        runs = [value for value, _ in done[strategy, rate, profile, window_ns]]
        inv_s = median(i / c for i, _, c, _, _ in runs)
        t.add(
            strategy,
            profile,
            f"{rate:,}/s",
            f"{runs[0][0]:,}",
            f"{inv_s / 1e6:.2f} M",
            f"{median(n / c for _, n, c, _, _ in runs) / 1e6:.2f} M",
            f"{median(i / c / b for i, _, c, _, b in runs):.2f}",
            f"{median(w for _, _, _, w, _ in runs):.2f}",
        )
        bare += [b for _, _, _, _, b in runs]
        key = f"invocations_per_s_{strategy}_{rate // 1000}k"
        if profile != INTEL:
            t.figures[f"{key}_{profile}"] = round(inv_s)
            continue
        worst[rate] = min(worst.get(rate, inv_s), inv_s)
        t.figures[key] = round(inv_s)
    t.figures["invocations_per_s_min"] = round(worst[1_000_000])
    t.figures["invocations_per_s_100k_min"] = round(worst[100_000])
    t.figures["exec_bare_simpy_ev_per_s"] = round(median(bare))
    for rate, target in TARGETS.items():
        t.verdict(
            f">= {target / 1e6:.0f} M invocations/s at {rate:,}/s per CPU",
            worst[rate] >= target,
            f"lowest {worst[rate] / 1e6:.2f} M/s",
        )
    return t


def main() -> int:
    return standalone(__doc__, measure, ("window", "10ms", "simulated time timed"))


if __name__ == "__main__":
    sys.exit(main())
