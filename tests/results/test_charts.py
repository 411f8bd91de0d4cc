"""Charts: every one is drawn from fixture data, opened, and checked."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from simcore.results import charts
from simcore.results.charts import style
from simcore.results.writer import read_latency_csv, read_timeseries_csv
from tests.results.conftest import GOLDEN


def _render(case: str, out: Path) -> list[Path]:
    folder = GOLDEN / case
    doc = json.loads((folder / "metrics.json").read_text())
    return charts.render_charts(
        doc,
        out,
        "fixture",
        cdfs=read_latency_csv(folder / "latency.csv"),
        series=read_timeseries_csv(folder / "timeseries.csv"),
    )


def _check_png(path: Path) -> None:
    assert path.stat().st_size > 1000
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert 300 <= w <= 2500 and 250 <= h <= 2000, (path.name, w, h)
    # not a blank canvas: dark ink (axes, text, bars) is present
    assert img[..., :3].min() < 0.3


def _check_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 50
    assert b"<dc:date>" not in path.read_bytes()


@pytest.mark.parametrize("case", ["two-strategies", "replicated"])
def test_every_chart_is_drawn_and_opens(case, tmp_path):
    paths = _render(case, tmp_path)
    stems = {p.stem for p in paths}
    assert stems == set(charts.CHARTS)
    for stem in charts.CHARTS:
        _check_png(tmp_path / f"{stem}.png")
        _check_svg(tmp_path / f"{stem}.svg")


def test_charts_of_absent_metrics_are_skipped(tmp_path):
    doc = {
        "simcore_version": "0.1.0",
        "seed": 1,
        "config_hash": "x",
        "strategies": {"a": {"vmap.lazy_purges": 3}},
    }
    assert charts.render_charts(doc, tmp_path, "t") == []
    assert list(tmp_path.iterdir()) == []


def test_one_strategy_without_latency_data_skips_only_the_cdf(tmp_path):
    stems = {p.stem for p in _render("one-strategy", tmp_path)}
    assert stems == set(charts.CHARTS) - {"latency_cdf"}


def test_svg_is_byte_identical_between_renders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _render("replicated", a)
    _render("replicated", b)
    for svg in sorted(a.glob("*.svg")):
        assert svg.read_bytes() == (b / svg.name).read_bytes(), svg.name


def test_replicated_bars_carry_error_bars(tmp_path):
    doc = json.loads((GOLDEN / "replicated" / "metrics.json").read_text())
    charts.tlb_misses_chart(doc, tmp_path, "q")
    plain = dict(doc)
    plain.pop("replications")
    (tmp_path / "plain").mkdir()
    charts.tlb_misses_chart(plain, tmp_path / "plain", "q")
    with_ci = (tmp_path / "tlb_misses.svg").read_text()
    without = (tmp_path / "plain" / "tlb_misses.svg").read_text()
    assert "95% CI" in with_ci and "95% CI" not in without
    # caps and whiskers are extra line paths
    assert with_ci.count("<path") > without.count("<path")


def test_metric_vs_parameter_chart(tmp_path):
    rows = []
    for s, k in (("module_alloc", 1.0), ("bpf_prog_pack", 0.4)):
        for cpus in (16, 64, 224):
            for seed in range(3):  # plain numbers per seed: averaged, banded
                rows.append(
                    {"strategy": s, "machine.cpus": cpus, "tlb.ipis": k * cpus + seed}
                )
    paths = charts.metric_vs_parameter_chart(
        rows, "tlb.ipis", "machine.cpus", tmp_path, "how do IPIs grow with CPUs?"
    )
    assert [p.name for p in paths] == [
        "tlb_ipis_vs_machine_cpus.png",
        "tlb_ipis_vs_machine_cpus.svg",
    ]
    _check_png(paths[0])
    _check_svg(paths[1])
    assert "band: 95% CI" in paths[1].read_text()


def test_metric_vs_parameter_chart_takes_intervals_and_categories(tmp_path):
    rows = [
        {
            "strategy": "a",
            "kernel.preset": p,
            "cpu.overhead_pct": {"mean": m, "ci95_low": m - 1, "ci95_high": m + 1},
        }
        for p, m in (("5.10", 9.0), ("6.1", 7.5), ("6.9", 4.0))
    ]
    paths = charts.metric_vs_parameter_chart(
        rows, "cpu.overhead_pct", "kernel.preset", tmp_path, "q"
    )
    svg = paths[1].read_text()
    for label in ("5.10", "6.1", "6.9"):
        assert f"{label}" in svg
    _check_png(paths[0])
    assert charts.metric_vs_parameter_chart(rows, "tlb.ipis", "x", tmp_path, "q") == []


@pytest.mark.parametrize(
    ("unit", "peak", "want"),
    [
        ("ns", 2.5e7, (1e6, "ms")),
        ("ns", 500, (1.0, "ns")),
        ("bytes", 3 << 30, (float(1 << 30), "GiB")),
        ("count", 4.2e6, (1e6, "millions")),
        ("pct", 40, (1.0, "%")),
    ],
)
def test_axis_scale(unit, peak, want):
    assert charts.axis_scale(unit, peak) == want


def _svg_texts(path: Path) -> list[str]:
    # matplotlib draws text as paths and keeps each string as a comment
    return re.findall(r"<!-- (.*?) -->", path.read_text())


def test_axes_and_titles_say_what_the_catalog_calls_a_metric(tmp_path):
    doc = json.loads((GOLDEN / "two-strategies" / "metrics.json").read_text())
    names = {k for m in doc["strategies"].values() for k in m}
    paths = _render("two-strategies", tmp_path)
    for svg in (p for p in paths if p.suffix == ".svg"):
        texts = _svg_texts(svg)
        assert not names & set(texts), svg.name
        assert not [t for t in texts if re.search(r"\b[a-z]+\.[a-z_]+\.[a-z_]", t)]
    assert "iTLB misses" in _svg_texts(tmp_path / "tlb_misses.svg")
    assert "flush IPIs" in _svg_texts(tmp_path / "shootdowns.svg")


def test_sweep_axes_use_metric_and_parameter_labels(tmp_path):
    rows = [
        {
            "strategy": "a",
            "workloads[0].nr_threads": n,
            "alloc.vmalloc.latency_ns.mean": 900.0 * n,
        }
        for n in (1, 2, 4)
    ]
    paths = charts.metric_vs_parameter_chart(
        rows, "alloc.vmalloc.latency_ns.mean", "workloads[0].nr_threads", tmp_path
    )
    texts = _svg_texts(paths[1])
    assert "worker threads (nr_threads)" in texts
    assert "vmalloc latency, mean (us)" in texts
    assert "vmalloc latency, mean vs worker threads (nr_threads)" in texts
    assert not any("workloads[0]" in t or "latency_ns" in t for t in texts)


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("machine.cpus", "CPUs"),
        ("workloads[0].nr_threads", "worker threads (nr_threads)"),
        ("kernel.vmap_locking", "vmap locking"),
        ("workloads[1].churn.load_rate", "load rate"),
        ("kernel.preset", "kernel version (preset)"),
    ],
)
def test_param_label(key, want):
    assert charts.param_label(key) == want


def test_pinned_titles_draw_the_same_picture(tmp_path, monkeypatch):
    """Titles pinned after the layout (style.pin_titles) come out where
    matplotlib's automatic placement puts them, byte for byte, also where a
    y axis offset text ("1e-7") keeps a title automatic."""
    tiny = {
        "strategies": {
            "a": {"cpu.overhead_pct": 3e-7, "cpu.pagewalk_ns": 5},
            "b": {"cpu.overhead_pct": 5e-7, "cpu.pagewalk_ns": 2},
        }
    }

    def draw(folder: Path) -> None:
        (folder / "tiny").mkdir(parents=True)
        _render("replicated", folder)
        charts.cpu_overhead_chart(tiny, folder / "tiny", "a long title " * 8)

    pinned, auto = tmp_path / "pinned", tmp_path / "auto"
    draw(pinned)
    assert "1e−7" in _svg_texts(pinned / "tiny" / "cpu_overhead.svg")
    monkeypatch.setattr(style, "pin_titles", lambda fig: None)
    draw(auto)
    files = sorted(p.relative_to(pinned) for p in pinned.rglob("*.*"))
    assert len(files) == 2 * len(charts.CHARTS) + 2
    for f in files:
        assert (pinned / f).read_bytes() == (auto / f).read_bytes(), f


def test_save_closes_pyplot_figures(tmp_path):
    """The sweep and validation charts draw with pyplot and save through
    _save, which lets pyplot forget each figure."""
    plt = charts.plt
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    paths = charts._save(fig, tmp_path, "p")
    assert [p.name for p in paths] == ["p.png", "p.svg"]
    assert not plt.fignum_exists(fig.number)
