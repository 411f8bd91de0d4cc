"""kernel/printk: the kernel log of a simulated run (``dmesg.txt``).

Lines carry the kernel's own prefix, ``[seconds.microseconds]`` of
simulated time, so messages a modelled kernel path prints (test_vmalloc's
``Summary:`` lines, allocation-failure warnings) read as in ``dmesg``.
"""

from __future__ import annotations

from simcore.context import SimContext


def printk(ctx: SimContext, text: str) -> None:
    now = ctx.env.now
    sec, ns = divmod(int(now), 1_000_000_000)
    ctx.kmsg.append(f"[{sec:5d}.{ns // 1000:06d}] {text}")
