"""``simcore validate``: the simulator against published measurements.

Each file of ``validation/`` is a case (:mod:`simcore.validate.spec`): a
figure published on a mailing list or in a commit, the workload (or probe)
that models its setup, and a criterion (:mod:`simcore.validate.criteria`).
:mod:`simcore.validate.runner` simulates every case and judges it;
:mod:`simcore.validate.table` and :mod:`simcore.validate.charts` report it.

Layer: above ``api`` and ``engine`` (probes drive a simulation's kernel
directly), beside ``sweep``; below ``cli``.
"""
