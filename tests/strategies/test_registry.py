"""A strategy is one file plus a registry line: here one file is this test
module, and the registry line is a ``register()`` call. Nothing else in the
project is touched, yet the toy strategy loads, runs side by side with a
shipped one and shows up in ``simcore list strategies``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from simcore.config.load import load_workload
from simcore.constants import PAGE
from simcore.engine import simulate
from simcore.kernel.execmem import ExecAlloc
from simcore.strategies import get_strategy, register, strategy_names, unregister
from simcore.strategies.base import Strategy


class ToyBump(Strategy):
    """A bump allocator carved from one 4 MiB vmalloc area made ROX once:
    never frees, never flushes after the first set_memory_rox()."""

    name = "toy_bump"
    summary = "test strategy: bump allocation in one ROX area"
    models = "nothing (tests)"
    AREA = 4 << 20

    def __init__(self, sim) -> None:
        super().__init__(sim)
        self.area = None
        self.next = 0

    def bpf_image_size(self, proglen: int) -> int:
        return -(-proglen // 64) * 64

    def alloc(self, cpu: int, size: int, kind: str):
        if self.area is None:
            self.area = yield from self.kernel.vmalloc.vmalloc(
                cpu, self.AREA, range_="modules"
            )
            yield from self.kernel.cpa.set_memory_rox(
                cpu, self.area.addr, self.AREA // PAGE
            )
            self.account(0, self.AREA)
        if self.next + size > self.AREA:
            return None
        addr = self.area.addr + self.next
        self.next += size
        self.account(size, 0)
        return ExecAlloc(addr, size, kind, 12, 0)

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        yield from self.kernel.text_poke.text_poke_copy(cpu, obj.addr, nbytes)

    def finalize(self, cpu: int, obj: ExecAlloc):
        return
        yield

    def free(self, cpu: int, obj: ExecAlloc):
        self.account(-obj.size, 0)
        return
        yield


@pytest.fixture
def toy():
    register("toy_bump", ToyBump)
    yield
    unregister("toy_bump")


WORKLOAD = """\
name: toy
seed: 3
duration: 5ms
machine: {profile: small-test}
strategy: [module_alloc, toy_bump]
workloads:
  - type: bpf_jit
    programs: 40
    exec: {rate: 50000/s}
"""


def test_a_registered_strategy_runs_beside_a_shipped_one(toy, tmp_path):
    assert "toy_bump" in strategy_names() and get_strategy("toy_bump") is ToyBump
    p = tmp_path / "w.yaml"
    p.write_text(WORKLOAD)
    base, bump = simulate(load_workload(p))
    assert base.metrics["bpf.progs_loaded"] == bump.metrics["bpf.progs_loaded"] == 40
    # one CPA (with its direct-map splits) for the whole area, against one
    # per program
    assert bump.metrics["tlb.shootdowns"] < base.metrics["tlb.shootdowns"] / 4
    assert bump.metrics["text_poke.pokes"] >= 40
    assert bump.metrics["mem.exec.allocated_bytes"] == ToyBump.AREA


def test_unknown_strategy_is_an_input_error_after_unregistering(toy, tmp_path):
    from simcore.errors import ConfigError

    unregister("toy_bump")
    p = tmp_path / "w.yaml"
    p.write_text(WORKLOAD)
    with pytest.raises(ConfigError, match="toy_bump"):
        load_workload(p)


def test_list_strategies_shows_a_summary_and_what_each_models():
    # a fresh interpreter: other tests register toy strategies in this one
    def py(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    out = py(
        """
        import sys
        from simcore.cli import main
        sys.exit(main(["list", "strategies"]))
        """
    )
    shipped = py(
        """
        from simcore.strategies import strategy_names
        print(*strategy_names())
        """
    ).split()
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert set(lines) == set(shipped) and "module_alloc" in shipped
    for name in shipped:
        cls = get_strategy(name)
        assert cls.summary in lines[name] and cls.models in lines[name]
