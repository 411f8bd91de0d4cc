"""bpf_check()'s memory (simcore/kernel/bpf/verifier.py): the kvzalloc()ed
struct bpf_verifier_env, an order-3 block from the page allocator freed
before the JIT image is allocated, with its vmalloc() fallback; and the
instruction patches, a vzalloc/copy/vfree per patch before v6.18 and a
vrealloc() from it (kernel.bpf_insn_aux)."""

from __future__ import annotations

import pytest

from simcore.constants import PAGE
from simcore.kernel.bpf.core import BPF_INSN_SIZE, BPF_PROG_HEADER, prog_insns
from simcore.kernel.bpf.verifier import BPF_INSN_AUX_SIZE, BPF_VERIFIER_ENV_SIZE
from simcore.kernel.page_alloc import GFP_NORETRY
from simcore.kernel.util import KMALLOC_MAX_CACHE_SIZE, kvfree, kvmalloc, kvzalloc
from tests.kernel import make_sim, run, spy_vmalloc

ENV_ORDER = 3  # get_order(about 25 KiB)


def _spy_pages(sim, log, fail_order=None):
    """Log the page allocator's alloc_pages()/free_pages() of orders > 0;
    an allocation of ``fail_order`` fails, as a fragmented zone's would."""
    pa = sim.kernel.page_alloc
    alloc, free = pa.alloc_pages, pa.free_pages

    def alloc_pages(cpu, order=0, **kw):
        if order == fail_order:
            log.append(("failed", order, kw))
            yield sim.env.timeout(0)
            return None
        pfn = yield from alloc(cpu, order, **kw)
        if order:
            log.append(("alloc", order, kw, pfn))
        return pfn

    def free_pages(cpu, pfn, order=0):
        if order:
            log.append(("free", order, {}, pfn))
        yield from free(cpu, pfn, order)

    pa.alloc_pages, pa.free_pages = alloc_pages, free_pages


def _spy_image(sim, log):
    st = sim.strategy
    alloc = st.alloc

    def image_alloc(cpu, size, kind):
        log.append(("image", kind))
        return (yield from alloc(cpu, size, kind))

    st.alloc = image_alloc


