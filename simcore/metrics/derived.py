"""Per-load and per-update figures derived from a run's counters.

metrics.json holds what the simulation counted; an RFC reply wants the
ratios ("0.3 shootdowns per program load"). They are computed when a
summary is rendered, never stored, so metrics.json and its goldens stay the
simulator's own output. A ratio exists only where its denominator does: a
run that loaded nothing has no per-load figure rather than a zero. Every
name here is in :mod:`simcore.metrics.catalog`.
"""

from __future__ import annotations

from collections.abc import Mapping

# loads of either kind: each allocates text and makes it ROX, which is
# where the shootdowns an RFC counts come from
LOADS = ("module.loads", "bpf.progs_loaded")

# (derived name, numerator, denominators summed, scale)
RATIOS: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("tlb.shootdowns_per_load", "tlb.shootdowns", LOADS, 1.0),
    ("tlb.ipis_per_load", "tlb.ipis", LOADS, 1.0),
    (
        "text_poke.sync_ipis_per_poke",
        "text_poke.sync_ipis",
        ("text_poke.pokes",),
        1.0,
    ),
    (
        "mem.exec.waste_pct",
        "mem.exec.waste_bytes",
        ("mem.exec.allocated_bytes",),
        100.0,
    ),
)


def derive(metrics: Mapping[str, float]) -> dict[str, float]:
    """The derived figures ``metrics`` has a numerator and a non-zero
    denominator for, rounded as metrics.json rounds its floats."""
    out: dict[str, float] = {}
    for name, num, dens, scale in RATIOS:
        if num not in metrics or not any(d in metrics for d in dens):
            continue
        den = sum(metrics.get(d, 0) for d in dens)
        if den > 0:
            out[name] = round(scale * metrics[num] / den, 6)
    return out
