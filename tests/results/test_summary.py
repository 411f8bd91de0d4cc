"""summary.txt and its markdown / JSON forms.

Golden files: each folder under golden/ is a hand-made results folder
(metrics.json, config.yaml, timeseries.csv) with the summary.txt and
summary.md it must render to, byte for byte. After an intended format
change, regenerate them with

    SIMCORE_UPDATE_GOLDEN=1 python -m pytest tests/results/test_summary.py

and review the diff of golden/*/summary.* before committing.
"""

from __future__ import annotations

import copy
import json
import os

import pytest

from simcore.results import fmt
from simcore.results.report import render, render_folders
from simcore.results.stats import ci95, overlap, replication_seeds
from simcore.results.summary import WIDTH, build_comparison, render_text
from tests.results.conftest import CASES, GOLDEN, META, metrics_doc

UPDATE = os.environ.get("SIMCORE_UPDATE_GOLDEN") == "1"
GOLDEN_FILES = {"text": "summary.txt", "markdown": "summary.md"}

_doc = metrics_doc


def test_golden_cases_exist():
    assert {"one-strategy", "two-strategies", "five-strategies", "replicated"} <= set(
        CASES
    )


@pytest.mark.parametrize("fmt_name", sorted(GOLDEN_FILES))
@pytest.mark.parametrize("case", CASES)
def test_golden(case, fmt_name):
    got = render_folders([GOLDEN / case], fmt_name)
    path = GOLDEN / case / GOLDEN_FILES[fmt_name]
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), (
        f"{path.name} of {case} changed; if intended, regenerate with "
        "SIMCORE_UPDATE_GOLDEN=1 (see this file's docstring)"
    )


@pytest.mark.parametrize("fmt_name", ["text", "markdown"])
@pytest.mark.parametrize("case", CASES)
def test_golden_within_80_columns(case, fmt_name):
    text = render_folders([GOLDEN / case], fmt_name)
    for line in text.splitlines():
        assert len(line) <= WIDTH, line
        assert "\t" not in line


def test_five_strategies_split_into_tables_that_repeat_the_baseline():
    lines = render_folders([GOLDEN / "five-strategies"]).splitlines()
    headers = [
        i for i, line in enumerate(lines) if line.split()[:1] == ["module_alloc"]
    ]
    # 5 columns of value and change do not fit 80 columns: two tables,
    # each led by the baseline; the headline's two parts come first
    assert len(headers) == 4
    firsts = [lines[i + 2] for i in headers]
    assert firsts[:2] == ["Headline", "Headline"]
    assert "Headline" not in firsts[2:]
    # a long name wraps over header lines at an underscore, never cut
    wrapped = [i for i, line in enumerate(lines) if line.endswith("vmalloc_huge_")]
    assert wrapped and lines[wrapped[0] + 1].endswith("text_poke_batched")


def test_many_long_strategies_with_intervals_stay_within_80_columns():
    base = {
        "itlb.misses": 123_456_789_012,
        "lock.a_really_long_kernel_lock_name_here.wait_ns": 9_876_543_210,
        "alloc.execmem_alloc_with_long_op.latency_ns.p99": 1_234_567,
        "workload.some_generator_with_a_long_name.loads_completed": 5,
        "mem.exec.waste_bytes": 3 << 30,
    }
    strategies, reps = {}, {}
    for i in range(9):
        name = f"strategy_with_a_rather_long_name_number_{i}"
        m = {k: v * (1 + i / 7) for k, v in base.items()}
        strategies[name] = m
        reps[name] = {
            k: {
                "mean": v,
                "ci95_low": v * 0.9,
                "ci95_high": v * 1.1,
                "n": 3,
                "values": [v] * 3,
            }
            for k, v in m.items()
        }
    doc = _doc(strategies, replications=reps)
    meta = dict(META, name="x" * 100)
    comp = build_comparison(doc, meta)
    for fmt_name in ("text", "markdown"):
        out = render(comp, fmt_name)
        assert max(len(line) for line in out.splitlines()) <= WIDTH
    text = render_text(comp)
    assert "strategy_with_a_" in text and "number_8" in text
    assert "±" in text


def _marks(doc: dict) -> dict[str, str]:
    comp = build_comparison(doc, META)
    return {
        row.metric: row.cells[1].mark
        for sec in comp.sections
        for grp in sec.groups
        for row in grp.rows
    }


def test_marks_follow_the_catalogs_better_direction():
    a = {
        "tlb.shootdowns": 100,  # lower is better
        "directmap.1g_bytes": 4 << 30,  # higher is better
        "vmap.used_bytes": 1000,  # no direction
        "tlb.ipis": 50,
    }
    b = {
        "tlb.shootdowns": 40,
        "directmap.1g_bytes": 2 << 30,
        "vmap.used_bytes": 3000,
        "tlb.ipis": 50,
    }
    marks = _marks(_doc({"base": a, "new": b}))
    assert marks == {
        "tlb.shootdowns": "+",
        "directmap.1g_bytes": "-",
        "vmap.used_bytes": "",
        "tlb.ipis": "",
    }
    text = render_text(build_comparison(_doc({"base": a, "new": b}), META))
    assert "-60.0% +" in text and "-50.0% -" in text and "+200.0%" in text
    assert "relative to base" in text


