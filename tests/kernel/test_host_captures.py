"""A captured host as the starting state: where /proc/vmallocinfo areas land
(x86-64 with and without KASLR, arm64), what they hold (pages, page
tables), the direct-map split of /proc/meminfo and the free memory of
/proc/vmstat and /proc/buddyinfo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simcore.constants import PAGE, PMD_SIZE, PUD_SIZE
from simcore.errors import CaptureError
from simcore.kernel.directmap import DirectMap
from simcore.kernel.meminfo import parse_meminfo
from simcore.kernel.vmallocinfo import load_vmallocinfo, parse_vmallocinfo, vm_line
from simcore.kernel.vmallocinfo_layout import detect_layout, place
from simcore.kernel.vmstat import parse_vmstat
from simcore.layout import ARM64, X86_64
from tests.kernel import sim_from_text
from tests.kernel.test_vmalloc import make_sim
from tests.kernel.test_vmallocinfo import SAMPLE

DATA = Path(__file__).resolve().parents[2] / "workloads" / "data"
KASLR = DATA / "vmallocinfo-kaslr.txt"
KASLR_BASE = 0xFFFFA4C4C0000000

# arm64, 48-bit VA (v6.5+ layout): a module, then vmalloc from its start
ARM64_SAMPLE = """\
0xffff800000010000-0xffff800000019000   36864 load_module+0x8bc/0x2530 pages=8 vmalloc N0=8
0xffff800080000000-0xffff800082c30000 46333952 paging_init+0x178/0x6c0 phys=0x0000000040200000 vmap
0xffff800082c30000-0xffff800082c35000   20480 kernel_clone+0xb8/0x420 pages=4 vmalloc N0=4
0xffff800082c35000-0xffff800082c37000    8192 acpi_os_map_iomem+0x1cc/0x200 phys=0x00000000fe000000 ioremap
"""

WORKLOAD = """\
name: host
duration: 1ms
machine: {{profile: small-test}}
kernel: {kernel}
workloads:
  - {{type: vmalloc_stress, cpus: 1, loops: 1}}
