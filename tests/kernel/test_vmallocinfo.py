"""Real /proc/vmallocinfo captures: parsing, errors, seeding a run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simcore.constants import PAGE
from simcore.errors import CaptureError
from simcore.kernel.vmalloc import VM_ALLOC, VM_IOREMAP, VM_USERMAP, VMAP_RAM
from simcore.kernel.vmallocinfo import format_line, load_vmallocinfo, parse_vmallocinfo
from tests.kernel import run
from tests.kernel.test_vmalloc import make_sim

# The shape of a 6.x x86-64 capture (sizes include the guard page).
SAMPLE = """\
0xffffc90000000000-0xffffc90000005000   20480 irq_init_percpu_irqstack+0xd4/0x120 pages=4 vmalloc N0=4
0xffffc90000005000-0xffffc90000007000    8192 acpi_os_map_iomem+0x1b6/0x1f0 phys=0x000000007fee8000 ioremap
0xffffc90000008000-0xffffc9000000d000   20480 kernel_clone+0xa7/0x3d0 pages=4 vmalloc N0=4
0xffffc90000011000-0xffffc90000013000    8192 bpf_prog_alloc_no_stats+0x4b/0x1d0 pages=1 vmalloc N1=1
0xffffc90000100000-0xffffc90000200000 1048576 vm_map_ram
0xffffc90000400000-0xffffc90000803000 4206592 alloc_large_system_hash+0x1ed/0x2e0 pages=1026 vmalloc vpages N0=513 N1=513
0xffffc90000900000-0xffffc90000902000    8192 unpurged vm_area
0xffffc90001000000-0xffffc90001021000  135168 bpf_map_area_alloc+0x58/0x90 pages=32 vmalloc user N0=32
0xffffc90001100000-0xffffc90001102000    8192 0xffffffffc0a01234 pages=1 vmalloc N0=1
0xffffc90001200000-0xffffc90001202000    8192 hpet_enable+0x37/0x2c0 phys=fed00000 ioremap
0xffffffffc0000000-0xffffffffc0005000   20480 xt_alloc_table_info+0x2c/0x70 [x_tables] pages=4 vmalloc N0=4
0xffffffffc0006000-0xffffffffc000c000   24576 load_module+0x1000/0x2720 pages=5 vmalloc N0=5
"""


def test_sample_parses_field_by_field():
    e = parse_vmallocinfo(SAMPLE, file="cap.txt")
    assert len(e) == 12
    assert (e[0].start, e[0].size, e[0].pages) == (0xFFFFC90000000000, 20480, 4)
    assert e[0].caller == "irq_init_percpu_irqstack+0xd4/0x120"
    assert e[0].flags == {"vmalloc"} and e[0].numa == ((0, 4),)
    assert e[1].phys == 0x7FEE8000 and e[1].flags == {"ioremap"} and e[1].pages == 0
    assert e[4].kind == "vm_map_ram" and e[4].size == 1 << 20
    assert e[5].flags == {"vmalloc", "vpages"} and e[5].numa == ((0, 513), (1, 513))
    assert e[6].kind == "unpurged"
    assert e[7].flags == {"vmalloc", "user"}
    assert e[8].caller == "0xffffffffc0a01234"
    assert e[9].phys == 0xFED00000  # the older bare-hex %llx form
    assert e[10].caller == "xt_alloc_table_info+0x2c/0x70 [x_tables]"
    assert [x.line for x in e] == list(range(1, 13))


def test_format_round_trips():
    for e in parse_vmallocinfo(SAMPLE):
        again = parse_vmallocinfo(format_line(e))[0]
        assert again == replace(e, line=1)


BAD = [
    ("0xffffc90000000000 20480 f+0x1/0x2 pages=4 vmalloc", "bad address range"),
    ("0xffffc90000000000-0xffffc90000005000   20481 f+0x1/0x2", "does not match"),
    ("0xffffc90000000000-0xffffc90000005000   20480 f+0x1/0x2 pagez=4", "unexpected"),
    ("0xffffc90000000000-0xffffc90000005000   20480 f+0x1/0x2 pages=x", "page count"),
    ("0xffffc90000000000-0xffffc90000005000   20480 f+0x1/0x2 pages=9", "does not fit"),
    (
        "0x0000000000000000-0x0000000000000000       0 f+0x1/0x2 pages=4",
        "kptr_restrict",
    ),
    # kptr_restrict=0: %pK prints a 32-bit hash, never page aligned by luck
    ("0x00000000a1b2c3d4-0x000000005e6f7081   20480 f+0x1/0x2", "hashed"),
    ("0xffffc90000000100-0xffffc90000005100   20480 f+0x1/0x2", "page aligned"),
    ("0xffffc90000000000-0xffffc90000005000   lots f+0x1/0x2", "not a number"),
    ("0xffffc90000000000-0xffffc90000005000", "too few"),
    ("0xffffc90000000000-0xffffc90000005000   20480 f+0x1/0x2 phys=zz", "physical"),
]


@pytest.mark.parametrize("line,fragment", BAD)
def test_malformed_line_names_its_number(line, fragment):
    text = SAMPLE.splitlines()[0] + "\n\n" + line + "\n"
    with pytest.raises(CaptureError) as exc:
        parse_vmallocinfo(text, file="cap.txt")
    err = exc.value
    assert err.line == 3 and err.file == "cap.txt" and err.expected
    assert fragment in err.message
    assert err.render().startswith("error: cap.txt:3: ")


def test_missing_capture_file(tmp_path):
    with pytest.raises(CaptureError) as exc:
        load_vmallocinfo(tmp_path / "nope.txt")
    assert "not found" in exc.value.message


def test_seeding_makes_areas_busy_and_lazy():
    sim = make_sim(bare=True, sets=("kernel.lazy_max_pages=100000",))
    vm = sim.vmalloc
    entries = parse_vmallocinfo(SAMPLE)
    assert vm.seed_vmallocinfo(entries).placed == 12
    vm.check()
    busy = [e for e in entries if e.kind != "unpurged"]
    assert vm.used_bytes == sum(e.size for e in busy)
    assert vm.lazy_nr == 2
    a = vm.find_vmap_area(0xFFFFC90000005000)
    assert a.flags == VM_IOREMAP and a.phys == 0x7FEE8000 and a.range == "vmalloc"
    assert vm.find_vmap_area(0xFFFFC90001000000).flags == VM_ALLOC | VM_USERMAP
    assert vm.find_vmap_area(0xFFFFC90000100000).va_flags == VMAP_RAM
    assert vm.find_vmap_area(0xFFFFFFFFC0000000).range == "modules"
    # a new allocation lands in the first hole big enough for it
    new = run(sim, vm.vmalloc(0, 2 * PAGE))
    assert new.addr == 0xFFFFC9000000D000
    # the reader prints the seeded areas back in the same format
    lines = run(sim, vm.vmallocinfo(1))
    back = {(e.start, e.end, e.kind) for e in parse_vmallocinfo("\n".join(lines))}
    assert {(e.start, e.end, e.kind) for e in entries} <= back


def test_overlapping_capture_lines_are_refused():
    sim = make_sim(bare=True)
    text = SAMPLE + "0xffffc90000001000-0xffffc90000002000    4096 f+0x1/0x2\n"
    with pytest.raises(CaptureError) as exc:
        sim.vmalloc.seed_vmallocinfo(parse_vmallocinfo(text), file="cap.txt")
    assert exc.value.line == 13 and "overlaps" in exc.value.message


def test_workload_seeds_from_a_capture_next_to_it(cli, write, tmp_path):
    (tmp_path / "cap.txt").write_text(SAMPLE)
    wl = write(
        """\
        name: seeded
        duration: 50us
        machine: {profile: small-test}
        workloads:
          - {type: vmalloc_stress, cpus: 1, loops: 10, vmallocinfo: cap.txt}
        """
    )
    from simcore.config.load import load_workload
    from simcore.engine import Simulation

    m = Simulation(load_workload(wl), "module_alloc").run().metrics
    seeded = sum(e.size for e in parse_vmallocinfo(SAMPLE) if e.kind != "unpurged")
    assert m["vmap.used_bytes"] == seeded  # all 10 loops freed what they took

    (tmp_path / "cap.txt").write_text(SAMPLE + "0xffffc9 junk\n")
    code, _, err = cli("run", str(wl), "-o", str(tmp_path / "out"), "--quiet")
    assert code == 2
    assert "cap.txt:13" in err and "Traceback" not in err


def test_hidden_or_hashed_addresses_say_how_to_capture_real_ones():
    for line in (
        "0x0000000000000000-0x0000000000000000       0 f+0x1/0x2 pages=4",
        "0x00000000a1b2c3d4-0x000000005e6f7081   20480 f+0x1/0x2",
    ):
        with pytest.raises(CaptureError) as exc:
            parse_vmallocinfo(line + "\n", file="cap.txt")
        assert "kptr_restrict=1" in exc.value.expected
