"""The layer rules: contracts in pyproject.toml, no import cycles, small files.

``lint-imports`` runs in CI beside pytest; these tests hold the same rules
where a developer runs pytest, and show that breaking one fails the check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is a test dependency"
    # the package under check is the copy in cwd, not the installed one
    env = {"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_the_layer_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_kernel_module_importing_a_strategy_breaks_the_contracts(tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(
        ROOT / "simcore", copy / "simcore", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    bad = copy / "simcore" / "kernel" / "vmalloc.py"
    if not bad.exists():  # a package once split
        bad = copy / "simcore" / "kernel" / "vmalloc" / "__init__.py"
    bad.write_text(bad.read_text() + "\nfrom simcore.strategies.base import Strategy\n")
    proc = _lint_imports(copy)
    assert proc.returncode != 0
    assert "simcore.kernel" in proc.stdout and "simcore.strategies" in proc.stdout


def _graph():
    # type-only imports (under `if TYPE_CHECKING:`) are excluded: they name a
    # type for a checker and are never executed, so they order nothing
    return grimp.build_graph("simcore", exclude_type_checking_imports=True)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    adj = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(adj):
        if m not in index:
            visit(m)
    return out


def test_no_import_cycle_between_files():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    graph = _graph()
    graph.add_import(
        importer="simcore.hw.machine",
        imported="simcore.engine",
        line_number=1,
        line_contents="from simcore.engine import Simulation",
    )
    assert any("simcore.engine" in c for c in _cycles(graph))


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "simcore").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_file_over_600_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.name}: {n} lines"


def test_page_size_and_layout_constants_are_defined_once():
    import re

    pattern = re.compile(
        r"^(PAGE|PAGE_SIZE|PAGE_SHIFT|PMD_SIZE|PMD_SHIFT|PUD_SIZE|PUD_SHIFT"
        r"|VMALLOC_START|VMALLOC_END|MODULES_VADDR|MODULES_END|PAGE_OFFSET)\s*=",
        re.M,
    )
    where = {
        str(p.relative_to(ROOT)): pattern.findall(p.read_text())
        for p in (ROOT / "simcore").rglob("*.py")
    }
    found = {p: names for p, names in where.items() if names}
    assert set(found) == {"simcore/constants.py"}, found
