"""Real-format captures load; malformed ones fail with file and line."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from simcore.constants import PAGE
from simcore.errors import CaptureError
from simcore.kernel.buddyinfo import load_buddyinfo
from simcore.kernel.module import CORE_TYPES
from simcore.kernel.vmallocinfo import load_vmallocinfo
from simcore.workloads.captures.bpftool import load_bpftool, parse_bpftool
from simcore.workloads.captures.module_split import spec_from_size, split_core_pages
from simcore.workloads.captures.modules import (
    load_lsmod,
    load_proc_modules,
    parse_lsmod,
    parse_proc_modules,
)
from simcore.workloads.captures.trace import format_trace, load_trace, parse_trace
from tests.workloads import DATA, ROOT, run_metrics


def _deps_first(mods) -> None:
    deps = mods.deps()
    seen: set[str] = set()
    for r in mods.load_order():
        assert set(deps[r.name]) <= seen, r.name
        seen.add(r.name)
    assert seen == {r.name for r in mods.records}


def test_lsmod_sample():
    mods = load_lsmod(DATA / "lsmod-desktop.txt")
    assert len(mods.records) == 88
    deps = mods.deps()
    assert set(deps["snd_hda_codec_realtek"]) == {
        "snd_hda_codec_generic",
        "snd_hda_codec",
        "snd_hda_core",
    }
    assert deps["soundcore"] == ()
    _deps_first(mods)


def test_proc_modules_sample():
    mods = load_proc_modules(DATA / "proc-modules.txt")
    assert len(mods.records) == 53
    by_name = {r.name: r for r in mods.records}
    assert by_name["mlx5_core"].size == 2260992  # the line with "(OE)" taints
    assert "nf_conntrack" in mods.deps()["nf_nat"]
    _deps_first(mods)


def test_bpftool_sample():
    progs = load_bpftool(DATA / "bpftool-prog-show.json")
    assert len(progs.progs) == 11 and progs.interpreted == 1
    first = progs.progs[0]
    assert (first.id, first.name, first.bytes_jited, first.line) == (
        2,
        "sd_devices",
        309,
        1,
    )
    assert {p.run_cnt for p in progs.progs if p.name == "cil_from_netdev"} == {48200311}
    assert sorted(progs.sizes.tolist())[-1] == 24601


def _plain(objs: list[dict]) -> str:
    """What `bpftool prog show` (no -j) prints for these programs:
    print_prog_plain() in tools/bpf/bpftool/prog.c."""
    out = []
    for o in objs:
        name = f"name {o['name']}  " if o.get("name") else ""
        runs = f" run_time_ns 5 run_cnt {o['run_cnt']}" if "run_cnt" in o else ""
        out.append(f"{o['id']}: {o['type']}  {name}tag 0123456789abcdef  gpl{runs}")
        out.append("\tloaded_at 2023-11-14T22:13:20+0000  uid 0")
        jit = f"jited {o['bytes_jited']}B" if o.get("bytes_jited") else "not jited"
        out.append(f"\txlated {o.get('bytes_xlated', 0)}B  {jit}  memlock 4096B")
        out.append("\tbtf_id 7")
    return "\n".join(out) + "\n"


def test_bpftool_text_form_reads_as_the_json_form():
    import json

    path = DATA / "bpftool-prog-show.json"
    from_json = load_bpftool(path)
    from_text = parse_bpftool(_plain(json.loads(path.read_text())), file="t")
    assert [(p.id, p.name, p.bytes_jited, p.run_cnt) for p in from_text.progs] == [
        (p.id, p.name, p.bytes_jited, p.run_cnt) for p in from_json.progs
    ]
    assert from_text.interpreted == from_json.interpreted


def test_vmallocinfo_buddyinfo_and_trace_samples():
    assert len(load_vmallocinfo(DATA / "vmallocinfo-server.txt")) == 28
    assert len(load_vmallocinfo(DATA / "vmallocinfo-kaslr.txt")) == 667
    assert load_buddyinfo(DATA / "buddyinfo-server.txt").nodes() == [0, 1]
    events = load_trace(DATA / "trace-example.csv")
    assert len(events) == 18 and events[0].op == "vmalloc"
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_trace_formats_round_trip():
    events = load_trace(DATA / "trace-example.csv")
    for jsonl in (False, True):
        name = "t.jsonl" if jsonl else "t.csv"
        again = parse_trace(format_trace(events, jsonl=jsonl), file=name)
        strip = [(e.timestamp, e.cpu, e.op, e.size, e.type, e.id) for e in events]
        assert [
            (e.timestamp, e.cpu, e.op, e.size, e.type, e.id) for e in again
        ] == strip


HEADER = "Module                  Size  Used by\n"
MALFORMED = [
    (parse_lsmod, "snd 143360  1\n", 1, "not an lsmod header"),
    (parse_lsmod, HEADER + "snd 14336O  0\n", 2, "not a number"),
    (parse_lsmod, HEADER + "snd 4096  1 ghost\n", 2, "does not list"),
    (parse_lsmod, HEADER + "a 4096  0\nb 4096  0\na 4096  0\n", 4, "listed twice"),
    (parse_lsmod, HEADER + "a 4096  0 b x\n", 2, "columns"),
    (parse_lsmod, HEADER + "a 4096  1 b\nb 4096  1 a\n", 3, "cycle"),
    (parse_proc_modules, "a 4096 0 - Live 0x0\nb 4096 0 - Running 0x0\n", 2, "state"),
    (parse_proc_modules, "a 4096 0 - Live ffffffffc0000000\n", 1, "address"),
    (parse_proc_modules, "a 4096 0 - Live\n", 1, "columns"),
    (parse_bpftool, '{"id": 1}', 1, "not a JSON array"),
    (parse_bpftool, '[\n{"id": 1, "bytes_jited": 10},\n{"id": 2,, }\n]', 3, "bad JSON"),
    (
        parse_bpftool,
        '[\n {"id": 1, "bytes_jited": 10},\n {"id": 2}\n]',
        3,
        "bytes_jited",
    ),
    (parse_bpftool, '[{"id": 1, "bytes_jited": -4}]', 1, "non-negative"),
    (parse_bpftool, '[{"id": 1, "bytes_jited": 4}]\n[]', 2, "text after"),
    (parse_bpftool, '[{"id": 1, "jited": false}]', None, "no program"),
    (
        parse_bpftool,
        "1: kprobe  tag 00aa\n\txlated 8B  jited 4B\noops\n",
        3,
        "not a program",
    ),
    (parse_bpftool, "1: kprobe  tag 00aa\n\tloaded_at x  uid 0\n", 1, "no `xlated"),
    (parse_trace, "timestamp,cpu,op,id\n1,0,mmap,a\n", 2, "unknown op"),
    (parse_trace, "# c\ntimestamp,cpu,id\n", 2, "missing ['op']"),
    (parse_trace, "timestamp,cpu,op,size,id\nx,0,vmalloc,4096,a\n", 2, "timestamp"),
    (parse_trace, "timestamp,cpu,op,size,id\n1,0,vmalloc,,a\n", 2, "size"),
    (parse_trace, "timestamp,cpu,op,size,type,id\n1,0,alloc,64,bpf,a\n", 2, "kind"),
    (
        parse_trace,
        "timestamp,cpu,op,size,id\n1,0,vmalloc,4096,a\n2,0,vmalloc,4096,a\n",
        3,
        "allocated again",
    ),
    (parse_trace, "timestamp,cpu,op,id\n1,0,vfree\n", 2, "fields"),
    (
        parse_trace,
        '{"timestamp": 1, "cpu": 0, "op": "vfree", "id": "a"}\n{oops\n',
        2,
        "JSON",
    ),
]


@pytest.mark.parametrize(("parse", "text", "line", "what"), MALFORMED)
def test_malformed_input_names_the_line(parse, text, line, what):
    with pytest.raises(CaptureError) as err:
        parse(text, file="cap.txt")
    assert err.value.line == line
    assert what in err.value.message
    where = "cap.txt" if line is None else f"cap.txt:{line}"
    assert err.value.render().startswith(f"error: {where}: ")


def test_core_pages_split_keeps_the_total():
    for pages in range(1, 300):
        split = split_core_pages(pages)
        assert sum(split.values()) == pages
        assert split["module_text"] >= 1
    assert split_core_pages(4) == dict.fromkeys(
        ("module_text", "module_data", "module_rodata", "module_ro_after_init"), 1
    )


def test_split_reproduces_the_published_text_share():
    """Text is ~37 % of all module memory in the one published breakdown
    (66 modules, 4,149,248 of 11,268,096 B); the desktop sample, split
    the same way, lands near it."""
    mods = load_lsmod(DATA / "lsmod-desktop.txt")
    specs = [spec_from_size(r.name, r.size) for r in mods.records]
    text = sum(s.size_of("module_text") + s.size_of("module_init_text") for s in specs)
    total = sum(s.image_bytes for s in specs)
    assert 0.30 < text / total < 0.45
    for r, s in zip(mods.records, specs, strict=True):
        assert s.core_bytes == -(-r.size // PAGE) * PAGE
        assert all(s.size_of(t) % PAGE == 0 for t in CORE_TYPES)


@pytest.mark.parametrize(
    ("entry", "name", "line"),
    [
        ("{type: module_load, modules: {from_lsmod: cap.txt}}", "lsmod", 3),
        ("{type: module_load, modules: {from_proc_modules: cap.txt}}", "proc", 2),
        ("{type: bpf_jit, from_bpftool: cap.txt}", "bpftool", 3),
        ("{type: trace, file: cap.txt}", "trace", 3),
    ],
)
def test_run_with_a_bad_capture_exits_2(cli, write, tmp_path, entry, name, line):
    bad = {
        "lsmod": HEADER + "a 4096  0\nb 40x96  0\n",
        "proc": "a 4096 0 - Live 0x0\nb 4096 0 - Gone 0x0\n",
        "bpftool": '[\n {"id": 1, "bytes_jited": 9},\n {"id": "two"}\n]\n',
        "trace": "timestamp,cpu,op,size,id\n1,0,vmalloc,4096,a\n2,0,vfree,9,\n",
    }[name]
    (tmp_path / "cap.txt").write_text(bad)
    wl = write(
        f"""\
        name: bad
        duration: 1ms
        machine: {{profile: small-test}}
        workloads:
          - {entry}
        """
    )
    code, _, err = cli("run", str(wl), "-o", str(tmp_path / "out"), "--quiet")
    assert code == 2
    assert f"cap.txt:{line}" in err and "Traceback" not in err


def test_bpf_jit_population_from_bpftool(tmp_path):
    text = f"""\
