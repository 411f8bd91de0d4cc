"""End to end: `simcore run` writes the whole results folder, atomically."""

import json

import pytest
import yaml

from simcore.results import charts
from tests.conftest import SMALL

FILES = [
    "config.yaml",
    "metrics.json",
    "summary.txt",
    "timeseries.csv",
    "lock_wait.png",
    "lock_wait.svg",
    "latency_cdf.png",
    "latency_cdf.svg",
]


def test_run_writes_every_file(cli, write, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = cli("run", str(write(SMALL)), "-o", str(out))
    assert code == 0, err
    assert f"results: {out}" in stdout
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc) == {"simcore_version", "seed", "config_hash", "strategies"}
    m = doc["strategies"]["module_alloc"]
    assert m["alloc.vmalloc.count"] > 0
    assert m["alloc.vmalloc.latency_ns.p99"] >= m["alloc.vmalloc.latency_ns.p50"] > 0
    assert "lock.free_vmap_area_lock.wait_ns" in m
    for line in (out / "summary.txt").read_text().splitlines():
        assert len(line) <= 80, line
    assert not list(tmp_path.glob(".r.tmp-*"))


def test_default_folder_under_results(cli, write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = cli("run", str(write(SMALL)), "--quiet")
    assert code == 0
    runs = list((tmp_path / "results" / "small").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").exists()


def test_same_seed_same_bytes_other_seed_differs(cli, write, tmp_path):
    wl = write(SMALL.replace("nr_pages: 1", "nr_pages: 1\n    max_pages: 16"))
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert (
            cli("run", str(wl), "-o", str(tmp_path / name), "--seed", seed, "--quiet")[
                0
            ]
            == 0
        )
    a, b, c = ((tmp_path / n / "metrics.json").read_bytes() for n in "abc")
    assert a == b
    assert a != c
    ma = json.loads(a)["strategies"]["module_alloc"]
    mc = json.loads(c)["strategies"]["module_alloc"]
    assert ma["alloc.vmalloc.latency_ns.mean"] != mc["alloc.vmalloc.latency_ns.mean"]


def test_config_yaml_reruns_identically(cli, write, tmp_path):
    wl = write(SMALL.replace("preset: latest", "preset: '6.1'"))
    assert cli("run", str(wl), "-o", str(tmp_path / "a"), "--quiet")[0] == 0
    cfg = tmp_path / "a" / "config.yaml"
    resolved = yaml.safe_load(cfg.read_text())
    assert resolved["kernel"]["vmap_locking"] == "global"
    assert resolved["machine"]["tlb"]["stlb"][0]["entries"] == 1536
    assert cli("run", str(cfg), "-o", str(tmp_path / "b"), "--quiet")[0] == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a == b


def test_failed_write_leaves_existing_folder(cli, write, tmp_path, monkeypatch):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("old results")

    def boom(*a, **k):
        raise OSError("disk full")

    # the writer imports the charts when it draws them: patch them there
    monkeypatch.setattr(charts, "render_charts", boom)
    code, _, err = cli("run", str(write(SMALL)), "-o", str(out), "--quiet")
    assert code == 1
    assert (out / "precious.txt").read_text() == "old results"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_several_strategies_side_by_side(cli, write, tmp_path):
    from simcore.strategies import register, unregister
    from simcore.strategies.module_alloc import ModuleAlloc

    class Twin(ModuleAlloc):
        name = "twin_alloc"
        summary = "test copy of module_alloc"

    register("twin_alloc", Twin)
    try:
        wl = write(
            SMALL.replace(
                "strategy: module_alloc", "strategy: [module_alloc, twin_alloc]"
            )
        )
        code, stdout, _ = cli("run", str(wl), "-o", str(tmp_path / "o"))
        assert code == 0
        doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
        assert list(doc["strategies"]) == ["module_alloc", "twin_alloc"]
        # same workload, same seed: the strategies see the same randomness
        assert doc["strategies"]["module_alloc"] == doc["strategies"]["twin_alloc"]
        assert "change" in stdout
    finally:
        unregister("twin_alloc")


@pytest.mark.parametrize("preset", ["5.10", "6.1", "6.9"])
def test_presets_run(cli, write, tmp_path, preset):
    wl = write(SMALL.replace("preset: latest", f"preset: '{preset}'"))
    assert cli("run", str(wl), "-o", str(tmp_path / "o"), "--quiet")[0] == 0


def test_report_rerenders(cli, write, tmp_path):
    out = tmp_path / "r"
    assert cli("run", str(write(SMALL)), "-o", str(out), "--quiet")[0] == 0
    before = (out / "summary.txt").read_text()
    (out / "summary.txt").unlink()
    (out / "lock_wait.png").unlink()
    code, stdout, _ = cli("report", str(out))
    assert code == 0 and stdout == before
    assert (out / "lock_wait.png").exists()
    code, stdout, _ = cli("report", str(out), str(out))
    assert code == 0 and "1.r" in stdout and "2.r" in stdout
    assert cli("report", str(tmp_path))[0] == 2


def test_a_capture_edit_changes_the_config_hash(tmp_path):
    from simcore import load_workload

    cap = tmp_path / "lsmod.txt"
    cap.write_text("Module                  Size  Used by\nxfs  1900544  1\n")
    wl = tmp_path / "w.yaml"
    wl.write_text(
        "name: cap\nduration: 100us\nmachine: {profile: small-test}\n"
        "workloads:\n  - {type: module_load, modules: {from_lsmod: lsmod.txt}}\n"
    )
    first = load_workload(wl)
    assert load_workload(wl).config_hash == first.config_hash
    assert set(first.captures) == {"lsmod.txt"}
    cap.write_text(cap.read_text() + "ext4  1048576  2\n")
    assert load_workload(wl).config_hash != first.config_hash
