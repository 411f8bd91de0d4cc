"""Executable-memory and arena strategies, one file each.

Adding a strategy means writing ``simcore/strategies/<name>.py`` with a
subclass of :class:`~simcore.strategies.base.Strategy` and adding one line to
``_REGISTRY``. Code outside the project (or a test) can call
:func:`register` instead.
"""

from __future__ import annotations

import importlib

from simcore.strategies.base import Strategy

# name -> "module:Class"; imported on first use.
_REGISTRY: dict[str, str] = {
    "module_alloc": "simcore.strategies.module_alloc:ModuleAlloc",
    "arena_4k": "simcore.strategies.arena_4k:Arena4K",
    "arena_huge": "simcore.strategies.arena_huge:ArenaHuge",
    "arena_batched_free": "simcore.strategies.arena_batched_free:ArenaBatchedFree",
    "bpf_prog_pack": "simcore.strategies.bpf_prog_pack:BpfProgPack",
    "bpf_prog_pack_2m": "simcore.strategies.bpf_prog_pack_2m:BpfProgPack2M",
    "execmem_rox": "simcore.strategies.execmem_rox:ExecmemRox",
    "vmalloc_huge_modules": "simcore.strategies.vmalloc_huge_modules:VmallocHugeModules",
    "vmalloc_huge_modules_nohuge": "simcore.strategies.vmalloc_huge_modules:VmallocHugeModulesNoHuge",
    "perm_alloc": "simcore.strategies.perm_alloc:PermAlloc",
    "jitalloc": "simcore.strategies.jitalloc:JitAlloc",
    "jitalloc_setmem": "simcore.strategies.jitalloc:JitAllocSetMemory",
    "module_alloc_type": "simcore.strategies.module_alloc_type:ModuleAllocType",
    "unmapped_cache": "simcore.strategies.unmapped_cache:UnmappedCache",
}
_LOADED: dict[str, type[Strategy]] = {}


def register(name: str, target: str | type[Strategy]) -> None:
    """Make a strategy known by name (a class or a "module:Class" string)."""
    if isinstance(target, str):
        _REGISTRY[name] = target
        _LOADED.pop(name, None)
    else:
        _REGISTRY[name] = f"{target.__module__}:{target.__qualname__}"
        _LOADED[name] = target


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    _LOADED.pop(name, None)


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def get_strategy(name: str) -> type[Strategy]:
    cls = _LOADED.get(name)
    if cls is None:
        module, _, attr = _REGISTRY[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        _LOADED[name] = cls
    return cls


__all__ = ["Strategy", "get_strategy", "register", "strategy_names", "unregister"]
