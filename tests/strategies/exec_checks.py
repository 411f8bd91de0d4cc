"""Checks shared by the tests of single executable-memory strategies: drive
a strategy through alloc / write / finalize / free directly, assert that
live objects never share bytes (nor, for objects owning their pages, page
frames), and that everything freed comes back."""

from __future__ import annotations

from hypothesis import strategies as hs

from simcore.constants import PAGE
from simcore.kernel.module import ModuleSpec
from tests.kernel import make_sim, run

SKYLAKE16 = "{profile: skylake-sp, cpus: 16}"
PMD = 2 << 20

# (op, kind, bytes, pick): a random life of objects for the property tests
OPS = hs.lists(
    hs.tuples(
        hs.sampled_from(["alloc", "alloc", "free"]),
        hs.sampled_from(
            ["bpf_prog", "bpf_prog", "module_text", "module_data", "module_rodata"]
        ),
        hs.integers(1, 9000),
        hs.integers(0, 10_000),
    ),
    min_size=1,
    max_size=30,
)


# a module with every type, as module_memory_alloc() lays one out
MODULE = ModuleSpec(
    "m",
    {
        "module_text": 40_000,
        "module_rodata": 9_000,
        "module_data": 5_000,
        "module_ro_after_init": 300,
        "module_init_text": 2_000,
        "module_init_data": 600,
    },
    nr_relocs=500,
)


def count(sim, *names: str) -> tuple[float, ...]:
    c = sim.metrics.counters
    return tuple(c.get(n, 0) for n in names)


def splits(sim) -> float:
    return sum(count(sim, "directmap.level2_splits", "directmap.level3_splits"))


def exec_mem(sim) -> tuple[float, ...]:
    return count(
        sim, "mem.exec.requested_bytes", "mem.exec.allocated_bytes", "mem.exec.regions"
    )


def load(sim, proglen: int, cpu: int = 0):
    prog = run(sim, sim.bpf.prog_load(cpu, proglen))
    assert prog is not None and not isinstance(prog, int)
    return prog


def unload(sim, prog, cpu: int = 0) -> None:
    run(sim, sim.bpf.prog_free(cpu, prog))


def assert_pages_returned(sim, pages0: int) -> None:
    """Every page came back but the page-table pages that stay (vmalloc
    tables are never freed; split direct-map tables stay split)."""
    b = sim.page_alloc.buddy
    b.check()
    c = sim.metrics.counters
    kept = c.get("mem.pagetable_pages", 0) + c.get("directmap.pagetable_pages", 0)
    assert b.nr_allocated_pages - pages0 <= kept


def alloc_written(sim, kind: str, nbytes: int, cpu: int = 0):
    """An object as its user gets it: allocated, written, finalized."""
    st = sim.exec_strategy
    if kind == "bpf_prog":
        size = st.bpf_image_size(nbytes)
    else:
        size = -(-nbytes // PAGE) * PAGE
    obj = run(sim, st.alloc(cpu, size, kind))
    assert obj is not None
    if kind == "bpf_prog":
        st.shrink_request(obj, nbytes)
    run(sim, st.write(cpu, obj, size))
    run(sim, st.finalize(cpu, obj))
    return obj


def not_bpf(obj) -> bool:
    return obj.kind != "bpf_prog"


def assert_spans_disjoint(spans) -> None:
    """No two ``[start, end)`` spans overlap."""
    spans = sorted(spans)
    for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert e0 <= s1, f"objects overlap at {s1:#x}"


def assert_disjoint(sim, live, owns=not_bpf) -> None:
    """No two live objects share a byte; objects that own their pages
    (``owns``) share no page frame with any other live object."""
    assert_spans_disjoint((o.addr, o.addr + max(1, o.size)) for o in live)
    pt = sim.pagetables
    frames: dict[int, int] = {}
    for i, o in enumerate(live):
        first = o.addr & ~(PAGE - 1)
        for a in range(first, o.addr + max(1, o.size), PAGE):
            pfn = pt.pfn_of(a)
            assert pfn is not None, f"object byte at {a:#x} not mapped"
            owner = frames.setdefault(pfn, i)
            if owner != i and (owns(o) or owns(live[owner])):
                raise AssertionError(f"page frame {pfn:#x} in two objects")


def exercise(strategy: str, ops, *, kinds=None, owns=not_bpf):
    """Run ``ops``, checking disjointness after every allocation, then
    free what is left; returns the Simulation."""
    sim = make_sim(strategy=strategy)
    st = sim.exec_strategy
    live = []
    for op, kind, nbytes, pick in ops:
        if kinds is not None and kind not in kinds:
            continue
        if op == "free" and live:
            obj = live.pop(pick % len(live))
            run(sim, st.free(pick % sim.nr_cpus, obj))
            continue
        live.append(alloc_written(sim, kind, nbytes, pick % sim.nr_cpus))
        assert_disjoint(sim, live, owns)
    for obj in live:
        run(sim, st.free(0, obj))
    assert count(sim, "mem.exec.requested_bytes") == (0,)
    sim.vmalloc.check()
    sim.page_alloc.buddy.check()
    return sim


def shootdowns_per_load(strategy: str, *, kernel: str = "{preset: latest}"):
    """All-CPU shootdowns of one module load and of one BPF program load
    on a 16-CPU machine, each after a first load has set up whatever the
    strategy caches (the init memory is freed later, outside the count)."""
    sim = make_sim(machine=SKYLAKE16, kernel=kernel, strategy=strategy)
    loader = sim.kernel.modules
    run(sim, loader.load(0, ModuleSpec("warm", {"module_text": 100})))
    load(sim, 300)
    (before,) = count(sim, "tlb.shootdowns")
    assert run(sim, loader.load(1, MODULE)) is not None
    (mid,) = count(sim, "tlb.shootdowns")
    load(sim, 300)
    return mid - before, count(sim, "tlb.shootdowns")[0] - mid
