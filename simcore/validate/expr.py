"""The ``measure.value`` expression of a case: arithmetic over metrics.

A published figure is rarely a metric as simcore names it: test_vmalloc
prints microseconds for all loops of one worker, perf prints misses per run.
A case turns metrics into the published unit with a small expression such
as ``duration_ns * x / m('workload.vmalloc_stress.loops') / 1000``.

Only numbers, the names below, ``m('metric.name')``, ``min``/``max``,
``+ - * / **`` and parentheses are accepted; the expression is parsed with
:mod:`ast` and walked, never passed to ``eval``.

Names: ``x`` (the case's x value of the run, 0 without an x axis),
``duration_ns``, ``duration_s``, ``cpus`` (online CPUs of the run), ``ghz``
(the profile's clock, to turn nanoseconds into published cycles).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

NAMES = ("x", "duration_ns", "duration_s", "cpus", "ghz")
_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_FUNCS = {"min": min, "max": max}


class ExprError(ValueError):
    """The expression is not of the accepted form, or cannot be evaluated."""


class MissingMetric(ExprError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the run produced no metric {name!r}")
        self.name = name


class Expr:
    """A parsed measure expression; :meth:`metrics` lists the metrics it reads."""

    def __init__(self, text: str) -> None:
        # YAML folded scalars keep line breaks before indented lines; an
        # expression means the same on one line
        self.text = " ".join(text.split())
        try:
            self._tree = ast.parse(self.text, mode="eval").body
        except SyntaxError as exc:
            raise ExprError(f"not an arithmetic expression: {exc.msg}") from None
        self._metrics: list[str] = []
        self._check(self._tree)

    def metrics(self) -> list[str]:
        return list(self._metrics)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ExprError(f"{node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            if node.id not in NAMES:
                raise ExprError(
                    f"unknown name {node.id!r} (known: {', '.join(NAMES)}; "
                    "metrics are read with m('name'))"
                )
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self._check(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            self._check_call(node)
        else:
            raise ExprError(
                f"{ast.unparse(node)!r} is not allowed (numbers, names, m('metric'), "
                "min, max, + - * / ** and parentheses)"
            )

    def _check_call(self, node: ast.Call) -> None:
        name = node.func.id  # type: ignore[attr-defined]
        if node.keywords:
            raise ExprError(f"{name}() takes no keyword arguments")
        if name == "m":
            arg = node.args[0] if len(node.args) == 1 else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise ExprError("m() takes one quoted metric name, e.g. m('tlb.ipis')")
            self._metrics.append(arg.value)
        elif name in _FUNCS:
            if len(node.args) < 2:
                raise ExprError(f"{name}() needs at least two arguments")
            for a in node.args:
                self._check(a)
        else:
            raise ExprError(f"unknown function {name!r} (known: m, min, max)")

    def evaluate(self, metrics: Mapping[str, float], env: Mapping[str, float]) -> float:
        return float(self._eval(self._tree, metrics, env))

    def _eval(self, node: ast.AST, metrics, env) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.BinOp):
            left = self._eval(node.left, metrics, env)
            right = self._eval(node.right, metrics, env)
            try:
                return _BINOPS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ExprError(f"division by zero in {self.text!r}") from None
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, metrics, env)
            return -v if isinstance(node.op, ast.USub) else v
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if node.func.id == "m":
            name = node.args[0].value  # type: ignore[attr-defined]
            if name not in metrics:
                raise MissingMetric(name)
            return metrics[name]
        return _FUNCS[node.func.id](*(self._eval(a, metrics, env) for a in node.args))
