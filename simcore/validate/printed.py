"""Published figures as printed, converted by the loader, not by hand.

A case keeps each number exactly as its source printed it, unit included
(``"911,381 usec"``, ``"1m28.119s"``, ``"4,939,048"``, ``"30.5 %"``), so a
reader can find it in the source by search. Conversion to the measure's
unit happens here: time units convert between each other; any other unit
(a count: misses, IPIs, pages, cycles, %) must be the measure's own, or
absent.
"""

from __future__ import annotations

import re

# ns per unit, with the spellings sources use
TIME_NS = {
    "ns": 1.0,
    "nsec": 1.0,
    "us": 1e3,
    "usec": 1e3,
    "µs": 1e3,
    "μs": 1e3,
    "usecs": 1e3,
    "ms": 1e6,
    "msec": 1e6,
    "msecs": 1e6,
    "s": 1e9,
    "sec": 1e9,
    "secs": 1e9,
}
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
_PLAIN = re.compile(rf"^\s*({_NUMBER})\s*([^\d\s].*?)?\s*$")
_MIN_SEC = re.compile(rf"^\s*(\d+)m\s*({_NUMBER})s\s*$")  # `time`: 1m28.119s


# numbers sources write out ("modprobe takes ten times more")
WORDS = {
    w: float(i)
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
# how sources print a factor: "2X slower", "3.35x", "ten times more"
_FACTOR = re.compile(rf"^\s*({_NUMBER}|[a-z]+)\s*(?:x|X|×|times)\b.*$")


class PrintedError(ValueError):
    """The text is not a number with an optional unit."""


def parse_printed(value: str | float | int, unit: str) -> float:
    """The figure in the measure's ``unit``. Bare numbers pass through."""
    if isinstance(value, bool):
        raise PrintedError("a number or a printed figure, not true/false")
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    m = _MIN_SEC.match(text)
    if m:
        ns = (int(m.group(1)) * 60 + float(m.group(2).replace(",", ""))) * 1e9
        return _from_ns(ns, unit, text)
    m = _PLAIN.match(text)
    if not m:
        raise PrintedError(f"{text!r} is not a number with a unit")
    number = float(m.group(1).replace(",", ""))
    printed_unit = (m.group(2) or "").strip()
    if printed_unit in TIME_NS:
        return _from_ns(number * TIME_NS[printed_unit], unit, text)
    if printed_unit and unit and printed_unit != unit:
        raise PrintedError(
            f"{text!r} is in {printed_unit!r}, the measure in {unit!r}: "
            "only time units convert"
        )
    return number


def parse_factor(text: str) -> float:
    """A printed factor ("2X slower", "ten times more") as a number."""
    m = _FACTOR.match(str(text))
    if not m:
        raise PrintedError(f"{text!r} is not a factor such as '2X' or 'ten times'")
    word = m.group(1)
    if word in WORDS:
        return WORDS[word]
    try:
        return float(word.replace(",", ""))
    except ValueError:
        raise PrintedError(f"{word!r} is not a number") from None


def _from_ns(ns: float, unit: str, text: str) -> float:
    if unit not in TIME_NS:
        raise PrintedError(
            f"{text!r} is a time, the measure is in {unit or 'no unit'!r}"
        )
    return ns / TIME_NS[unit]
