"""Strategy parameters: what an RFC author may change without editing code.

A strategy names its parameters in a ``Params`` model (a subclass of
:class:`StrategyParams`); a workload gives them under the strategy::

    strategy: {name: bpf_prog_pack, params: {pack_size: 1MiB, chunk_size: 128B}}

Every parameter's default is the constant the modelled kernel (or RFC)
uses, so a workload that gives none runs exactly the design as posted. Each
field carries a help text (``description``) and where its default comes
from (``source``), which ``simcore list strategies --params`` prints.
Sizes take the workload file's units (``Size`` from :mod:`simcore.units`).
"""

from __future__ import annotations

import textwrap
import typing
from typing import Any

from pydantic import BeforeValidator, ConfigDict, Field

from simcore.strict import Strict
from simcore.units import format_size, parse_duration, parse_size


class StrategyParams(Strict):
    """No parameters: the base of every strategy's ``Params``."""

    # frozen: one validated instance is shared by every simulation of a run
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def param(default: Any = ..., *, help: str, source: str, **constraints: Any) -> Any:
    """A parameter field: its default (or ``default_factory=``), what it
    means and where it comes from."""
    if default is not ...:
        constraints["default"] = default
    return Field(description=help, json_schema_extra={"source": source}, **constraints)


def power_of_two(n: int, what: str, low: int = 1, high: int | None = None) -> int:
    """``n``, checked to be a power of two within [low, high] bytes."""
    if n < low or (high is not None and n > high):
        top = format_size(high) if high is not None else "any"
        raise ValueError(
            f"{what} {format_size(n)} is not between {format_size(low)} and {top}"
        )
    if n & (n - 1):
        raise ValueError(f"{what} must be a power of two, got {n}")
    return n


def _kind(field: Any) -> str:
    """The type of a field as a reader of the help writes values for it."""
    parsers = {parse_size: "size", parse_duration: "duration"}
    for meta in field.metadata:
        if isinstance(meta, BeforeValidator) and meta.func in parsers:
            return parsers[meta.func]
    ann = field.annotation
    optional = type(None) in typing.get_args(ann)
    for arg in typing.get_args(ann) or (ann,):
        for meta in getattr(arg, "__metadata__", ()):
            if isinstance(meta, BeforeValidator) and meta.func in parsers:
                return parsers[meta.func] + (" or null" if optional else "")
    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(ann))
    return getattr(ann, "__name__", str(ann).replace("typing.", ""))


def describe_params(params: type[StrategyParams], width: int = 80) -> list[str]:
    """Help for ``simcore list strategies --params``: per parameter its
    path, type and default, then what it means and its source, wrapped; a
    table parameter (a mapping of rows) also gets its columns and rows."""
    if not params.model_fields:
        return ["  (no parameters)"]
    defaults = params().model_dump(mode="json")
    out = []

    def para(text: str, indent: str = "      ") -> None:
        out.extend(textwrap.wrap(text, width, initial_indent=indent,
                                 subsequent_indent=indent))  # fmt: skip

    for name, field in params.model_fields.items():
        default = defaults[name]
        row = _row_model(field.annotation)
        if row is not None:
            out.append(f"  params.{name}  (table: kind -> row, default below)")
        else:
            shown = "null" if default is None else default
            out.append(f"  params.{name}  ({_kind(field)}, default {shown})")
        para(field.description or "")
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("source"):
            para(f"source: {extra['source']}")
        if row is not None:
            for col, f in row.model_fields.items():
                para(f"{col}: {f.description or _kind(f)}", "        ")
            out.extend(_table(default))
    return out


def _row_model(ann: Any) -> type[StrategyParams] | None:
    """The row model of a ``dict[str, Model]`` parameter, else None."""
    if typing.get_origin(ann) is dict:
        val = typing.get_args(ann)[1]
        if isinstance(val, type) and issubclass(val, StrategyParams):
            return val
    return None


def _table(rows: dict[str, dict[str, Any]]) -> list[str]:
    cols = list(next(iter(rows.values())))
    cells = [["kind", *cols]] + [
        [k, *(_cell(r[c]) for c in cols)] for k, r in rows.items()
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols) + 1)]
    return [
        ("  " + " ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        for row in cells
    ]


def _cell(val: Any) -> str:
    if isinstance(val, bool):  # YAML reads yes/no as booleans too
        return "yes" if val else "no"
    return "null" if val is None else str(val)


__all__ = ["StrategyParams", "describe_params", "param", "power_of_two"]