"""


def _sim(tmp_path: Path, kernel: str, **files: str):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return sim_from_text(WORKLOAD.format(kernel=kernel), where=tmp_path)


# -- where the areas go --------------------------------------------------------------
def test_kaslr_capture_is_detected_and_placed():
    entries = load_vmallocinfo(KASLR)
    assert len(entries) == 667
    outside = [
        e
        for e in entries
        if not any(lo <= e.start < hi for lo, hi in X86_64.ranges.values())
    ]
    assert len(outside) == 664  # as on the KASLR host the issue reports
    layout = detect_layout(entries)
    assert layout.arch == "x86_64" and layout.kaslr
    assert layout.ranges["vmalloc"][0] == KASLR_BASE
    assert layout.ranges["modules"][0] == 0xFFFFFFFFC0000000
    placement = place(entries, layout, X86_64.ranges)
    assert len(placement.placed) >= 0.95 * len(entries)
    assert not placement.unplaced
    assert placement.slides == {
        "vmalloc": X86_64.vmalloc_start - KASLR_BASE,
        "modules": 0,
    }
    # percpu chunks keep their distance from the top of the range
    top = max(p.start + p.entry.size for p in placement.placed if p.range == "vmalloc")
    assert X86_64.vmalloc_end - top == layout.ranges["vmalloc"][1] - max(
        e.end for e in entries if e.start < 0xFFFFFFFF80000000
    )


def test_a_capture_of_the_simulated_layout_stays_in_place():
    entries = parse_vmallocinfo(SAMPLE)
    layout = detect_layout(entries)
    assert not layout.kaslr and layout.ranges["vmalloc"][0] == X86_64.vmalloc_start
    placement = place(entries, layout, X86_64.ranges)
    assert [p.start for p in placement.placed] == [e.start for e in entries]


def test_arm64_capture_by_its_ranges():
    entries = parse_vmallocinfo(ARM64_SAMPLE)
    layout = detect_layout(entries)
    assert layout.arch == "arm64"
    same = place(entries, layout, ARM64.ranges)
    assert [p.start for p in same.placed] == [e.start for e in entries]
    # on an x86-64 model each area keeps its offset in its range
    moved = place(entries, layout, X86_64.ranges)
    assert moved.placed[0].start == X86_64.modules_vaddr + 0x10000
    assert moved.placed[1].start == X86_64.vmalloc_start


def test_areas_outside_every_range_are_counted_not_dropped():
    text = SAMPLE + vm_line(0xFFFFFFFF81000000, 0xFFFFFFFF81002000, caller="f+0x1/0x2")
    entries = parse_vmallocinfo(text + "\n")
    placement = place(entries, detect_layout(entries), X86_64.ranges)
    assert len(placement.placed) == 12
    [(e, reason)] = placement.unplaced
    assert e.line == 13 and "kernel image" in reason
    vm = make_sim(bare=True).vmalloc
    seed = vm.seed_vmallocinfo(entries, file="cap.txt")
    assert (seed.placed, seed.nr_unplaced) == (12, 1)
    assert any("not placed: 1" in line and "line 13" in line for line in seed.lines())


def test_nothing_placeable_is_an_error():
    line = vm_line(0xFFFFFFFF81000000, 0xFFFFFFFF81002000, caller="f+0x1/0x2")
    with pytest.raises(CaptureError) as exc:
        make_sim(bare=True).vmalloc.seed_vmallocinfo(parse_vmallocinfo(line), file="c")
    assert "none of the 1 areas" in exc.value.message
    assert "kptr_restrict=1" in exc.value.expected


def test_user_space_addresses_are_refused_with_the_hint():
    line = "0x00007f0000000000-0x00007f0000002000    8192 f+0x1/0x2 pages=1 vmalloc\n"
    with pytest.raises(CaptureError) as exc:
        parse_vmallocinfo(line, file="c.txt")
    assert "not a kernel address" in exc.value.message
    assert "kptr_restrict=1" in exc.value.expected and exc.value.line == 1


# -- what the areas hold ---------------------------------------------------------------
def test_seeded_areas_take_pages_and_page_tables():
    sim = make_sim(bare=True)
    vm, buddy = sim.vmalloc, sim.page_alloc.buddy
    free0 = buddy.nr_free_pages
    tables0 = sim.metrics.counters["mem.pagetable_pages"]
    entries = load_vmallocinfo(KASLR)
    seed = vm.seed_vmallocinfo(entries, file="kaslr.txt")
    vm.check()
    buddy.check()
    assert seed.placed == 667 and seed.nr_unplaced == 0
    taken = free0 - buddy.nr_free_pages
    assert taken == seed.pages + seed.tables > 28_000
    assert sim.metrics.counters["mem.pagetable_pages"] - tables0 == seed.tables
    # ioremap areas hold page tables but no RAM; sparse and percpu chunks
    # only address space
    assert seed.kinds["ioremap"][2] == 0 and seed.kinds["sparse"][2] == 0
    vmalloc_pages = sum(e.pages for e in entries if "vmalloc" in e.flags)
    assert seed.kinds["vmalloc"][2] == vmalloc_pages
    pt = sim.pagetables
    first = X86_64.vmalloc_start  # the first IRQ stack, moved past KASLR
    area = vm.find_vmap_area(first)
    assert area is not None and len(area.pages) == 4
    assert [pt.pfn_of(first + i * PAGE) for i in range(4)] == area.pages
    assert pt.page_shift(first + 4 * PAGE) is None  # its guard page
    io = next(e for e in entries if e.phys == 0xFED00000)
    io_addr = io.start + seed.slides["vmalloc"]
    assert pt.pfn_of(io_addr) == 0xFED00000 // PAGE
    # the BPF program pack sits on one 2 MiB leaf, as vmalloc_huge() maps it
    assert pt.page_shift(0xFFFFFFFFC0200000) == 21
    assert vm.find_vmap_area(0xFFFFFFFFC0200000).page_shift == 21


def test_unpurged_areas_are_lazy_and_keep_their_tables():
    sim = make_sim(bare=True, sets=("kernel.lazy_max_pages=100000",))
    vm = sim.vmalloc
    # a GiB of the range nothing has mapped yet
    line = "0xffffc90140200000-0xffffc90140202000    8192 unpurged vm_area\n"
    seed = vm.seed_vmallocinfo(parse_vmallocinfo(line))
    assert vm.lazy_nr == 2 and seed.pages == 0
    assert seed.tables == 2  # the PMD table of the GiB and the PTE table
    assert sim.pagetables.vmap.has_pte_table(0xFFFFC90140200000)
    assert sim.pagetables.page_shift(0xFFFFC90140200000) is None


def test_with_captured_free_lists_the_pages_come_from_used_memory(tmp_path):
    buddyinfo = "Node 0, zone   Normal  100 80 60 40 20 10 5 3 2 1 1200\n"
    sim = _sim(
        tmp_path,
        "{buddyinfo: b.txt, vmallocinfo: v.txt}",
        **{"b.txt": buddyinfo, "v.txt": SAMPLE},
    )
    buddy = sim.page_alloc.buddy
    seed = sim.vmalloc.seeded[0]
    assert seed.pages > 1000
    assert sim.page_alloc.boot.from_used == seed.pages + seed.tables
    assert buddy.initial_buddyinfo(0) == [100, 80, 60, 40, 20, 10, 5, 3, 2, 1, 1200]
    buddy.check(full=True)


# -- the direct map ------------------------------------------------------------------
def test_directmap_split_from_meminfo(tmp_path):
    meminfo = (
        "MemTotal:        8000000 kB\n"
        "DirectMap4k:       65536 kB\n"  # 32 regions of 2 MiB
        "DirectMap2M:     2031616 kB\n"
        "DirectMap1G:     6291456 kB\n"
    )
    sim = _sim(tmp_path, "{meminfo: m.txt}", **{"m.txt": meminfo})
    dm = sim.pagetables.direct
    # the capture's own split: two GiBs broken to 2M, 32 regions of them to 4K
    assert dm.bytes() == (32 * PMD_SIZE, 2 * PUD_SIZE - 32 * PMD_SIZE, 6 * PUD_SIZE)
    assert dm.nr_tables() == 2 + 32
    c = sim.metrics.counters
    assert c["directmap.level2_splits"] == c["directmap.level3_splits"] == 0
    assert c["directmap.4k_bytes"] == 32 * PMD_SIZE
    # a host without GB pages maps everything with 2M leaves
    (tmp_path / "m.txt").write_text(meminfo.replace("6291456", "0"))
    sim = _sim(tmp_path, "{meminfo: m.txt}")
    assert sim.pagetables.direct.bytes() == (
        32 * PMD_SIZE,
        8 * PUD_SIZE - 32 * PMD_SIZE,
        0,
    )


def test_seed_split_places_at_random_and_caps():
    dm = DirectMap(4 * (PUD_SIZE // PAGE))
    got = dm.seed_split(10, 5000, np.random.default_rng(1), lambda: None)
    assert got == (4, 4 * 512)  # capped: all of a 4 GiB machine
    assert dm.bytes() == (4 * PUD_SIZE, 0, 0)
    a, b = DirectMap(8 * (PUD_SIZE // PAGE)), DirectMap(8 * (PUD_SIZE // PAGE))
    a.seed_split(2, 7, np.random.default_rng(5), lambda: None)
    b.seed_split(2, 7, np.random.default_rng(5), lambda: None)
    assert a.pte.keys() == b.pte.keys() and len(a.pte) == 7


# -- free memory -----------------------------------------------------------------------
def test_vmstat_sets_the_free_memory(tmp_path):
    vmstat = "nr_free_pages 1000000\nnr_page_table_pages 501\n"
    sim = _sim(
        tmp_path,
        "{vmstat: s.txt, vmallocinfo: v.txt}",
        **{"s.txt": vmstat, "v.txt": SAMPLE},
    )
    buddy = sim.page_alloc.buddy
    # after the areas took theirs, the rest in use by owners not captured
    assert buddy.nr_free_pages == 1_000_000
    assert sim.metrics.counters["buddy.free_pages"] == 1_000_000
    buddy.check()
    text = "\n".join(sim.kernel.host.describe())
    assert "nr_free_pages 1,000,000" in text and "nr_page_table_pages 501" in text
    (tmp_path / "s.txt").write_text("nr_free_pages 9000000\n")
    with pytest.raises(CaptureError) as exc:
        _sim(tmp_path, "{vmstat: s.txt}")
    assert exc.value.line == 1 and "dram_bytes" in exc.value.expected


@pytest.mark.parametrize(
    "parse,text,line,what",
    [
        (parse_meminfo, "MemTotal: 100 kB\nMemFree 10 kB\n", 2, "not a /proc/meminfo"),
        (parse_meminfo, "MemFree: 10 kB\n", None, "MemTotal"),
        (parse_meminfo, "MemTotal: 1 kB\nMemTotal: 1 kB\n", 2, "twice"),
        (parse_meminfo, "MemTotal: 8 kB\nDirectMap4k: 6 kB\n", 2, "4 kB pages"),
        (parse_vmstat, "nr_free_pages 5\nnr_bad x\n", 2, "not a /proc/vmstat"),
        (parse_vmstat, "pgfault 5\n", None, "nr_free_pages"),
    ],
)
def test_malformed_meminfo_and_vmstat(parse, text, line, what):
    with pytest.raises(CaptureError) as exc:
        parse(text, "cap.txt")
    assert exc.value.line == line and what in exc.value.message


def test_shipped_meminfo_and_vmstat_samples():
    from simcore.kernel.meminfo import load_meminfo
    from simcore.kernel.vmstat import load_vmstat

    m = load_meminfo(DATA / "meminfo-server.txt")
    assert m.direct_map() == (1316664 << 10, 45766656 << 10, 490733568 << 10)
    assert m.get("HugePages_Total") == 0  # a count, not kB
    v = load_vmstat(DATA / "vmstat-server.txt")
    assert v.get("nr_free_pages") == 92304847


def test_arm64_capture_on_an_arm64_machine(tmp_path):
    (tmp_path / "v.txt").write_text(ARM64_SAMPLE)
    text = WORKLOAD.format(kernel="{vmallocinfo: v.txt}").replace(
        "{profile: small-test}", "{profile: neoverse-n1, cpus: 4}"
    )
    sim = sim_from_text(text, where=tmp_path)
    [seed] = sim.vmalloc.seeded
    assert seed.layout.arch == "arm64" and seed.placed == 4
    assert seed.slides == {"modules": 0, "vmalloc": 0}
    # the kernel image segment maps its own memory, not the allocator's
    assert seed.kinds["vmap"][2] == 0 and seed.pages == 8 + 4
    assert sim.pagetables.pfn_of(0xFFFF800080000000) == 0x40200000 // PAGE
