"""pressure: the zone watermarks, kswapd and direct reclaim, and every
executable-memory strategy under memory pressure without a lost page.

The leak check waits for an instant when no page is between owners (no
page-allocator call, vfree() or BPF load under way, the generator idle,
kswapd asleep, the zone locks free) and then accounts for every page
handed out since the start: held by the generator, backing a live vmalloc
area, cached by the strategy, or a page-table page. Module loads may be
under way (they spend their time in init functions and waits, their pages
in vmalloc areas); a page a strategy moves between its cache and an area
can be caught in flight, so one quiet instant may not balance, but a
leaked page never comes back: the books must balance at some quiet instant
shortly after the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.config.load import load_workload
from simcore.engine import Simulation
from simcore.kernel.set_memory import ENOMEM
from simcore.kernel.vmscan import RECLAIM_COUNTERS, Reclaim
from simcore.kernel.watermarks import min_free_kbytes, zone_wmarks
from simcore.registry import STRATEGIES
from simcore.strategies import strategy_names
from tests.kernel import make_sim, run
from tests.long.harness import allocated, busy_areas, table_pages
from tests.workloads import simulation

SHIPPED = Path(__file__).resolve().parents[2] / "workloads" / "pressure.yaml"
# the shipped strategies only: test modules register toys of their own
EXEC = [
    s
    for s in strategy_names()
    if not s.startswith("arena")
    and STRATEGIES.target(s).startswith("simcore.strategies.")
]
# the tracepoints of operations that hold pages no owner lists: vfree()
# between unlinking an area and freeing its pages, a BPF load's kvmalloc()ed
# image
TRACED = ("vfree", "bpf_prog_load", "bpf_prog_free")
PAGE_ALLOC_CALLS = (
    "alloc_pages",
    "alloc_pages_bulk_ns",
    "free_pages",
    "free_pages_batch_ns",
    "split_page",
)


# -- the watermarks ----------------------------------------------------------------
def test_watermarks_follow_the_kernel_formula():
    # 8 GiB, one node: lowmem_kbytes = 8388608, int_sqrt(8388608 * 16) =
    # 11585 KiB -> 2896 pages min; the distance is max(2896 / 4, 2097152 *
    # 10 / 10000) = max(724, 2097) -> low 4993, high 7090
    assert min_free_kbytes(2097152) == 11585
    assert zone_wmarks(2097152, 2097152, 11585, 10) == (2896, 4993, 7090)
    # small-test: 8 GiB, one node; THP off, so khugepaged raises nothing
    sim = make_sim(kernel="{preset: latest, thp: never}")
    (zone,) = sim.page_alloc.buddy.zones
    assert (zone.wmark_min, zone.wmark_low, zone.wmark_high) == (2896, 4993, 7090)
    assert sim.page_alloc.min_free_kbytes == 11585
    # two 8 GiB nodes: int_sqrt(16777216 * 16) = 16384 KiB, 4096 pages split
    # by size: 2048 each, distance max(512, 2097)
    assert min_free_kbytes(2 * 2097152) == 16384
    assert zone_wmarks(2097152, 2 * 2097152, 16384, 10) == (2048, 4145, 6242)
    # a small zone: the min / 4 term wins (64 MiB: int_sqrt(65536 * 16) =
    # 1024 KiB, 256 pages, distance max(64, 16))
    assert zone_wmarks(16384, 16384, min_free_kbytes(16384), 10) == (256, 320, 384)
    # the clamp to [128, 262144] KiB
    assert min_free_kbytes(64) == 128
    assert min_free_kbytes(1 << 31) == 262144


def test_before_v5_7_min_free_kbytes_stops_at_64_mib():
    # ee8eb9a5fe86 (v5.7) raised the ceiling from 65536 to 262144 KiB: a
    # 384 GiB skylake-sp (int_sqrt(402653184 * 16) = 80264 KiB) is clamped
    # on 5.4 and not on 5.10
    got = {}
    for preset in ("5.4", "5.10"):
        sim = make_sim(
            machine="{profile: skylake-sp, sockets: 1}",
            kernel=f'{{preset: "{preset}", thp: never}}',
        )
        got[preset] = sim.page_alloc.min_free_kbytes
    assert got == {"5.4": 65536, "5.10": 80264}


def test_khugepaged_raises_min_free_kbytes_where_thp_is_on():
    """set_recommended_min_free_kbytes(): 11 pageblocks per zone up to
    ZONE_NORMAL, the boot log's 'raising min_free_kbytes from 11585 to
    67584' on one 8 GiB node (DMA, DMA32, Normal); it raises and never
    lowers (a 384 GiB node keeps its 80264 KiB on 5.10, and gets 67584
    instead of the 65536 ceiling on 5.4); THP never keeps the formula's."""
    got = {}
    for machine, preset, thp in (
        ("{profile: small-test}", "latest", "always"),
        ("{profile: small-test}", "latest", "madvise"),
        ("{profile: small-test}", "latest", "never"),
        ("{profile: skylake-sp, sockets: 1}", "5.4", "always"),
        ("{profile: skylake-sp, sockets: 1}", "5.10", "always"),
        ("{profile: skylake-sp, sockets: 2}", "5.4", "always"),
    ):
        sim = make_sim(machine=machine, kernel=f'{{preset: "{preset}", thp: {thp}}}')
        got[machine, preset, thp] = sim.page_alloc.min_free_kbytes
    assert list(got.values()) == [67584, 67584, 11585, 67584, 80264, 90112]


