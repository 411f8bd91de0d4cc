"""Bad input: exit code 2, one paragraph with file, YAML path and line."""

import pytest

from tests.conftest import SMALL


def _check(cli, path, *extra):
    code, out, err = cli("check", str(path), *extra)
    assert code == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1, err
    return err


CASES = [
    # (name, yaml text, expected fragments of the message)
    (
        "host share above one",
        SMALL.replace(
            "strategy: module_alloc", "strategy: module_alloc\nhost:\n  irqs_off: 2"
        ),
        ["w.yaml:10", "host.irqs_off", "less than or equal to 1"],
    ),
    (
        "unknown host key",
        SMALL.replace(
            "strategy: module_alloc", "strategy: module_alloc\nhost: {syscall: 1/s}"
        ),
        ["w.yaml:9", "host.syscall", "did you mean 'syscalls'"],
    ),
    (
        "pti word",
        SMALL.replace("preset: latest", "preset: latest\n  pti: maybe"),
        ["w.yaml:8", "kernel.pti"],
    ),
    (
        "x86 knob on arm64",
        SMALL.replace("profile: small-test", "profile: neoverse-n1").replace(
            "preset: latest", "preset: latest\n  pti: on"
        ),
        ["w.yaml:8", "kernel.pti", "x86_64 only", "neoverse-n1 is arm64"],
    ),
    (
        "arm64 knob on x86",
        SMALL.replace("preset: latest", "preset: latest\n  rodata: full"),
        ["w.yaml:8", "kernel.rodata", "arm64 only"],
    ),
    (
        "x86-only strategy on arm64",
        SMALL.replace("profile: small-test", "profile: neoverse-n1").replace(
            "strategy: module_alloc", "strategy: [module_alloc, bpf_prog_pack_2m]"
        ),
        ["w.yaml:", "strategy bpf_prog_pack_2m cannot run on arm64", "huge"],
    ),
    (
        "reclaim priority past DEF_PRIORITY",
        SMALL + "  - {type: reclaim, priority: 13}\n",
        ["w.yaml:12", "priority", "less than or equal to 12"],
    ),
    (
        "pressure target past all of memory",
        SMALL + "  - {type: pressure, target: 120%}\n",
        ["w.yaml:12", "workloads[1].target", "not in (0%, 100%]"],
    ),
    (
        "negative kprobe rate",
        SMALL + "  - {type: text_poke_users, kprobes: {rate: -5/s}}\n",
        ["w.yaml:12", "kprobes.rate"],
    ),
    (
        "optimized kprobe share above one",
        SMALL + "  - {type: text_poke_users, kprobes: {optimized: 1.5}}\n",
        ["w.yaml:12", "kprobes.optimized", "less than or equal to 1"],
    ),
    (
        "livepatch of no function",
        SMALL + "  - {type: text_poke_users, livepatch: {functions: 0}}\n",
        ["w.yaml:12", "livepatch.functions"],
    ),
    (
        "negative trampoline rate",
        SMALL + "  - {type: text_poke_users, bpf_trampolines: {rate: -1/s}}\n",
        ["w.yaml:12", "bpf_trampolines.rate"],
    ),
    (
        "module layout word",
        SMALL.replace("preset: latest", "preset: latest\n  module_layout: both"),
        ["w.yaml:8", "kernel.module_layout"],
    ),
    (
        "vmalloc user huge word",
        SMALL
        + "  - type: vmalloc_users\n"
        + "    users: [{caller: m, size: 4MiB, huge: always}]\n",
        ["w.yaml:13", "huge"],
    ),
    (
        "vmalloc user without size",
        SMALL + "  - {type: vmalloc_users, users: [{caller: m}]}\n",
        ["w.yaml:12", "users[0].size", "missing"],
    ),
    ("yaml syntax", SMALL.replace("seed: 1", "seed: [1"), ["w.yaml:", "YAML syntax"]),
    (
        "unknown top key",
        SMALL.replace("seed: 1", "sede: 1"),
        ["w.yaml:2", "sede", "did you mean 'seed'"],
    ),
    (
        "unknown workload key",
        SMALL.replace("nr_pages: 1", "nr_page: 1"),
        ["w.yaml:11", "workloads[0].nr_page", "did you mean 'nr_pages'"],
    ),
    (
        "wrong unit",
        SMALL.replace("duration: 200us", "duration: 200"),
        ["w.yaml:3", "at duration", "unit"],
    ),
    (
        "unknown unit",
        SMALL.replace("duration: 200us", "duration: 2h"),
        ["w.yaml:3", "duration"],
    ),
    (
        "negative size",
        SMALL.replace("nr_pages: 1", "size: -4K"),
        ["w.yaml:11", "workloads[0].size", "negative"],
    ),
    (
        "zero pages",
        SMALL.replace("nr_pages: 1", "nr_pages: 0"),
        ["w.yaml:11", "workloads[0].nr_pages"],
    ),
    (
        "unknown profile",
        SMALL.replace("profile: small-test", "profile: skylake-xp"),
        ["w.yaml:5", "machine.profile", "did you mean 'skylake-sp'"],
    ),
    (
        "unknown strategy",
        SMALL.replace("strategy: module_alloc", "strategy: modul_alloc"),
        ["w.yaml:8", "strategy", "did you mean 'module_alloc'"],
    ),
    (
        "unknown workload type",
        SMALL.replace("vmalloc_stress", "vmalloc_stres"),
        ["w.yaml:10", "workloads[0]"],
    ),
    (
        "missing key",
        SMALL.replace("duration: 200us\n", ""),
        ["w.yaml", "duration", "missing"],
    ),
    (
        "too many cpus",
        SMALL.replace("profile: small-test", "profile: small-test\n  cpus: 64"),
        ["w.yaml:6", "machine.cpus", "only 4"],
    ),
    (
        "unknown preset",
        SMALL.replace("preset: latest", "preset: '6.99'"),
        ["w.yaml:7", "kernel.preset", "unknown kernel preset"],
    ),
    (
        "unknown profile field",
        SMALL.replace("profile: small-test", "profile: small-test\n  sokets: 2"),
        ["w.yaml:6", "machine.sokets", "did you mean 'sockets'"],
    ),
    ("duplicate key", SMALL + "seed: 2\n", ["w.yaml:12", "duplicate key 'seed'"]),
    ("empty file", "", ["w.yaml", "empty"]),
    ("not a mapping", "- 1\n- 2\n", ["w.yaml:1", "top level must be a mapping"]),
    ("bad type", SMALL.replace("seed: 1", "seed: many"), ["w.yaml:2", "seed"]),
]


