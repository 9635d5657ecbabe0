"""``scribe report FIT -o REPORT.html``: a self-contained HTML fit report."""

from __future__ import annotations

import argparse

HELP = "write a self-contained HTML report of a fit (plots, tables, warnings)"
EXAMPLE = """examples:
  scribe report fit.nc -o report.html
  scribe report fit.nc --counts counts.h5ad -o report.html   (a fit saved without counts)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scribe.cli.common import add_counts_options, positive_int

    parser.add_argument("fit", metavar="FIT", help="a fit saved by 'scribe fit'")
    parser.add_argument("--counts", default=None, metavar="COUNTS",
                        help="the counts the model was fitted to (default: those stored "
                             "in the fit file, if any)")
    add_counts_options(parser)
    parser.add_argument("--n-samples", type=positive_int, default=10,
                        help="posterior draws for predictive checks (default: 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-o", "--output", required=True, metavar="REPORT.html")


def run(args: argparse.Namespace) -> None:
    from scribe.cli.common import UsageError, check_output, load_fit
    from scribe.fit_report import report
    from scribe.readers import read_counts

    output = check_output(args.output, (".html", ".htm"), "-o")
    results = load_fit(args.fit)
    counts = None
    if args.counts is not None:
        adata = read_counts(args.counts, transpose=args.transpose)
        if args.layer is not None and args.layer not in adata.layers:
            raise UsageError(f"--layer {args.layer}: not in {args.counts}; its layers: "
                             f"{', '.join(adata.layers) or '(none)'}")
        counts = adata.X if args.layer is None else adata.layers[args.layer]
    report(results, counts=counts, path=output, n_samples=args.n_samples, seed=args.seed,
           progress=not args.quiet)
    print(f"scribe report: wrote {output}")
