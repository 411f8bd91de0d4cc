"""`simcore report` and `simcore run --replications / --format`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import simcore.engine
from simcore.metrics import RunResult
from simcore.results import charts
from simcore.results.replicate import Replicated
from simcore.results.report import folder_labels
from simcore.results.stats import replication_seeds
from tests.conftest import SMALL


def _no_simulation(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("report must not simulate")

    monkeypatch.setattr(simcore.engine, "Simulation", refuse)
    monkeypatch.setattr(simcore.engine, "simulate", refuse)


def _within_80(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= 80, line


def _as_preset_61(folder: Path) -> None:
    """Make a golden copy look like the same run on a 6.1 kernel."""
    cfg = folder / "config.yaml"
    cfg.write_text(cfg.read_text().replace("preset: '6.9'", "preset: '6.1'"))
    doc = json.loads((folder / "metrics.json").read_text())
    doc["config_hash"] = "61aa61aa61aa"
    for m in doc["strategies"].values():
        m["lock.vmap_area_lock.wait_ns"] *= 3
    (folder / "metrics.json").write_text(json.dumps(doc, indent=2))


def test_two_folders_side_by_side_without_simulating(cli, case_copy, monkeypatch):
    new = case_copy("one-strategy", "run-69")
    old = case_copy("one-strategy", "run-61")
    _as_preset_61(old)
    before = {p: p.read_bytes() for f in (new, old) for p in f.iterdir()}
    _no_simulation(monkeypatch)
    code, out, err = cli("report", str(old), str(new))
    assert code == 0, err
    _within_80(out)
    lines = out.splitlines()
    # columns named by what differs between the configs, baseline first
    header = next(line for line in lines if line.split()[:1] == ["preset=6.1"])
    assert header.index("preset=6.1") < header.index("preset=6.9")
    assert "change: relative to preset=6.1" in out
    wait = lines[lines.index("  vmap_area_lock") + 1]
    assert wait.split()[0] == "wait_ns"
    assert "-66.7% +" in wait  # 6.9 waits a third as long, lower is better
    assert "preset=6.1 (folder run-61)" in out and "config 61aa61aa61aa" in out
    assert "preset=6.9 (folder run-69)" in out and "config a41d0c9e7f13" in out
    # the title keeps what both share and drops the kernel, which differs
    assert lines[0].startswith("bpf-jit-churn: 224 CPUs sapphire-rapids-2s, 200ms")
    # several folders: printed only, nothing in them rewritten
    assert before == {p: p.read_bytes() for f in (new, old) for p in f.iterdir()}


def test_side_by_side_markdown_and_json(cli, case_copy, monkeypatch):
    a = case_copy("two-strategies", "a")
    b = case_copy("replicated", "b")
    _no_simulation(monkeypatch)
    code, md, _ = cli("report", str(a), str(b), "--format", "markdown")
    assert code == 0
    _within_80(md)
    assert md.startswith("### bpf-jit-churn")
    assert "| metric" in md
    code, js, _ = cli("report", str(a), str(b), "--format", "json")
    assert code == 0
    out = json.loads(js)
    # same config, so the folder names label the columns
    assert out["columns"] == [
        "a:module_alloc",
        "a:bpf_prog_pack",
        "b:module_alloc",
        "b:bpf_prog_pack",
    ]
    assert out["replications"] == 5


def test_single_folder_report_redraws_summary_and_charts(cli, case_copy, monkeypatch):
    folder = case_copy("replicated")
    golden = (folder / "summary.txt").read_text()
    for p in folder.glob("summary.*"):
        p.unlink()
    _no_simulation(monkeypatch)
    code, out, _ = cli("report", str(folder))
    assert code == 0
    assert out == golden == (folder / "summary.txt").read_text()
    for stem in charts.CHARTS:
        assert (folder / f"{stem}.png").stat().st_size > 0, stem
        assert (folder / f"{stem}.svg").stat().st_size > 0, stem


def test_labels_fall_back_to_folder_names_or_strategies(tmp_path):
    cfg = {"name": "w", "seed": 1, "kernel": {"preset": "6.9"}, "strategy": ["a"]}
    other = dict(cfg, strategy=["b"])
    labels, source = folder_labels([tmp_path / "x", tmp_path / "y"], [cfg, other])
    assert (labels, source) == (["x", "y"], "same")
    seeded = dict(cfg, seed=2)
    labels, source = folder_labels([tmp_path / "x", tmp_path / "y"], [cfg, seeded])
    assert (labels, source) == (["seed=1", "seed=2"], "config")
    labels, _ = folder_labels([tmp_path / "r", tmp_path / "r"], [cfg, cfg])
    assert labels == ["1.r", "2.r"]


def test_report_of_runs_differing_only_in_strategy_names_columns_by_strategy(
    cli, case_copy
):
    a = case_copy("one-strategy", "a")
    b = case_copy("one-strategy", "b")
    doc = json.loads((b / "metrics.json").read_text())
    doc["strategies"] = {"bpf_prog_pack": doc["strategies"]["module_alloc"]}
    (b / "metrics.json").write_text(json.dumps(doc))
    cfg = b / "config.yaml"
    cfg.write_text(cfg.read_text().replace("module_alloc", "bpf_prog_pack"))
    code, out, _ = cli("report", str(a), str(b), "--format", "json")
    assert json.loads(out)["columns"] == ["module_alloc", "bpf_prog_pack"]


def test_pooled_latency_cdf_weights_replications_by_count():
    def run(count, cdf):
        return RunResult(
            "s", {"alloc.vmalloc.count": count}, [], 0.1, 10, {"vmalloc": cdf}
        )

    rep = Replicated(
        [1, 2],
        [[run(100, [(10.0, 0.5), (20.0, 1.0)])], [run(300, [(20.0, 1.0)])]],
    )
    merged = rep.merged()[0]
    # 50 ops at 10 ns, then 50 + 300 at 20 ns, out of 400
    assert merged.latency_cdfs["vmalloc"] == [(10.0, 0.125), (20.0, 1.0)]
    assert merged.metrics["alloc.vmalloc.count"] == 200
    assert merged.events == 20


def test_replications_end_to_end(cli, write, tmp_path):
    wl = write(SMALL.replace("nr_pages: 1", "nr_pages: 1\n    max_pages: 16"))
    out = tmp_path / "rep"
    code, stdout, err = cli("run", str(wl), "-o", str(out), "--replications", "3")
    assert code == 0, err
    doc = json.loads((out / "metrics.json").read_text())
    assert {"simcore_version", "seed", "config_hash", "strategies"} <= set(doc)
    seeds = replication_seeds(1, 3)
    assert doc["replication_seeds"] == seeds
    reps = doc["replications"]["module_alloc"]
    means = doc["strategies"]["module_alloc"]
    assert set(reps) == set(means)
    for name, r in reps.items():
        assert r["n"] == 3 and len(r["values"]) == 3
        assert means[name] == r["mean"]
        assert r["ci95_low"] <= r["mean"] <= r["ci95_high"]
    lat = reps["alloc.vmalloc.latency_ns.mean"]
    assert len(set(lat["values"])) > 1, "replications must differ in seed"
    # replication i is exactly a plain run with the i-th derived seed
    one = tmp_path / "one"
    assert (
        cli("run", str(wl), "-o", str(one), "--seed", str(seeds[1]), "--quiet")[0] == 0
    )
    single = json.loads((one / "metrics.json").read_text())["strategies"]
    assert single["module_alloc"]["alloc.vmalloc.latency_ns.mean"] == lat["values"][1]
    summary = (out / "summary.txt").read_text()
    _within_80(summary)
    assert "±" in summary and "3 replications" in summary
    assert stdout.startswith(summary)


def test_replications_need_two(cli, write):
    for bad in ("1", "0", "x"):
        with pytest.raises(SystemExit) as exc:
            cli("run", str(write(SMALL)), "--replications", bad)
        assert exc.value.code == 2


def test_real_run_prints_every_format_within_80_columns(cli, write, tmp_path):
    from simcore.strategies import register, unregister
    from simcore.strategies.module_alloc import ModuleAlloc

    class Twin(ModuleAlloc):
        name = "module_alloc_twin_with_a_long_name"
        summary = "test copy of module_alloc"

    register(Twin.name, Twin)
    try:
        wl = write(
            SMALL.replace(
                "strategy: module_alloc", f"strategy: [module_alloc, {Twin.name}]"
            )
        )
        out = tmp_path / "o"
        code, text, _ = cli("run", str(wl), "-o", str(out))
        assert code == 0
        _within_80(text)
        _within_80((out / "summary.txt").read_text())
        assert "change: relative to module_alloc" in text
        code, md, err = cli("report", str(out), "--format", "markdown")
        assert code == 0
        _within_80(md)
        code, js, err = cli("run", str(wl), "-o", str(out), "--format", "json")
        assert code == 0 and "results:" in err
        assert json.loads(js)["columns"] == ["module_alloc", Twin.name]
        # summary.txt stays text whatever is printed
        assert (out / "summary.txt").read_text() == text.split("results:")[0]
    finally:
        unregister(Twin.name)
