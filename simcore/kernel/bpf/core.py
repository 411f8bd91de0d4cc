"""kernel/bpf/core.c: the memory side of loading and freeing a JIT image.

``bpf_prog_load`` here covers what the JIT does with memory once the
verifier is done: size the image (the strategy's rounding: whole pages for
``bpf_jit_binary_alloc``, 64-byte chunks for ``bpf_jit_binary_pack_alloc``),
charge it against ``bpf_jit_limit`` (``bpf_jit_charge_modmem``), allocate,
write and finalize it through the strategy. Verification and JIT passes are
not modelled: they cost the same whatever the allocator.

``bpf_jit_limit`` defaults to half the executable range
(``bpf_jit_alloc_exec_limit() >> 1`` rounded up to a page: MODULES_END -
MODULES_VADDR on x86), and loads by unprivileged users past it fail with
-EPERM; privileged loads are not limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.kernel.vmalloc import MODULES_END, MODULES_VADDR
from simcore.strategies.base import ExecAlloc

if TYPE_CHECKING:
    from simcore.engine import Simulation

PAGE = 4096
BPF_JIT_LIMIT = -(-((MODULES_END - MODULES_VADDR) >> 1) // PAGE) * PAGE
EPERM = 1


@dataclass(slots=True)
class BpfProg:
    proglen: int
    charged: int
    image: ExecAlloc


class BpfCore:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.env = sim.env
        self.metrics = sim.metrics
        self.limit = BPF_JIT_LIMIT
        self.charged = 0

    def prog_load(self, cpu: int, proglen: int, privileged: bool = True):
        """Returns the BpfProg, or -EPERM / None when memory runs out."""
        strategy = self.sim.exec_strategy
        t0 = self.env.now
        size = strategy.bpf_image_size(proglen)
        # bpf_jit_charge_modmem(): atomic add, undo and fail past the limit
        if self.charged + size > self.limit and not privileged:
            self.metrics.inc("bpf.jit_limit_failures")
            return -EPERM
        self.charged += size
        image = yield from strategy.alloc(cpu, size, "bpf_prog")
        if image is None:
            self.charged -= size
            self.metrics.inc("bpf.load_failures")
            return None
        strategy.shrink_request(image, proglen)
        yield from strategy.write(cpu, image, size)
        yield from strategy.finalize(cpu, image)
        self.metrics.inc("bpf.progs_loaded")
        self.metrics.latency("bpf_prog_load", self.env.now - t0)
        return BpfProg(proglen, size, image)

    def prog_free(self, cpu: int, prog: BpfProg):
        """bpf_jit_free(): give the image back, uncharge bpf_jit_limit."""
        t0 = self.env.now
        yield from self.sim.exec_strategy.free(cpu, prog.image)
        self.charged -= prog.charged
        self.metrics.inc("bpf.progs_freed")
        self.metrics.latency("bpf_prog_free", self.env.now - t0)
