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
        # a rare event (0.005% contended) must not read as never
        if 0 < abs(value) < 0.05:
            return f"{value:.1g}%"
        return f"{value:.1f}%"
    if unit == "s":
        return f"{value:.3g}s"
    if unit == "1/s":
        return f"{human_count(value)}/s"
    return human_count(value)


def _scale(value: float, unit: str) -> tuple[float, str]:
    """The divisor and suffix :func:`human` picks for ``value``."""
    a = abs(value)
    if unit == "ns":
        steps = ((1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns"))
    elif unit == "bytes":
        steps = ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K"), (1, "B"))
    elif unit in ("pct", "s"):
        return 1.0, "%" if unit == "pct" else "s"
    else:
        steps = ((1e9, "G"), (1e6, "M"), (1e4, "K"), (1.0, ""))
    for div, suffix in steps:
        if a >= div:
            return float(div), "K" if suffix == "K" and unit != "bytes" else suffix
    return 1.0, steps[-1][1]


def human_half(half: float, mean: float, unit: str) -> str:
    """A CI half-width in the mean's unit and decimals: '48.3M' gets
    '0.85M' rather than '849K', so the two read together."""
    if half == 0:
        return "0"
    div, suffix = _scale(mean, unit)
    if div == 1e4:
        div = 1e3
    m = abs(mean) / div
    decimals = 0 if m >= 100 else 1 if m >= 10 else 2
    if unit == "pct":
        decimals = 1
    text = f"{half / div:.{decimals}f}"
    if float(text) == 0:
        # narrower than the mean's last digit: say how narrow, own unit
        return human(half, unit)
    return text + suffix


def change_pct(value: float, base: float) -> float | None:
    """Relative change in percent; None when the baseline is zero."""
    if value == base:
        return 0.0
    if base == 0 or math.isnan(base):
        return None
    return 100.0 * (value - base) / abs(base)


def format_change(value: float, base: float) -> str:
    """Signed relative change against the baseline: '-41.2%', '12.5x'.

    Past +1000% a factor reads better than a percentage; a change from zero
    has no ratio at all.
    """
    if value == base:
        return "0.0%"
    pct = change_pct(value, base)
    if pct is None:
        return "from 0"
    if pct >= 1000:
        ratio = value / base
        return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"
    return f"{pct:+.1f}%"


def delta(value: float, base: float) -> str:
    """Relative change against the baseline, signed, e.g. '-41.2%'."""
    return format_change(value, base)
