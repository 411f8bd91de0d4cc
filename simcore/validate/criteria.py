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

acceptance (exactly one)
    ``tolerance: t``   |simulated / published - 1| <= t
    ``factor: f``      published / f <= simulated <= published * f
    ``band: [lo, hi]`` lo <= simulated <= hi, whatever the published
                       quantity (for published bounds: "at least 30 % fewer")

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
    tolerance: float | None = None
    factor: float | None = None
    band: tuple[float, float] | None = None

    def describe(self, has_x: bool = True) -> str:
        """Short text for the table's criterion column."""
        q = self.quantity
        if q in ("value", "ratio") and self.at is not None and has_x:
            q += f" at {_num(self.at)}"
        if self.tolerance is not None:
            return f"{q} ±{_num(100 * self.tolerance)}%"
        if self.factor is not None:
            return f"{q} within x{_num(self.factor)}"
        lo, hi = self.band  # type: ignore[misc]
        return f"{q} in [{_num(lo)}, {_num(hi)}]"

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
        if self.band is not None:
            lo, hi = self.band
            return lo <= simulated <= hi
        if published == 0:
            return False
        rel = simulated / published
        if self.tolerance is not None:
            return abs(rel - 1.0) <= self.tolerance + 1e-12
        f = self.factor
        return 1.0 / f - 1e-12 <= rel <= f + 1e-12  # type: ignore[operator]


@dataclass
class Verdict:
    passed: bool
    published: float | None
    simulated: float | None
    reason: str = ""  # why no simulated quantity could be computed


def judge(rule: Rule, published: Points, simulated: Points) -> Verdict:
    """Published points must give a quantity (the case loader checked it);
    simulated ones may not, e.g. when two series never cross: that fails."""
    pub = rule.quantity_of(published)
    try:
        sim = rule.quantity_of(simulated)
    except CriterionError as exc:
        return Verdict(False, pub, None, str(exc))
    if not math.isfinite(sim):
        return Verdict(False, pub, None, "not a finite number")
    return Verdict(rule.accepts(sim, pub), pub, sim)


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
