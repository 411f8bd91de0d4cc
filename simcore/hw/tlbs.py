"""Choosing a CPU's TLB model: ``sim.tlb_model`` is ``exact`` or ``fast``.

Its own module so that :mod:`simcore.hw.tlb` (the interface both models
implement) never imports the models built on it.
"""

from __future__ import annotations

from simcore.hw.tlb import MODELS, Tlb, TlbGeometry
from simcore.hw.tlb_exact import ExactTlb
from simcore.hw.tlb_fast import FastTlb


def make_tlb(geometry: TlbGeometry, model: str) -> Tlb:
    """One CPU's TLBs using ``model``: "exact" or "fast"."""
    if model == "exact":
        return ExactTlb(geometry)
    if model == "fast":
        return FastTlb(geometry)
    raise ValueError(f"unknown TLB model {model!r}, expected one of {MODELS}")
