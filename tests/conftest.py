from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from simcore.cli import main

# -- Hypothesis profiles ------------------------------------------------------------
# ``ci``: what every test ran with before these profiles, i.e. whatever
# Hypothesis loaded itself (its "default", or on a CI runner it detects its
# derandomized "ci"); each property test sets its own max_examples and
# deadline. ``long``: the tests under tests/long, which take their example
# counts from it (tests.long.harness.budget: a share of max_examples each,
# about 110,000 interleavings in all), random on every run so that each run
# explores new ones. HYPOTHESIS_PROFILE picks one; without it, ``-m long``
# loads ``long`` (pytest_configure below) and anything else ``ci``.
LONG_MAX_EXAMPLES = 20_000
settings.register_profile("ci", parent=settings.default)
settings.register_profile(
    "long",
    parent=settings.get_profile("default"),
    max_examples=LONG_MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def long_selected(markexpr: str | None) -> bool:
    """``-m markexpr`` names the ``long`` marker and selects tests carrying
    it: ``-m long``, ``-m "long or slow"``, not ``-m "not long"`` and not an
    expression that never mentions it (``-m "not slow"``)."""
    if not markexpr or not re.search(r"\blong\b", markexpr):
        return False
    from _pytest.mark.expression import Expression

    try:
        return Expression.compile(markexpr).evaluate(lambda name, **kw: name == "long")
    except Exception:  # pytest reports a malformed expression itself
        return False


def pytest_configure(config):
    explicit = "HYPOTHESIS_PROFILE" in os.environ or config.getoption(
        "hypothesis_profile", None
    )
    if not explicit and long_selected(config.option.markexpr):
        settings.load_profile("long")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` run only when ``-m`` asks for them."""
    if long_selected(config.option.markexpr):
        return
    keep = [it for it in items if it.get_closest_marker("long") is None]
    if len(keep) < len(items):
        config.hook.pytest_deselected(
            items=[it for it in items if it.get_closest_marker("long") is not None]
        )
        items[:] = keep


SMALL = """\
name: small
seed: 1
duration: 200us
machine:
  profile: small-test
kernel:
  preset: latest
strategy: module_alloc
workloads:
  - type: vmalloc_stress
    nr_pages: 1
"""


@pytest.fixture
def write(tmp_path: Path):
    """Write a YAML file (dedented) into tmp_path and return its path."""

    def _write(text: str, name: str = "w.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return _write


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""

    def _run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
