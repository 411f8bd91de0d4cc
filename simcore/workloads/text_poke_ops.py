"""The processes of ``text_poke_users``: one per user whose rate is set.

Each user draws exponential gaps at its rate. Static keys, ftrace and BPF
trampolines run one operation after another, as one agent thread would;
kprobes and livepatch start each operation as a process of its own,
because their grace periods (``synchronize_rcu()`` in
``unregister_kprobe()``, the module removal after a replacement) would
otherwise hold the agent back from its rate; the kernel's mutexes
(``kprobe_mutex``, ``klp_mutex``) order them as they do the real callers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.kernel.ftrace import FtraceOps
from simcore.workloads.captures.module_split import spec_from_size
from simcore.workloads.execution import exp_ns

if TYPE_CHECKING:
    from simcore.kernel.bpf.core import BpfProg
    from simcore.kernel.kprobes import Kprobe
    from simcore.kernel.main import Kernel
    from simcore.workloads.text_poke_users import TextPokeUsers

PREFIX = "workload.text_poke_users"


class Users:
    """The users of one ``text_poke_users`` workload and their state."""

    def __init__(self, cfg: TextPokeUsers, kernel: Kernel, index: int) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.tag = f"workload.{index}.text_poke_users"
        self.cpu = min(cfg.cpu, kernel.nr_cpus - 1)
        # the function tracer's ops: static, so its trampoline is kept
        self.global_ops = FtraceOps(
            sites=cfg.ftrace.functions, dynamic=False, site_rate=cfg.ftrace.site_rate
        )
        self.probes: list[Kprobe | None] = [None] * cfg.kprobes.probes
        self.busy: set[int] = set()
        self.progs: list[BpfProg] = []
        self.patches = 0

    def start(self) -> None:
        cfg = self.cfg
        users = (
            ("static_key_update", cfg.static_keys.rate, self._static_key),
            ("ftrace_update", cfg.ftrace.rate, self._ftrace),
            ("kprobe", cfg.kprobes.rate, self._kprobe),
            ("bpf_trampoline", cfg.bpf_trampolines.rate, self._trampoline),
            ("livepatch", cfg.livepatch.rate, self._livepatch),
        )
        for name, rate, step in users:
            if rate > 0:
                rng = self.kernel.rng(f"{self.tag}.{name}")
                self.env.process(self._every(rng, rate, name, step))

    def _every(self, rng, rate: float, name: str, step):
        """Exponential gaps at ``rate``; ``step(rng)`` is a generator run
        in line, or returns None having started its own process."""
        env = self.env
        gap = 1e9 / rate
        if name == "bpf_trampoline":
            yield from self._load_programs()
        while True:
            yield env.timeout(exp_ns(rng, gap))
            gen = step(rng)
            if gen is not None:
                yield from gen

    def _timed(self, op: str, gen, counter: str = ""):
        """Run ``gen``; its time is ``alloc.<op>.latency_ns``, its count
        ``workload.text_poke_users.<counter>`` (``<op>s`` by default)."""
        t0 = self.env.now
        yield from gen
        self.metrics.latency(op, self.env.now - t0)
        self.metrics.inc(f"{PREFIX}.{counter or op + 's'}")

    # -- static keys and ftrace ------------------------------------------------
    def _static_key(self, rng):
        return self._timed("static_key_update", self._jump_label())

    def _jump_label(self):
        """static_key_enable()/disable(): jump_label_mutex around
        __jump_label_update()."""
        kernel, cpu = self.kernel, self.cpu
        mutex = kernel.jump_label_mutex  # the kernel's, shared by every user
        yield from mutex.lock(cpu)
        keys = self.cfg.static_keys
        yield from kernel.text_poke.jump_label_update(
            cpu, keys.sites, site_rate=keys.site_rate
        )
        mutex.release(cpu)

    def _ftrace(self, rng):
        """The function tracer on or off: ftrace_lock, the trampoline
        (x86), the call sites."""
        return self._timed(
            "ftrace_update", self.kernel.ftrace.toggle(self.cpu, self.global_ops)
        )

    # -- kprobes ---------------------------------------------------------------
    def _kprobe(self, rng) -> None:
        """One site picked at random: registered if it has no probe,
        unregistered if it has one; skipped while its last change runs."""
        site = int(rng.integers(len(self.probes)))
        if site in self.busy:
            self.metrics.inc(f"{PREFIX}.kprobe_busy_skips")
            return None
        self.busy.add(site)
        optimize = bool(rng.random() < self.cfg.kprobes.optimized)
        self.env.process(self._kprobe_change(site, optimize))
        return None

    def _kprobe_change(self, site: int, optimize: bool):
        kprobes = self.kernel.kprobes
        kp = self.probes[site]
        if kp is None:
            kp = yield from kprobes.register(
                self.cpu, optimize, self.cfg.kprobes.site_rate
            )
            if kp is not None:
                self.probes[site] = kp
                self.metrics.inc(f"{PREFIX}.kprobe_arms")
        else:
            self.probes[site] = None
            yield from kprobes.unregister(self.cpu, kp)
            self.metrics.inc(f"{PREFIX}.kprobe_disarms")
        self.busy.discard(site)

    # -- BPF trampolines -------------------------------------------------------
    def _load_programs(self):
        """The fentry programs, loaded once through bpf_prog_load() as the
        bpf_jit workload loads its own."""
        bpf = self.kernel.bpf
        for _ in range(self.cfg.bpf_trampolines.programs):
            prog = yield from bpf.prog_load(self.cpu, self.cfg.bpf_trampolines.size)
            if prog is not None:  # privileged: never -EPERM
                self.progs.append(prog)

    def _trampoline(self, rng):
        """One program picked at random: its trampoline attached if it has
        none, detached if it has one."""
        if not self.progs:
            return None
        prog = self.progs[int(rng.integers(len(self.progs)))]
        bpf = self.kernel.bpf
        if prog.trampoline is None:
            # timed by the BPF core itself: alloc.bpf_trampoline_update
            return self._attach(prog)
        gen = bpf.trampoline_detach(self.cpu, prog)
        return self._timed("trampoline_detach", gen, "trampoline_detaches")

    def _attach(self, prog: BpfProg):
        ok = yield from self.kernel.bpf.trampoline_attach(self.cpu, prog)
        if ok:
            self.metrics.inc(f"{PREFIX}.trampoline_attaches")

    # -- livepatch -------------------------------------------------------------
    def _livepatch(self, rng) -> None:
        """The next cumulative patch: its functions slide by the ``new``
        share, so each patch keeps the rest of the previous one's."""
        lp = self.cfg.livepatch
        k = self.patches
        self.patches += 1
        shift = round(lp.new * lp.functions)
        funcs = frozenset(range(k * shift, k * shift + lp.functions))
        spec = spec_from_size(f"klp_patch{k:05d}", lp.module)
        self.env.process(self._livepatch_enable(spec, funcs))
        return None

    def _livepatch_enable(self, spec, funcs):
        patch = yield from self.kernel.livepatch.enable(self.cpu, spec, funcs)
        if patch is not None:
            self.metrics.inc(f"{PREFIX}.livepatch_enables")
