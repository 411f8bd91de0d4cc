"""The ground layer: typed knobs, tracepoint hooks, address layouts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simcore.config.schema import KernelConfig
from simcore.hooks import Hooks, tracepoint
from simcore.knobs import KNOBS, KernelKnobs
from simcore.layout import ARM64, X86_64, X86_64_KASLR, randomized
from tests.kernel import make_sim, run


def test_the_workload_schema_offers_exactly_the_typed_knobs():
    assert set(KernelConfig.model_fields) == set(KNOBS) | {"preset"}


def test_a_simulation_reads_typed_knobs():
    sim = make_sim(kernel="{preset: '6.1'}")
    knobs = sim.ctx.knobs
    assert isinstance(knobs, KernelKnobs)
    assert knobs.vmap_locking == "global"
    with pytest.raises(ValidationError):  # frozen: a run cannot change its era
        knobs.vmap_locking = "per_node"


class _Traced:
    def __init__(self, env):
        self.env = env
        self.hooks = Hooks()

    @tracepoint("work")
    def work(self, cpu, n, *, tag="x"):
        yield self.env.timeout(n)
        return n * 2


def test_a_tracepoint_without_listeners_is_the_plain_generator():
    import simpy

    t = _Traced(simpy.Environment())
    gen = t.work(0, 5)
    assert gen.gi_code is _Traced.work.__wrapped__.__code__


def test_a_tracepoint_calls_enter_and_exit_around_the_call():
    import simpy

    env = simpy.Environment()
    t = _Traced(env)
    seen = []
    t.hooks.subscribe(
        "work",
        enter=lambda cpu, a, kw: seen.append(("enter", env.now, cpu, a, kw)),
        exit=lambda cpu, a, kw, r: seen.append(("exit", env.now, cpu, a, kw, r)),
    )
    p = env.process(t.work(3, 7, tag="y"))
    env.run()
    assert p.value == 14
    assert seen == [
        ("enter", 0, 3, (7,), {"tag": "y"}),
        ("exit", 7, 3, (7,), {"tag": "y"}, 14),
    ]


def test_the_recorder_subscribes_and_replaces_no_method(tmp_path):
    from simcore.kernel.vmalloc import Vmalloc
    from simcore.workloads.captures.recorder import Recorder

    sim = make_sim()
    rec = Recorder(sim.env, sim.ctx.hooks, str(tmp_path / "t.csv"), "x", 1)
    vm = sim.vmalloc
    assert "vmalloc" not in vars(vm) and "vfree" not in vars(vm)
    assert type(vm).vmalloc is Vmalloc.vmalloc
    area = run(sim, vm.vmalloc(0, 8192))
    run(sim, vm.vfree(0, area))
    assert [e.op for _, e in rec.events] == ["vmalloc", "vfree"]


def test_layouts_keep_their_regions_apart():
    for lay in (X86_64, X86_64_KASLR, ARM64):
        vm, mod = lay.ranges["vmalloc"], lay.ranges["modules"]
        assert vm[0] < vm[1] and mod[0] < mod[1]
        assert vm[1] <= mod[0] or mod[1] <= vm[0]
    assert X86_64_KASLR.modules_end - X86_64_KASLR.modules_vaddr == 1008 << 20


@pytest.mark.parametrize("seed", range(20))
def test_kaslr_slides_bases_in_whole_puds_without_overlap(seed):
    lay = randomized(X86_64_KASLR, np.random.default_rng(seed), 768 << 30)
    assert lay.page_offset % (1 << 30) == 0 and lay.vmalloc_start % (1 << 30) == 0
    assert lay.page_offset >= X86_64.page_offset
    direct_end = lay.page_offset + (11 << 40)  # 768 GiB -> 1 TiB + 10 TiB padding
    assert direct_end <= lay.vmalloc_start
    assert lay.vmalloc_end < 0xFFFFFE0000000000  # below the CPU entry area
