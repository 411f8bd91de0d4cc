"""The results folder (DESIGN section 3), written atomically.

Everything is written into a hidden sibling folder first and renamed into
place at the end, so an interrupted or failed run never leaves a half
folder, and a folder given with ``-o`` is only replaced once the new one is
complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from simcore._version import __version__
from simcore.config.load import Resolved
from simcore.metrics import RunResult
from simcore.results.summary import render_summary
from simcore.units import format_duration

if TYPE_CHECKING:  # made only by runs with replications, which import it
    from simcore.results.replicate import Replicated


def metrics_doc(
    resolved: Resolved,
    results: list[RunResult],
    replicated: Replicated | None = None,
) -> dict:
    doc = {
        "simcore_version": __version__,
        "seed": resolved.cfg.seed,
        "config_hash": resolved.config_hash,
        "strategies": {r.strategy: r.metrics for r in results},
    }
    if replicated is not None:
        doc["replication_seeds"] = replicated.seeds
        doc["replications"] = replicated.doc()
    return doc


def meta_from_config(cfg: dict) -> dict:
    """What summary.txt's title and footer need, from config.yaml."""
    duration = cfg["duration"]
    return {
        "name": cfg["name"],
        "profile": cfg["machine"]["profile"],
        "cpus": cfg["machine"]["cpus"],
        "preset": cfg["kernel"]["preset"],
        "duration": duration
        if isinstance(duration, str)
        else format_duration(duration),
    }


def dumps_metrics(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def timeseries_csv(results: list[RunResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["strategy", "time_ns", "metric", "value"])
    for r in results:
        for t, row in r.series:
            for k in sorted(row):
                w.writerow([r.strategy, t, k, row[k]])
    return buf.getvalue()


def latency_csv(results: list[RunResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["strategy", "op", "latency_ns", "cum_fraction"])
    for r in results:
        for op, pts in r.latency_cdfs.items():
            for v, f in pts:
                w.writerow([r.strategy, op, v, f"{f:.6f}"])
    return buf.getvalue()


def dmesg_text(results: list[RunResult]) -> str:
    """The kernel log of each strategy's run, one section per strategy."""
    parts = []
    for r in results:
        parts.append(f"==> {r.strategy} <==\n" + "".join(f"{ln}\n" for ln in r.kmsg))
    return "\n".join(parts)


def read_timeseries_csv(path: Path) -> dict[str, dict[str, list]]:
    """timeseries.csv as strategy -> metric -> [(time ns, value)]."""
    out: dict[str, dict[str, list]] = {}
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["strategy"], {}).setdefault(row["metric"], []).append(
                (int(row["time_ns"]), float(row["value"]))
            )
    return out


def read_latency_csv(path: Path) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {}
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["strategy"], {}).setdefault(row["op"], []).append(
                (float(row["latency_ns"]), float(row["cum_fraction"]))
            )
    return out


def _target(resolved: Resolved, out_dir: str | None, base: str) -> Path:
    if out_dir:
        return Path(out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{resolved.config_hash[:6]}"
    return unused_folder(Path(base) / resolved.cfg.name, run_id)


def unused_folder(parent: Path, run_id: str) -> Path:
    """``parent/run_id``, or ``run_id-2``, ``-3``... when that exists."""
    target, n = parent / run_id, 2
    while target.exists():
        target, n = parent / f"{run_id}-{n}", n + 1
    return target


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """An empty hidden sibling of ``target`` to fill in the ``with`` block.

    It replaces ``target`` when the block completes and is removed when the
    block raises, so ``target`` is never a half-written folder.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_results(
    resolved: Resolved,
    results: list[RunResult],
    out_dir: str | None = None,
    base: str = "results",
    replicated: Replicated | None = None,
) -> Path:
    """Write the results folder. With ``replicated`` (``run --replications``)
    ``results`` is ignored: the folder holds the means over the replications
    and metrics.json every replication's values with their intervals."""
    if replicated is not None:
        results = replicated.merged()
    target = _target(resolved, out_dir, base)
    with staged_folder(target) as tmp:
        doc = metrics_doc(resolved, results, replicated)
        (tmp / "config.yaml").write_text(resolved.to_yaml(), encoding="utf-8")
        (tmp / "metrics.json").write_text(dumps_metrics(doc), encoding="utf-8")
        meta = meta_from_config(resolved.data)
        (tmp / "summary.txt").write_text(render_summary(doc, meta), encoding="utf-8")
        (tmp / "timeseries.csv").write_text(timeseries_csv(results), encoding="utf-8")
        (tmp / "latency.csv").write_text(latency_csv(results), encoding="utf-8")
        timing = {
            r.strategy: {
                "sim.wall_s": round(r.wall_s, 4),
                "sim.events": r.events,
                "sim.events_per_s": round(r.events / r.wall_s) if r.wall_s else 0,
            }
            for r in results
        }
        (tmp / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
        if any(r.kmsg for r in results):
            (tmp / "dmesg.txt").write_text(dmesg_text(results), encoding="utf-8")
        # charts from the files just written, as `simcore report` draws them
        # (matplotlib is imported here, when drawing, not with this module)
        from simcore.results.charts import render_charts

        render_charts(
            doc,
            tmp,
            resolved.cfg.name,
            cdfs=read_latency_csv(tmp / "latency.csv"),
            series=read_timeseries_csv(tmp / "timeseries.csv"),
        )
    return target


def _replace(tmp: Path, target: Path) -> None:
    if not target.exists():
        tmp.rename(target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def load_config_yaml(folder: Path) -> dict:
    with (folder / "config.yaml").open(encoding="utf-8") as f:
        return yaml.safe_load(f)
