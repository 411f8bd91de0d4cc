from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from simcore.cli import main

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
