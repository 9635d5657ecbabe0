"""``scribe info FIT``: model, sizes, convergence, versions."""

from __future__ import annotations

import argparse

HELP = "show what a saved fit is: model, sizes, convergence, versions"
EXAMPLE = "example:\n  scribe info fit.nc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fit", metavar="FIT", help="a fit saved by 'scribe fit' (.nc/.zarr)")


def run(args: argparse.Namespace) -> None:
    from scribe.cli.common import load_fit
    from scribe.fit_info import format_info, info

    print(format_info(info(load_fit(args.fit))))
