"""``text_poke_users``: the kernel's other writers of live text, at a rate.

The perm_alloc and jit_alloc threads argue for sub-page executable memory
updated through text_poke because BPF is not its only user: static keys,
ftrace, kprobes, BPF trampolines and livepatch rewrite live kernel text
all the time on a busy host, and three of them allocate executable memory
of their own. Each user here runs on ``cpu`` with exponential gaps at its
``rate``, calling the architecture's own patching path
(:mod:`simcore.kernel.alternative` on x86,
:mod:`simcore.kernel.arm64.patching` on arm64) and, for its executable
memory, the strategy under comparison (:mod:`simcore.kernel.execmem`):

- ``static_keys``: ``static_key_enable()`` / ``disable()`` of a key with
  ``sites`` sites under ``jump_label_mutex``: the ``jump_label_update()``
  of the era (x86 one ``text_poke_bp_batch()``, three sync IPI rounds;
  arm64 site by site, with one kick_all_cpus_sync() from v6.11);
- ``ftrace``: the function tracer (``global_ops``) turned on or off over
  ``functions`` functions under ``ftrace_lock``: ``ftrace_replace_code()``
  (x86 batches of TP_VEC_MAX sites through the INT3 protocol; arm64 one
  aarch64_insn_patch_text_nosync() per site); on x86 the first enable
  also creates the ops' trampoline (kind ``ftrace``), which a static ops
  keeps, and later enables repoint its call (:mod:`simcore.kernel.ftrace`);
- ``kprobes``: ``register_kprobe()`` or ``unregister_kprobe()`` on one of
  ``probes`` sites (whichever the site's state calls for): an instruction
  slot from pages of kind ``kprobe``, the breakpoint, and on x86 for an
  ``optimized`` share the detour buffer and the optimizer's jump
  (:mod:`simcore.kernel.kprobes`; arm64 has no optprobes and ignores the
  share);
- ``bpf_trampolines``: an fentry trampoline attached to, or detached from,
  one of ``programs`` BPF programs loaded at the start
  (``bpf_trampoline_link_prog()`` / ``unlink``: kind ``bpf_trampoline``
  and a ``text_poke_bp()`` of the traced function's entry);
- ``livepatch``: a cumulative patch module of ``module`` bytes patching
  ``functions`` functions, loaded and enabled in place of the previous one
  (atomic replace), whose module is then removed; a ``new`` share of each
  patch's functions were not in the previous patch
  (:mod:`simcore.kernel.livepatch`).

Each operation's time is ``alloc.<op>.latency_ns`` (``static_key_update``,
``ftrace_update``, ``kprobe_arm``, ``kprobe_disarm``, ``kprobe_optimizer``,
``bpf_trampoline_update`` (an attach), ``trampoline_detach``,
``livepatch_enable``); the
IPIs and CPU time they cost the other CPUs are the text-poke and CPU-time
metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.strict import Strict
from simcore.units import Rate, Size
from simcore.workloads.text_poke_ops import Users

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = (
    "static keys, ftrace, kprobes, BPF trampolines and livepatch rewriting live text"
)


class StaticKeys(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="key toggles per second")
    # a key's sites: 56 is sched_schedstats, the key whose toggle the
    # batching series measured (cover.1560325897.git.bristot@redhat.com);
    # one real key, not a census of keys
    sites: int = Field(default=56, ge=1, le=100_000)
    site_rate: Rate = Field(
        default=0.0,
        ge=0,
        description="runs of each site per CPU per second (INT3 hits while armed)",
    )


class Ftrace(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="enables/disables per second")
    functions: int = Field(default=1, ge=1, le=200_000, description="call sites")
    site_rate: Rate = Field(
        default=0.0,
        ge=0,
        description="calls of each function per CPU per second (INT3 hits)",
    )


class Kprobes(Strict):
    rate: Rate = Field(
        default=0.0, ge=0, description="registrations/unregistrations per second"
    )
    # estimate: an agent's probe set, in the tens (one bpftrace script or
    # a few perf probes)
    probes: int = Field(
        default=64, ge=1, le=100_000, description="probe sites, each on or off"
    )
    optimized: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of probes x86 optimizes into a jump (ignored on arm64)",
    )
    site_rate: Rate = Field(
        default=0.0,
        ge=0,
        description="runs of each probed instruction per CPU per second (hits)",
    )


class BpfTrampolines(Strict):
    rate: Rate = Field(default=0.0, ge=0, description="attaches/detaches per second")
    # estimate: an agent's handful of fentry programs
    programs: int = Field(
        default=4, ge=1, le=10_000, description="fentry programs loaded at the start"
    )
    # the median JIT image of the Meta fleet (20221128190245.2337461-1-
    # song@kernel.org), as bpf_jit's default
    size: Size = Field(default="500B", gt=0, le=1 << 20, description="each image")


class Livepatch(Strict):
    rate: Rate = Field(
        default=0.0, ge=0, description="cumulative patches per second, each replacing"
    )
    # estimate: a cumulative distribution livepatch carries fixes to tens
    # of functions
    functions: int = Field(default=20, ge=1, le=10_000, description="per patch")
    # estimate: a cumulative patch adds a few fixes to the previous one's
    new: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="share of a patch's functions the previous patch left alone",
    )
    # estimate: a kpatch-built module of a few fixes is tens of KiB
    module: Size = Field(default="64K", gt=0, le=64 << 20, description="module size")


class TextPokeUsers(Strict):
    type: Literal["text_poke_users"]
    cpu: int = Field(default=0, ge=0, description="the CPU the updates run on")
    static_keys: StaticKeys = Field(default_factory=StaticKeys)
    ftrace: Ftrace = Field(default_factory=Ftrace)
    kprobes: Kprobes = Field(default_factory=Kprobes)
    bpf_trampolines: BpfTrampolines = Field(default_factory=BpfTrampolines)
    livepatch: Livepatch = Field(default_factory=Livepatch)

    def start(self, kernel: Kernel, index: int) -> None:
        Users(self, kernel, index).start()
