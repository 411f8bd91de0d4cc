"""Host activity: the code every busy CPU runs besides the workload, the
events that drop TLB entries (PTI, mm switches) and what busy, IRQs-off and
idle CPUs do to an IPI round."""

from __future__ import annotations

from tests.workloads import simulation

WL = """\
name: host
duration: {duration}
machine: {{profile: skylake-sp, cpus: 4{machine}}}
kernel: {{preset: "6.1"{kernel}}}
strategy: bpf_prog_pack
host: {host}
workloads:
  - type: bpf_jit
    programs: 20
    exec: {{rate: 200000/s, cpus: 2}}
"""


def _run(tmp_path, host="{}", kernel="", machine="", duration="10ms"):
    text = WL.format(host=host, kernel=kernel, machine=machine, duration=duration)
    return simulation(tmp_path, text).run().metrics


def test_host_code_competes_and_is_attributed(tmp_path):
    on = _run(tmp_path)
    off = _run(tmp_path, host="{enabled: false}")
    assert on["itlb.misses.user"] > 0 and on["itlb.misses.kernel"] > 0
    assert "itlb.misses.user" not in off
    # the host's instructions count, as perf stat -a counts the machine
    assert on["cpu.instructions"] > 10 * off["cpu.instructions"]
    # BPF text misses more once the host's code takes TLB entries
    assert on["itlb.misses.bpf"] > off["itlb.misses.bpf"]
    for side in ("itlb", "dtlb", "stlb"):
        owners = sum(v for k, v in on.items() if k.startswith(f"{side}.misses."))
        assert owners == on[f"{side}.misses"]


def test_kpti_raises_kernel_text_misses_when_processes_switch(tmp_path):
    """Under PTI kernel entries are non-global and tagged with each mm's
    kernel ASID: a switch to another process leaves the kernel's text to
    be walked again (skylake-sp has X86_BUG_CPU_MELTDOWN and PCID)."""
    host = "{mm_switches: 50000/s, syscalls: 1000000/s}"
    on = _run(tmp_path, host=host, kernel=", pti: auto")
    off = _run(tmp_path, host=host, kernel=", pti: off")
    assert on["host.tlb_drops"] == off["host.tlb_drops"] > 0
    assert on["itlb.misses.kernel"] > 2 * off["itlb.misses.kernel"]
    assert on["itlb.misses.bpf"] > off["itlb.misses.bpf"]


def test_kpti_without_pcid_drops_on_every_syscall(tmp_path):
    """No PCID: every return to user space rewrites CR3 and drops the
    non-global entries, which under PTI include BPF images; the kernel
    image stays global (pti_kernel_image_global_ok())."""
    host = "{mm_switches: 0/s, syscalls: 500000/s}"
    nopcid = ', cpu: {pcid: {value: false, source: "test", confidence: estimate}}'
    on = _run(tmp_path, host=host, machine=nopcid)
    with_pcid = _run(tmp_path, host=host)
    assert on["host.tlb_drops"] > 1000 and "host.tlb_drops" not in with_pcid
    assert on["itlb.misses.bpf"] > 5 * with_pcid["itlb.misses.bpf"]
    # the image's 2M text pages survive: few more kernel-text misses
    assert on["itlb.misses.kernel"] < 2 * with_pcid["itlb.misses.kernel"] + 50


PROBE = """\
name: ipi
duration: 5ms
machine: {{profile: skylake-sp, cpus: 8}}
kernel: {{preset: "6.1"}}
host: {host}
workloads:
  - type: vmalloc_stress
    nr_threads: 1
    nr_pages: 1
"""


def _flush_wait(tmp_path, host):
    sim = simulation(tmp_path, PROBE.format(host=host))
    flush = sim.machine.flush
    return sum(flush.ipi_round(0, 0.0) for _ in range(200)) / 200


def test_idle_targets_pay_their_c_state_exit(tmp_path):
    busy = _flush_wait(tmp_path, "{irqs_off: 0}")
    # CPUs 1..7 idle all along: in C6, 133 us to leave (skx_cstates)
    idle = _flush_wait(tmp_path, "{irqs_off: 0, busy_cpus: 1}")
    assert busy < 2_000
    assert 133_000 < idle < 133_000 + 2 * busy


def test_irqs_off_sections_delay_the_round(tmp_path):
    calm = _flush_wait(tmp_path, "{irqs_off: 0}")
    stormy = _flush_wait(tmp_path, "{irqs_off: 0.5, irqs_off_section: 20us}")
    assert stormy > calm + 10_000


def test_pti_charges_two_cr3_writes_per_system_call(tmp_path):
    """pti on: each syscall's entry and exit write CR3 (calling.h); the
    time is counted as cpu.pti_ns, none of it with pti off."""
    host = "{syscalls: 100000/s, mm_switches: 0/s}"
    on = _run(tmp_path, host=host, kernel=", pti: on")
    off = _run(tmp_path, host=host, kernel=", pti: off")
    assert "cpu.pti_ns" not in off
    # 2 CPUs run code for about 10 ms: ~2,000 syscalls, 2 CR3 writes each at
    # skylake-sp's 96 cycles / 2.5 GHz
    expected = 2 * 10e-3 * 100_000 * 2 * 96 / 2.5
    assert 0.8 * expected < on["cpu.pti_ns"] <= expected
