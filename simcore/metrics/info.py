"""One entry of the metric catalog (:mod:`simcore.metrics.catalog`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    pattern: str
    unit: str  # count, ns, bytes, pct, pages, s, 1/s
    better: str  # lower | higher | none
    description: str
    label: str = ""  # short human name; empty: the description
