"""Running the cases: every run of a case, its measure, then its criterion.

Each run is one :class:`~simcore.engine.Simulation` of the case's resolved
workload (plus its probe), with the workload's seed, so the same case gives
the same simulated points on every machine. A run that raises is a bug in
a model, not in the case: the case is reported as ``error`` with the
exception and the remaining cases still run.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from simcore.engine import Simulation
from simcore.errors import InputError
from simcore.validate.criteria import Points, Verdict, judge
from simcore.validate.expr import Expr, ExprError
from simcore.validate.provenance import fitted_values
from simcore.validate.spec import Case, Run

PASS, FAIL, ERROR = "pass", "fail", "error"


@dataclass
class CaseResult:
    case: Case
    simulated: Points = field(default_factory=dict)
    verdict: Verdict | None = None
    error: str | None = None  # a run raised, or the measure could not be taken
    wall_s: float = 0.0
    runs: list[dict] = field(default_factory=list)  # per run: series, x, hash, value
    fitted: list[str] = field(default_factory=list)  # values fitted to this case

    @property
    def status(self) -> str:
        if self.error is not None:
            return ERROR
        if self.verdict is not None and self.verdict.passed:
            return PASS
        return FAIL

    @property
    def independent(self) -> bool:
        """No value the case runs on was fitted to it or to its source."""
        return not self.fitted

    @property
    def reason(self) -> str:
        """Why a failure or an error, for the line under it."""
        if self.error is not None:
            return self.error
        if self.verdict is not None and not self.verdict.passed:
            return self.verdict.reason
        return ""


def measure_run(case: Case, run: Run) -> tuple[float, dict]:
    """Simulate one run; return the measure's value and the run's record."""
    resolved = run.resolved
    sim = Simulation(resolved, resolved.cfg.strategy[0])
    if run.probe is not None:
        run.probe.start(sim)
    result = sim.run()
    env = {
        "x": run.x,
        "duration_ns": float(resolved.cfg.duration),
        "duration_s": resolved.cfg.duration / 1e9,
        "cpus": float(resolved.cpus),
        "ghz": resolved.profile.clock_ghz.value,
    }
    value = Expr(case.spec.measure.value).evaluate(result.metrics, env)
    record = {
        "series": run.series,
        "x": run.x,
        "config_hash": resolved.config_hash,
        "value": value,
        "wall_s": round(result.wall_s, 3),
        "events": result.events,
    }
    return value, record


def run_case(case: Case, progress: Callable[[str], None] | None = None) -> CaseResult:
    out = CaseResult(case, fitted=fitted_values(case))
    t0 = time.perf_counter()
    for i, run in enumerate(case.runs):
        if progress:
            where = f", x = {run.x:g}" if case.has_x else ""
            progress(f"{case.name}: run {i + 1}/{len(case.runs)} ({run.series}{where})")
        try:
            value, record = measure_run(case, run)
        except InputError:
            raise
        except ExprError as exc:
            out.error = f"measure of {run.series}: {exc}"
            break
        except Exception as exc:  # a model's bug: report it, go on
            out.error = f"{type(exc).__name__}: {exc}"
            out.runs.append({"series": run.series, "x": run.x, "error": out.error})
            out.runs[-1]["traceback"] = traceback.format_exc(limit=6)
            break
        out.simulated.setdefault(run.series, {})[run.x] = value
        out.runs.append(record)
    out.wall_s = time.perf_counter() - t0
    if out.error is None:
        out.verdict = judge(case.rule, case.published, out.simulated)
    return out


def run_cases(cases: list[Case], *, quiet: bool = False) -> list[CaseResult]:
    show = not quiet and sys.stderr.isatty()

    def progress(msg: str) -> None:
        sys.stderr.write("\r\x1b[K" + msg[:79])
        sys.stderr.flush()

    results = []
    for case in cases:
        results.append(run_case(case, progress if show else None))
        if not quiet:
            r = results[-1]
            line = f"{case.name}: {r.status} ({r.wall_s:.1f}s)"
            sys.stderr.write(("\r\x1b[K" if show else "") + line + "\n")
    return results
