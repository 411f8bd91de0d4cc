import json

from tests.conftest import SMALL


def test_check_prints_resolved_config(cli, write):
    code, out, err = cli("check", str(write(SMALL)), "--set", "machine.cpus=2")
    assert code == 0, err
    assert "cpus: 2" in out and "lazy_max_pages: 16384" in out
    assert "ok:" in err


def test_schema_is_json_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0
    schema = json.loads(out)
    assert {"name", "duration", "machine", "workloads"} <= set(schema["properties"])


def test_list(cli):
    for what, expect in [
        ("metrics", "tlb.shootdowns"),
        ("strategies", "module_alloc"),
        ("profiles", "skylake-sp"),
        ("workloads", "vmalloc_stress"),
    ]:
        code, out, _ = cli("list", what)
        assert code == 0 and expect in out


def test_module_entry_point():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "simcore", "list", "metrics"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and "cpu.overhead_pct" in r.stdout


def test_check_reads_the_captures(cli, write, tmp_path):
    (tmp_path / "lsmod.txt").write_text("Module  Size  Used by\nfoo  notanumber  0\n")
    p = write(
        """\
        name: cap
        duration: 100us
        machine: {profile: small-test}
        workloads: [{type: module_load, modules: {from_lsmod: lsmod.txt}}]
        """
    )
    code, _, err = cli("check", str(p))
    assert code == 2
    assert "lsmod.txt:2" in err and "not a number" in err
    (tmp_path / "lsmod.txt").write_text("Module  Size  Used by\nfoo  4096  0\n")
    code, _, err = cli("check", str(p))
    assert code == 0, err
    assert "captures read: lsmod.txt" in err
    code, _, err = cli(
        "check", str(p), "--set", "workloads[0].modules.from_lsmod=gone.txt"
    )
    assert code == 2 and "gone.txt" in err


def test_run_loads_neither_pyplot_nor_the_other_commands(write, tmp_path):
    """`simcore run` draws its charts without pyplot and parses its command
    line without the sweep and validate packages: each would only add
    import time to every run."""
    import subprocess
    import sys

    out = tmp_path / "r"
    code = (
        "import sys\n"
        "from simcore.cli import main\n"
        f"rc = main(['run', {str(write(SMALL))!r}, '--quiet', '-o', {str(out)!r}])\n"
        "print(rc, *sorted(sys.modules))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    rc, *modules = r.stdout.split()
    assert rc == "0", r.stderr
    assert (out / "latency_cdf.png").stat().st_size > 0
    assert "matplotlib.figure" in modules  # the charts were drawn in there
    for name in ("matplotlib.pyplot", "simcore.sweep", "simcore.validate"):
        assert name not in modules, name
