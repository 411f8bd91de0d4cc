"""``simcore validate``: reproduce published measurements.

Statuses are ``pass``, ``fail`` (the simulated quantity is outside the
criterion's two-sided band) and ``error`` (a run raised). Exit codes: 0
when every case passed; 1 when a case failed or a run raised; 2 for a
malformed case file (found before anything runs).
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate",
        help="reproduce published measurements; print simulated vs published",
        description="Run the validation cases of validation/ (or the ones "
        "named), print a table of published and simulated figures with each "
        "case's criterion, and write it with one chart per case.",
    )
    p.add_argument(
        "--case",
        action="append",
        metavar="NAME",
        help="run only this case (a name in validation/ or a path); repeatable",
    )
    p.add_argument(
        "--quick", action="store_true", help="reduced runs (for the test suite)"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="results folder (default results/validate/<run-id>)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="what to print: the table (text), one object per case (json), "
        "or a table for an RFC appendix (markdown)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress, no table")
    return p


def run(args: argparse.Namespace) -> int:
    from simcore.validate.runner import run_cases
    from simcore.validate.spec import load_cases
    from simcore.validate.table import render_json, render_markdown, render_table
    from simcore.validate.writer import write_validation

    cases = load_cases(args.case, quick=args.quick)
    results = run_cases(cases, quiet=args.quiet)
    table = render_table(results, quick=args.quick)
    folder = write_validation(results, table, quick=args.quick, out_dir=args.output)
    render = {"json": render_json, "markdown": render_markdown}
    out = (
        table
        if args.format == "text"
        else render[args.format](results, quick=args.quick)
    )
    if not args.quiet:
        sys.stdout.write(out)
    # the folder goes to stderr when stdout carries a document
    to = sys.stdout if args.format == "text" and not args.quiet else sys.stderr
    print(f"results: {folder}", file=to)
    return EXIT_OK if all(r.status == "pass" for r in results) else EXIT_FAILED
