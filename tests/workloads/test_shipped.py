"""The shipped workloads under workloads/ run with `simcore run`.

Every file is validated; the generators' own examples run end to end,
shortened. All of them, at full length, run with ``pytest -m slow``.
"""

from __future__ import annotations

import json

import pytest

from tests.workloads import ROOT

SHIPPED = sorted(
    p for p in (ROOT / "workloads").glob("*.yaml") if "sweep" not in p.name
)
QUICK = {
    "boot-modules.yaml": "module.loads",
    "test-vmalloc.yaml": "alloc.vmalloc.count",
    "mixed-host.yaml": "bpf.progs_loaded",
    "trace-replay.yaml": "workload.trace.events",
    "text-patching.yaml": "bpf.progs_loaded",
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_workload_is_valid(cli, path):
    code, _, err = cli("check", str(path))
    assert code == 0, err
    assert path.read_text().startswith("#"), "a comment first: the question"


@pytest.mark.parametrize("name", sorted(QUICK))
def test_quick_shipped_workloads_run(cli, tmp_path, name):
    path = ROOT / "workloads" / name
    out = tmp_path / "out"
    code, _, err = cli(
        "run",
        str(path),
        "-o",
        str(out),
        "--quiet",
        "--set",
        "duration=2ms",
        "--strategy",
        "module_alloc",
    )
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())["strategies"]["module_alloc"]
    assert m[QUICK[name]] > 0


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_workload_full_run(cli, tmp_path, path, request):
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("full-length runs: pytest -m slow")
    code, _, err = cli("run", str(path), "-o", str(tmp_path / "out"), "--quiet")
    assert code == 0, err