def test_overlapping_intervals_are_marked_not_significant():
    def rep(mean, half):
        return {
            "mean": mean,
            "ci95_low": mean - half,
            "ci95_high": mean + half,
            "n": 5,
            "values": [],
        }

    doc = _doc(
        {
            "base": {"tlb.ipis": 100, "tlb.shootdowns": 100},
            "new": {"tlb.ipis": 90, "tlb.shootdowns": 50},
        },
        replications={
            "base": {"tlb.ipis": rep(100, 8), "tlb.shootdowns": rep(100, 5)},
            "new": {"tlb.ipis": rep(90, 5), "tlb.shootdowns": rep(50, 5)},
        },
    )
    assert _marks(doc) == {"tlb.ipis": "~", "tlb.shootdowns": "+"}
    text = render_text(build_comparison(doc, META))
    assert "not significant at 95%" in text
    assert "100 ±8" in text and "-10.0% ~" in text


def test_single_strategy_has_no_change_column_and_a_complete_footer():
    text = render_folders([GOLDEN / "one-strategy"])
    assert "change" not in text
    foot = " ".join(text.splitlines()[-3:])
    for part in (
        "simcore 0.1.0",
        "profile sapphire-rapids-2s",
        "kernel 6.9",
        "seed 1",
        "200ms",
        "config a41d0c9e7f13",
    ):
        assert part in foot


def test_sections_in_reading_order():
    text = render_folders([GOLDEN / "two-strategies"])
    titles = [
        "Headline",
        "TLB",
        "Page walks",
        "CPU time",
        "Shootdowns",
        "Direct map",
        "Locks",
        "Memory",
        "Allocation latency",
        "vmap",
        "Simulator",
    ]
    lines = text.splitlines()
    pos = [lines.index(t) for t in titles]
    assert pos == sorted(pos)


def test_json_format_carries_values_and_marks():
    out = json.loads(render_folders([GOLDEN / "replicated"], "json"))
    assert out["columns"] == ["module_alloc", "bpf_prog_pack"]
    assert out["replications"] == 5
    rows = {
        r["metric"]: r for s in out["sections"] for g in s["groups"] for r in g["rows"]
    }
    itlb = rows["itlb.misses"]
    assert itlb["better"] == "lower"
    assert itlb["cells"][1]["mark"] == "+"
    assert itlb["cells"][1]["change_pct"] < -50
    assert (
        itlb["cells"][0]["low"] < itlb["cells"][0]["value"] < itlb["cells"][0]["high"]
    )


def test_missing_metric_in_one_strategy_is_a_dash():
    doc = _doc({"a": {"tlb.ipis": 1, "vmap.lazy_purges": 3}, "b": {"tlb.ipis": 2}})
    text = render_text(build_comparison(doc, META))
    line = next(x for x in text.splitlines() if "lazy_purges" in x)
    assert line.split()[-1] == "-"


@pytest.mark.parametrize(
    ("value", "base", "want"),
    [
        (59, 100, "-41.0%"),
        (100, 100, "0.0%"),
        (5, 0, "from 0"),
        (2500, 100, "25.0x"),
        (150, 100, "+50.0%"),
    ],
)
def test_format_change(value, base, want):
    assert fmt.format_change(value, base) == want


@pytest.mark.parametrize(
    ("half", "mean", "unit", "want"),
    [
        (849_000, 48_300_000, "count", "0.8M"),
        (7_213, 263_000, "count", "7K"),
        (153.2, 4231, "count", "153"),
        (109_000, 195_000, "ns", "109us"),
        (48_500, 3_350_000, "ns", "0.05ms"),
        (0, 60 << 30, "bytes", "0"),
        (0.31, 4.8, "pct", "0.3%"),
        (1, 48_300_000, "count", "1"),
    ],
)
def test_half_width_reads_in_the_means_unit(half, mean, unit, want):
    assert fmt.human_half(half, mean, unit) == want


def test_rare_percentages_do_not_read_as_zero():
    assert fmt.human(0.005314, "pct") == "0.005%"
    assert fmt.human(0, "pct") == "0.0%"


def test_ci95_is_student_t():
    iv = ci95([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.n == 3
    # t(0.975, df=2) = 4.3027; sd = 1; sem = 1/sqrt(3)
    assert iv.half == pytest.approx(4.3027 / 3**0.5, rel=1e-4)
    one = ci95([5.0])
    assert one.low is None and one.half is None
    assert not overlap(one, iv)
    assert overlap(iv, ci95([3.0, 4.0, 5.0]))
    assert not overlap(ci95([1.0, 1.1, 0.9]), ci95([5.0, 5.1, 4.9]))


def test_replication_seeds_are_stable_and_prefix_free_of_n():
    five = replication_seeds(1, 5)
    assert five == replication_seeds(1, 5)
    assert replication_seeds(1, 3) == five[:3]
    assert len(set(five)) == 5
    assert replication_seeds(2, 5) != five
    assert all(0 <= s < 2**32 for s in five)


def test_render_does_not_modify_the_document():
    doc = json.loads((GOLDEN / "replicated" / "metrics.json").read_text())
    before = copy.deepcopy(doc)
    build_comparison(doc, META)
    assert doc == before
