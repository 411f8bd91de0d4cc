"""The base of every strategy: the kernel's ``ExecAllocator`` with the
steps strategies share.

A strategy decides where executable memory for a module section, a BPF
program or a trampoline comes from, how its image gets written and how its
permissions are set. It implements the interface of
:mod:`simcore.kernel.execmem`, which the module loader
(``simcore.kernel.module``) and the BPF JIT (``simcore.kernel.bpf.core``)
call, in order::

    alloc -> write -> finalize      (load)
    update                          (live image change, e.g. a dispatcher)
    free                            (unload)

Every method is a SimPy generator run on a CPU: it spends simulated time,
takes kernel locks and returns its result with ``return`` (callers use
``yield from``). ``alloc`` returns an :class:`ExecAlloc` recording where the
bytes live and at which mapping size, so the execution model can turn "this
program ran" into page touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from simcore.constants import PAGE
from simcore.kernel.execmem import (
    RO_KINDS,
    TEXT_KINDS,
    ExecAlloc,
    Kind,
    bpf_jit_image_size,
)
from simcore.kernel.presets import release_key
from simcore.strategies.params import StrategyParams

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# the kernel's types, named here too for the strategy files
__all__ = ["ALWAYS", "RO_KINDS", "TEXT_KINDS", "ExecAlloc", "Kind", "Strategy"]

ALWAYS = "always"  # first_release of a strategy older than every preset


def _when(first: str | None) -> str:
    if first is None:
        return "never shipped, a what-if in every era"
    if first == ALWAYS:
        return "every preset"
    return f"{first} and later, a what-if before"


class Strategy:
    """Base of every strategy. ``domain`` says what it serves: ``exec``
    (executable memory, the interface below) or ``arena`` (BPF arenas,
    see :mod:`simcore.strategies.arena_base`)."""

    domain: ClassVar[str] = "exec"
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `simcore list strategies`
    models: ClassVar[str]  # kernel version or RFC it models
    # The first kernel release that shipped the strategy: a release as the
    # presets name them ("5.18"), ALWAYS when it predates every preset, or
    # None when no release ever shipped it. A run whose preset predates it
    # is a what-if, and its summary says so. Every strategy file here
    # declares both, the source naming the commit (or the unmerged series);
    # a strategy from outside the project that does not is a what-if.
    first_release: ClassVar[str | None] = None
    release_source: ClassVar[str] = "not declared by the strategy"
    # Where an architecture shipped it later (or never: None), its own
    # first release, e.g. {"arm64": "6.9"}; an arch not named here follows
    # first_release. The source of each is in release_source.
    arch_releases: ClassVar[dict[str, str | None]] = {}
    # the architectures it can run on at all, and why not elsewhere
    arches: ClassVar[tuple[str, ...]] = ("x86_64", "arm64")
    arch_reason: ClassVar[str] = ""
    # Whether it serves the pre-6.4 module layouts (kernel.module_layout:
    # core_init): one allocation for a module's core and one for its init,
    # whose parts the loader protects through protect_layout(). A strategy
    # built against the per-type interface gets one allocation per type in
    # every era.
    core_layout: ClassVar[bool] = False
    # what a workload may set under ``params:`` (see strategies/params.py)
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    params: StrategyParams

    @classmethod
    def release_on(cls, arch: str) -> str | None:
        """The first release that shipped it on ``arch``. The per-arch
        releases count only beside the first_release they qualify: a
        subclass that declares its own first_release (a what-if built on a
        shipped strategy) does not inherit its parent's."""
        return cls._arch_releases().get(arch, cls.first_release)

    @classmethod
    def _arch_releases(cls) -> dict[str, str | None]:
        for klass in cls.__mro__:
            if "first_release" in vars(klass):
                return vars(klass).get("arch_releases", {})
        return {}

    @classmethod
    def what_if(cls, preset: str, arch: str = "x86_64") -> bool:
        """Whether no release up to ``preset`` shipped this strategy on
        ``arch``."""
        first = cls.release_on(arch)
        if first is None:
            return True
        if first == ALWAYS:
            return False
        return release_key(preset) < release_key(first)

    @classmethod
    def eras(cls) -> str:
        """The releases that shipped it, for `simcore list strategies`."""
        when = _when(cls.first_release)
        for arch, first in sorted(cls._arch_releases().items()):
            when += f"; on {arch}: {_when(first)}"
        if len(cls.arches) == 1:
            when += f"; {cls.arches[0]} only ({cls.arch_reason})"
        return f"{when} ({cls.release_source})"

    def params_what_if(self) -> bool:
        """Whether the parameters make a strategy its releases shipped into
        one they did not (a what-if whatever the era)."""
        return False

    @classmethod
    def create(cls, kernel: Kernel, params: StrategyParams | None = None) -> Strategy:
        """The strategy with ``params`` (None: every default).

        The parameters are in place before ``__init__`` runs, so that a
        strategy sizes itself from them there, while every constructor
        keeps its one-argument form (strategies written outside the
        project, and tests, call ``Cls(kernel)`` and get the defaults).
        """
        self = cls.__new__(cls)
        self.params = params if params is not None else cls.Params()
        self.__init__(kernel)  # type: ignore[misc]
        return self

    def __init__(self, kernel: Kernel) -> None:
        if "params" not in vars(self):
            self.params = type(self).Params()
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        c = kernel.profile.kernel_costs
        # memcpy into the image streams at about clear_page() bandwidth
        # (estimate, as in simcore.kernel.alternative)
        self.byte_ns = c.page_zero_ns.value / PAGE
        self.store_ns = c.pte_write_ns.value  # one relocation store (estimate)

    # -- sizing ----------------------------------------------------------------
    def bpf_image_size(self, proglen: int) -> int:
        """Bytes the JIT asks for (bpf_jit_binary_alloc())."""
        return bpf_jit_image_size(proglen)

    # -- the life of an object ---------------------------------------------
    def alloc(self, cpu: int, size: int, kind: str):  # pragma: no cover - interface
        raise NotImplementedError
        yield

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        """Write the image; ``writes`` > 1 means that many separate writes
        (e.g. relocations applied one at a time)."""
        raise NotImplementedError  # pragma: no cover - interface
        yield

    def finalize(self, cpu: int, obj: ExecAlloc):  # pragma: no cover - interface
        raise NotImplementedError
        yield

    def update(self, cpu: int, obj: ExecAlloc, nbytes: int):
        """Change a live image: text_poke_copy into it (bpf_arch_text_copy)."""
        yield from self.kernel.text_poke.text_poke_copy(cpu, obj.addr, nbytes)

    def free(self, cpu: int, obj: ExecAlloc):  # pragma: no cover - interface
        raise NotImplementedError
        yield

    # -- shared steps ------------------------------------------------------------
    def copy_ns(self, nbytes: int, writes: int = 1) -> float:
        """Plain stores into a writable mapping: the bytes, plus one store
        per extra separate write (a relocation)."""
        return nbytes * self.byte_ns + max(0, writes - 1) * self.store_ns

    def protect(self, cpu: int, addr: int, npages: int, kind: str):
        """The permissions the kernel gives each kind once written
        (module_enable_text_rox(), module_enable_rodata_ro(),
        bpf_jit_binary_lock_ro()): text read-only and executable, read-only
        data read-only; data stays RW+NX as vmalloc mapped it."""
        cpa = self.kernel.cpa
        if kind in TEXT_KINDS:
            yield from cpa.set_memory_rox(cpu, addr, npages)
        elif kind in RO_KINDS:
            yield from cpa.set_memory_ro(cpu, addr, npages)

    # -- accounting ------------------------------------------------------------
    def shrink_request(self, obj: ExecAlloc, nbytes: int) -> None:
        """The caller asked for more than it needs (the JIT's header and
        random padding): only ``nbytes`` count as requested."""
        self.account(nbytes - obj.size, 0)
        obj.size = nbytes

    def account(self, requested: int, allocated: int) -> None:
        """Track live requested bytes and bytes set aside (mem.exec.*)."""
        c = self.kernel.metrics.counters
        c["mem.exec.requested_bytes"] += requested
        c["mem.exec.allocated_bytes"] += allocated
        c["mem.exec.waste_bytes"] = (
            c["mem.exec.allocated_bytes"] - c["mem.exec.requested_bytes"]
        )
