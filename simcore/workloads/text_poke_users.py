"""``text_poke_users``: the kernel's other writers of live text, at a rate.

The perm_alloc and jit_alloc threads argue for sub-page executable memory
updated through text_poke because BPF is not its only user: static keys,
ftrace, kprobes (and livepatch, which patches through ftrace) rewrite live
kernel text all the time on a busy host. Each user here is a process on
``cpu`` with exponential gaps at its ``rate``, calling the architecture's
own path (:mod:`simcore.kernel.alternative` on x86,
:mod:`simcore.kernel.arm64.patching` on arm64):

- ``static_keys``: ``static_key_enable()`` / ``disable()`` of a key with
  ``sites`` sites under ``jump_label_mutex``: the ``jump_label_update()``
  of the era (x86 one ``text_poke_bp_batch()``, three sync IPI rounds;
  arm64 site by site, with one kick_all_cpus_sync() from v6.11);
- ``ftrace``: enabling or disabling tracing of ``functions`` functions
  under ``ftrace_lock``: ``ftrace_replace_code()`` (x86 batches of
  TP_VEC_MAX sites through the INT3 protocol; arm64 one
  aarch64_insn_patch_text_nosync() per site);
- ``kprobes``: arming or disarming one kprobe under ``kprobe_mutex``
  (x86 an INT3 byte and text_poke_sync(); arm64 stop_machine()).

Each operation's time is ``alloc.<op>.latency_ns`` (``static_key_update``,
``ftrace_update``, ``kprobe_arm``); the IPIs and CPU time they cost the
other CPUs are the text-poke and CPU-time metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.strict import Strict
from simcore.units import Rate

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "static keys, ftrace and kprobes rewriting live kernel text"


class StaticKeys(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="key toggles per second")
    # a key's sites: 56 is sched_schedstats, the key whose toggle the
    # batching series measured (cover.1560325897.git.bristot@redhat.com);
    # one real key, not a census of keys
    sites: int = Field(default=56, ge=1, le=100_000)


class Ftrace(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="enables/disables per second")
    functions: int = Field(default=1, ge=1, le=200_000, description="call sites")


class Kprobes(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="arms/disarms per second")


class TextPokeUsers(Strict):
    type: Literal["text_poke_users"]
    cpu: int = Field(default=0, ge=0, description="the CPU the updates run on")
    static_keys: StaticKeys = Field(default_factory=StaticKeys)
    ftrace: Ftrace = Field(default_factory=Ftrace)
    kprobes: Kprobes = Field(default_factory=Kprobes)

    def start(self, kernel: Kernel, index: int) -> None:
        tag = f"workload.{index}.text_poke_users"
        cpu = min(self.cpu, kernel.nr_cpus - 1)
        tp = kernel.text_poke
        m = kernel.machine
        users = (
            (
                "static_key_update",
                self.static_keys.rate,
                "jump_label_mutex",
                lambda: tp.jump_label_update(cpu, self.static_keys.sites),
            ),
            (
                "ftrace_update",
                self.ftrace.rate,
                "ftrace_lock",
                lambda: tp.ftrace_update(cpu, self.ftrace.functions),
            ),
            (
                "kprobe_arm",
                self.kprobes.rate,
                "kprobe_mutex",
                lambda: tp.kprobe_arm(cpu),
            ),
        )
        for op, rate, lock, update in users:
            if rate > 0:
                rng = kernel.rng(f"{tag}.{op}")
                kernel.env.process(
                    _every(kernel, rng, rate, cpu, op, m.mutex(lock), update)
                )


def _every(kernel: Kernel, rng, rate: float, cpu: int, op: str, lock, update):
    env, metrics = kernel.env, kernel.metrics
    gap = 1e9 / rate
    while True:
        yield env.timeout(max(1, int(rng.exponential(gap))))
        t0 = env.now
        extra = yield from lock.take(cpu)
        if extra:
            yield env.timeout(int(extra))
        yield from update()
        lock.release(cpu)
        metrics.latency(op, env.now - t0)
        metrics.inc(f"workload.text_poke_users.{op}s")
