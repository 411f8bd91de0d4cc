"""``simcore sweep``: executors agree, resume after a kill, failures, input."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from simcore.strategies import strategy_names, unregister
from simcore.sweep.aggregate import ci95
from simcore.sweep.points import expand, replication_seeds
from simcore.sweep.progress import Progress
from simcore.sweep.spec import RangeSpec, load_sweep
from tests.sweep.toy_strategy import RUN_LOG_ENV

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

BASE = """\
base:
  name: sweep-test
  duration: {duration}
  machine: {{profile: small-test}}
  kernel: {{preset: latest}}
  strategy: {strategy}
  workloads:
    - {{type: vmalloc_stress, nr_pages: 1, max_pages: 4}}
"""


def sweep_text(
    *,
    grid: str,
    seeds: int = 1,
    strategy: str = "module_alloc",
    duration: str = "200us",
    extra: str = "",
) -> str:
    return (
        "name: sweep-test\n"
        + BASE.format(duration=duration, strategy=strategy)
        + "parameters:\n  grid:\n"
        + textwrap.indent(textwrap.dedent(grid).strip() + "\n", "    ")
        + f"seeds: {seeds}\n"
        + "metrics: [cpu.overhead_pct, alloc.vmalloc.latency_ns.p99]\n"
        + extra
    )


@pytest.fixture
def plugin(tmp_path: Path):
    """toy_strategy.py next to the sweep files, importable as a plugin."""
    shutil.copy(HERE / "toy_strategy.py", tmp_path / "toy_strategy.py")
    before = set(strategy_names())
    yield "plugins: [toy_strategy]\n"
    # a later test must import the plugin afresh, from its own folder
    sys.modules.pop("toy_strategy", None)
    for name in set(strategy_names()) - before:
        unregister(name)
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def point_files(out: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((out / "points").glob("*.json"))}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def subprocess_sweep(*argv: str, env_extra: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    return subprocess.Popen(
        [sys.executable, "-m", "simcore", "sweep", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, workers included
    )


# ------------------------------------------------------------ 1. executors


def test_dask_cluster_gives_byte_identical_results(tmp_path, write, cli):
    distributed = pytest.importorskip("distributed")
    spec = write(
        sweep_text(
            grid='machine.cpus: [1, 2]\nkernel.preset: ["6.1", latest]', seeds=2
        ),
        "s.yaml",
    )
    local, dask = tmp_path / "local", tmp_path / "dask"
    code, _, err = cli("sweep", str(spec), "-o", str(local), "--workers", "2")
    assert code == 0, err
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    try:
        code, _, err = cli(
            "sweep",
            str(spec),
            "-o",
            str(dask),
            "--scheduler",
            cluster.scheduler_address,
        )
    finally:
        cluster.close()
    assert code == 0, err
    assert "Dask scheduler" in err and "8 to run" in err
    files = point_files(local)
    assert len(files) == 8
    assert files.keys() == point_files(dask).keys()
    for stem, path in files.items():
        assert path.read_bytes() == (dask / "points" / f"{stem}.json").read_bytes()
    for name in ("sweep.csv", "summary.csv", "summary.txt"):
        assert (local / name).read_bytes() == (dask / name).read_bytes(), name
    rows = read_csv(local / "sweep.csv")
    assert [int(r["point"]) for r in rows] == list(range(8))
    assert all(r["status"] == "ok" and r["cpu.overhead_pct"] != "" for r in rows)


# ------------------------------------------------------- 2. kill and resume


def test_killed_sweep_resumes_running_only_missing_points(tmp_path, plugin):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        sweep_text(
            grid="machine.cpus: [1, 2, 3, 4]",
            seeds=4,
            strategy="toy_count",
            duration="2ms",
            extra=plugin,
        )
    )
    out = tmp_path / "out"
    expected = {p.config_hash for p in expand(load_sweep(spec))}
    assert len(expected) == 16

    log1 = tmp_path / "run1.log"
    proc = subprocess_sweep(
        str(spec), "-o", str(out), "--workers", "2", env_extra={RUN_LOG_ENV: str(log1)}
    )
    deadline = time.monotonic() + 60
    while len(point_files(out)) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "no point was stored within 60s"
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(f"the sweep ended before it was killed: {proc.communicate()}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = {
        stem: (p.stat().st_ino, p.stat().st_mtime_ns)
        for stem, p in point_files(out).items()
    }
    assert 3 <= len(before) < 16, f"kill came too late: {len(before)} stored"
    for path in point_files(out).values():
        assert json.loads(path.read_text())["status"] == "ok"  # never partial

    log2 = tmp_path / "run2.log"
    proc = subprocess_sweep(
        str(spec), "-o", str(out), "--workers", "2", env_extra={RUN_LOG_ENV: str(log2)}
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"{len(before)} stored, {16 - len(before)} to run" in err
    reran = log2.read_text().split()
    assert sorted(reran) == sorted(expected - before.keys())  # each exactly once
    after = point_files(out)
    assert after.keys() == expected
    for stem, stamp in before.items():
        st = after[stem].stat()
        assert (st.st_ino, st.st_mtime_ns) == stamp, f"{stem} was rewritten"
    rows = read_csv(out / "sweep.csv")
    assert [int(r["point"]) for r in rows] == list(range(16))
    assert {r["config_hash"] for r in rows} == expected


# ------------------------------------------------------ 3. a point raises


def test_failing_point_is_recorded_and_the_rest_complete(tmp_path, cli, plugin):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        sweep_text(grid="machine.cpus: [1, 2, 3]", strategy="toy_raise", extra=plugin)
    )
    out = tmp_path / "out"
    code, _, err = cli("sweep", str(spec), "-o", str(out), "--workers", "2")
    assert code == 1
    assert "Traceback" not in err
    assert "1 point(s) failed" in err
    assert "machine.cpus=2" in err
    assert "SimulationError: toy_raise refuses to run on 2 CPUs" in err
    docs = [json.loads(p.read_text()) for p in point_files(out).values()]
    by_cpus = {d["parameters"]["machine.cpus"]: d for d in docs}
    assert sorted(by_cpus) == [1, 2, 3]
    assert by_cpus[1]["status"] == by_cpus[3]["status"] == "ok"
    failed = by_cpus[2]
    assert failed["status"] == "failed" and "strategies" not in failed
    assert failed["error"]["type"] == "SimulationError"
    assert "refuses" in failed["error"]["message"]
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error"].startswith("SimulationError:")
    assert "failed points (1)" in (out / "summary.txt").read_text()

    # a rerun retries only the failed point
    ok_stamp = point_files(out)[by_cpus[1]["config_hash"]].stat().st_mtime_ns
    code, _, err = cli("sweep", str(spec), "-o", str(out))
    assert code == 1
    assert "2 stored, 1 to run" in err
    assert point_files(out)[by_cpus[1]["config_hash"]].stat().st_mtime_ns == ok_stamp


# ----------------------------------------------------------- 4. bad input

GOOD_GRID = "machine.cpus: [1, 2]"


@pytest.mark.parametrize(
    ("text", "argv", "expect"),
    [
        (
            sweep_text(grid=GOOD_GRID).replace("metrics:", "metrcs:"),
            [],
            ["s.yaml:14", "unknown key 'metrcs'", "did you mean 'metrics'?"],
        ),
        (
            sweep_text(grid=GOOD_GRID).replace("parameters:", "parameter:"),
            [],
            ["s.yaml:10", "did you mean 'parameters'?"],
        ),
        (
            sweep_text(grid="machine.cpus: [1]\nmachine.cpuss: [1, 2]"),
            [],
            ["s.yaml:13", "parameters.grid.machine.cpuss", "did you mean 'cpus'?"],
        ),
        (
            sweep_text(grid="machine.cpus:\n  - 1\n  - 64"),
            [],
            ["s.yaml:14", "machine.cpus[1]", "only 4 hardware threads"],
        ),
        (
            sweep_text(grid="workloads[3].nr_pages: [1]"),
            [],
            ["s.yaml:12", "has no workloads[3]"],
        ),
        (
            sweep_text(grid=GOOD_GRID).replace("cpu.overhead_pct,", "cpu.overhead_pc,"),
            [],
            ["unknown metric 'cpu.overhead_pc'", "did you mean 'cpu.overhead_pct'?"],
        ),
        (
            sweep_text(grid=GOOD_GRID, extra="x: machine.cpu\n"),
            [],
            ["s.yaml:15", "did you mean 'machine.cpus'?"],
        ),
        (
            sweep_text(grid="machine.cpus: {range: {start: 1, stpo: 4}}"),
            [],
            ["s.yaml:12", "unknown key 'stpo'", "did you mean 'stop'?"],
        ),
        (sweep_text(grid=GOOD_GRID), ["--shard", "3/2"], ["--shard", "3/2"]),
        (sweep_text(grid=GOOD_GRID), ["--shard", "0/2"], ["i/N with 1 <= i <= N"]),
        (
            sweep_text(grid=GOOD_GRID),
            ["--executor", "local", "--scheduler", "tcp://127.0.0.1:1"],
            ["--scheduler"],
        ),
    ],
    ids=[
        "unknown-key",
        "misspelt-required-key",
        "bad-swept-path",
        "bad-value-at-a-point",
        "missing-list-entry",
        "unknown-metric",
        "x-not-swept",
        "range-typo",
        "shard-past-count",
        "shard-zero",
        "scheduler-with-local",
    ],
)
def test_bad_input_exits_2_before_running(tmp_path, write, cli, text, argv, expect):
    spec = write(text, "s.yaml")
    out = tmp_path / "out"
    code, _, err = cli("sweep", str(spec), "-o", str(out), *argv)
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: ")
    for fragment in expect:
        assert fragment in err, (fragment, err)
    assert not out.exists()


# ------------------------------------------------- 5. confidence intervals


def test_ci95_matches_student_t_table():
    # t(0.975, 4) = 2.7764451051977987; sd of 1..5 = sqrt(2.5)
    iv = ci95([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert iv.n == 5 and iv.mean == 3
    assert iv.sd == pytest.approx(math.sqrt(2.5), rel=1e-12)
    assert iv.low == pytest.approx(3 - half, rel=1e-9)
    assert iv.high == pytest.approx(3 + half, rel=1e-9)
    assert iv.low == pytest.approx(1.036757, abs=1e-6)
    # two samples: t(0.975, 1) = 12.706204736174698, sd = sqrt(2)
    iv = ci95([10, 12])
    assert (iv.low, iv.high) == pytest.approx(
        (11 - 12.7062047361747, 11 + 12.7062047361747)
    )
    iv = ci95([7.5])
    assert iv.mean == 7.5 and math.isnan(iv.low) and math.isnan(iv.high)
    iv = ci95([2.0, 2.0, 2.0])
    assert (iv.low, iv.high) == (2.0, 2.0)


def test_summary_csv_holds_the_interval_of_each_combination(tmp_path, write, cli):
    spec = write(sweep_text(grid="machine.cpus: [2, 4]", seeds=3), "s.yaml")
    out = tmp_path / "out"
    code, stdout, err = cli("sweep", str(spec), "-o", str(out), "--workers", "2")
    assert code == 0, err
    rows = read_csv(out / "sweep.csv")
    summary = {
        (r["machine.cpus"], r["metric"]): r for r in read_csv(out / "summary.csv")
    }
    for cpus in ("2", "4"):
        vals = [float(r["cpu.overhead_pct"]) for r in rows if r["machine.cpus"] == cpus]
        want = ci95(vals)
        got = summary[(cpus, "cpu.overhead_pct")]
        assert int(got["n"]) == 3
        assert float(got["mean"]) == pytest.approx(want.mean)
        assert float(got["ci95_low"]) == pytest.approx(want.low)
        assert float(got["ci95_high"]) == pytest.approx(want.high)
    text = (out / "summary.txt").read_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text in stdout
    for metric in ("cpu.overhead_pct", "alloc.vmalloc.latency_ns.p99"):
        for ext in ("png", "svg"):
            assert (out / f"{metric}.{ext}").stat().st_size > 0


# ------------------------------------------------- expansion and sharding


def test_expansion_order_range_zip_and_seeds(write):
    spec = write(
        sweep_text(
            grid="""
            machine.cpus: {range: {start: 1, stop: 4, step: 2}}
            """,
            seeds=2,
        ).replace(
            "  grid:\n",
            "  zip:\n    kernel.preset: ['6.1', latest]\n"
            "    kernel.vmap_locking: [global, per_node]\n  grid:\n",
        ),
        "s.yaml",
    )
    sweep = load_sweep(spec)
    points = expand(sweep)
    # grid first (slowest), then the zip group, then the replication
    got = [
        (p.params["machine.cpus"], p.params["kernel.preset"], p.replication)
        for p in points
    ]
    assert got == [
        (1, "6.1", 0), (1, "6.1", 1), (1, "latest", 0), (1, "latest", 1),
        (3, "6.1", 0), (3, "6.1", 1), (3, "latest", 0), (3, "latest", 1),
    ]  # fmt: skip
    assert all(
        p.params["kernel.vmap_locking"]
        == ("global" if p.params["kernel.preset"] == "6.1" else "per_node")
        for p in points
    )
    seeds = replication_seeds(1, 2)
    assert [p.seed for p in points[:2]] == seeds
    assert all(p.config["seed"] == p.seed for p in points)
    # stop is included when a step lands on it; floats do not drift
    assert RangeSpec(start=1, stop=5, step=2).values() == [1, 3, 5]
    assert RangeSpec(start=1, stop=6, step=2).values() == [1, 3, 5]
    assert RangeSpec(start=0.1, stop=0.3, step=0.1).values() == [0.1, 0.2, 0.3]
    # more replications keep the first ones: a larger sweep resumes a smaller
    assert replication_seeds(1, 5)[:2] == seeds
    # the derived configs are exactly what resolving each point gives
    from simcore.config.load import load_workload

    p = points[3]
    base = spec.parent / "base.yaml"
    base.write_text(
        "name: sweep-test\nduration: 200us\nmachine: {profile: small-test}\n"
        "kernel: {preset: latest}\nstrategy: module_alloc\n"
        "workloads:\n  - {type: vmalloc_stress, nr_pages: 1, max_pages: 4}\n"
    )
    direct = load_workload(
        base,
        sets=[
            f"machine.cpus={p.params['machine.cpus']}",
            f"kernel.preset={p.params['kernel.preset']}",
            f"kernel.vmap_locking={p.params['kernel.vmap_locking']}",
        ],
        seed=p.seed,
    )
    assert direct.config_hash == p.config_hash and direct.data == p.config


def test_shards_split_the_points_and_share_one_folder(tmp_path, write, cli):
    spec = write(sweep_text(grid="machine.cpus: [1, 2, 3]", seeds=2), "s.yaml")
    out = tmp_path / "out"
    all_points = expand(load_sweep(spec))
    stored: set[str] = set()
    for i in (1, 2):
        code, _, err = cli("sweep", str(spec), "-o", str(out), "--shard", f"{i}/2")
        assert code == 0, err
        assert "shard" in err and "3 to run" in err
        stored |= {p.config_hash for p in all_points if p.index % 2 == i - 1}
        assert point_files(out).keys() == stored
    assert point_files(out).keys() == {p.config_hash for p in all_points}
    code, _, err = cli("sweep", str(spec), "-o", str(out))
    assert code == 0 and "all stored, none to run" in err
    assert len(read_csv(out / "sweep.csv")) == 6


def test_parquet_table_matches_csv(tmp_path, write, cli):
    pq = pytest.importorskip("pyarrow.parquet")
    spec = write(sweep_text(grid="machine.cpus: [1, 2]"), "s.yaml")
    out = tmp_path / "out"
    code, _, err = cli("sweep", str(spec), "-o", str(out), "--quiet")
    assert code == 0, err
    table = pq.read_table(out / "sweep.parquet").to_pylist()
    rows = read_csv(out / "sweep.csv")
    assert [r["machine.cpus"] for r in table] == [1, 2]
    assert [r["cpu.overhead_pct"] for r in table] == [
        float(r["cpu.overhead_pct"]) for r in rows
    ]
    assert [r["config_hash"] for r in table] == [r["config_hash"] for r in rows]


# --------------------------------------------------------------- progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_only_on_a_terminal_and_not_quiet():
    shown = _Stream(tty=True)
    bar = Progress(3, stream=shown)
    for ok in (True, False, True):
        bar.update(ok)
    bar.close()
    last = shown.getvalue().split("\r")[-1]
    assert "2 done, 1 failed, 0 left, took" in last
    assert len(last.rstrip("\n")) <= 80
    half = Progress(4, stream=_Stream(tty=True))
    half.done = 1
    assert "3 left, ETA 0:30" in half.line(10.0)
    for stream, quiet in ((_Stream(tty=False), False), (_Stream(tty=True), True)):
        bar = Progress(2, stream=stream, quiet=quiet)
        bar.update(True)
        bar.close()
        assert stream.getvalue() == ""
