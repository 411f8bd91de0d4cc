"""Tests of the BPF arena model, its strategies and its workload.

``quiet_sim`` builds a Simulation of a small machine whose only workload
does one vmalloc/vfree (``tests.kernel.make_sim``), so arenas created by a
test run on a quiet machine; ``run_arena`` runs an ``arena`` workload end
to end and returns its metrics. Eras: ``"6.13"`` is the mutex era with the
exception fix-up, ``"latest"`` the spinlock era with the scratch page.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from simcore.config.load import load_workload
from simcore.engine import Simulation
from simcore.kernel.bpf.arena import BpfArena, UserMm
from tests.kernel import make_sim, run

ERAS = ("6.13", "latest")
STRATEGIES = ("arena_4k", "arena_huge", "arena_batched_free")

ARENA = """\
name: arenarun
seed: {seed}
duration: {duration}
machine: {{profile: small-test}}
kernel: {{preset: "{preset}"{knobs}}}
host: {host}
workloads:
  - type: arena
{body}"""


def quiet_sim(strategy: str = "arena_4k", preset: str = "latest") -> Simulation:
    return make_sim(kernel=f'{{preset: "{preset}"}}', strategy=strategy)


def new_arena(
    sim: Simulation, pages: int = 1 << 16, *, cpu: int = 0, mm_cpus=(3,), **kw
):
    """A created and mmap()ed arena of ``pages`` pages."""
    arena = run(sim, BpfArena.create(sim.kernel, cpu, pages, **kw))
    run(sim, arena.mmap(cpu, UserMm(mm_cpus)))
    return arena


def run_arena(
    body: str,
    strategy: str = "arena_4k",
    preset: str = "latest",
    *,
    duration: str = "5ms",
    knobs: str = "",
    seed: int = 1,
    host: str = "{}",
) -> dict[str, float]:
    """Metrics of one strategy on an ``arena`` workload; ``body`` holds its
    keys, indented by four spaces; ``knobs`` more kernel keys (", k: v");
    ``host`` the host section (``{enabled: false}``: the arena alone)."""
    text = ARENA.format(
        host=host,
        seed=seed,
        duration=duration,
        preset=preset,
        knobs=knobs,
        body=body,
    )
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.yaml"
        p.write_text(text)
        resolved = load_workload(p)
    return Simulation(resolved, strategy).run().metrics
