"""``static_key``: toggle a static key whose sites are live kernel text.

``static_key_enable()`` / ``static_key_disable()`` end in
``jump_label_update()`` under ``jump_label_mutex``, which rewrites every
site of the key (a 5-byte jump or nop) with the INT3 protocol of
``text_poke_bp()``. Since ba54f0c3f7c4 (v5.3, Daniel Bristot de Oliveira,
cover.1560325897.git.bristot@redhat.com) the sites are queued with
``arch_jump_label_transform_queue()`` and applied as one batch, three sync
IPI rounds for the whole key; before, each site was a ``text_poke_bp()`` of
its own with its own three rounds (``batched: false``). Each toggle's time
goes to ``alloc.static_key_update.latency_ns``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.strict import Strict
from simcore.units import Duration

if TYPE_CHECKING:
    from simcore.engine import Simulation

# JUMP_LABEL_NOP_SIZE on x86-64: a 5-byte jmp.d32 or nop
JUMP_LABEL_INSN = 5


class StaticKey(Strict):
    type: Literal["static_key"]
    sites: int = Field(default=56, ge=1, le=100_000)
    batched: bool = True
    toggles: int = Field(default=10, ge=1, le=1_000_000)
    interval: Duration = Field(default="500us", ge=0)

    def start(self, sim: Simulation) -> None:
        sim.env.process(self._run(sim))

    def _run(self, sim: Simulation):
        env = sim.env
        lock = sim.machine.mutex("jump_label_mutex")
        poke = sim.text_poke
        for _ in range(self.toggles):
            t0 = env.now
            extra = yield from lock.take(0)
            if extra:
                yield env.timeout(int(extra))
            if self.batched:
                yield from poke.text_poke_bp(0, self.sites, JUMP_LABEL_INSN)
            else:
                for _ in range(self.sites):
                    yield from poke.text_poke_bp(0, 1, JUMP_LABEL_INSN)
            lock.release(0)
            sim.metrics.latency("static_key_update", env.now - t0)
            yield env.timeout(self.interval)
