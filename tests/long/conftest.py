"""The long tests' fixtures and their count of interleavings.

Every lock a simulation creates is recorded while these tests run (so
``harness.settle`` can check that all were released), and the number of
interleavings that passed every check is counted per test (from
``harness.CHECKED``, which each test body bumps) and printed at the end.
"""

from __future__ import annotations

import time

import pytest

from simcore.hw.locks import SpinLock
from tests.long import harness

# nodeid -> (interleavings, operations, seconds)
_PER_TEST: dict[str, tuple[int, int, float]] = {}


@pytest.fixture(autouse=True, scope="package")
def _record_locks():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SpinLock, "__init__", harness.recording(SpinLock.__init__))
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = list(harness.CHECKED)
    t0 = time.perf_counter()
    try:
        return (yield)
    finally:
        _PER_TEST[item.nodeid] = (
            harness.CHECKED[0] - before[0],
            harness.CHECKED[1] - before[1],
            time.perf_counter() - t0,
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _PER_TEST:
        return
    tr = terminalreporter
    tr.section("long property tests: interleavings checked")
    tr.write_line(f"{'interleavings':>13} {'operations':>11} {'seconds':>8}  test")
    for nodeid, (n, ops, secs) in sorted(_PER_TEST.items()):
        tr.write_line(f"{n:>13} {ops:>11} {secs:>8.1f}  {nodeid}")
    n, ops, secs = (sum(col) for col in zip(*_PER_TEST.values(), strict=True))
    tr.write_line(f"{n:>13} {ops:>11} {secs:>8.1f}  in total")
    for note, k in sorted(harness.NOTES.items()):
        tr.write_line(f"{k:>13}  {note}")
