"""Units of the workload format: sizes, durations and rates.

Sizes are binary (K = KiB = 1024) because every size in this domain is a
page or a power of two of pages; durations become integer nanoseconds, the
simulator's clock unit, so no float rounding creeps into event times.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from simcore.constants import PAGE

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
}
_TIME_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_RATE_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}
_NUM = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e([+-]?[0-9]+))?"
_SIZE_RE = re.compile(rf"^\s*{_NUM}\s*([a-zA-Z]*)\s*$")
_TIME_RE = re.compile(rf"^\s*{_NUM}\s*(ns|us|ms|s)\s*$")
_RATE_RE = re.compile(rf"^\s*{_NUM}\s*([kKM]?)\s*/\s*(s|ms|us)\s*$")


def _number(mant: str, exp: str | None) -> Decimal:
    try:
        return Decimal(mant) * (Decimal(10) ** int(exp or 0))
    except InvalidOperation as exc:  # pragma: no cover - regex guards this
        raise ValueError(f"not a number: {mant!r}") from exc


def parse_size(value: Any) -> int:
    """'4K', '2MiB', '500B' or a plain non-negative integer -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 4K, 2MiB or 500B, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"size must not be negative, got {value!r}")
        m = _SIZE_RE.match(value)
        if m and m.group(3).lower() in _SIZE_UNITS:
            n = _number(m.group(1), m.group(2)) * _SIZE_UNITS[m.group(3).lower()]
            if n != n.to_integral_value():
                raise ValueError(f"size {value!r} is not a whole number of bytes")
            return int(n)
    raise ValueError(f"expected a size like 4K, 2MiB or 500B, got {value!r}")


def parse_duration(value: Any) -> int:
    """'200ms', '1.5us', '3s' -> integer nanoseconds (a bare 0 is allowed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"duration must not be negative, got {value!r}")
        m = _TIME_RE.match(value)
        if m:
            n = _number(m.group(1), m.group(2)) * _TIME_UNITS[m.group(3)]
            if n != n.to_integral_value():
                raise ValueError(f"duration {value!r} is finer than 1 ns")
            return int(n)
    raise ValueError(
        f"expected a duration with a unit (ns, us, ms, s) like 200ms, got {value!r}"
    )


def parse_ns(value: Any) -> int | float:
    """A cost in nanoseconds that may be a fraction of one, as hardware
    costs are: '450ns', '0.5ns', '1.2us' or a plain number of ns."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"time must not be negative, got {value}")
        return value
    if isinstance(value, str) and not value.strip().startswith("-"):
        m = _TIME_RE.match(value)
        if m:
            n = _number(m.group(1), m.group(2)) * _TIME_UNITS[m.group(3)]
            return int(n) if n == n.to_integral_value() else float(n)
    raise ValueError(f"expected a time like 450ns or 1.5us, got {value!r}")


def parse_pages(value: Any) -> int:
    """A number of 4 KiB pages, or a size of whole pages: 8192 or '32MiB'."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    n = parse_size(value)
    if isinstance(value, str):
        if n % PAGE:
            raise ValueError(f"{value!r} is not a whole number of 4 KiB pages")
        return n // PAGE
    return n


def parse_rate(value: Any) -> float:
    """'50/s', '100k/s', '2/ms' -> events per second."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"rate must not be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        if value.strip().startswith("-"):
            raise ValueError(f"rate must not be negative, got {value!r}")
        m = _RATE_RE.match(value)
        if m:
            mult = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6}[m.group(3)]
            return (
                float(_number(m.group(1), m.group(2))) * mult * _RATE_UNITS[m.group(4)]
            )
    raise ValueError(f"expected a rate like 50/s or 100k/s, got {value!r}")


def format_size(n: int) -> str:
    """Shortest exact binary form: 4096 -> '4K', 3 << 20 -> '3M'."""
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}B"


def format_duration(ns: int) -> str:
    """Shortest exact form: 200_000_000 -> '200ms'."""
    for unit, mult in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns and ns % mult == 0:
            return f"{ns // mult}{unit}"
    return f"{ns}ns"


def format_rate(r: float) -> str:
    return f"{r:g}/s"


# Field types for the pydantic schema: parse on the way in, write the
# canonical unit form on the way out so config.yaml reads like the input.
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size)]
Duration = Annotated[
    int, BeforeValidator(parse_duration), PlainSerializer(format_duration)
]
Rate = Annotated[float, BeforeValidator(parse_rate), PlainSerializer(format_rate)]
# a page count that may be written as a size; recorded as the count
Pages = Annotated[int, BeforeValidator(parse_pages)]
