"""Long runs of the chunk allocators of executable memory: bpf_prog_pack's
64-byte chunks of shared packs and execmem_rox's page slices of 2 MiB ROX
areas, loads and frees on four CPUs at once, in batches."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.constants import PAGE
from simcore.strategies.bpf_prog_pack import (
    BPF_PROG_CHUNK_SIZE,
    PACK_KINDS,
    PackImage,
)
from simcore.strategies.execmem_rox import RoxSlice
from tests.kernel import make_sim, run
from tests.long.harness import (
    NOTES,
    area_pages,
    assert_kva,
    assert_pages,
    assert_ptes,
    checked,
    long_settings,
    page_state,
    settle,
    vmalloc_ptes,
    vmap_ptes,
)
from tests.strategies.exec_checks import OPS, PMD, assert_disjoint, count, exec_mem

pytestmark = pytest.mark.long

CPUS = 4  # tests.kernel.make_sim's machine

# a CPU's program: one of exec_checks' random lives of objects (allocations
# of BPF programs and module sections, frees), with a few larger images,
# other text kinds and trampoline attachments shuffled in
extra = st.one_of(
    st.tuples(
        st.just("alloc"),
        st.sampled_from(["bpf_prog", "kprobe", "module_init_text", "module_text"]),
        st.integers(1, 3 * PMD),
        st.integers(0, 10_000),
    ),
    st.tuples(
        st.just("tramp"), st.just("bpf_trampoline"), st.just(0), st.integers(0, 10_000)
    ),
)
program = st.builds(operator.add, OPS, st.lists(extra, max_size=4)).flatmap(
    st.permutations
)
plans = st.lists(
    st.lists(program, min_size=CPUS, max_size=CPUS), min_size=1, max_size=3
)


class Live:
    """The objects the CPUs hold: loaded BPF programs (with their
    trampolines) and other allocations, each allocated, written and
    finalized as its user does it."""

    def __init__(self, sim, may_fail: str | None) -> None:
        self.sim = sim
        self.st = sim.exec_strategy
        self.progs: list = []
        self.objs: list = []
        self.may_fail = may_fail  # why an allocation may fail, if it may

    def failed(self, kind: str, frees0: tuple[float]) -> None:
        """An allocation failed, with gigabytes free: only allowed where
        ``may_fail`` says, and only if an area was freed meanwhile."""
        raced = self.may_fail and count(self.sim, "mem.exec.region_frees") > frees0
        assert raced, f"{kind} allocation failed with memory to spare"
        NOTES[f"{kind} allocations failed: {self.may_fail}"] += 1

    def all(self) -> list:
        out = list(self.objs)
        for p in self.progs:
            out.append(p.image)
            if p.trampoline is not None:
                out.append(p.trampoline)
        return out

    def alloc(self, cpu: int, kind: str, nbytes: int):
        sim, st = self.sim, self.st
        frees0 = count(sim, "mem.exec.region_frees")
        if kind == "bpf_prog":
            prog = yield from sim.bpf.prog_load(cpu, nbytes)
            assert not isinstance(prog, int)  # -EPERM: privileged loads only
            if prog is None:
                self.failed(kind, frees0)
            else:
                self.progs.append(prog)
            return
        # tests.strategies.exec_checks.alloc_written, as a generator
        size = -(-nbytes // PAGE) * PAGE
        obj = yield from st.alloc(cpu, size, kind)
        if obj is None:
            self.failed(kind, frees0)
            return
        yield from st.write(cpu, obj, size)
        yield from st.finalize(cpu, obj)
        self.objs.append(obj)

    def free(self, cpu: int, pick: int):
        n = len(self.progs) + len(self.objs)
        i = pick % n
        if i < len(self.progs):
            yield from self.sim.bpf.prog_free(cpu, self.progs.pop(i))
        else:
            yield from self.st.free(cpu, self.objs.pop(i - len(self.progs)))

    def attach(self, cpu: int, pick: int):
        bare = [p for p in self.progs if p.trampoline is None]
        if not bare:
            return
        prog = bare[pick % len(bare)]
        self.progs.remove(prog)  # in use: no other CPU frees it meanwhile
        frees0 = count(self.sim, "mem.exec.region_frees")
        if not (yield from self.sim.bpf.trampoline_attach(cpu, prog)):
            self.failed("bpf_trampoline", frees0)
        self.progs.append(prog)

    def worker(self, cpu: int, program):
        for op, kind, nbytes, pick in program:
            if op == "tramp":
                yield from self.attach(cpu, pick)
            elif op == "free" and (self.progs or self.objs):
                yield from self.free(cpu, pick)
            else:
                yield from self.alloc(cpu, kind, nbytes)


def run_plan(strategy: str, plan, owns, check_chunks, may_fail=None) -> None:
    """Run ``plan`` batch by batch, checking everything after each and
    after freeing what is left."""
    sim = make_sim(strategy=strategy)
    vm = sim.vmalloc
    settle(sim)
    start = page_state(sim)
    base = vmap_ptes(sim.pagetables)
    live = Live(sim, may_fail)

    def check():
        settle(sim)  # pack_mutex / execmem_cache mutex, text_mutex, ...
        objs = live.all()
        assert_disjoint(sim, objs, owns)
        check_chunks(sim, objs)
        assert count(sim, "mem.exec.requested_bytes") == (sum(o.size for o in objs),)
        assert sim.bpf.charged == sum(p.charged for p in live.progs)
        assert_kva(vm)
        assert_ptes(sim, {**base, **vmalloc_ptes(vm)})
        assert_pages(sim, start, area_pages(vm))

    for batch in plan:
        procs = [sim.env.process(live.worker(c, p)) for c, p in enumerate(batch)]
        sim.env.run(until=sim.env.all_of(procs))
        check()

    def teardown():
        while live.progs or live.objs:
            yield from live.free(len(live.progs) % CPUS, 0)

    run(sim, teardown())
    check()
    assert exec_mem(sim) == (0, 0, 0)
    checked(sum(len(p) for batch in plan for p in batch))


# -- bpf_prog_pack -----------------------------------------------------------------
def pack_chunks(sim, objs) -> None:
    """Each pack's chunks are exactly its free runs and its live images,
    no pack is empty, an image larger than a pack has its own area."""
    st = sim.exec_strategy
    images = [o.handle for o in objs if isinstance(o.handle, PackImage)]
    for img in images:
        assert (img.pack is None) == (img.area is not None)
        if img.pack is not None:
            assert img.pack in st.packs, "an image in a freed pack"
    for pack in st.packs:
        assert not pack.empty(), "an empty pack was kept"
        spans = sorted(
            [(s, e) for s, e in pack.free.runs()]
            + [
                (
                    (img.ptr - pack.ptr) // BPF_PROG_CHUNK_SIZE,
                    (img.ptr - pack.ptr) // BPF_PROG_CHUNK_SIZE
                    + -(-img.size // BPF_PROG_CHUNK_SIZE),
                )
                for img in images
                if img.pack is pack
            ]
        )
        at = 0
        for s, e in spans:
            assert s == at, f"pack {pack.ptr:#x}: chunks {at}-{s} lost or doubled"
            at = e
        assert at == pack.chunks, f"pack {pack.ptr:#x}: chunks {at}- lost"


@pytest.mark.parametrize("strategy", ["bpf_prog_pack", "bpf_prog_pack_2m"])
@long_settings(0.08)
@given(plan=plans)
def test_prog_pack_chunks_are_live_images_or_free(strategy, plan):
    run_plan(strategy, plan, lambda o: o.kind not in PACK_KINDS, pack_chunks)


# -- execmem_rox -----------------------------------------------------------------------
def rox_slices(sim, objs) -> None:
    """The populated areas are exactly the free runs and the live slices;
    busy_areas is exactly the live slices."""
    st = sim.exec_strategy
    slices = {
        o.handle.addr: o.footprint for o in objs if isinstance(o.handle, RoxSlice)
    }
    assert st.busy == slices, "busy_areas is not the live slices"
    spans = sorted([*st.free_areas.runs(), *((a, a + n) for a, n in slices.items())])
    areas = sorted((a.addr, a.addr + a.nr_pages * PAGE) for a in st.areas.values())
    merged: list[list[int]] = []
    for s, e in spans:
        assert not merged or s >= merged[-1][1], f"slices overlap at {s:#x}"
        if merged and s == merged[-1][1]:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    covered: list[list[int]] = []
    for s, e in areas:
        if covered and s == covered[-1][1]:
            covered[-1][1] = e
        else:
            covered.append([s, e])
    assert merged == covered, "ROX areas are not exactly free runs and live slices"


# A text allocation that misses the cache populates a new area, then takes
# its slice from the cache again (execmem_cache_alloc(), v6.13). A free on
# another CPU meanwhile schedules the cleaner, which hands the new area
# back while it is still wholly free: the retry misses and the allocation
# fails with memory to spare. The kernel has the same window; the model
# keeps it, so such failures are counted, not failed.
RACE = "a concurrent cleaner freed the area populated for it"


@long_settings(0.12)
@given(plan=plans)
def test_rox_cache_slices_are_live_text_or_free(plan):
    run_plan("execmem_rox", plan, lambda o: True, rox_slices, may_fail=RACE)