# -- the env -------------------------------------------------------------------------
def test_the_env_is_tens_of_kib_so_an_order_3_block():
    assert 16 << 10 < BPF_VERIFIER_ENV_SIZE <= 32 << 10
    assert BPF_VERIFIER_ENV_SIZE > KMALLOC_MAX_CACHE_SIZE
    pages = -(-BPF_VERIFIER_ENV_SIZE // PAGE)
    assert (pages - 1).bit_length() == ENV_ORDER


def test_a_load_takes_the_env_from_the_page_allocator_and_frees_it_before_the_jit():
    sim = make_sim()
    log: list = []
    _spy_pages(sim, log)
    _spy_image(sim, log)
    prog = run(sim, sim.kernel.bpf.prog_load(0, 500))
    assert prog is not None
    env = [e for e in log if e[0] != "image" and e[1] == ENV_ORDER]
    assert [e[0] for e in env] == ["alloc", "free"]
    # kvzalloc(): zeroed, tried with __GFP_NORETRY; the same block back
    assert env[0][2]["zero"] is True
    assert env[0][2]["gfp"] == GFP_NORETRY
    assert env[0][3] == env[1][3]
    # freed by bpf_check() before the JIT image was asked for
    assert log.index(env[1]) < log.index(("image", "bpf_prog"))
    assert sim.metrics.counters.get("kvmalloc.vmalloc_fallbacks", 0) == 0


def test_without_an_order_3_block_the_env_falls_back_to_vmalloc():
    sim = make_sim()
    pages: list = []
    _spy_pages(sim, pages, fail_order=ENV_ORDER)
    areas = spy_vmalloc(sim)
    prog = run(sim, sim.kernel.bpf.prog_load(0, 500))
    assert prog is not None
    assert [e[0] for e in pages if e[1] == ENV_ORDER] == ["failed"]
    env = [e for e in areas if e[2] >= BPF_VERIFIER_ENV_SIZE and e[1] == "bpf_check"]
    assert [e[0] for e in env] == ["vmalloc", "vfree"]
    assert env[0][3] is env[1][3]
    assert sim.metrics.counters["kvmalloc.vmalloc_fallbacks"] == 1


def test_kvmalloc_uses_slab_up_to_two_pages_and_charges_zeroing_per_page():
    sim = make_sim()
    k = sim.kernel
    log: list = []
    _spy_pages(sim, log)
    small = run(sim, kvzalloc(k, 0, KMALLOC_MAX_CACHE_SIZE))
    assert small.kind == "slab" and not log
    run(sim, kvfree(k, 0, small))
    # warm this CPU's order-3 list, so that both timed calls pop from it
    run(sim, kvfree(k, 0, run(sim, kvmalloc(k, 0, BPF_VERIFIER_ENV_SIZE))))
    t0 = sim.env.now
    plain = run(sim, kvmalloc(k, 0, BPF_VERIFIER_ENV_SIZE))
    t1 = sim.env.now
    run(sim, kvfree(k, 0, plain))
    t2 = sim.env.now
    zeroed = run(sim, kvzalloc(k, 0, BPF_VERIFIER_ENV_SIZE))
    t3 = sim.env.now
    run(sim, kvfree(k, 0, zeroed))
    assert plain.kind == zeroed.kind == "pages"
    assert plain.order == zeroed.order == ENV_ORDER
    zero_ns = sim.profile.kernel_costs.page_zero_ns.value
    assert (t3 - t2) - (t1 - t0) == pytest.approx(8 * zero_ns, abs=2)
    assert [e[0] for e in log] == ["alloc", "free"] * 3


# -- instruction patches -------------------------------------------------------------
def _patched_load(preset: str, proglen: int, patches: int, cnt: int):
    sim = make_sim(kernel=f'{{preset: "{preset}"}}')
    log = spy_vmalloc(sim)
    prog = run(sim, sim.kernel.bpf.prog_load(0, proglen, True, patches, cnt))
    assert prog is not None
    return sim, prog, log


def _aux_calls(log):
    """vmalloc()/vfree() of insn_aux_data arrays, in order."""
    return [
        (op, caller)
        for op, caller, _size, _area in log
        if caller in ("bpf_check", "bpf_patch_insn_data")
    ]


def test_before_6_18_every_patch_is_a_vzalloc_copy_and_vfree_of_the_aux_array():
    sim, prog, log = _patched_load("6.13", 500, 10, 2)
    calls = _aux_calls(log)
    assert calls.count(("vmalloc", "bpf_patch_insn_data")) == 10
    # each patch frees the array before it (the first one bpf_check()'s),
    # and bpf_check() frees the last on its way out
    assert sum(op == "vfree" for op, _ in calls) == 11
    assert sim.metrics.counters["bpf.insn_patches"] == 10
    # the patched program is the one the JIT image size says
    assert prog.insn_cnt == prog_insns(500)


def test_from_6_18_the_aux_array_grows_in_place_while_its_pages_have_room():
    sim, prog, log = _patched_load("latest", 500, 10, 2)
    calls = _aux_calls(log)
    # 90 -> 100 entries of 80 B: 7200 -> 8000 bytes, both in two pages
    assert calls == [("vmalloc", "bpf_check"), ("vfree", "bpf_check")]
    assert sim.metrics.counters["bpf.insn_patches"] == 10
    assert sim.metrics.counters.get("vrealloc.moves", 0) == 0
    assert prog.insn_cnt == prog_insns(500)


def test_from_6_18_a_growth_past_the_pages_moves_the_array_once_per_overflow():
    # 20 patches of 11 from 300 instructions to 500: 24000 -> 40000 bytes
    # of aux in steps of 800, from 6 pages to 10: one move per page crossed
    old = _aux_calls(_patched_load("6.13", 2500, 20, 11)[2])
    sim, _, log = _patched_load("latest", 2500, 20, 11)
    new = _aux_calls(log)
    assert sim.metrics.counters["vrealloc.moves"] == 4
    assert new.count(("vmalloc", "bpf_patch_insn_data")) == 4
    # the first move frees bpf_check()'s array, bpf_check() the last one
    assert new.count(("vfree", "bpf_check")) == 1
    assert new.count(("vfree", "bpf_patch_insn_data")) == 4
    assert old.count(("vmalloc", "bpf_patch_insn_data")) == 20
    assert len(old) == 1 + 2 * 20 + 1 and len(new) == 1 + 2 * 4 + 1


def test_a_patch_reallocates_the_program_only_when_its_pages_grow():
    # bpf_prog_size(): 80 + 8 B per instruction. 100 of them fit one page;
    # 2100 need five pages, and 100 fewer fit four
    for preset in ("6.13", "latest"):
        _, prog, log = _patched_load(preset, 10500, 50, 3)
        reallocs = [e for e in log if e[1] == "bpf_prog_realloc"]
        first = prog_insns(10500) - 100
        assert -(-(BPF_PROG_HEADER + first * BPF_INSN_SIZE) // PAGE) == 4
        assert [e[0] for e in reallocs] == ["vmalloc"]
        assert reallocs[0][2] == 5 * PAGE
        # the struct freed is the original, the program keeps the new one
        frees = [e for e in log if e[0] == "vfree" and e[1] == "bpf_prog_alloc"]
        assert len(frees) == 1 and prog.struct is reallocs[0][3]
        assert prog.struct.nr_pages == 5
        _, prog1, log1 = _patched_load(preset, 500, 50, 2)
        assert not [e for e in log1 if e[1] == "bpf_prog_realloc"]
        assert prog1.struct.nr_pages == 1


def test_aux_entries_are_sized_per_instruction():
    _, prog, log = _patched_load("6.13", 500, 3, 4)
    sizes = [s for op, c, s, _ in log if op == "vmalloc" and c == "bpf_patch_insn_data"]
    start = prog_insns(500) - 9
    assert sizes == [(start + 3 * i) * BPF_INSN_AUX_SIZE for i in (1, 2, 3)]


def test_the_bpf_jit_workload_passes_its_patch_settings(tmp_path):
    from tests.workloads import simulation

    text = """\
name: patches
seed: 1
duration: 2ms
machine: {profile: small-test}
kernel: {preset: "6.13"}
strategy: module_alloc
workloads:
  - type: bpf_jit
    programs: 5
    insn_patches: 4
    patch_insns: 3
"""
    m = simulation(tmp_path, text).run().metrics
    assert m["bpf.progs_loaded"] == 5
    assert m["bpf.insn_patches"] == 20
    quiet = simulation(tmp_path, text.replace("    insn_patches: 4\n", "")).run()
    assert "bpf.insn_patches" not in quiet.metrics
