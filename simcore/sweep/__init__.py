"""Parameter sweeps: ``simcore sweep SWEEP.yaml``.

Layer: above ``api`` (each point is one ``simulate`` of a resolved
workload), beside ``validate``; below ``cli``.

A sweep file::

    name: vmap-scaling              # output folder results/<name>/
    base: ../workloads/quickstart.yaml   # relative to this file, or a mapping
    parameters:
      grid:                         # cartesian product, first varies slowest
        machine.cpus: [1, 2, 4, 8]
        kernel.preset: ["6.1", latest]
        workloads[0].nr_pages: {range: {start: 1, stop: 16, step: 5}}  # 1 6 11 16
      zip:                          # equal lengths, varied together
        kernel.vmap_locking: [global, per_node]
        kernel.vmap_nodes: [1, 0]
    seed: 1                         # root of every replication seed (the
                                    # base workload's own seed is replaced)
    seeds: 3                        # replications per combination
    metrics: [cpu.overhead_pct, lock.*.wait_ns]   # catalog names or patterns
    x: machine.cpus                 # chart x axis; default: first parameter
    plugins: [my_strategies]        # modules to import first (see below)
    cluster:                        # only for --executor dask without --scheduler
      kind: slurm                   # or pbs; needs dask-jobqueue
      cores: 32
      memory: 64GB
      jobs: 4
      walltime: "02:00:00"
      queue: normal

Parameter paths are those of ``simcore run --set``. Every point is resolved
(and so validated) before the first one runs. Replication ``r`` has the same
seed at every combination, derived from ``seed`` with numpy's SeedSequence.

``plugins`` are imported by module name in the driver and in every worker
before anything is validated or run, so a strategy registered with
:func:`simcore.strategies.register` can be swept. They are looked up on the
Python path, then in the sweep file's folder; with Dask on a cluster that
folder must be on a shared file system (or the module installed).

Results go to ``<out>/points/<config hash>.json``, one file per point,
written atomically; a rerun skips points stored as ``ok`` and retries the
failed ones. See :mod:`simcore.sweep.aggregate` for the tables and charts.

Nothing is imported here: ``simcore --help`` builds the sweep command's
parser from :mod:`simcore.sweep.cli` and must not pay for the simulator.
"""
