"""BPF kallsyms (simcore/kernel/bpf/kallsyms.py): bpf_lock taken once per
privileged load (bpf_ksym_add()) and once per free, symbol or not
(bpf_ksym_del()); trampoline and dispatcher images have symbols too; the
latch tree's two descents grow with the symbols in it."""

from __future__ import annotations

from simcore.kernel.vmalloc import rb_depth
from tests.kernel import make_sim, run


def _acquisitions(sim) -> int:
    st = sim.machine.lock_stats.get("bpf_lock")
    return 0 if st is None else st.acquisitions


def test_a_privileged_load_adds_a_symbol_under_bpf_lock_and_its_free_removes_it():
    sim = make_sim()
    bpf = sim.kernel.bpf
    progs = [run(sim, bpf.prog_load(0, 500)) for _ in range(3)]
    assert _acquisitions(sim) == 3
    assert bpf.kallsyms.nr == 3 and all(p.ksym for p in progs)
    assert sim.metrics.counters["bpf.ksyms"] == 3
    run(sim, bpf.prog_free(0, progs[0]))
    assert _acquisitions(sim) == 4
    assert bpf.kallsyms.nr == 2
    assert sim.metrics.counters["bpf.ksyms"] == 2
    locks = sim.machine.export_locks()
    assert locks["lock.bpf_lock.acquisitions"] == 4
    assert locks["lock.bpf_lock.hold_ns"] > 0


def test_an_unprivileged_load_gets_no_symbol_but_its_free_still_takes_the_lock():
    sim = make_sim()
    bpf = sim.kernel.bpf
    prog = run(sim, bpf.prog_load(0, 500, privileged=False))
    assert not isinstance(prog, int) and prog is not None
    assert not prog.ksym and bpf.kallsyms.nr == 0
    assert _acquisitions(sim) == 0
    run(sim, bpf.prog_free(0, prog))
    assert _acquisitions(sim) == 1
    assert bpf.kallsyms.nr == 0


def test_bpf_lock_exists_only_in_runs_that_use_it():
    sim = make_sim()
    assert "bpf_lock" not in sim.machine.lock_stats
    assert not [k for k in sim.machine.export_locks() if "bpf_lock" in k]


def test_an_insert_descends_both_latch_copies_of_a_tree_that_grows():
    sim = make_sim()
    ks = sim.kernel.bpf.kallsyms
    visit = sim.profile.kernel_costs.rb_node_visit_ns.value

    def held_for_one_add():
        st = ks.lock.stats
        before = st.hold_ns
        run(sim, ks.ksym_add(0))
        return st.hold_ns - before

    small = held_for_one_add()  # one symbol: depth 1
    ks.nr = 1023  # as if a thousand programs were loaded
    large = held_for_one_add()  # 1024 symbols: depth 11
    assert rb_depth(1) == 1 and rb_depth(1024) == 11
    assert large - small == int(2 * (11 - 1) * visit)


def test_trampoline_and_dispatcher_images_have_symbols():
    sim = make_sim()
    bpf = sim.kernel.bpf
    prog = run(sim, bpf.prog_load(0, 500))
    assert run(sim, bpf.trampoline_attach(0, prog))
    assert bpf.kallsyms.nr == 2 and _acquisitions(sim) == 2
    # the dispatcher's image: a symbol when first allocated, none after
    assert run(sim, bpf.dispatcher_update(0, 1))
    assert run(sim, bpf.dispatcher_update(0, 2))
    assert bpf.kallsyms.nr == 3 and _acquisitions(sim) == 3
    # the free detaches the trampoline (its image's symbol goes) and takes
    # the program's out
    run(sim, bpf.prog_free(0, prog))
    assert bpf.kallsyms.nr == 1 and _acquisitions(sim) == 5
