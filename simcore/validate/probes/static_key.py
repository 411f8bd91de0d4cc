"""``static_key``: toggle a static key whose sites are live kernel text.

``static_key_enable()`` / ``static_key_disable()`` end in
``jump_label_update()`` under ``jump_label_mutex``, which rewrites every
site of the key (a 5-byte jump or nop) with the INT3 protocol of
``text_poke_bp()``. Since ba54f0c3f7c4 (v5.3, Daniel Bristot de Oliveira,
cover.1560325897.git.bristot@redhat.com) the sites are queued with
``arch_jump_label_transform_queue()`` and applied as one batch, three sync
IPI rounds for the whole key; before, each site was a ``text_poke_bp()`` of
its own with its own three rounds (``batched: false``). On arm64 each site
is one instruction written through the fixmap, and from v6.11 the key
ends in one ``kick_all_cpus_sync()`` (the kernel's ``jump_label_update``,
simcore/kernel/arm64/patching.py). Each toggle's time goes to
``alloc.static_key_update.latency_ns``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.strict import Strict
from simcore.units import Duration

if TYPE_CHECKING:
    from simcore.engine import Simulation


class StaticKey(Strict):
    type: Literal["static_key"]
    sites: int = Field(default=56, ge=1, le=100_000)
    # None: as the era does it (x86: batched, every preset; arm64:
    # kernel.jump_label_batch)
    batched: bool | None = None
    toggles: int = Field(default=10, ge=1, le=1_000_000)
    interval: Duration = Field(default="500us", ge=0)

    def start(self, sim: Simulation) -> None:
        sim.env.process(self._run(sim))

    def _run(self, sim: Simulation):
        env = sim.env
        lock = sim.kernel.jump_label_mutex
        poke = sim.text_poke
        for _ in range(self.toggles):
            t0 = env.now
            extra = yield from lock.take(0)
            if extra:
                yield env.timeout(int(extra))
            yield from poke.jump_label_update(0, self.sites, self.batched)
            lock.release(0)
            sim.metrics.latency("static_key_update", env.now - t0)
            yield env.timeout(self.interval)
