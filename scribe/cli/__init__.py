"""The ``scribe`` console script: a thin layer over the library.

``scribe fit``, ``scribe report``, ``scribe de`` and ``scribe info`` call
:func:`scribe.fit`, :func:`scribe.report`, ``results.differential_expression`` and
:func:`scribe.info`. Exit status: 0 on success; 2 on bad usage, a file that cannot be
read or counts that cannot be modelled (one ``scribe: error: ...`` line on stderr, no
traceback); 1 on an unexpected failure (``--debug`` shows its traceback).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from scribe.cli import de, fit, info, report
from scribe.cli.common import EXIT_FAILURE, EXIT_USAGE, UsageError

COMMANDS = {"fit": fit, "report": report, "de": de, "info": info}

EPILOG = """examples:
  scribe fit counts.h5ad --model nbvcp --parameterization odds_ratio --organism human -o fit.nc
  scribe info fit.nc
  scribe report fit.nc -o report.html
  scribe de fit.nc --groups 0 1 -o de.csv        (a mixture fit: components 0 and 1)

run 'scribe COMMAND --help' for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scribe", description="Bayesian models of single-cell RNA-seq UMI counts.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP,
                                    epilog=module.EXAMPLE,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"scribe: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)   # exits with 2 on bad usage, 0 on --help
    warnings.formatwarning = _warning_line
    try:
        COMMANDS[args.command].run(args)
    except (UsageError, ValueError, TypeError, OSError, KeyError) as error:
        if args.debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"scribe {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:   # noqa: BLE001  (anything else: one line unless --debug)
        if args.debug:
            raise
        print(f"scribe {args.command}: unexpected error ({type(error).__name__}): {error}; "
              f"rerun with --debug for the traceback", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def entry_point() -> None:
    sys.exit(main())
