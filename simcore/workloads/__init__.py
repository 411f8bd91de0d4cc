"""Workload generators, one file each, registered by their ``type:``.

Each module defines a pydantic config model whose ``type`` field is a
``Literal`` of its name, with a ``start(sim, index)`` method that spawns its
SimPy processes, and a module-level ``DESCRIPTION``.
"""

from __future__ import annotations

import importlib
from functools import cache

_REGISTRY: dict[str, str] = {
    "vmalloc_stress": "simcore.workloads.vmalloc_stress:VmallocStress",
    "bpf_jit": "simcore.workloads.bpf_jit:BpfJit",
    "arena": "simcore.workloads.arena:ArenaWorkload",
    "module_load": "simcore.workloads.module_load:ModuleLoad",
    "background": "simcore.workloads.background:Background",
    "readers": "simcore.workloads.readers:Readers",
    "trace": "simcore.workloads.trace:Trace",
}


@cache
def workload_models() -> tuple[type, ...]:
    out = []
    for target in _REGISTRY.values():
        module, _, attr = target.partition(":")
        out.append(getattr(importlib.import_module(module), attr))
    return tuple(out)


def workload_descriptions() -> dict[str, str]:
    return {
        name: importlib.import_module(t.partition(":")[0]).DESCRIPTION
        for name, t in _REGISTRY.items()
    }
