"""``bpf_jit``: BPF programs loaded, run on every packet, and unloaded.

A resident population is loaded at the start (by ``load_cpus`` loaders in
parallel, as systemd and agents do at boot), short-lived programs arrive
and leave with ``churn`` (container hosts: runc's device-filter programs
reach IDs in the tens of thousands), and ``exec`` CPUs invoke the loaded
programs at a rate with a popularity law. Each invocation touches the pages
its image spans, through the CPU's iTLB and STLB, in batches of one
``kernel.quantum``.

Defaults follow the Meta fleet distribution of JIT image sizes (median
500 B, p75 2 KiB; 20221128190245.2337461-1-song@kernel.org).
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from simcore.dists import LogNormal, Popularity, SizeDist
from simcore.hw.touchtable import LiveList, TouchTable
from simcore.strict import Strict
from simcore.units import Duration, Rate
from simcore.workloads.execution import INSN_BYTES, Picker, exec_cpus, exp_ns

if TYPE_CHECKING:
    from simcore.kernel.bpf.core import BpfProg
    from simcore.kernel.main import Kernel

DESCRIPTION = "BPF programs loaded, executed with a popularity law, churned"


class Churn(Strict):
    load_rate: Rate = Field(default=0.0, ge=0)
    lifetime: Duration = Field(default="1s", gt=0, description="mean, exponential")


class Exec(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="invocations per second per CPU")
    cpus: int | None = Field(default=None, ge=1, description="default: all")
    popularity: Popularity = Field(default_factory=Popularity)
    coverage: float = Field(default=1.0, gt=0, le=1, description="share of image run")


class Attach(Strict):
    fentry: float = Field(
        default=0.0, ge=0, le=1, description="share of programs attached by trampoline"
    )
    xdp: float = Field(
        default=0.0, ge=0, le=1, description="share attached through the dispatcher"
    )


class BpfJit(Strict):
    # fields naming capture files, whose contents go into the config hash
    CAPTURES: ClassVar[tuple[str, ...]] = ("from_bpftool",)
    type: Literal["bpf_jit"]
    programs: int = Field(default=100, ge=0, le=1_000_000)
    size: SizeDist = Field(
        default_factory=lambda: LogNormal(dist="lognormal", median=500, p75=2048)
    )
    from_bpftool: str | None = Field(
        default=None,
        description="a `bpftool prog show` capture (text, or JSON with -j): its jited programs are the "
        "resident population (instead of programs/size); churned ones draw "
        "their sizes from it",
    )
    load_cpus: int = Field(default=1, ge=1)
    privileged: bool = True
    insn_patches: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="verifier rewrites per load that put several instructions "
        "in place of one (bpf_patch_insn_data(): ctx accesses, inlined calls "
        "and map lookups, zero extension); each resizes the program's aux array, by "
        "era a vzalloc/copy/vfree or a vrealloc (kernel.bpf_insn_aux). How many "
        "depends on the program, so none by default",
    )
    patch_insns: int = Field(
        default=2,
        ge=2,
        le=32,
        description="instructions each of those patches puts in place of one: "
        "2, the smallest patch that resizes the arrays, unless your programs "
        "say otherwise (at most INSN_BUF_SIZE, the verifier's patch buffer: 32 "
        "in 6.x headers)",
    )
    churn: Churn = Field(default_factory=Churn)
    exec: Exec = Field(default_factory=Exec)
    attach: Attach = Field(default_factory=Attach)

    def start(self, kernel: Kernel, index: int) -> None:
        run = _Run(self, kernel, index)
        run.start()


class _Run:
    """State shared by the loader, churn and executor processes."""

    def __init__(self, cfg: BpfJit, kernel: Kernel, index: int) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = f"workload.{index}.bpf_jit"
        # counts its changes: the touch table checks one number a quantum
        self.live: list[BpfProg] = LiveList()
        self.picker = Picker(cfg.exec.popularity)
        self._attach_rng = kernel.rng(self.tag + ".attach")
        self._xdp = 0
        self.size = cfg.size

    def start(self) -> None:
        kernel, cfg = self.kernel, self.cfg
        rng = kernel.rng(self.tag + ".sizes")
        if cfg.from_bpftool:
            from simcore.workloads.captures import capture_path
            from simcore.workloads.captures.bpftool import load_bpftool

            self.size = load_bpftool(capture_path(kernel, cfg.from_bpftool))
            sizes = self.size.sizes.tolist()
        else:
            sizes = cfg.size.sample(rng, cfg.programs).tolist()
        loaders = min(cfg.load_cpus, kernel.nr_cpus)
        for k in range(loaders):
            kernel.env.process(self._loader(k, sizes[k::loaders]))
        if cfg.churn.load_rate > 0:
            kernel.env.process(self._churn())
        if cfg.exec.rate > 0:
            for cpu in exec_cpus(kernel, cfg.exec.cpus):
                kernel.env.process(self._executor(cpu))

    def _loader(self, cpu: int, sizes: list[int]):
        for proglen in sizes:
            prog = yield from self._load(cpu, proglen)
            if prog is not None:
                self.live.append(prog)

    def _load(self, cpu: int, proglen: int):
        """bpf(BPF_PROG_LOAD), then the attachment: an fentry trampoline or
        the XDP dispatcher for a share of programs. None on failure."""
        bpf = self.kernel.bpf
        cfg = self.cfg
        prog = yield from bpf.prog_load(
            cpu, proglen, cfg.privileged, cfg.insn_patches, cfg.patch_insns
        )
        if isinstance(prog, int) or prog is None:
            return None
        att = cfg.attach
        if att.fentry or att.xdp:
            u = float(self._attach_rng.random())
            if u < att.fentry:
                yield from bpf.trampoline_attach(cpu, prog)
            elif u < att.fentry + att.xdp:
                self._xdp += 1
                yield from bpf.dispatcher_update(cpu, self._xdp)
        return prog

    def _churn(self):
        kernel, cfg = self.kernel, self.cfg
        rng = kernel.rng(self.tag + ".churn")
        mean_gap = 1e9 / cfg.churn.load_rate
        while True:
            yield kernel.env.timeout(exp_ns(rng, mean_gap))
            cpu = int(rng.integers(kernel.nr_cpus))
            proglen = int(self.size.sample(rng, 1)[0])
            life = exp_ns(rng, cfg.churn.lifetime)
            kernel.env.process(self._short_lived(cpu, proglen, life))

    def _short_lived(self, cpu: int, proglen: int, life: int):
        bpf = self.kernel.bpf
        prog = yield from self._load(cpu, proglen)
        if prog is None:
            return
        self.live.append(prog)
        yield self.kernel.env.timeout(life)
        # swap-remove keeps removal O(1); ranks of the others barely move
        i = self.live.index(prog)
        self.live[i] = self.live[-1]
        self.live.pop()
        yield from bpf.prog_free(cpu, prog)

    def _touch_table(self) -> TouchTable:
        """One table for all executor CPUs: the live images are shared."""
        table = self.__dict__.get("_table")
        if table is None:
            table = self._table = TouchTable(attrgetter("image"))
        return table

    def _executor(self, cpu: int):
        kernel, cfg = self.kernel, self.cfg
        env = kernel.env
        rng = kernel.rng(f"{self.tag}.exec.cpu{cpu}")
        quantum = kernel.quantum
        per_quantum = cfg.exec.rate * quantum / 1e9
        cover = cfg.exec.coverage
        execu = kernel.executor
        table = self._touch_table()
        while True:
            yield env.timeout(quantum)
            n = len(self.live)
            k = int(rng.poisson(per_quantum)) if n else 0
            if not k:
                continue
            picks = self.picker.pick(rng, n, k)
            # the table turns k invocations into one stream with a few numpy
            # gathers instead of Python work per invocation (touchtable.py)
            addrs, shifts, nbytes = table.gather(self.live, picks)
            execu.run(
                cpu, addrs, shifts, "i", int(nbytes * cover / INSN_BYTES), owner="bpf"
            )
            kernel.metrics.inc("workload.bpf_jit.invocations", k)
