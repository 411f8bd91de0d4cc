"""Numbers the way a kernel developer reads them: 1.2us, 3.4M, 16K."""

from __future__ import annotations

import math


def _sig(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def human_ns(ns: float) -> str:
    a = abs(ns)
    if a < 1_000:
        return f"{_sig(ns)}ns"
    if a < 1_000_000:
        return f"{_sig(ns / 1e3)}us"
    if a < 1_000_000_000:
        return f"{_sig(ns / 1e6)}ms"
    return f"{_sig(ns / 1e9)}s"


def human_bytes(n: float) -> str:
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if abs(n) >= mult:
            return f"{_sig(n / mult)}{unit}"
    return f"{n:.0f}B"


def human_count(n: float) -> str:
    if isinstance(n, float) and not n.is_integer() and abs(n) < 1000:
        return _sig(n)
    for unit, mult in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= 10 * mult or (abs(n) >= mult and unit != "K"):
            return f"{_sig(n / mult)}{unit}"
    return f"{n:.0f}"


def human(value: float, unit: str) -> str:
    if unit == "ns":
        return human_ns(value)
    if unit == "bytes":
        return human_bytes(value)
    if unit == "pct":
        return f"{value:.1f}%"
    if unit == "s":
        return f"{value:.3g}s"
    return human_count(value)


def delta(value: float, base: float) -> str:
    """Relative change against the baseline, signed, e.g. '-41.2%'."""
    if base == value:
        return "0%"
    if base == 0 or math.isnan(base):
        return "new"
    pct = 100.0 * (value - base) / abs(base)
    if abs(pct) >= 1000:
        return f"{value / base:+.0f}x" if value / base > 0 else "n/a"
    return f"{pct:+.1f}%"