@pytest.mark.parametrize("name,text,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_workload(cli, write, name, text, fragments):
    err = _check(cli, write(text))
    for frag in fragments:
        assert frag in err, (frag, err)


def test_missing_file(cli, tmp_path):
    err = _check(cli, tmp_path / "nope.yaml")
    assert "nope.yaml" in err and "not found" in err


def test_bad_set_value(cli, write):
    err = _check(cli, write(SMALL), "--set", "duration=fast")
    assert "--set duration=fast" in err and "duration" in err


def test_bad_set_path(cli, write):
    err = _check(cli, write(SMALL), "--set", "workloads[3].nr_pages=2")
    assert "no list entry workloads[3]" in err


def test_run_bad_input_writes_nothing(cli, write, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(
        "run", str(write(SMALL.replace("seed: 1", "sede: 1"))), "-o", str(out)
    )
    assert code == 2 and not out.exists()


def test_a_profile_override_takes_units(cli, write):
    p = write(
        """\
        name: ov
        duration: 100us
        machine: {profile: small-test, memory: {dram_bytes: 8GiB}}
        workloads: [{type: vmalloc_stress, nr_pages: 1}]
        """
    )
    code, out, err = cli("check", str(p))
    assert code == 0, err
    assert "dram_bytes: 8589934592" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clock_ghz: fast", "valid number"),
        ("memory: {dram_bytes: 8 parsecs}", "expected a size"),
    ],
)
def test_a_bad_profile_override_points_at_the_workload_line(
    cli, write, override, message
):
    p = write(
        f"""\
        name: ov
        duration: 100us
        machine:
          profile: small-test
          {override}
        workloads: [{{type: vmalloc_stress, nr_pages: 1}}]
        """
    )
    code, _, err = cli("check", str(p))
    assert code == 2
    assert f"{p}:5 at machine." in err and message in err
    assert "Traceback" not in err
