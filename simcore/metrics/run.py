"""The outcome of one simulation, as the engine hands it to results."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    strategy: str
    metrics: dict[str, float]
    series: list[tuple[int, dict[str, float]]]
    wall_s: float
    events: int
    latency_cdfs: dict[str, list[tuple[float, float]]]
    kmsg: list[str] = field(default_factory=list)  # kernel log (dmesg.txt)