name: bpftool
duration: 2ms
machine: {{profile: small-test}}
workloads:
  - type: bpf_jit
    from_bpftool: {DATA / "bpftool-prog-show.json"}
    churn: {{load_rate: 5000/s, lifetime: 100us}}
"""
    m = run_metrics(tmp_path, text)
    # the 11 jited programs of the capture stay; churned ones come and go
    assert m["bpf.progs_loaded"] - m.get("bpf.progs_freed", 0) >= 11
    assert m["bpf.progs_loaded"] > 11


# -- a captured host as the starting state -------------------------------------------
HASHED = "0x00000000904b3862-0x000000009ac66e2e   20480 irq_init_percpu_irqstack+0xed/0x120 vmap\n"


def test_check_prints_what_the_captures_seed(cli):
    code, out, err = cli("check", str(ROOT / "workloads" / "captured-host.yaml"))
    assert code == 0, err
    seeded = out[out.index("# what the captures set") :]
    assert "KASLR: vmalloc base 0xffffa4c4c0000000" in seeded
    assert "areas: 667, placed 667, unplaced 0" in seeded
    assert "DirectMap4k" in seeded and "GB pages on" in seeded
    assert "vmalloc          618" in seeded and "ioremap           24" in seeded
    assert all(len(line) <= 80 for line in seeded.splitlines())
    assert all(line.startswith("# ") for line in seeded.splitlines())
    assert "data/vmallocinfo-kaslr.txt" in err  # the captures read


def test_check_rejects_hashed_addresses_naming_the_workload_line(cli, write, tmp_path):
    (tmp_path / "vi.txt").write_text(HASHED)
    wl = write(
        """\
        name: hashed
        duration: 1ms
        machine: {profile: small-test}
        kernel:
          vmallocinfo: vi.txt
        workloads: [{type: vmalloc_stress, cpus: 1, loops: 1}]
        """
    )
    code, _, err = cli("check", str(wl))
    assert code == 2 and "Traceback" not in err
    assert "vi.txt:1" in err and "hashed" in err
    assert "kptr_restrict=1" in err and "sudo" in err
    assert f"named by kernel.vmallocinfo at {wl}:5" in err


def test_a_generator_capture_error_names_its_key_too(cli, write, tmp_path):
    (tmp_path / "vi.txt").write_text("0xffffc9 junk\n")
    wl = write(
        """\
        name: bad
        duration: 1ms
        machine: {profile: small-test}
        workloads:
          - {type: vmalloc_stress, cpus: 1, loops: 1, vmallocinfo: vi.txt}
        """
    )
    code, _, err = cli("check", str(wl))
    assert code == 2 and "vi.txt:1" in err
    assert f"workloads[0].vmallocinfo at {wl}:5" in err


def test_capture_script_is_valid_sh(cli, tmp_path):
    code, out, _ = cli("capture", "--script")
    assert code == 0 and out.startswith("#!/bin/sh")
    for name in ("buddyinfo", "meminfo", "vmstat", "vmallocinfo", "modules"):
        assert f"/proc/{name}" in out
    assert "lsmod" in out and "bpftool -j prog show" in out
    assert "kptr_restrict" in out
    path = tmp_path / "capture.sh"
    code, _, _ = cli("capture", "-o", str(path))
    assert code == 0 and path.read_text() == out and path.stat().st_mode & 0o100
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh to check the syntax with")
    r = subprocess.run([sh, "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_host_captures_in_the_config_hash(write, tmp_path):
    from simcore.config.load import config_hash, load_workload

    wl = write(
        """\
        name: h
        duration: 1ms
        machine: {profile: small-test}
        workloads: [{type: vmalloc_stress, cpus: 1, loops: 1}]
        """
    )
    plain = load_workload(wl)
    # unnamed, they leave the identity runs had before the keys existed
    data = {**plain.data, "kernel": dict(plain.data["kernel"])}
    for k in ("meminfo", "vmallocinfo", "vmstat"):
        assert data["kernel"].pop(k) is None
    assert config_hash(data) == plain.config_hash
    (tmp_path / "m.txt").write_text("MemTotal: 8000000 kB\n")
    named = load_workload(wl, sets=["kernel.meminfo=m.txt"])
    assert named.config_hash != plain.config_hash and "m.txt" in named.captures
    (tmp_path / "m.txt").write_text("MemTotal: 8000004 kB\n")
    assert (
        load_workload(wl, sets=["kernel.meminfo=m.txt"]).config_hash
        != named.config_hash
    )
