"""kernel/module/main.c as modelled: locks, overlap, init memory, metrics."""

from __future__ import annotations

from simcore.kernel.module import (
    INIT_TYPES,
    RCU_GP_NS,
    ModuleSpec,
)
from simcore.workloads.captures.module_split import spec_from_size
from tests.kernel import make_sim, run

SPEC = spec_from_size("m0", 160 << 10, init_ns=50_000)


def _spy(sim, method, calls):
    """Wrap a method of the exec strategy to log (method, cpu, mutex owner)."""
    st = sim.exec_strategy
    orig = getattr(st, method)
    mutex = sim.kernel.modules.module_mutex

    def wrapper(cpu, *args, **kwargs):
        calls.append((method, cpu, mutex.owner, args))
        return (yield from orig(cpu, *args, **kwargs))

    setattr(st, method, wrapper)


def _load(sim, cpu, spec, out, **kw):
    loader = sim.kernel.modules
    t0 = sim.env.now
    mod = yield from loader.load(cpu, spec, **kw)
    out.append((spec.name, t0, sim.env.now, mod))


def test_module_mutex_where_the_kernel_takes_it():
    sim = make_sim()
    calls: list = []
    for m in ("alloc", "write", "finalize", "free"):
        _spy(sim, m, calls)
    mod = run(sim, sim.kernel.modules.load(0, SPEC))
    assert mod is not None and mod.state == "live"
    # move_module() allocates without module_mutex; complete_formation()
    # and do_init_module() change permissions holding it
    allocs = [c for c in calls if c[0] == "alloc"]
    finals = [c for c in calls if c[0] == "finalize"]
    assert len(allocs) == len([k for k in SPEC.sizes if SPEC.sizes[k]])
    assert all(owner is None for _, _, owner, _ in allocs)
    assert finals and all(owner == 0 for _, _, owner, _ in finals)
    kinds = [args[0].kind for _, _, _, args in finals]
    assert kinds[-1] == "module_ro_after_init"  # after init, not before
    assert kinds.index("module_text") > kinds.index("module_rodata")


def test_parallel_loads_overlap():
    specs = [spec_from_size(f"m{i}", 160 << 10, init_ns=50_000) for i in range(4)]
    seq = make_sim()
    done: list = []
    for s in specs:
        run(seq, _load(seq, 0, s, done))
    sequential = seq.env.now - done[0][1]

    par = make_sim()
    done = []
    procs = [par.env.process(_load(par, cpu, s, done)) for cpu, s in enumerate(specs)]
    t0 = par.env.now
    par.env.run(until=par.env.all_of(procs))
    assert all(mod is not None for *_, mod in done)
    # every load started before any finished: layout, copy and relocation
    # ran side by side, not one module after the other
    assert max(t for _, t, _, _ in done) < min(e for _, _, e, _ in done)
    assert par.env.now - t0 < 0.6 * sequential


def test_init_memory_freed_after_a_grace_period():
    sim = make_sim()
    loader = sim.kernel.modules
    c = sim.metrics.counters
    before = c["mem.exec.allocated_bytes"]
    mod = run(sim, loader.load(1, SPEC))
    assert not set(INIT_TYPES) & set(mod.mem)
    init_bytes = sum(SPEC.size_of(k) for k in INIT_TYPES)
    core_bytes = SPEC.core_bytes
    assert c["mem.exec.allocated_bytes"] - before == core_bytes + init_bytes
    sim.env.run(until=sim.env.now + RCU_GP_NS + 1_000_000)
    assert c["module.init_frees"] == sum(1 for k in INIT_TYPES if SPEC.size_of(k))
    assert c["mem.exec.allocated_bytes"] - before == core_bytes


def test_metrics_and_unload_give_everything_back():
    sim = make_sim()
    loader = sim.kernel.modules
    c = sim.metrics.counters
    before = c["mem.exec.allocated_bytes"]
    mods = [
        run(sim, loader.load(0, spec_from_size(f"x{i}", 64 << 10))) for i in range(3)
    ]
    for mod in mods:
        assert run(sim, loader.unload(2, mod)) is True
    sim.env.run(until=sim.env.now + 2 * RCU_GP_NS)
    assert c["module.loads"] == 3 and c["module.unloads"] == 3
    assert c["mem.exec.allocated_bytes"] == before
    assert sim.metrics.hists["module_load"].n == 3
    assert not loader.modules


def test_dependencies():
    sim = make_sim()
    loader = sim.kernel.modules
    base = spec_from_size("base", 64 << 10, init_ns=200_000)
    user = spec_from_size("user", 64 << 10, ("base",))
    # a module whose dependency is absent fails (Unknown symbol)
    assert run(sim, loader.load(0, user)) is None
    assert sim.metrics.counters["module.load_failures"] == 1
    # one loading while its dependency is still in its init waits for it
    done: list = []
    pa = sim.env.process(_load(sim, 0, base, done))
    sim.env.run(until=sim.env.now + 100_000)
    pb = sim.env.process(_load(sim, 1, user, done))
    sim.env.run(until=sim.env.all_of([pa, pb]))
    (_, _, end_base, b), (_, _, end_user, u) = sorted(done, key=lambda d: d[2])
    assert b.name == "base" and u.name == "user" and end_base <= end_user
    # a used module cannot be unloaded until its user is gone
    assert run(sim, loader.unload(0, b)) is False
    assert run(sim, loader.unload(0, u)) is True
    assert run(sim, loader.unload(0, b)) is True


def test_duplicate_loads_wait_then_fail():
    sim = make_sim()
    done: list = []
    procs = [sim.env.process(_load(sim, cpu, SPEC, done)) for cpu in (0, 1)]
    sim.env.run(until=sim.env.all_of(procs))
    assert sorted(mod is None for *_, mod in done) == [False, True]
    assert sim.metrics.counters["module.dup_loads"] == 1


def test_relocations_one_write_each_or_one_copy():
    for mode, extra in (("batched", 0), ("each", 1)):
        sim = make_sim()
        calls: list = []
        _spy(sim, "write", calls)
        spec = ModuleSpec("r", {"module_text": 8192}, nr_relocs=500)
        run(sim, sim.kernel.modules.load(0, spec, reloc_writes=mode))
        ((_, _, _, (obj, nbytes, writes)),) = calls
        assert (obj.kind, nbytes) == ("module_text", 8192)
        assert writes == 1 + extra * 500
