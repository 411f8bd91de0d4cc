"""Slurm and PBS through a sweep file's ``cluster:`` section.

The cluster is built as ``simcore sweep --executor dask`` builds it, from
the sweep file, but no job is submitted: the test reads the job script
dask-jobqueue would hand to sbatch or qsub.
"""

from __future__ import annotations

import sys

import pytest

from simcore.sweep.executors import _jobqueue_cluster
from simcore.sweep.spec import load_sweep

pytest.importorskip("dask_jobqueue")

SWEEP = """\
name: cluster-sweep
base:
  name: cluster-sweep
  duration: 200us
  machine: {{profile: small-test}}
  workloads: [{{type: vmalloc_stress, nr_pages: 1}}]
parameters:
  grid:
    machine.cpus: [1, 2]
metrics: [cpu.overhead_pct]
cluster:
  kind: {kind}
  cores: 8
  memory: 16GB
  jobs: 4
  walltime: "02:00:00"
  queue: normal
  account: kdev
  job_extra_directives: ["--exclusive"]
  job_script_prologue: ["source /opt/venvs/simcore/bin/activate"]
"""


def _script(write, kind: str) -> str:
    sweep = load_sweep(write(SWEEP.format(kind=kind), "s.yaml"))
    cluster = _jobqueue_cluster(sweep.spec.cluster, sweep)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def test_slurm_job_script(write):
    script = _script(write, "slurm")
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    for directive in (
        "#SBATCH -p normal",
        "#SBATCH -A kdev",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH -t 02:00:00",
        "#SBATCH --exclusive",
    ):
        assert directive in lines, (directive, script)
    # 16 GB for the job, as Slurm counts it (GiB, rounded down)
    assert "#SBATCH --mem=14G" in lines or "#SBATCH --mem=15G" in lines, script
    assert "source /opt/venvs/simcore/bin/activate" in lines
    (worker,) = [ln for ln in lines if "distributed.cli.dask_worker" in ln]
    # this interpreter, one single-threaded worker process per core: a point
    # is pure-Python SimPy and holds the GIL
    assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://")
    assert "--nthreads 1" in worker and "--nworkers 8" in worker
    assert "--memory-limit" in worker


def test_pbs_job_script(write):
    script = _script(write, "pbs")
    assert "#PBS -q normal" in script and "#PBS -A kdev" in script
    assert "ncpus=8" in script and "#PBS -l walltime=02:00:00" in script
    assert "--nworkers 8" in script and "--nthreads 1" in script
