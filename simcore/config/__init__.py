"""Workload configuration: the YAML schema and its resolution.

Layer: above ``workloads`` (the ``workloads:`` list is the union of the
generators' own config models) and below ``engine``/``results``. Loading
fills every default: the hardware profile, the kernel preset's knobs
(typed, :class:`simcore.knobs.KernelKnobs`), the simulator settings. Units,
line-numbered YAML and the strict base model are at the ground
(:mod:`simcore.units`, :mod:`simcore.yamlsrc`, :mod:`simcore.strict`).
"""