def test_no_pressure_no_reclaim():
    """Plentiful memory: no reclaim set up, no reclaim counter reported."""
    sim = make_sim()
    assert sim.page_alloc._reclaim is None
    assert not any(k.startswith("vmscan.") for k in sim.metrics.counters)


def test_a_split_without_a_page_is_enomem_not_a_crash():
    """set_memory_ro() whose direct-map split finds no table page returns
    -ENOMEM, counted; the alias keeps its large page and permissions."""
    sim = make_sim()
    pt, cpa = sim.pagetables, sim.cpa

    def no_page(cpu, *, zero=True):
        yield sim.env.timeout(1)
        return False

    pt.alloc_table_page = no_page
    pfn = run(sim, sim.page_alloc.alloc_pages(0, 0))
    addr = pt.page_address(pfn)
    before = pt.lookup(addr)
    assert before.shift > 12
    assert run(sim, cpa.set_memory_ro(0, addr, 1)) == -ENOMEM
    assert sim.metrics.counters["pageattr.enomem"] == 1
    assert pt.lookup(addr) == before


# -- every strategy under the shipped pressure ------------------------------------
class Quiet:
    """Counts what is under way: traced operations, page-allocator calls."""

    def __init__(self, sim) -> None:
        self.ops = 0
        for name in TRACED:
            sim.ctx.hooks.subscribe(name, enter=self._enter, exit=self._exit)
        pa = sim.page_alloc
        for name in PAGE_ALLOC_CALLS:
            setattr(pa, name, self._counted(getattr(pa, name)))

    def _enter(self, *args) -> None:
        self.ops += 1

    def _exit(self, *args) -> None:
        self.ops -= 1

    def _counted(self, fn):
        def call(*args, **kwargs):
            self.ops += 1
            try:
                return (yield from fn(*args, **kwargs))
            finally:
                self.ops -= 1

        return call


def generator(sim):
    (gen,) = sim.page_alloc.reclaim.lrus
    return gen


def is_quiet(sim, quiet: Quiet) -> bool:
    pa = sim.page_alloc
    rec = pa.reclaim
    return (
        quiet.ops == 0
        and generator(sim).busy == 0
        and rec.nr_isolated == 0
        and all(k.wait is not None for k in rec.kswapds.values())
        and all(lk.owner is None and not lk.waiters for lk in pa.zone_locks)
    )


def cached_pages(strategy) -> list[int]:
    """Pages a strategy keeps for itself outside any vmalloc area."""
    pages = list(getattr(strategy, "pages", ()))  # perm_alloc's list
    for order, blocks in enumerate(getattr(strategy, "free_area", ())):
        for pfn in blocks:  # unmapped_cache's free lists
            pages += range(pfn, pfn + (1 << order))
    return pages


def unaccounted(sim, start: tuple[int, int]) -> int:
    """Pages handed out since ``start`` that no owner holds (negative:
    owners holding more than was handed out), counted."""
    gen = generator(sim)
    owned = gen.anon_pages + sum(gen.lru_nr)
    owned += sum(len(a.pages) for a in busy_areas(sim.vmalloc))
    owned += len(cached_pages(sim.exec_strategy))
    pages0, tables0 = start
    grown = sim.page_alloc.buddy.nr_allocated_pages - pages0
    return grown - owned - (table_pages(sim) - tables0)


def assert_owners_sound(sim) -> None:
    """No page has two owners, and every owned page is allocated."""
    held = generator(sim).held_pages()
    areas = [p for a in busy_areas(sim.vmalloc) for p in a.pages]
    cache = cached_pages(sim.exec_strategy)
    owned = set(held) | set(areas) | set(cache)
    assert len(owned) == len(held) + len(areas) + len(cache), "a page owned twice"
    assert owned <= allocated(sim.page_alloc.buddy), "an owner holds a free page"


