"""Executable-memory and arena strategies: the policies under comparison.

Layer: above ``kernel`` (whose interfaces they implement: ``ExecAllocator``
in :mod:`simcore.kernel.execmem`, the arena hooks of
:mod:`simcore.kernel.bpf.arena`), below ``workloads``. One strategy is one
file here, a subclass of :class:`~simcore.strategies.base.Strategy`, plus
one line below, which fills the ground registry
(:data:`simcore.registry.STRATEGIES`) without importing the module.
"""

from __future__ import annotations

from simcore.registry import STRATEGIES

for _name, _target in {
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
}.items():
    STRATEGIES.register(_name, _target)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str):
    return STRATEGIES.load(name)


register = STRATEGIES.register
unregister = STRATEGIES.unregister

__all__ = ["get_strategy", "register", "strategy_names", "unregister"]
