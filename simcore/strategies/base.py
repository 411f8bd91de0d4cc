"""The interface every executable-memory strategy implements.

A strategy decides where executable memory for a module or a BPF program
comes from and how its permissions are set. Every method is a SimPy
generator run on a CPU: it spends simulated time, takes kernel locks and
returns its result with ``return`` (callers use ``yield from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from simcore.engine import Simulation


@dataclass(slots=True)
class ExecAlloc:
    """Where an allocation's bytes live, for the TLB model to touch."""

    addr: int
    size: int
    page_shift: int  # mapping size covering it: 12, 21 or 30
    kind: str  # module_text, bpf_prog, ...
    handle: Any = None  # the strategy's own bookkeeping


class Strategy:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `simcore list strategies`
    models: ClassVar[str]  # kernel version or RFC it models

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def alloc(self, cpu: int, size: int, kind: str):  # pragma: no cover - interface
        raise NotImplementedError
        yield

    def free(self, cpu: int, alloc: ExecAlloc):  # pragma: no cover - interface
        raise NotImplementedError
        yield
