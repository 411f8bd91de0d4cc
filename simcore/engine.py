"""Wire machine, kernel, strategy and workloads into one SimPy run.

One :class:`Simulation` is one strategy on one resolved workload. Several
strategies in a ``run`` are several simulations of the same workload with
the same seed: every component draws from its own named random stream, so
the workload's randomness is identical across strategies.

Time is an integer number of nanoseconds throughout.

Layer: above ``config`` and everything it wires (workloads, strategies,
kernel, hw, ground), beside ``results``, below ``api``. The engine is the
only place that knows which strategy serves which domain: it builds the
:class:`~simcore.context.SimContext`, the machine and the
:class:`~simcore.kernel.main.Kernel`, and plugs the strategy in.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import simpy

import simcore.strategies  # noqa: F401  (its lines fill the strategy registry)
from simcore.config.load import Resolved, naming_captures
from simcore.context import SimContext
from simcore.hooks import Hooks
from simcore.hw.execute import Executor
from simcore.hw.machine import Machine
from simcore.kernel.main import Kernel
from simcore.layout import layout_for
from simcore.metrics import Metrics, RunResult
from simcore.metrics.catalog import WHAT_IF
from simcore.registry import STRATEGIES

# What a domain runs when the strategy under comparison is of the other one:
# the kernel's own design in the modelled era.
DEFAULT_STRATEGY = {"exec": "module_alloc", "arena": "arena_4k"}


SERIES_KEYS = (
    "tlb.shootdowns",
    "tlb.ipis",
    "tlb.full_flushes",
    "directmap.4k_bytes",
    "directmap.2m_bytes",
    "directmap.1g_bytes",
    "directmap.level2_splits",
    "directmap.level3_splits",
    "mem.pagetable_pages",
    "mem.exec.allocated_bytes",
    "mem.exec.requested_bytes",
    "itlb.misses",
    "stlb.misses",
    "vmap.used_bytes",
)


# counters a reader expects in every comparison, zero when nothing happened
ALWAYS_REPORTED = (
    "tlb.shootdowns",
    "tlb.ipis",
    "tlb.full_flushes",
    "directmap.level2_splits",
    "directmap.level3_splits",
    "mem.pagetable_pages",
    "vmap.lazy_purges",
    "vmap.alloc_failures",
)


class Simulation:
    """One strategy on one resolved workload: the context, the machine, the
    kernel with the strategy plugged in, and the workloads started."""

    @naming_captures  # a bad capture's error names the workload line too
    def __init__(self, resolved: Resolved, strategy: str) -> None:
        cfg = resolved.cfg
        self.resolved = resolved
        # a label of the workload's strategy list (or an entry of it), or
        # the name of any registered strategy, run with its defaults
        strategy = str(strategy)
        self.strategy_name = strategy
        self.seed = cfg.seed
        self.duration = cfg.duration
        self.env = simpy.Environment(initial_time=0)
        self.metrics = Metrics()
        # counters sampled into timeseries.csv (charts of the direct map and
        # of shootdowns over time read them)
        self.metrics.series_keys = list(SERIES_KEYS)
        self.profile = resolved.profile
        self.nr_cpus = resolved.cpus
        self.ctx = SimContext(
            env=self.env,
            seed=self.seed,
            duration=self.duration,
            nr_cpus=self.nr_cpus,
            profile=self.profile,
            knobs=resolved.knobs,
            layout=layout_for(self.profile.arch, resolved.knobs.va_layout),
            metrics=self.metrics,
            hooks=Hooks(),
            quantum=cfg.sim.quantum,
            tlb_model=cfg.sim.tlb_model,
            lock_model=cfg.sim.lock_model,
            file=resolved.file,
            config_hash=resolved.config_hash,
        )
        self.machine = Machine(self.ctx)
        self.executor = Executor(self.machine, self.metrics)
        self._domains: dict[str, object] = {}
        self.kernel = Kernel(self.ctx, self.machine, self.executor, self.strategy_for)
        # The strategy under comparison serves its own domain (executable
        # memory or arenas); the other domain gets the kernel's own design.
        ref = resolved.strategy_ref(strategy)
        cls = STRATEGIES.load(ref.name if ref else strategy)
        params = resolved.strategy_params.get(strategy) if ref else None
        self.strategy = cls.create(self.kernel, params)
        # no release up to the preset shipped it: metrics.json records the
        # label, so that a summary rendered later can say so
        self.what_if = (
            cls.what_if(resolved.knobs.preset, self.profile.arch)
            or self.strategy.params_what_if()
        )
        self._domains[self.strategy.domain] = self.strategy
        # sim.trace_out: record the run's allocation events as a trace
        self.recorder = None
        if cfg.sim.trace_out:
            from simcore.workloads.captures.recorder import Recorder

            self.recorder = Recorder(
                self.env,
                self.ctx.hooks,
                cfg.sim.trace_out,
                strategy,
                len(cfg.strategy),
            )
        # every CPU that runs workload code runs the host's too
        if cfg.host.enabled:
            from simcore.workloads.host import HostActivity

            self.executor.host = HostActivity(cfg.host, self.kernel)
        for i, w in enumerate(cfg.workloads):
            w.start(self.kernel, i)
        self.env.process(self._sampler(max(1, self.duration // cfg.sim.samples)))

    # the kernel's subsystems, for tests and probes that drive them directly
    @property
    def page_alloc(self):
        return self.kernel.page_alloc

    @property
    def pagetables(self):
        return self.kernel.pagetables

    @property
    def vmalloc(self):
        return self.kernel.vmalloc

    @property
    def cpa(self):
        return self.kernel.cpa

    @property
    def text_poke(self):
        return self.kernel.text_poke

    @property
    def bpf(self):
        return self.kernel.bpf

    @property
    def kmsg(self) -> list[str]:
        return self.ctx.kmsg

    def strategy_for(self, domain: str):
        """The strategy serving ``domain`` ("exec" or "arena")."""
        st = self._domains.get(domain)
        if st is None:
            st = STRATEGIES.load(DEFAULT_STRATEGY[domain])(self.kernel)
            self._domains[domain] = st
        return st

    @property
    def exec_strategy(self):
        return self.strategy_for("exec")

    @property
    def arena_strategy(self):
        return self.strategy_for("arena")

    def rng(self, name: str):
        return self.ctx.rng(name)

    def _sampler(self, every: int):
        m = self.metrics
        # bounded, so that env.run() without `until` (as tests do) ends
        while self.env.now + every <= self.duration:
            yield self.env.timeout(every)
            extra = {
                f"lock.{k}.wait_ns": v.wait_ns
                for k, v in self.machine.lock_stats.items()
            }
            m.sample(self.env.now, extra)

    def run(self, progress: Callable[[int, int], None] | None = None) -> RunResult:
        t0 = time.perf_counter()
        steps = 100 if progress else 1
        for i in range(1, steps + 1):
            self.env.run(until=self.duration * i // steps)
            if progress:
                progress(self.env.now, self.duration)
        wall = time.perf_counter() - t0
        # SimPy numbers every scheduled event from one counter (it breaks
        # ties in the event heap); reading it counts events at no cost.
        events = next(self.env._eid)
        self.kernel.finish()
        if self.recorder is not None:
            self.recorder.close()
        m = self.metrics
        for name in ALWAYS_REPORTED:
            m.counters.setdefault(name, 0)
        m.counters["sim.events"] = events
        out = m.snapshot(duration_ns=self.duration, cpus=self.nr_cpus)
        out.update(self.machine.export_locks())
        out[WHAT_IF] = int(self.what_if)
        out = dict(sorted(out.items()))
        cdfs = {op: h.cdf() for op, h in sorted(m.hists.items())}
        return RunResult(
            self.strategy_name, out, m.series, wall, events, cdfs, list(self.kmsg)
        )


def simulate(resolved: Resolved, *, quiet: bool = True) -> list[RunResult]:
    """Run every strategy of the workload, in the order given."""
    results = []
    strategies = resolved.cfg.strategy_labels
    show = not quiet and sys.stderr.isatty()
    for idx, name in enumerate(strategies):
        progress = _progress_line(name, idx, len(strategies)) if show else None
        results.append(Simulation(resolved, name).run(progress))
        if show:
            sys.stderr.write("\n")
    return results


def _progress_line(name: str, idx: int, total: int) -> Callable[[int, int], None]:
    def show(now: int, end: int) -> None:
        pct = 100 * now // end
        sys.stderr.write(
            f"\r[{idx + 1}/{total}] {name}: simulated {now / 1e6:.1f} of "
            f"{end / 1e6:.1f} ms ({pct}%)"
        )
        sys.stderr.flush()

    return show
