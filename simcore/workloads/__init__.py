"""Workload generators: what the simulated host does, one file each.

Layer: above ``strategies`` and ``kernel`` (a generator calls into the
kernel as a program or a module would, and asks the kernel for the
executable-memory or arena policy in force), below ``config`` (which reads
each generator's config model). Each module defines a pydantic config
model whose ``type`` field is a ``Literal`` of its name, with a
``start(kernel, index)`` method that spawns its SimPy processes, and a
module-level ``DESCRIPTION``; one line below registers it by ``type:``.
"""

from __future__ import annotations

import importlib
from functools import cache

from simcore.registry import WORKLOADS

for _name, _target in {
    "vmalloc_stress": "simcore.workloads.vmalloc_stress:VmallocStress",
    "bpf_jit": "simcore.workloads.bpf_jit:BpfJit",
    "arena": "simcore.workloads.arena:ArenaWorkload",
    "module_load": "simcore.workloads.module_load:ModuleLoad",
    "background": "simcore.workloads.background:Background",
    "readers": "simcore.workloads.readers:Readers",
    "trace": "simcore.workloads.trace:Trace",
    "text_poke_users": "simcore.workloads.text_poke_users:TextPokeUsers",
    "reclaim": "simcore.workloads.reclaim:Reclaim",
    "pressure": "simcore.workloads.pressure:Pressure",
    "vmalloc_users": "simcore.workloads.vmalloc_users:VmallocUsers",
}.items():
    WORKLOADS.register(_name, _target)


@cache
def workload_models() -> tuple[type, ...]:
    return tuple(WORKLOADS.load(name) for name in WORKLOADS.names())


def workload_descriptions() -> dict[str, str]:
    return {
        name: importlib.import_module(
            WORKLOADS.target(name).partition(":")[0]
        ).DESCRIPTION
        for name in WORKLOADS.names()
    }
