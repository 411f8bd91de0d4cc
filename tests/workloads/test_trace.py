"""Trace replay and recording (sim.trace_out)."""

from __future__ import annotations

import shutil
from collections import defaultdict

from simcore.config.load import load_workload
from simcore.engine import simulate
from simcore.workloads.captures.trace import load_trace
from tests.workloads import DATA, run_metrics, simulation

REPLAY = """\
name: replay
duration: {duration}
machine: {{profile: small-test}}
sim: {{trace_out: "{out}"}}
workloads:
  - {{type: trace, file: {file}, rebase: {rebase}}}
"""

GENERATE = """\
name: gen
duration: 2ms
machine: {{profile: small-test}}
sim: {{trace_out: "{out}"}}
workloads:
{entries}
"""

STRESS = (
    "  - {type: vmalloc_stress, nr_threads: 4, nr_pages: 1, max_pages: 8,"
    " test_loop_count: 300}"
)
BPF = "  - {type: bpf_jit, programs: 20, churn: {load_rate: 20000/s, lifetime: 200us}}"


def _key(e):
    return (e.timestamp, e.cpu, e.op, e.size, e.type, e.id)


def _replay(tmp_path, file, out, rebase="true", duration="10ms"):
    text = REPLAY.format(file=file, out=out, rebase=rebase, duration=duration)
    return simulation(tmp_path, text).run()


def test_sample_replays_every_event(tmp_path):
    res = _replay(tmp_path, DATA / "trace-example.csv", tmp_path / "r.csv")
    m = res.metrics
    assert m["workload.trace.events"] == 18
    assert "workload.trace.unmatched" not in m
    assert (m["module.loads"], m["module.unloads"]) == (1, 1)
    assert (m["bpf.progs_loaded"], m["bpf.progs_freed"]) == (3, 1)
    assert m["alloc.vmalloc.count"] >= 3


def test_replaying_twice_gives_identical_metrics(tmp_path):
    a = _replay(tmp_path, DATA / "trace-example.csv", tmp_path / "a.csv")
    b = _replay(tmp_path, DATA / "trace-example.csv", tmp_path / "b.csv")
    assert a.metrics == b.metrics
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_trace_and_its_generator_allocate_the_same(tmp_path):
    """A recorded vmalloc_stress run, replayed, makes the same calls, with
    the same sizes, on the same CPUs, at the same times; where two CPUs
    reach a lock in the same nanosecond the replay may serve them in the
    other order, which shifts a few calls by tens of nanoseconds."""
    gen, rep = tmp_path / "gen.csv", tmp_path / "rep.csv"
    m_gen = run_metrics(tmp_path, GENERATE.format(out=gen, entries=STRESS))
    m_rep = _replay(tmp_path, gen, rep, rebase="false").metrics
    a, b = load_trace(gen), load_trace(rep)
    assert len(a) == 2 * m_gen["workload.vmalloc_stress.loops"]
    assert _per_cpu(a) == _per_cpu(b)
    # the same call on the same CPU, paired by its place on that CPU
    on_cpu = defaultdict(list)
    for e in b:
        on_cpu[e.cpu].append(e.timestamp)
    seen = defaultdict(int)
    shifts = []
    for e in a:
        shifts.append(abs(e.timestamp - on_cpu[e.cpu][seen[e.cpu]]))
        seen[e.cpu] += 1
    assert max(shifts) < 1000
    assert sum(s == 0 for s in shifts) >= 0.95 * len(shifts)
    for k in ("alloc.vmalloc.count", "alloc.vfree.count", "vmap.lazy_purges"):
        assert m_gen[k] == m_rep[k], k


def _per_cpu(events):
    """Each CPU's calls in order. Ids are numbered in the global order of
    calls, so two CPUs served in the other order within one nanosecond
    swap theirs: each id is replaced by the position on its CPU of the
    call that allocated it, which a swap leaves alone."""
    out = defaultdict(list)
    first: dict[str, int] = {}
    for e in events:
        calls = out[e.cpu]
        first.setdefault(e.id, len(calls))
        calls.append((e.op, e.size, e.type, first[e.id]))
    return out


def test_generator_mix_replays_in_the_same_order_per_cpu(tmp_path):
    """BPF program loads (each a strategy allocation inside) and vmallocs
    from two generators: each CPU sees the same sequence again."""
    gen, rep = tmp_path / "gen.jsonl", tmp_path / "rep.jsonl"
    run_metrics(tmp_path, GENERATE.format(out=gen, entries=STRESS + "\n" + BPF))
    _replay(tmp_path, gen, rep, rebase="false")

    a, b = load_trace(gen), load_trace(rep)
    assert {e.op for e in a} == {"vmalloc", "vfree", "bpf_load", "bpf_free"}
    assert _per_cpu(a) == _per_cpu(b)


def test_a_replay_records_back_to_itself(tmp_path):
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    _replay(tmp_path, DATA / "trace-example.csv", first)
    _replay(tmp_path, first, second, rebase="false")
    assert [_key(e) for e in load_trace(first)] == [_key(e) for e in load_trace(second)]
    ops = {e.op for e in load_trace(first)}
    assert {"alloc", "free", "exec", "module_load", "module_unload"} <= ops


def test_frees_of_unknown_objects_are_skipped(tmp_path):
    trace = tmp_path / "t.csv"
    shutil.copy(DATA / "trace-example.csv", trace)
    with trace.open("a") as f:
        f.write("812345130000,0,vfree,,,never-allocated\n")
        f.write("812345140000,1,exec,,,nor-this\n")
    m = _replay(tmp_path, trace, tmp_path / "r.csv").metrics
    assert m["workload.trace.unmatched"] == 2


def test_several_strategies_record_one_file_each(tmp_path):
    text = GENERATE.format(out=tmp_path / "t-{strategy}.csv", entries=STRESS)
    text = text.replace(
        "duration: 2ms", "duration: 100us\nstrategy: [module_alloc, execmem_rox]"
    )
    p = tmp_path / "w.yaml"
    p.write_text(text)
    simulate(load_workload(p))
    for s in ("module_alloc", "execmem_rox"):
        assert load_trace(tmp_path / f"t-{s}.csv")
    plain = text.replace("t-{strategy}.csv", "t.csv")
    p.write_text(plain)
    simulate(load_workload(p))
    assert load_trace(tmp_path / "t.module_alloc.csv")
