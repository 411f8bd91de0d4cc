"""Expanding a sweep into points, and running one point.

A point is one combination of parameter values plus one replication seed,
resolved to its full workload config; its key is that config's hash, so the
same config is the same point whatever the sweep file around it looks like.

Points are ordered: grid parameters in the order written (the first varies
slowest), then the zip group, then the replication. That order is the
``point`` column of sweep.csv and the basis of ``--shard``.

Replication ``r`` gets the same seed at every combination (common random
numbers: differences between combinations are not blurred by different
random streams), drawn from ``SeedSequence(seed).spawn``. Child ``r`` of a
SeedSequence does not depend on how many children are spawned, so raising
``seeds:`` from 3 to 5 keeps the first three replications and resumes.
"""

from __future__ import annotations

import copy
import itertools
import json
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore._version import __version__
from simcore.config.load import Resolved, config_hash, promote_strategy, resolve
from simcore.errors import ConfigError, InputError, SimulationError
from simcore.sweep.spec import Parameter, Sweep, import_plugins
from simcore.yamlsrc import Located, PathT, format_path


@dataclass(frozen=True)
class Point:
    index: int  # position in the expansion (sweep.csv's ``point``)
    combo: int  # which parameter combination
    replication: int
    seed: int
    params: dict[str, Any]  # parameter key as written -> value
    config_hash: str
    config: dict[str, Any]  # the resolved workload (config.yaml of a run)

    def label(self) -> str:
        vals = ", ".join(f"{k}={_show(v)}" for k, v in self.params.items())
        return f"point {self.index} ({vals}, replication {self.replication})"


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def replication_seeds(root: int, n: int) -> list[int]:
    children = np.random.SeedSequence(root).spawn(n)
    # 63 bits: a workload seed must fit a signed 64-bit integer
    return [
        int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children
    ]


def combinations(sweep: Sweep) -> list[dict[str, Any]]:
    out = []
    for picks in itertools.product(*(range(len(a)) for a in sweep.axes)):
        combo: dict[str, Any] = {}
        for axis, j in zip(sweep.axes, picks, strict=True):
            for p in axis.params:
                combo[p.key] = p.values[j]
        out.append(combo)
    return out


def expand(sweep: Sweep) -> list[Point]:
    """Resolve every point, so that a bad value fails before anything runs."""
    seeds = replication_seeds(sweep.spec.seed, sweep.spec.seeds)
    params = {p.key: p for p in sweep.params}
    points: list[Point] = []
    # Resolving loads and validates the hardware profile, the slow part; a
    # replication differs from the first only in ``seed``, so it is derived
    # from the first one's resolved config once that shortcut has been shown
    # to give exactly what ``resolve`` gives.
    shortcut: bool | None = None
    for ci, combo in enumerate(combinations(sweep)):
        first = _resolve_point(sweep, params, combo, seeds[0])
        for r, seed in enumerate(seeds):
            if r == 0:
                data, digest = first.data, first.config_hash
            else:
                data = copy.deepcopy(first.data)
                data["seed"] = seed
                digest = config_hash(data, first.captures)
                if shortcut is not True:
                    full = _resolve_point(sweep, params, combo, seed)
                    if shortcut is None:
                        shortcut = full.data == data and full.config_hash == digest
                    data, digest = full.data, full.config_hash
            points.append(
                Point(
                    index=len(points),
                    combo=ci,
                    replication=r,
                    seed=seed,
                    params=dict(combo),
                    config_hash=digest,
                    config=data,
                )
            )
    return points


_MARK = "\x00sweep-parameter:"


def _resolve_point(
    sweep: Sweep, params: dict[str, Parameter], combo: dict[str, Any], seed: int
) -> Resolved:
    base = sweep.base
    located = Located(
        data=copy.deepcopy(base.data),
        file=base.file,
        lines=dict(base.lines),
        origins=dict(base.origins),
    )
    for key, value in combo.items():
        p = params[key]
        _set(located.data, p, value, sweep)
        # an origin marks every error under this path as the parameter's
        # fault; it is translated back to the sweep file's line below
        located.origins[p.path] = _MARK + key
    located.data["seed"] = seed
    try:
        return resolve(located)
    except ConfigError as exc:
        raise _blame(exc, sweep, params, combo) from None


