"""Command line: ``python -m simcore`` / ``simcore`` (DESIGN section 1).

Exit codes: 0 ok; 2 bad input (one paragraph naming file, YAML path, line
and what was expected; never a traceback); 1 internal error.

Layer: the top. It parses arguments and calls the layers below (``api``,
``sweep``, ``validate``, ``results`` for ``report``); nothing imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from simcore._version import __version__
from simcore.errors import InputError, SimcoreError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


FORMATS = ("text", "markdown", "json")
_FORMAT_HELP = "summary on stdout as text (summary.txt), markdown or json"
_ALL_HELP = "also print the rows that are zero for every strategy"


def _replications(text: str) -> int:
    n = int(text) if text.strip().isdigit() else 0
    if n < 2:
        raise argparse.ArgumentTypeError("N must be an integer of at least 2")
    return n


# Commands whose options this module defines. A command line naming one of
# them never reads the options of ``sweep`` and ``validate``, which live in
# those packages, so the parser leaves them (and those imports) out.
_OWN_COMMANDS = frozenset({"run", "check", "report", "list", "schema", "capture"})


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``, the first word of the command line, lets it
    leave out the commands defined elsewhere when another one is named."""
    p = argparse.ArgumentParser(
        prog="simcore",
        description="Simulate Linux vmalloc / executable-memory / BPF arena allocators.",
    )
    p.add_argument("--version", action="version", version=f"simcore {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="simulate a workload file")
    r.add_argument("workload", metavar="WORKLOAD.yaml")
    r.add_argument("-o", "--output", metavar="DIR", help="results folder")
    r.add_argument("--seed", type=int, help="override the workload's seed")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="key.path=value",
        help="override one value of the workload (repeatable)",
    )
    r.add_argument("--strategy", help="comma-separated strategies to compare")
    r.add_argument("--quiet", action="store_true", help="no progress, no summary")
    r.add_argument(
        "--replications",
        type=_replications,
        metavar="N",
        help="run every strategy under N seeds derived from the workload seed "
        "(N >= 2); report means with 95%% intervals",
    )
    r.add_argument("--format", choices=FORMATS, default="text", help=_FORMAT_HELP)
    r.add_argument("--all", action="store_true", help=_ALL_HELP)

    c = sub.add_parser("check", help="validate a workload; print the resolved config")
    c.add_argument("workload", metavar="WORKLOAD.yaml")
    c.add_argument("--set", action="append", default=[], metavar="key.path=value")

    if command not in _OWN_COMMANDS:  # help, an error, or one of these two
        from simcore.sweep.cli import add_parser as add_sweep_parser
        from simcore.validate.cli import add_parser as add_validate_parser

        add_sweep_parser(sub)
        add_validate_parser(sub)

    rep = sub.add_parser(
        "report", help="re-render summary and charts of results folders"
    )
    rep.add_argument("dirs", nargs="+", metavar="DIR")
    rep.add_argument(
        "--format",
        choices=(*FORMATS, "html"),
        default="text",
        help=_FORMAT_HELP + "; html: write one self-contained DIR/report.html "
        "(first DIR) and print its path",
    )
    rep.add_argument("--all", action="store_true", help=_ALL_HELP)
    rep.add_argument(
        "--validation",
        metavar="DIR",
        help="simcore validate output the html report shows "
        "(default: the newest under results/validate)",
    )

    lst = sub.add_parser(
        "list", help="what exists: strategies, profiles, workloads, metrics"
    )
    lst.add_argument(
        "what", choices=["strategies", "profiles", "workloads", "metrics", "presets"]
    )
    lst.add_argument(
        "--params",
        action="store_true",
        help="with strategies: each strategy's parameters, defaults and sources",
    )

    sub.add_parser("schema", help="JSON Schema of the workload format")

    cap = sub.add_parser(
        "capture", help="how to take this host's captures (a shell script)"
    )
    cap.add_argument(
        "--script",
        action="store_true",
        help="print the POSIX sh script that takes them",
    )
    cap.add_argument("-o", "--output", metavar="FILE", help="write the script to FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv[0] if argv else None).parse_args(argv)
    try:
        return _dispatch(args)
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INPUT
    except SimcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `simcore list metrics | head`: the reader left, which is not an
        # error; point stdout at /dev/null so the interpreter's final flush
        # does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception:  # a bug: say so, and keep the traceback for the report
        print("internal error (a simcore bug, please report it):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "check":
        return _cmd_check(args)
    if args.command == "sweep":
        from simcore.sweep.cli import run as run_sweep

        return run_sweep(args)
    if args.command == "validate":
        from simcore.validate.cli import run as run_validate

        return run_validate(args)
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "list":
        return _cmd_list(args.what, params=args.params)
    if args.command == "capture":
        return _cmd_capture(args)
    if args.command == "schema":
        from simcore.config.schema import WorkloadFile

        print(json.dumps(WorkloadFile.model_json_schema(), indent=2))
        return EXIT_OK
    raise AssertionError(args.command)  # pragma: no cover


def _cmd_run(args: argparse.Namespace) -> int:
    from simcore.config.load import load_workload
    from simcore.engine import simulate
    from simcore.results.writer import write_results

    strategies = (
        [s.strip() for s in args.strategy.split(",")] if args.strategy else None
    )
    if args.replications:
        from simcore.api import run_replications

        resolved, replicated = run_replications(
            args.workload,
            args.replications,
            sets=args.set,
            seed=args.seed,
            strategies=strategies,
            quiet=args.quiet,
        )
        folder = write_results(resolved, [], out_dir=args.output, replicated=replicated)
    else:
        resolved = load_workload(
            args.workload, sets=args.set, seed=args.seed, strategies=strategies
        )
        results = simulate(resolved, quiet=args.quiet)
        folder = write_results(resolved, results, out_dir=args.output)
    if not args.quiet:
        from simcore.results.report import render_folders

        sys.stdout.write(render_folders([folder], args.format, show_all=args.all))
    # stdout stays parseable for markdown and json
    loud = not args.quiet and args.format == "text"
    print(f"results: {folder}", file=sys.stdout if loud else sys.stderr)
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from simcore.config.load import capture_names, load_workload

    resolved = load_workload(args.workload, sets=args.set)
    seeded: list[str] = []
    if capture_names(resolved.cfg):
        # build (not run) the simulation: its generators read and parse
        # every capture, so a bad one is found here and not at run time
        from simcore.engine import Simulation

        sim = Simulation(resolved, resolved.cfg.strategy[0])
        seeded = sim.kernel.host.describe()
    sys.stdout.write(resolved.to_yaml())
    if seeded:
        # as YAML comments, so that the output stays the resolved config
        lines = ["what the captures set at time zero:", *seeded]
        sys.stdout.write("".join(f"# {line}\n" for line in lines))
    read = ", ".join(sorted(resolved.captures))
    print(
        f"ok: {args.workload} is valid (config {resolved.config_hash})"
        + (f"; captures read: {read}" if read else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from simcore.results.report import report

    validation = Path(args.validation) if args.validation else None
    sys.stdout.write(
        report(
            [Path(d) for d in args.dirs],
            args.format,
            show_all=args.all,
            validation=validation,
        )
    )
    return EXIT_OK


def _cmd_capture(args: argparse.Namespace) -> int:
    from simcore.workloads.captures.collect import capture_script

    if args.output:
        out = Path(args.output)
        out.write_text(capture_script(), encoding="utf-8")
        out.chmod(0o755)
        print(f"wrote {out}; run it on the host: sh {out} [DIR]", file=sys.stderr)
    elif args.script:
        sys.stdout.write(capture_script())
    else:
        print(
            "simcore capture --script > capture.sh; sh capture.sh [DIR]\n"
            "takes /proc/buddyinfo, meminfo, vmstat, vmallocinfo (as root, with\n"
            "kernel.kptr_restrict=1 for the read), /proc/modules, lsmod and\n"
            "`bpftool -j prog show` into DIR, and prints the workload keys that\n"
            "read them."
        )
    return EXIT_OK


def _cmd_list(what: str, *, params: bool = False) -> int:
    rows: list[tuple[str, str]] = []
    if what == "presets":
        from simcore.kernel.presets import era_table

        sys.stdout.write(era_table())
        return EXIT_OK
    if what == "strategies":
        from simcore.strategies import get_strategy, strategy_names

        if params:
            import textwrap

            from simcore.strategies.params import describe_params

            print(
                "Set as strategy: {name: NAME, params: {KEY: VALUE}} (sizes take\n"
                "B K M G, times ns us ms s); sweep as strategy.params.KEY."
            )
            for n in strategy_names():
                cls = get_strategy(n)
                print(
                    "\n"
                    + textwrap.fill(f"{n}: {cls.summary}", 80, subsequent_indent="  ")
                )
                print(
                    textwrap.fill(f"  eras: {cls.eras()}", 80, subsequent_indent="    ")
                )
                print("\n".join(describe_params(cls.Params)))
            return EXIT_OK
        for n in strategy_names():
            cls = get_strategy(n)
            rows.append((n, f"{cls.summary} [{cls.models}]; eras: {cls.eras()}"))
    elif what == "profiles":
        import yaml

        from simcore.profile import PROFILE_DIR, available_profiles

        for n in available_profiles():
            with (PROFILE_DIR / f"{n}.yaml").open(encoding="utf-8") as f:
                rows.append((n, str(yaml.safe_load(f).get("description", ""))))
    elif what == "workloads":
        from simcore.workloads import workload_descriptions

        rows = sorted(workload_descriptions().items())
    else:
        from simcore.metrics.catalog import CATALOG

        rows = [(m.pattern, f"{m.description} [{m.unit}]") for m in CATALOG]
    width = max(len(r[0]) for r in rows) if rows else 0
    for name, desc in rows:
        print(f"{name.ljust(width)}  {desc}")
    return EXIT_OK
