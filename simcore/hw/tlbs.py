"""Choosing a CPU's TLB model: ``sim.tlb_model`` is ``exact`` or ``fast``.

Its own module so that :mod:`simcore.hw.tlb` (the interface both models
implement) never imports the models built on it.
"""

from __future__ import annotations

from simcore.hw.tlb import MODELS, Tlb, TlbGeometry, tlb_layout
from simcore.hw.tlb_exact import ExactTlb
from simcore.hw.tlb_fast import FastCore, FastTlb


def make_tlb(geometry: TlbGeometry, model: str) -> Tlb:
    """One CPU's TLBs using ``model``: "exact" or "fast"; no sibling."""
    return make_core_tlbs(geometry, model, 1)[0]


def make_core_tlbs(geometry: TlbGeometry, model: str, threads: int) -> list[Tlb]:
    """The TLBs of the ``threads`` online hardware threads of one core, in
    thread order: shared arrays are one structure for all of them."""
    if model == "exact":
        core: dict = {}
        return [ExactTlb(geometry, threads, t, core) for t in range(threads)]
    if model == "fast":
        fast = FastCore(tlb_layout(geometry, threads).core_entries)
        return [FastTlb(geometry, threads, t, fast) for t in range(threads)]
    raise ValueError(f"unknown TLB model {model!r}, expected one of {MODELS}")
