"""Each strategy declares the first release that shipped it, with its
source; a run on an older preset, or of a strategy no release shipped, is a
what-if, which metrics.json records and the summary's header says."""

from __future__ import annotations

import re

import pytest

from simcore.kernel.presets import presets, release_key
from simcore.metrics.catalog import WHAT_IF
from simcore.results.summary import build_comparison, render_text
from simcore.strategies import get_strategy, strategy_names
from simcore.strategies.base import ALWAYS
from tests.results.conftest import META, metrics_doc

# a commit (12-hex id) or a mail's Message-ID (an RFC that was not merged)
CITED = re.compile(r"\b[0-9a-f]{12}\b|\S+@\S+\.\w+")


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_declares_its_first_release_with_a_source(name):
    cls = get_strategy(name)
    # declared in its own class, not inherited from the one it builds on
    assert "first_release" in vars(cls) and "release_source" in vars(cls), name
    first = cls.first_release
    assert first is None or first == ALWAYS or release_key(first), name
    src = cls.release_source
    assert first == ALWAYS or CITED.search(src) or "no series" in src, name


def test_what_if_follows_the_preset():
    pack = get_strategy("bpf_prog_pack")
    assert pack.what_if("5.17") and not pack.what_if("5.18")
    assert not pack.what_if("latest")
    assert not get_strategy("module_alloc").what_if("5.4")
    assert all(get_strategy("perm_alloc").what_if(p) for p in presets())
    # x86 turned the ROX cache off before v6.13 shipped (a9bbe3413331)
    assert get_strategy("execmem_rox").what_if("6.13")
    assert not get_strategy("execmem_rox").what_if("latest")


def test_list_strategies_shows_each_strategys_eras(cli):
    code, out, _ = cli("list", "strategies")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(strategy_names())
    assert all("eras: " in line for line in lines)
    pack = next(line for line in lines if line.startswith("bpf_prog_pack "))
    assert "eras: 5.18 and later" in pack and "57631054fae6" in pack


def test_the_summary_header_says_what_if_and_no_row_does():
    base = {"tlb.shootdowns": 10.0, "itlb.misses": 100.0}
    doc = metrics_doc(
        {
            "module_alloc": {**base, WHAT_IF: 0},
            "perm_alloc": {**base, "tlb.shootdowns": 5.0, WHAT_IF: 1},
        }
    )
    comp = build_comparison(doc, META)
    assert comp.what_if == ["perm_alloc"]
    text = render_text(comp)
    lines = text.splitlines()
    names = next(i for i, line in enumerate(lines) if "perm_alloc" in line.split())
    # the mark sits under its column's name, on a line of its own
    under = lines[names + 1]
    assert under.split() == ["what-if"]
    assert len(under.rstrip()) == len(lines[names].rstrip())
    assert WHAT_IF not in text and "what_if" not in text
    assert any(line.startswith("what-if: perm_alloc") for line in lines)
    assert all(len(line) <= 80 for line in lines)


def test_a_summary_without_what_if_columns_keeps_its_header():
    doc = metrics_doc({"module_alloc": {"tlb.shootdowns": 1.0, WHAT_IF: 0}})
    text = render_text(build_comparison(doc, META))
    assert "what-if" not in text
