"""Answer first: the headline rows, per-load figures, hidden all-zero rows
and the one-column lock table that keep the quickstart summary pasteable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simcore.metrics.catalog import CATALOG, HEADLINE, label_of, lookup
from simcore.metrics.derived import RATIOS, derive
from simcore.results.report import render_folders
from simcore.results.summary import build_comparison, render_json, render_text
from tests.conftest import SMALL
from tests.results.conftest import GOLDEN, META, metrics_doc

QUICKSTART = Path(__file__).parents[2] / "workloads" / "quickstart.yaml"
_doc = metrics_doc


def _rows(comp) -> dict:
    return {r.metric: r for s in comp.sections for g in s.groups for r in g.rows}


def test_headline_and_derived_names_are_catalogued_with_labels():
    for name in HEADLINE + tuple(r[0] for r in RATIOS):
        info = lookup(name)
        assert info is not None and info.label, name
        assert len(label_of(name)) <= 26, name  # fits the summary's label column
    derived = [m for m in CATALOG if m.description.startswith("derived:")]
    assert {m.pattern for m in derived} == {r[0] for r in RATIOS}


def test_headline_leads_under_catalog_labels_and_is_not_repeated():
    lines = render_folders([GOLDEN / "two-strategies"]).splitlines()
    top = lines.index("Headline")
    end = next(i for i in range(top, len(lines)) if lines[i].startswith("---"))
    head = lines[top + 1 : end]
    assert head[0].split()[:2] == ["iTLB", "misses"]
    assert any("TLB shootdowns" in line and "-82.0% +" in line for line in head)
    detail = "\n".join(lines[end:])
    assert "itlb.misses" not in detail and "  shootdowns " not in detail
    assert "dtlb.misses" in detail  # the rest of the TLB section stays


def test_rows_zero_in_every_column_are_hidden_unless_all():
    zero_lock = {"lock.pgd_lock.wait_ns": 0, "lock.pgd_lock.acquisitions": 0}
    doc = _doc(
        {
            "a": {"tlb.ipis": 0, "vmap.lazy_purges": 3, **zero_lock},
            "b": {"tlb.ipis": 0, "vmap.lazy_purges": 0, **zero_lock},
        }
    )
    text = render_text(build_comparison(doc, META))
    assert "IPIs" not in text and "pgd_lock" not in text
    assert "lazy_purges" in text  # zero in one column only: shown
    assert "3 zero rows hidden (--all)" in text
    full = render_text(build_comparison(doc, META, show_all=True))
    assert "flush IPIs" in full and "pgd_lock" in full and "hidden" not in full
    # JSON is for scripts: every row, flagged
    rows = {
        r["metric"]: r
        for s in json.loads(render_json(build_comparison(doc, META)))["sections"]
        for g in s["groups"]
        for r in g["rows"]
    }
    assert rows["tlb.ipis"]["all_zero"] and not rows["vmap.lazy_purges"]["all_zero"]


def test_report_all_shows_the_hidden_rows(cli, case_copy):
    folder = case_copy("two-strategies")
    code, out, _ = cli("report", str(folder))
    assert code == 0 and "alloc_failures" not in out
    code, full, _ = cli("report", str(folder), "--all")
    assert code == 0 and "alloc_failures" in full and "hidden" not in full
    # summary.txt is the paste-ready form whatever was printed
    assert (folder / "summary.txt").read_text() == out


def test_per_load_figures_exist_only_where_there_were_loads():
    doc = _doc(
        {
            "a": {
                "tlb.shootdowns": 30,
                "tlb.ipis": 300,
                "module.loads": 10,
                "bpf.progs_loaded": 20,
                "text_poke.pokes": 4,
                "text_poke.sync_ipis": 12,
                "alloc.module_load.latency_ns.mean": 52_000,
            },
            "b": {"tlb.shootdowns": 5, "tlb.ipis": 50},
        }
    )
    comp = build_comparison(doc, META)
    rows = _rows(comp)
    assert [c.value for c in rows["tlb.shootdowns_per_load"].cells] == [1.0, None]
    assert rows["tlb.ipis_per_load"].cells[0].value == 10.0
    assert rows["text_poke.sync_ipis_per_poke"].cells[0].value == 3.0
    text = render_text(comp)
    assert "shootdowns per load" in text and "time per module load" in text
    assert derive({"tlb.shootdowns": 3}) == {}
    assert derive({"tlb.shootdowns": 3, "module.loads": 0}) == {}
    assert doc["strategies"]["a"].keys().isdisjoint(derive(doc["strategies"]["a"]))


def test_per_load_intervals_are_over_the_replications_ratios():
    def rep(values):
        mean = sum(values) / len(values)
        return {"mean": mean, "ci95_low": mean - 1, "ci95_high": mean + 1}

    values = {"tlb.shootdowns": [10, 20, 30], "module.loads": [10, 10, 10]}
    reps = {m: {**rep(v), "n": 3, "values": v} for m, v in values.items()}
    doc = _doc({"a": {m: r["mean"] for m, r in reps.items()}}, replications={"a": reps})
    cell = _rows(build_comparison(doc, META))["tlb.shootdowns_per_load"].cells[0]
    assert cell.value == 2.0 and cell.n == 3
    assert cell.low < 2.0 < cell.high


def test_one_column_prints_a_line_per_lock():
    locks = {
        "lock.x_lock.wait_ns": 1500,
        "lock.x_lock.hold_ns": 9000,
        "lock.x_lock.acquisitions": 12,
        "lock.y_lock.wait_ns": 0,
        "lock.y_lock.hold_ns": 40,
        "lock.y_lock.acquisitions": 2,
        "lock.z_lock.wait_ns": 0,
        "lock.z_lock.hold_ns": 0,
        "lock.z_lock.acquisitions": 0,
    }
    lines = render_text(build_comparison(_doc({"a": locks}), META)).splitlines()

    def line(start: str) -> list[str]:
        return next(x for x in lines if x.startswith(start)).split()

    assert line("Locks") == ["Locks", "wait", "hold", "acquisitions"]
    assert line("  x_lock") == ["x_lock", "1.50us", "9.00us", "12"]
    assert line("  y_lock") == ["y_lock", "0ns", "40.0ns", "2"]  # zero cell kept
    assert not any("z_lock" in x for x in lines)  # never taken: left out
    # two columns compare row by row, as before
    two = render_text(build_comparison(_doc({"a": locks, "b": locks}), META))
    assert "  x_lock\n    wait_ns" in two


def test_quickstart_summary_fits_a_mail(cli, tmp_path):
    folder = tmp_path / "q"
    code, out, err = cli("run", str(QUICKSTART), "-o", str(folder))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) <= 50, out  # the closing "results:" line included
    assert max(len(x) for x in lines) <= 80
    m = json.loads((folder / "metrics.json").read_text())["strategies"]
    (metrics,) = m.values()
    idle = [
        k.split(".")[1]
        for k, v in metrics.items()
        if k.startswith("lock.") and k.endswith(".acquisitions") and v == 0
    ]
    for lock in idle:
        assert lock not in out
    zero = [k for k, v in metrics.items() if v == 0 and k.startswith("directmap.")]
    for name in zero:
        assert name.split(".")[1] not in out
    code, full, _ = cli("report", str(folder), "--all")
    assert code == 0 and len(full.splitlines()) > len(lines)
    assert all(lock in full for lock in idle)


@pytest.mark.parametrize("fmt_name", ["text", "markdown"])
def test_run_all_prints_every_row(cli, write, tmp_path, fmt_name):
    wl = write(SMALL)
    code, out, err = cli(
        "run", str(wl), "-o", str(tmp_path / "o"), "--all", "--format", fmt_name
    )
    assert code == 0, err
    assert "hidden" not in out
    assert "hidden (--all)" in (tmp_path / "o" / "summary.txt").read_text()
