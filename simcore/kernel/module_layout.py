"""A module's memory before v6.4: two allocations, permissions by part.

Until ac3b43283923 ("module: replace module_layout with module_memory",
v6.4) ``move_module()`` made two ``module_alloc()`` calls: the core layout
(text, rodata, ro_after_init and data, in that order, each part starting
on a page with CONFIG_STRICT_MODULE_RWX: ``layout_sections()`` and
``debug_align()``) and the init layout (init text, rodata, data). The
loader then set permissions over the parts itself, with the
``frob_text()`` / ``frob_rodata()`` / ``frob_ro_after_init()`` /
``frob_writable_data()`` helpers of kernel/module/strict_rwx.c
(kernel/module.c before v5.19), in the order of v6.1:

- ``complete_formation()``: ``module_enable_ro(mod, false)`` (text and
  rodata of both layouts RO), ``module_enable_nx()`` (everything but text
  NX), ``module_enable_x()`` (text of both layouts X);
- ``do_init_module()``: ``module_enable_ro(mod, true)``, the same RO calls
  again plus ro_after_init, while the init layout still exists.

A part of no pages is skipped (``set_memory_*()`` of zero pages changes
nothing). Which memory the two allocations come from is the strategy's
(``Strategy.core_layout``); a strategy built against the per-type
interface gets one allocation per type in every era.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simcore.constants import PAGE

if TYPE_CHECKING:
    from simcore.kernel.module import ModuleSpec

# the parts of each layout in address order, and the kind it is
# allocated as (module_alloc() took no type: text is what it must allow)
CORE_PARTS = ("module_text", "module_rodata", "module_ro_after_init", "module_data")
INIT_PARTS = ("module_init_text", "module_init_rodata", "module_init_data")
CORE, INIT = "module_text", "module_init_text"
# the frob_*() helper each part belongs to
_FROB = {
    "module_text": "text",
    "module_init_text": "text",
    "module_rodata": "rodata",
    "module_init_rodata": "rodata",
    "module_ro_after_init": "ro_after_init",
    "module_data": "data",
    "module_init_data": "data",
}


@dataclass(frozen=True, slots=True)
class Layout:
    """One of the two allocations: its kind, size and parts."""

    kind: str  # CORE or INIT: the kind it is allocated as
    size: int  # bytes, every part page-aligned
    content: int  # bytes of the sections (what gets written)
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)  # off, bytes


def layouts(spec: ModuleSpec) -> list[Layout]:
    """layout_sections(): the core and init layouts of ``spec`` that are
    not empty."""
    out = []
    for kind, names in ((CORE, CORE_PARTS), (INIT, INIT_PARTS)):
        parts: dict[str, tuple[int, int]] = {}
        off = 0
        for name in names:
            n = -(-spec.size_of(name) // PAGE) * PAGE
            if n:
                parts[name] = (off, n)
                off += n
        if off:
            content = sum(spec.size_of(n) for n in names)
            out.append(Layout(kind, off, content, parts))
    return out


def _frob(
    bases: dict[str, int], lays: dict[str, Layout], layout: str, part: str, fn: str
):
    """One frob_*() call: (layout, set_memory function, address, pages),
    or None."""
    lay = lays.get(layout)
    if lay is None:
        return None
    for name, (off, n) in lay.parts.items():
        if _FROB[name] == part:
            return (layout, fn, bases[layout] + off, n // PAGE)
    return None


def _module_enable_ro(after_init: bool) -> list[tuple[str, str, str]]:
    """module_enable_ro(mod, after_init): text and rodata of both layouts,
    and ro_after_init once init has run."""
    plan = [
        (CORE, "text", "set_memory_ro"),
        (INIT, "text", "set_memory_ro"),
        (CORE, "rodata", "set_memory_ro"),
        (INIT, "rodata", "set_memory_ro"),
    ]
    if after_init:
        plan.append((CORE, "ro_after_init", "set_memory_ro"))
    return plan


# module_enable_nx() and module_enable_x()
_ENABLE_NX_X = [
    (CORE, "rodata", "set_memory_nx"),
    (CORE, "ro_after_init", "set_memory_nx"),
    (CORE, "data", "set_memory_nx"),
    (INIT, "rodata", "set_memory_nx"),
    (INIT, "data", "set_memory_nx"),
    (CORE, "text", "set_memory_x"),
    (INIT, "text", "set_memory_x"),
]


def _calls(bases: dict[str, int], lays: dict[str, Layout], plan) -> list:
    return [c for c in (_frob(bases, lays, *p) for p in plan) if c is not None]


def formation_calls(bases: dict[str, int], lays: dict[str, Layout]) -> list:
    """complete_formation(): module_enable_ro(mod, false),
    module_enable_nx(), module_enable_x(), as (layout, function, addr,
    pages)."""
    return _calls(bases, lays, _module_enable_ro(False) + _ENABLE_NX_X)


def after_init_calls(bases: dict[str, int], lays: dict[str, Layout]) -> list:
    """do_init_module(): module_enable_ro(mod, true)."""
    return _calls(bases, lays, _module_enable_ro(True))
