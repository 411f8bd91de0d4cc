"""``bpf_jit``: BPF programs loaded, run on every packet, and unloaded.

A resident population is loaded at the start (by ``load_cpus`` loaders in
parallel, as systemd and agents do at boot), short-lived programs arrive
and leave with ``churn`` (container hosts: runc's device-filter programs
reach IDs in the tens of thousands), and ``exec`` CPUs invoke the loaded
programs at a rate with a popularity law. Each invocation touches the pages
its image spans, through the CPU's iTLB and STLB, in batches of one
``sim.quantum``.

Defaults follow the Meta fleet distribution of JIT image sizes (median
500 B, p75 2 KiB; 20221128190245.2337461-1-song@kernel.org).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from simcore.config.base import Strict
from simcore.config.dists import LogNormal, Popularity, SizeDist
from simcore.config.units import Duration, Rate

if TYPE_CHECKING:
    from simcore.engine import Simulation
    from simcore.kernel.bpf.core import BpfProg

DESCRIPTION = "BPF programs loaded, executed with a popularity law, churned"

# x86-64 instructions average about 4 bytes: an estimate used to turn image
# bytes into the instructions behind *.mpki.
INSN_BYTES = 4.0


class Churn(Strict):
    load_rate: Rate = Field(default=0.0, ge=0)
    lifetime: Duration = Field(default="1s", gt=0, description="mean, exponential")


class Exec(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="invocations per second per CPU")
    cpus: int | None = Field(default=None, ge=1, description="default: all")
    popularity: Popularity = Field(default_factory=Popularity)
    coverage: float = Field(default=1.0, gt=0, le=1, description="share of image run")


class BpfJit(Strict):
    type: Literal["bpf_jit"]
    programs: int = Field(default=100, ge=0, le=1_000_000)
    size: SizeDist = Field(
        default_factory=lambda: LogNormal(dist="lognormal", median=500, p75=2048)
    )
    load_cpus: int = Field(default=1, ge=1)
    privileged: bool = True
    churn: Churn = Field(default_factory=Churn)
    exec: Exec = Field(default_factory=Exec)

    def start(self, sim: Simulation, index: int) -> None:
        run = _Run(self, sim, index)
        run.start()


class _Run:
    """State shared by the loader, churn and executor processes."""

    def __init__(self, cfg: BpfJit, sim: Simulation, index: int) -> None:
        self.cfg = cfg
        self.sim = sim
        self.tag = f"workload.{index}.bpf_jit"
        self.live: list[BpfProg] = []
        self._cdf: dict[int, np.ndarray] = {}

    def start(self) -> None:
        sim, cfg = self.sim, self.cfg
        rng = sim.rng(self.tag + ".sizes")
        sizes = cfg.size.sample(rng, cfg.programs).tolist()
        loaders = min(cfg.load_cpus, sim.nr_cpus)
        for k in range(loaders):
            sim.env.process(self._loader(k, sizes[k::loaders]))
        if cfg.churn.load_rate > 0:
            sim.env.process(self._churn())
        if cfg.exec.rate > 0:
            n = min(cfg.exec.cpus or sim.nr_cpus, sim.nr_cpus)
            for cpu in range(n):
                sim.env.process(self._executor(cpu))

    def _loader(self, cpu: int, sizes: list[int]):
        bpf = self.sim.bpf
        for proglen in sizes:
            prog = yield from bpf.prog_load(cpu, proglen, self.cfg.privileged)
            if not isinstance(prog, int) and prog is not None:
                self.live.append(prog)

    def _churn(self):
        sim, cfg = self.sim, self.cfg
        rng = sim.rng(self.tag + ".churn")
        mean_gap = 1e9 / cfg.churn.load_rate
        while True:
            yield sim.env.timeout(max(1, int(rng.exponential(mean_gap))))
            cpu = int(rng.integers(sim.nr_cpus))
            proglen = int(cfg.size.sample(rng, 1)[0])
            life = max(1, int(rng.exponential(cfg.churn.lifetime)))
            sim.env.process(self._short_lived(cpu, proglen, life))

    def _short_lived(self, cpu: int, proglen: int, life: int):
        bpf = self.sim.bpf
        prog = yield from bpf.prog_load(cpu, proglen, self.cfg.privileged)
        if isinstance(prog, int) or prog is None:
            return
        self.live.append(prog)
        yield self.sim.env.timeout(life)
        # swap-remove keeps removal O(1); ranks of the others barely move
        i = self.live.index(prog)
        self.live[i] = self.live[-1]
        self.live.pop()
        yield from bpf.prog_free(cpu, prog)

    def _pick_cdf(self, n: int) -> np.ndarray:
        cdf = self._cdf.get(n)
        if cdf is None:
            if len(self._cdf) > 64:  # churn changes n constantly: bound the cache
                self._cdf.clear()
            cdf = self._cdf[n] = np.cumsum(self.cfg.exec.popularity.weights(n))
        return cdf

    def _executor(self, cpu: int):
        sim, cfg = self.sim, self.cfg
        env = sim.env
        rng = sim.rng(f"{self.tag}.exec.cpu{cpu}")
        quantum = sim.quantum
        per_quantum = cfg.exec.rate * quantum / 1e9
        cover = cfg.exec.coverage
        execu = sim.executor
        while True:
            yield env.timeout(quantum)
            n = len(self.live)
            k = int(rng.poisson(per_quantum)) if n else 0
            if not k:
                continue
            picks = np.searchsorted(self._pick_cdf(n), rng.random(k), side="right")
            np.minimum(picks, n - 1, out=picks)
            images = [self.live[i].image for i in picks.tolist()]
            addrs = np.concatenate([im.touches() for im in images])
            shifts = np.concatenate(
                [np.full(len(im.touches()), im.page_shift, np.uint8) for im in images]
            )
            insns = int(sum(im.size for im in images) * cover / INSN_BYTES)
            execu.run(cpu, addrs, shifts, "i", insns)
            sim.metrics.inc("workload.bpf_jit.invocations", k)
