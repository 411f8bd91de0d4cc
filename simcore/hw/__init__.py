"""The modelled machine: topology, TLBs, page walks, flushes and IPIs, locks.

Layer: above the ground only (context, metrics, profiles, constants). It
records into :mod:`simcore.metrics` and never imports the kernel, the
strategies or the results. Costs come from ``hw_profiles/`` with their
sources.
"""
