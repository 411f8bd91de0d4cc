"""Quantitative criteria: a quantity of the points, and when it is close enough.

A criterion reduces a set of points, published or simulated, to one number
(the *quantity*) and then accepts the simulated number against the
published one:

quantities
    ``value``     one series at one x (or the series' only point)
    ``ratio``     series ``num`` over series ``den`` at one x
    ``slope``     least-squares slope of one series over x
    ``crossing``  the x at which series ``num`` and ``den`` cross (linear
                  interpolation between neighbouring x values)

acceptance, always two-sided on magnitude
    ``factor: f``      published / f <= simulated <= published * f
                       (1.5 unless a case widens it, at most 2). Agreement
                       in direction alone is never accepted.

Points are ``{series: {x: y}}``; a case without an x axis has one point per
series at x = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Points = dict[str, dict[float, float]]


class CriterionError(ValueError):
    """The quantity cannot be computed from these points."""


@dataclass(frozen=True)
class Rule:
    quantity: str  # value | ratio | slope | crossing
    series: str | None = None  # value, slope
    num: str | None = None  # ratio, crossing
    den: str | None = None
    at: float | None = None  # value, ratio
    factor: float = 1.5
    printed: float | None = None  # the published ratio, when printed alone

    def describe(self, has_x: bool = True) -> str:
        """Short text for the table's criterion column."""
        q = self.quantity
        if q in ("value", "ratio") and self.at is not None and has_x:
            q += f" at {_num(self.at)}"
        return f"{q} within x{_num(self.factor)}"

    def bounds(self, published: float) -> tuple[float, float]:
        """The accepted interval around the published quantity."""
        lo, hi = published / self.factor, published * self.factor
        return (lo, hi) if lo <= hi else (hi, lo)

    def published_quantity(self, points: Points) -> float:
        return self.printed if self.printed is not None else self.quantity_of(points)

    def quantity_of(self, points: Points) -> float:
        q = self.quantity
        if q == "value":
            return _at(points, self.series, self.at)
        if q == "ratio":
            den = _at(points, self.den, self.at)
            if den == 0:
                raise CriterionError(f"series {self.den!r} is 0 at x = {self.at}")
            return _at(points, self.num, self.at) / den
        if q == "slope":
            return slope(_series(points, self.series))
        if q == "crossing":
            return crossing(_series(points, self.num), _series(points, self.den))
        raise CriterionError(f"unknown quantity {q!r}")

    def accepts(self, simulated: float, published: float) -> bool:
        if published == 0:
            return False
        rel = simulated / published
        f = self.factor
        return 1.0 / f - 1e-12 <= rel <= f + 1e-12


@dataclass
class Verdict:
    passed: bool
    published: float | None
    simulated: float | None
    reason: str = ""  # why it failed: out of bounds, or no quantity

    @property
    def ratio(self) -> float | None:
        """simulated / published"""
        if self.simulated is None or not self.published:
            return None
        return self.simulated / self.published


def judge(rule: Rule, published: Points, simulated: Points) -> Verdict:
    """Published points must give a quantity (the case loader checked it);
    simulated ones may not, e.g. when two series never cross: that fails."""
    pub = rule.published_quantity(published)
    try:
        sim = rule.quantity_of(simulated)
    except CriterionError as exc:
        return Verdict(False, pub, None, str(exc))
    if not math.isfinite(sim):
        return Verdict(False, pub, None, "not a finite number")
    ok = rule.accepts(sim, pub)
    reason = ""
    if not ok:
        lo, hi = rule.bounds(pub)
        ratio = sim / pub if pub else float("inf")
        reason = (
            f"simulated {_num(sim)} is x{_num(round(ratio, 4))} of published "
            f"{_num(pub)}, outside [{_num(lo)}, {_num(hi)}]"
        )
    return Verdict(ok, pub, sim, reason)


def _series(points: Points, name: str | None) -> dict[float, float]:
    if name not in points or not points[name]:
        raise CriterionError(f"no points for series {name!r}")
    return points[name]


def _at(points: Points, name: str | None, x: float | None) -> float:
    s = _series(points, name)
    if x is None:
        if len(s) != 1:
            raise CriterionError(f"series {name!r} has several points: give at:")
        return next(iter(s.values()))
    if x not in s:
        raise CriterionError(f"series {name!r} has no point at x = {_num(x)}")
    return s[x]


def slope(s: dict[float, float]) -> float:
    xs = sorted(s)
    if len(xs) < 2:
        raise CriterionError("a slope needs at least two points")
    n = len(xs)
    mx = sum(xs) / n
    my = sum(s[x] for x in xs) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (s[x] - my) for x in xs) / sxx


def crossing(a: dict[float, float], b: dict[float, float]) -> float:
    """First x where a - b changes sign, interpolated linearly."""
    xs = sorted(set(a) & set(b))
    if len(xs) < 2:
        raise CriterionError("a crossing needs two series with two common x values")
    prev_x, prev_d = xs[0], a[xs[0]] - b[xs[0]]
    if prev_d == 0:
        return prev_x
    for x in xs[1:]:
        d = a[x] - b[x]
        if d == 0:
            return x
        if (d > 0) != (prev_d > 0):
            return prev_x + (x - prev_x) * prev_d / (prev_d - d)
        prev_x, prev_d = x, d
    raise CriterionError(
        f"the series do not cross between x = {_num(xs[0])} and {_num(xs[-1])}"
    )


def _num(v: float) -> str:
    return f"{v:g}"
