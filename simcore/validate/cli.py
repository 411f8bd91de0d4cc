"""``simcore validate``: reproduce published measurements.

Exit codes: 0 when every case passed or failed as a declared known gap;
1 when a case without ``known_gap`` failed or a run raised; 2 for a
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
    p.add_argument("--quiet", action="store_true", help="no progress, no table")
    return p


def run(args: argparse.Namespace) -> int:
    from simcore.validate.runner import run_cases
    from simcore.validate.spec import load_cases
    from simcore.validate.table import render_table
    from simcore.validate.writer import write_validation

    cases = load_cases(args.case, quick=args.quick)
    results = run_cases(cases, quiet=args.quiet)
    table = render_table(results, quick=args.quick)
    folder = write_validation(results, table, quick=args.quick, out_dir=args.output)
    if not args.quiet:
        sys.stdout.write(table)
        print(f"results: {folder}")
    else:
        print(f"results: {folder}", file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
