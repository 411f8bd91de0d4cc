"""The module_load generator: boot order, churn, execution."""

from __future__ import annotations

from tests.workloads import DATA, simulation

WL = """\
name: ml
duration: {duration}
machine: {{profile: small-test}}
strategy: {strategy}
workloads:
  - type: module_load
{body}
"""


def _sim(tmp_path, body, duration="40ms", strategy="module_alloc"):
    text = WL.format(body=body, duration=duration, strategy=strategy)
    return simulation(tmp_path, text)


def test_boot_from_lsmod_respects_dependencies(tmp_path):
    sim = _sim(tmp_path, f"    modules: {{from_lsmod: {DATA / 'lsmod-desktop.txt'}}}")
    loader = sim.kernel.modules
    spans: dict[str, tuple[int, int]] = {}
    orig = loader.load

    def load(cpu, spec, **kw):
        t0 = sim.env.now
        mod = yield from orig(cpu, spec, **kw)
        spans[spec.name] = (t0, sim.env.now)
        return mod

    loader.load = load
    m = sim.run().metrics
    assert m["module.loads"] == 88 and "module.load_failures" not in m
    assert 0 < m["module.boot_ns"] <= max(end for _, end in spans.values())
    # every module started loading after what it uses had finished
    for name, mod in loader.modules.items():
        for dep in mod.uses:
            assert spans[dep.name][1] <= spans[name][0], (dep.name, name)
    assert loader.modules["snd"].users >= {"snd_pcm", "snd_timer"}


def test_synthetic_population_churn_and_execution(tmp_path):
    body = """\
    modules: {count: 24, deps: 1.0}
    init_time: 20us
    churn: {rate: 300/s, share: 0.5}
    exec: {rate: 100000/s, hot: 0.5}"""
    m = _sim(tmp_path, body).run().metrics
    assert m["module.loads"] > 24  # boot, then reloads after churn
    assert m["module.unloads"] >= 1
    assert m["workload.module_load.calls"] > 0
    assert m["itlb.misses"] > 0 and m["cpu.instructions"] > 0


def test_module_text_on_2m_pages_misses_less(tmp_path):
    """Same population and calls; execmem_rox maps module text with 2M
    pages where module_alloc uses 4K: the hot text needs fewer iTLB
    entries."""
    body = """\
    modules: {count: 30}
    exec: {rate: 200000/s, hot: 1.0, hot_text: 1.0, pages_per_call: 8}"""
    misses = {}
    for st in ("module_alloc", "execmem_rox"):
        m = _sim(tmp_path, body, duration="30ms", strategy=st).run().metrics
        assert m["module.loads"] == 30
        misses[st] = m["itlb.misses"]
    assert misses["execmem_rox"] < 0.5 * misses["module_alloc"]


def test_one_relocation_per_write_is_slower(tmp_path):
    """One text_poke() per relocation: the boot takes longer by about one
    __text_poke() per extra poke (one worker, so the pokes are serial)."""
    boot, pokes = {}, {}
    for mode in ("batched", "each"):
        body = f"""\
    modules: {{count: 10}}
    boot: {{workers: 1}}
    init_time: 0ns
    reloc_writes: {mode}"""
        sim = _sim(tmp_path, body, strategy="execmem_rox")
        m = sim.run().metrics
        boot[mode] = m["module.boot_ns"]
        pokes[mode] = m.get("text_poke.pokes", 0)  # none batched from v6.17
        one = sim.kernel.text_poke.poke_ns(0, 8)
    assert boot["each"] > 1.5 * boot["batched"]
    per_poke = (boot["each"] - boot["batched"]) / (pokes["each"] - pokes["batched"])
    assert 0.5 * one < per_poke < 2 * one
