"""Probes: small in-kernel benchmarks a case can run instead of a workload.

Some published figures come from test modules rather than from workloads
(lib/test_vmalloc.c is one; an in-kernel timing of a static-key toggle or a
shootdown is another). A probe is that test module: it calls the modelled
kernel directly from one CPU, as the real module does, and records what it
measured through the usual metrics. Each probe is a pydantic model with a
``type`` tag and ``start(sim)``, like a workload generator, but it is only
known to ``simcore validate``: it measures one mechanism, it does not model
how a machine is used.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from simcore.validate.probes.static_key import StaticKey
from simcore.validate.probes.tlb_shootdown import TlbShootdown
from simcore.validate.probes.vmalloc_table import VmallocTable

PROBES = (StaticKey, TlbShootdown, VmallocTable)
ProbeConfig = Annotated[Union[PROBES], Field(discriminator="type")]  # noqa: UP007

__all__ = ["PROBES", "ProbeConfig"]
