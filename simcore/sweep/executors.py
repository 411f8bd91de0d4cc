"""Where points run: a local process pool, or Dask distributed.

Both take the same plain-data tasks and call the same
:func:`simcore.sweep.points.run_point`, and the driver writes every result,
so the point files cannot depend on the executor. Dask is imported only
when asked for; it comes with the ``cluster`` extra, as does dask-jobqueue
(Slurm, PBS).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from simcore.errors import ConfigError
from simcore.sweep.points import failure, run_point
from simcore.sweep.spec import ClusterSpec, Sweep

Task = dict[str, Any]


def default_workers() -> int:
    """CPUs this process may run on: os.cpu_count(), narrowed to the CPU
    affinity mask where there is one, so a Slurm job given 8 CPUs of a
    128-CPU node starts 8 workers, not 128."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class PointExecutor:
    """Runs tasks and yields ``(task index, outcome)`` as each finishes."""

    description = ""

    def run(self, tasks: list[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers; tasks not yet finished are dropped."""

    def __enter__(self) -> PointExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(PointExecutor):
    """A pool of worker processes on this machine.

    Workers come from a fork server that has imported the simulator once:
    starting one costs a fork, not an interpreter and its imports, and no
    worker inherits the threads of the process that asked for it (a plain
    fork of a threaded process can deadlock).
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self.description = (
            f"{self.workers} local worker process{'es' if self.workers > 1 else ''}"
        )
        self._pool: ProcessPoolExecutor | None = None

    def _context(self):
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["simcore.engine"])
            return ctx
        return multiprocessing.get_context("spawn")

    def run(self, tasks: list[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        if not tasks:
            return
        self._pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)), mp_context=self._context()
        )
        futures: dict[Future, int] = {
            self._pool.submit(run_point, t): i for i, t in enumerate(tasks)
        }
        for fut in as_completed(futures):
            i = futures.pop(fut)
            try:
                outcome = fut.result()
            except BrokenProcessPool as exc:
                # which point killed the worker (out of memory, a signal) is
                # unknown; every unfinished point is recorded and retried on
                # the next run
                exc.args = (
                    "a worker process died (killed, or out of memory?) while "
                    "this or another point ran; rerun the sweep to retry it",
                )
                outcome = failure(tasks[i]["config_hash"], exc)
            yield i, outcome

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # after an interruption, points still running are not waited for:
        # their results would be thrown away, and a point can take minutes
        running = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in running:
            if proc.is_alive():
                proc.terminate()
        for proc in running:
            proc.join(timeout=5)


class DaskExecutor(PointExecutor):
    """Dask distributed: an existing scheduler, a dask-jobqueue cluster from
    the sweep file's ``cluster:``, or else a LocalCluster of worker processes.
    """

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        cluster: ClusterSpec | None = None,
        workers: int | None = None,
        sweep: Sweep | None = None,
    ) -> None:
        distributed = _import_distributed()
        self._cluster = None
        if scheduler:
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(
                    f"cannot connect to the Dask scheduler at {scheduler}: {exc}",
                    file="--scheduler",
                    expected="the address a `dask scheduler` prints, "
                    "e.g. tcp://10.0.0.5:8786",
                ) from None
            self.description = f"the Dask scheduler at {scheduler}"
        elif cluster is not None:
            self._cluster = _jobqueue_cluster(cluster, sweep)
            self._cluster.scale(jobs=cluster.jobs)
            self.client = distributed.Client(self._cluster)
            self.description = (
                f"Dask on {cluster.jobs} {cluster.kind} job"
                f"{'s' if cluster.jobs > 1 else ''} of {cluster.cores} cores"
            )
        else:
            n = workers or default_workers()
            self._cluster = distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            self.client = distributed.Client(self._cluster)
            self.description = f"a local Dask cluster of {n} workers"

    def run(self, tasks: list[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        if not tasks:
            return
        from distributed import as_completed as dask_completed

        keys = [f"simcore-point-{t['config_hash']}" for t in tasks]
        futures = self.client.map(run_point, tasks, key=keys)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            i = index[fut.key]
            try:
                outcome = fut.result()
            except Exception as exc:  # KilledWorker, a lost connection, ...
                outcome = failure(tasks[i]["config_hash"], exc)
            fut.release()
            yield i, outcome

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "Dask distributed is not installed",
            file="--executor dask",
            expected="pip install 'simcore[cluster]', or --executor local",
        ) from None
    return distributed


def _jobqueue_cluster(spec: ClusterSpec, sweep: Sweep | None):
    where = {}
    if sweep is not None:
        where = {
            "file": sweep.file,
            "path": "cluster.kind",
            "line": sweep.line_of("cluster", "kind"),
        }
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(
            f"cluster kind {spec.kind!r} needs dask-jobqueue, which is not installed",
            expected="pip install 'simcore[cluster]'",
            **where,
        ) from None
    cls = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}[spec.kind]
    kwargs: dict[str, Any] = {
        "cores": spec.cores,
        "memory": spec.memory,
        "processes": spec.processes or spec.cores,
    }
    for name in ("walltime", "queue", "account", "interface", "python"):
        val = getattr(spec, name)
        if val is not None:
            kwargs[name] = val
    for name in ("job_extra_directives", "job_script_prologue"):
        if getattr(spec, name):
            kwargs[name] = list(getattr(spec, name))
    try:
        return getattr(dask_jobqueue, cls)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"dask-jobqueue rejected the cluster settings: {exc}", **where
        ) from None


def make_executor(
    kind: str, *, scheduler: str | None, workers: int | None, sweep: Sweep
) -> PointExecutor:
    if kind == "local":
        return LocalExecutor(workers)
    return DaskExecutor(
        scheduler=scheduler, cluster=sweep.spec.cluster, workers=workers, sweep=sweep
    )