def _blame(
    exc: ConfigError, sweep: Sweep, params: dict[str, Parameter], combo: dict
) -> ConfigError:
    if exc.file and exc.file.startswith(_MARK):
        p = params[exc.file[len(_MARK) :]]
        value = combo[p.key]
        j = next(i for i, v in enumerate(p.values) if v == value)
        # an unknown key is the path's fault, anything else the value's
        path_fault = exc.message.startswith("unknown") and " key " in exc.message
        line = p.key_line if path_fault else p.value_lines[j]
        where = p.where if path_fault else f"{p.where}[{j}]"
        said = p.key in exc.message and _show(value) in exc.message
        return ConfigError(
            exc.message if said else f"{p.key} = {_show(value)}: {exc.message}",
            file=sweep.file,
            path=where,
            line=line,
            expected=exc.expected,
        )
    if _base_error(sweep) == exc.render():
        return exc  # the base is wrong whatever the parameters are
    inner = exc.render().removeprefix("error: ")
    vals = ", ".join(f"{k}={_show(v)}" for k, v in combo.items())
    return ConfigError(
        f"the base workload with {vals} is invalid: {inner}",
        file=sweep.file,
        path="parameters",
        line=sweep.line_of("parameters"),
    )


def _base_error(sweep: Sweep) -> str | None:
    base = sweep.base
    try:
        resolve(
            Located(data=copy.deepcopy(base.data), file=base.file, lines=base.lines)
        )
    except ConfigError as exc:
        return exc.render()
    return None


def _set(data: Any, p: Parameter, value: Any, sweep: Sweep) -> None:
    def fail(msg: str) -> ConfigError:
        return ConfigError(
            msg,
            file=sweep.file,
            path=p.where,
            line=p.key_line,
            expected="a path that exists in the base workload, or a new key "
            "of a mapping in it",
        )

    cur = data
    path: PathT = p.path
    promote_strategy(data, path)
    for i, part in enumerate(path[:-1]):
        here = format_path(path[: i + 1])
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                raise fail(f"the base workload has no {here}")
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                raise fail(f"{format_path(path[:i])} is not a mapping")
            nxt = path[i + 1]
            cur = cur.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise fail(f"the base workload has no {format_path(path)}")
    elif not isinstance(cur, dict):
        raise fail(f"{format_path(path[:-1])} is not a mapping")
    cur[last] = copy.deepcopy(value)


def task_of(point: Point, sweep: Sweep) -> dict[str, Any]:
    """What a worker needs: plain data, picklable, no simcore objects."""
    return {
        "simcore_version": __version__,
        "config_hash": point.config_hash,
        "config": point.config,
        "plugins": list(sweep.spec.plugins),
        "plugin_path": list(sweep.plugin_path),
    }


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Simulate one point; never raises for a failing simulation.

    Runs in a worker process (local pool or Dask). The result is plain
    data: metrics per strategy, or the error's type, message and traceback.
    """
    digest = task["config_hash"]
    try:
        if task["simcore_version"] != __version__:
            raise SimulationError(
                f"this worker runs simcore {__version__}, the sweep was "
                f"expanded with {task['simcore_version']}"
            )
        import_plugins(task["plugins"], task["plugin_path"])
        from simcore.engine import simulate

        located = Located(data=copy.deepcopy(task["config"]), file=f"point {digest}")
        resolved = resolve(located)
        if resolved.config_hash != digest:
            raise SimulationError(
                f"the worker resolved the point to config {resolved.config_hash}, "
                f"not {digest} (different simcore or hardware profiles?)"
            )
        results = simulate(resolved, quiet=True)
        return {
            "config_hash": digest,
            "status": "ok",
            "strategies": {r.strategy: r.metrics for r in results},
        }
    except Exception as exc:
        return failure(digest, exc)


def failure(digest: str, exc: BaseException) -> dict[str, Any]:
    message = (
        exc.render().removeprefix("error: ")
        if isinstance(exc, InputError)
        else str(exc)
    )
    return {
        "config_hash": digest,
        "status": "failed",
        "error": {
            "type": type(exc).__name__,
            "message": message,
            "traceback": "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            ),
        },
    }
