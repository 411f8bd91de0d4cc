"""kernel/printk: the kernel log of a simulated run (``dmesg.txt``).

Lines carry the kernel's own prefix, ``[seconds.microseconds]`` of
simulated time, so messages a modelled kernel path prints (test_vmalloc's
``Summary:`` lines, allocation-failure warnings) read as in ``dmesg``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simcore.engine import Simulation


def printk(sim: Simulation, text: str) -> None:
    now = sim.env.now
    sec, ns = divmod(int(now), 1_000_000_000)
    sim.kmsg.append(f"[{sec:5d}.{ns // 1000:06d}] {text}")