def run_to_balance(sim, *, limit_ns: int = 20_000_000) -> int:
    """Run the simulation, then step on to quiet instants until the books
    balance (then check the owners and the buddy allocator there); returns
    the last imbalance, 0 when balanced."""
    quiet = Quiet(sim)
    start = (sim.page_alloc.buddy.nr_allocated_pages, table_pages(sim))
    sim.run()
    env = sim.env
    end = env.now + limit_ns
    off = None
    while env.now < end:
        if is_quiet(sim, quiet):
            off = unaccounted(sim, start)
            if off == 0:
                assert_owners_sound(sim)
                sim.page_alloc.buddy.check(full=True)
                return 0
        env.step()
    assert off is not None, "no quiet instant after the run"
    return off


@pytest.mark.parametrize("strategy", EXEC)
def test_shipped_pressure_every_strategy_no_leak(strategy):
    resolved = load_workload(SHIPPED, sets=["duration=10ms"])
    assert strategy in resolved.cfg.strategy_labels
    sim = Simulation(resolved, strategy)
    assert run_to_balance(sim) == 0, "pages lost"
    b = sim.page_alloc.buddy
    c = sim.metrics.counters
    for name in RECLAIM_COUNTERS:
        assert name in c
    assert c["vmscan.pageoutrun"] > 0 and c["vmscan.kswapd_wakeups"] > 0
    assert c["vmscan.pgsteal_kswapd"] > 0
    assert c["vmscan.shrink_slab_calls"] > 0
    # free memory ends near the watermarks, the page cache reclaimed to fit
    (zone,) = b.zones
    assert zone.nr_free_pages < 4 * zone.wmark_high
    assert c["workload.pressure.file_pages"] > 0


def test_the_books_catch_a_lost_folio(monkeypatch):
    """The check above is not vacuous: reclaim that drops one folio on the
    floor leaves the books short by its pages at every quiet instant."""
    shrink = Reclaim._shrink_folio_list
    lost: list[tuple[int, int]] = []

    def lossy(self, cpu, folios):
        if not lost and len(folios) > 1:
            lost.append(folios.pop())
            self.nr_isolated -= 1 << lost[0][1]
        return (yield from shrink(self, cpu, folios))

    monkeypatch.setattr(Reclaim, "_shrink_folio_list", lossy)
    sim = Simulation(load_workload(SHIPPED, sets=["duration=10ms"]), "module_alloc")
    assert run_to_balance(sim, limit_ns=2_000_000) == 1 << lost[0][1]


# -- shrinkers, retries and failures ------------------------------------------------
HEAVY = """\
name: heavy
seed: 3
duration: 10ms
machine: {{profile: small-test, memory: {{dram_bytes: 2GiB}}}}
kernel: {{preset: latest}}
host: {{enabled: false}}
strategy: [{strategy}]
workloads:
  - type: pressure
    page_cache: {page_cache}
    cpus: 2
    churn: {{reads: 2000/s, respawns: 1000/s}}
  - type: bpf_jit
    programs: 100
    churn: {{load_rate: 3000/s, lifetime: 2ms}}
  - type: module_load
    modules: {{count: 10}}
    churn: {{rate: 1000/s}}
"""


@pytest.mark.parametrize(
    ("strategy", "shrinker"),
    [("perm_alloc", "perm_alloc"), ("unmapped_cache", "unmapped_alloc")],
)
def test_strategy_caches_shrink_when_the_page_cache_runs_low(
    tmp_path, strategy, shrinker
):
    sim = simulation(tmp_path, HEAVY.format(strategy=strategy, page_cache=0.01))
    assert run_to_balance(sim) == 0
    c = sim.metrics.counters
    assert c.get(f"vmscan.shrinker.{shrinker}.freed", 0) > 0
    assert c["vmscan.slabs_scanned"] > 0


@pytest.mark.parametrize("strategy", ["module_alloc", "perm_alloc", "execmem_rox"])
def test_nothing_reclaimable_fails_counted_without_crash_or_leak(tmp_path, strategy):
    """Anonymous memory only, no swap, no OOM killer: direct reclaim finds
    nothing, allocations give up after should_reclaim_retry() and are
    counted; loads fail cleanly and no page is lost."""
    sim = simulation(tmp_path, HEAVY.format(strategy=strategy, page_cache=0.0))
    assert run_to_balance(sim) == 0
    c = sim.metrics.counters
    assert c["buddy.reclaim_failures"] > 0
    assert c["vmscan.allocstall"] > 0
    assert c["vmscan.kswapd_failures"] > 0
    assert c["workload.pressure.alloc_failures"] > 0
    failed = c.get("bpf.load_failures", 0) + c.get("module.load_failures", 0)
    assert failed > 0
    # kswapd gives a node up after MAX_RECLAIM_RETRIES fruitless runs until
    # a reclaim makes progress again: never more failures than runs
    assert c["vmscan.kswapd_failures"] <= c["vmscan.pageoutrun"]
