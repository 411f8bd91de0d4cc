"""``module_load``: a distro booting with its modules, then running them.

The population comes from a capture (``from_lsmod``, ``from_proc_modules``:
names, sizes, who uses whom) or from a size distribution with random
dependencies on earlier modules; sizes split into memory types as
:mod:`simcore.workloads.captures.module_split` estimates.

Boot: ``boot.workers`` loaders take modules in dependency order, each
waiting until what it uses is live, as concurrent ``modprobe`` calls from
udev workers do; loader ``i`` runs on CPU ``i mod cpus``. systemd-udevd
allows 8 + 2 x CPUs workers (``children_max``, src/udev/udevd.c), but a
load is CPU-bound, so the default is one loader per CPU; more are accepted
and share their CPU without time slicing (the scheduler is not modelled).
Each load is :meth:`simcore.kernel.module.ModuleLoader.load`, with the
module's init function taking an exponentially distributed time (mean
``init_time``). ``module.boot_ns`` is the time from the start of boot to
the end of the last load.

Churn: at ``churn.rate`` one of the modules nobody uses, from the last
``churn.share`` of the load order, is unloaded and loaded again after
``churn.downtime``.

Execution: an ``exec.hot`` share of the modules is hot, each with a hot
footprint of ``exec.hot_text`` of its text pages. Every quantum, each CPU
of ``exec.cpus`` runs Poisson(``exec.rate`` x quantum) calls; a call picks
a hot module by ``exec.popularity`` (hot modules in the order they went
live) and touches ``pages_per_call`` of its hot pages, running
``bytes_per_call`` of code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from simcore.constants import PAGE
from simcore.dists import LogNormal, Popularity, SizeDist
from simcore.kernel.module import LoadedModule, ModuleSpec
from simcore.strict import Strict
from simcore.units import Duration, Rate, Size
from simcore.workloads.captures import capture_path
from simcore.workloads.captures.module_split import spec_from_size
from simcore.workloads.execution import Picker, at_rate, exec_cpus, exp_ns, run_pieces

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = (
    "modules loaded at boot in parallel (lsmod capture or sizes), churned, run"
)


class ModulePopulation(Strict):
    from_lsmod: str | None = Field(default=None, description="an lsmod capture")
    from_proc_modules: str | None = Field(
        default=None, description="a /proc/modules capture"
    )
    count: int = Field(default=60, ge=0, le=100_000, description="without a capture")
    # estimate: a lognormal with median 48 KiB and p75 128 KiB has a mean of
    # ~140 KiB of core memory, near the 170,729 B average (init included) of
    # the 66-module population in exec-memory.md section 10
    size: SizeDist = Field(
        default_factory=lambda: LogNormal(
            dist="lognormal", median=48 << 10, p75=128 << 10, max=64 << 20
        )
    )
    deps: float = Field(
        default=0.5, ge=0, le=16, description="mean modules each one uses"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModulePopulation:
        if self.from_lsmod and self.from_proc_modules:
            raise ValueError("give from_lsmod or from_proc_modules, not both")
        return self


class ModuleBoot(Strict):
    workers: int | None = Field(
        default=None, ge=1, description="parallel loaders (default: one per CPU)"
    )
    at: Duration = Field(default="0ns", ge=0, description="when loading starts")


class ModuleChurn(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="unload+reload cycles per s")
    share: float = Field(default=0.2, gt=0, le=1, description="of modules, last loaded")
    downtime: Duration = Field(default="0ns", ge=0)


class ModuleExec(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="calls per second per CPU")
    cpus: int | None = Field(default=None, ge=1, description="default: all")
    hot: float = Field(default=0.2, gt=0, le=1, description="share of modules run")
    hot_text: float = Field(
        default=0.25, gt=0, le=1, description="share of a hot module's text"
    )
    pages_per_call: int = Field(default=2, ge=1, le=512)
    bytes_per_call: Size = Field(default="1K", gt=0)
    popularity: Popularity = Field(default_factory=Popularity)


class ModuleLoad(Strict):
    # fields naming capture files, whose contents go into the config hash
    CAPTURES: ClassVar[tuple[str, ...]] = (
        "modules.from_lsmod",
        "modules.from_proc_modules",
    )

    type: Literal["module_load"]
    modules: ModulePopulation = Field(default_factory=ModulePopulation)
    boot: ModuleBoot = Field(default_factory=ModuleBoot)
    init_time: Duration = Field(
        default="100us", ge=0, description="mean time in a module's init"
    )
    reloc_writes: Literal["batched", "each"] = Field(
        default="batched",
        description="write each image once, or every relocation separately",
    )
    churn: ModuleChurn = Field(default_factory=ModuleChurn)
    exec: ModuleExec = Field(default_factory=ModuleExec)

    def start(self, kernel: Kernel, index: int) -> None:
        _Run(self, kernel, index).start()


def population(cfg: ModulePopulation, kernel: Kernel, rng, init_ns) -> list[ModuleSpec]:
    """Module specs in load order (dependencies first)."""
    if cfg.from_lsmod or cfg.from_proc_modules:
        from simcore.workloads.captures.modules import load_lsmod, load_proc_modules

        if cfg.from_lsmod:
            mods = load_lsmod(capture_path(kernel, cfg.from_lsmod))
        else:
            mods = load_proc_modules(capture_path(kernel, cfg.from_proc_modules))
        deps = mods.deps()
        return [
            spec_from_size(r.name, r.size, deps[r.name], init_ns=init_ns())
            for r in mods.load_order()
        ]
    sizes = cfg.size.sample(rng, cfg.count).tolist()
    out = []
    for i, size in enumerate(sizes):
        k = min(i, int(rng.poisson(cfg.deps))) if i else 0
        picks = sorted(rng.choice(i, size=k, replace=False).tolist()) if k else []
        uses = tuple(f"mod{j:04d}" for j in picks)
        out.append(spec_from_size(f"mod{i:04d}", size, uses, init_ns=init_ns()))
    return out


class _Run:
    def __init__(self, cfg: ModuleLoad, kernel: Kernel, index: int) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = f"workload.{index}.module_load"
        self.loader = kernel.modules
        # hot modules that are live, and their hot pages' addresses
        self.hot_live: list[LoadedModule] = []
        # per hot module: its hot pages' addresses, their mapping shifts and
        # the text's mapping generation they were taken under
        self.hot_addrs: list[tuple[np.ndarray, np.ndarray, int | np.ndarray, int]] = []
        self.hot_pages: dict[str, np.ndarray] = {}  # name -> 4K page indices
        self.picker = Picker(cfg.exec.popularity)

    def start(self) -> None:
        kernel, cfg = self.kernel, self.cfg
        rng = kernel.rng(self.tag + ".population")
        mean = cfg.init_time

        def init_ns() -> int:
            return int(rng.exponential(mean)) if mean else 0

        self.specs = population(cfg.modules, kernel, rng, init_ns)
        self._choose_hot(kernel.rng(self.tag + ".hot"))
        self.queue = list(self.specs)
        self.loaded_evt = {s.name: kernel.env.event() for s in self.specs}
        workers = min(cfg.boot.workers or kernel.nr_cpus, len(self.specs))
        self.booting = workers
        for w in range(workers):
            kernel.env.process(self._boot_worker(w % kernel.nr_cpus))
        if cfg.churn.rate > 0 and self.specs:
            kernel.env.process(self._churn())
        if cfg.exec.rate > 0:
            for cpu in exec_cpus(kernel, cfg.exec.cpus):
                rng_c = kernel.rng(f"{self.tag}.exec.cpu{cpu}")
                kernel.env.process(
                    at_rate(kernel, cpu, rng_c, cfg.exec.rate, self._calls(rng_c))
                )

    def _choose_hot(self, rng) -> None:
        ex = self.cfg.exec
        n = len(self.specs)
        k = max(1, round(ex.hot * n)) if n else 0
        for i in sorted(rng.choice(n, size=k, replace=False).tolist()):
            spec = self.specs[i]
            pages = max(1, spec.size_of("module_text") // PAGE)
            m = max(1, round(ex.hot_text * pages))
            self.hot_pages[spec.name] = np.sort(
                rng.choice(pages, size=m, replace=False)
            )

    # -- boot ------------------------------------------------------------------
    def _boot_worker(self, cpu: int):
        kernel = self.kernel
        if self.cfg.boot.at:
            yield kernel.env.timeout(self.cfg.boot.at)
        while self.queue:
            spec = self.queue.pop(0)
            for dep in spec.deps:
                if dep in self.loaded_evt:
                    yield self.loaded_evt[dep]
            yield from self._load(cpu, spec)
            self.loaded_evt[spec.name].succeed()
        self.booting -= 1
        if not self.booting:
            kernel.metrics.counters["module.boot_ns"] = (
                kernel.env.now - self.cfg.boot.at
            )

    def _load(self, cpu: int, spec: ModuleSpec):
        mod = yield from self.loader.load(cpu, spec, reloc_writes=self.cfg.reloc_writes)
        if mod is not None and spec.name in self.hot_pages and mod.text is not None:
            text = mod.text
            offs = self.hot_pages[spec.name].astype(np.uint64) * np.uint64(PAGE)
            raw = np.uint64(text.addr) + offs
            self.hot_live.append(mod)
            self.hot_addrs.append(_hot_pages(text, raw))
        return mod

    def _drop_hot(self, mod: LoadedModule) -> bool:
        for i, m in enumerate(self.hot_live):
            if m is mod:
                del self.hot_live[i], self.hot_addrs[i]
                return True
        return False

    # -- churn -----------------------------------------------------------------
    def _churn(self):
        kernel, cfg = self.kernel, self.cfg
        rng = kernel.rng(self.tag + ".churn")
        pool = [
            s.name
            for s in self.specs[-max(1, round(cfg.churn.share * len(self.specs))) :]
        ]
        gap = 1e9 / cfg.churn.rate
        while True:
            yield kernel.env.timeout(exp_ns(rng, gap))
            name = pool[int(rng.integers(len(pool)))]
            cpu = int(rng.integers(kernel.nr_cpus))
            kernel.env.process(self._cycle(cpu, name))

    def _cycle(self, cpu: int, name: str):
        mod = self.loader.modules.get(name)
        if mod is None or mod.state != "live" or mod.users:
            return
        self._drop_hot(mod)
        ok = yield from self.loader.unload(cpu, mod)
        if not ok:
            return
        if self.cfg.churn.downtime:
            yield self.kernel.env.timeout(self.cfg.churn.downtime)
        yield from self._load(cpu, mod.spec)

    # -- execution -------------------------------------------------------------
    def _calls(self, rng):
        ex = self.cfg.exec
        kernel = self.kernel

        def step(cpu: int, k: int) -> None:
            n = len(self.hot_live)
            if not n:
                return
            counts = np.bincount(self.picker.pick(rng, n, k), minlength=n)
            pieces = []
            for i in np.flatnonzero(counts).tolist():
                raw, addrs, shift, gen = self.hot_addrs[i]
                text = self.hot_live[i].text
                if text.gen != gen:  # remapped since (a split, a collapse)
                    self.hot_addrs[i] = _, addrs, shift, _ = _hot_pages(text, raw)
                m = int(counts[i]) * ex.pages_per_call
                sel = (rng.random(m) * len(addrs)).astype(np.int64)
                pieces.append((addrs[sel], shift if np.isscalar(shift) else shift[sel]))
            run_pieces(kernel, cpu, pieces, k * ex.bytes_per_call, owner="modules")
            kernel.metrics.inc("workload.module_load.calls", k)

        return step


def _hot_pages(text, raw: np.ndarray):
    """(raw, the mapping pages holding them, their shifts, the text's
    mapping generation): per PMD, a demoted PMD in 4K, the rest huge."""
    s = np.asarray(text.shift_at(raw), np.uint64)
    addrs = np.unique((raw >> s) << s)
    return raw, addrs, text.shift_at(addrs), text.gen
