"""text_poke_users: static keys, ftrace and kprobes on each architecture's
patching path."""

from __future__ import annotations

from tests.workloads import run_metrics

WL = """\
name: tpu
duration: 20ms
machine: {{profile: {profile}, cpus: 8}}
kernel: {{preset: "{preset}"}}
host: {{enabled: false}}
workloads:
  - type: text_poke_users
    static_keys: {{rate: 500/s, sites: 56}}
    ftrace: {{rate: 200/s, functions: 300}}
    kprobes: {{rate: 500/s}}
"""


def _run(tmp_path, profile, preset):
    return run_metrics(tmp_path, WL.format(profile=profile, preset=preset))


def test_x86_users_go_through_int3_and_sync_ipis(tmp_path):
    m = _run(tmp_path, "skylake-sp", "6.9")
    for op in ("static_key_update", "ftrace_update", "kprobe_arm"):
        assert m[f"workload.text_poke_users.{op}s"] > 0
        assert m[f"alloc.{op}.latency_ns.p50"] > 0
    # three sync rounds per batch, one per kprobe; every round IPIs the
    # seven other CPUs
    assert m["text_poke.sync_ipis"] == 7 * m["text_poke.sync_rounds"]
    assert m.get("text_poke.stop_machine", 0) == 0
    # 300 ftrace sites are two TP_VEC_MAX batches: six rounds, more than a
    # 56-site key's three
    assert (
        m["alloc.ftrace_update.latency_ns.p50"]
        > m["alloc.static_key_update.latency_ns.p50"]
    )


def test_arm64_kprobes_stop_the_machine_and_keys_ipi_from_6_11(tmp_path):
    old = _run(tmp_path, "neoverse-n1", "6.9")
    new = _run(tmp_path, "neoverse-n1", "6.13")
    for m in (old, new):
        assert m["text_poke.stop_machine"] == m["workload.text_poke_users.kprobe_arms"]
        assert m["cpu.stop_machine_ns"] > 0
    # ftrace and jump labels site by site: no kick but the 6.11+ one per key
    assert old.get("text_poke.sync_rounds", 0) == 0
    assert (
        new["text_poke.sync_rounds"]
        == new["workload.text_poke_users.static_key_updates"]
    )
