"""``scribe de FIT --groups A B -o DE``: compositional differential expression."""

from __future__ import annotations

import argparse
import math

HELP = "differential expression between two groups (mixture components) of a fit"
EXAMPLE = """example:
  scribe de fit.nc --groups 0 1 -o de.csv

Writes one row per gene: lfc_mean, lfc_sd, lfsr, prob_effect (P(|lfc| > tau)),
prob_signed_effect (max(P(lfc > tau), P(lfc < -tau))), is_de."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scribe.cli.common import positive_float, positive_int

    parser.add_argument("fit", metavar="FIT", help="a mixture fit saved by 'scribe fit'")
    parser.add_argument("--groups", nargs=2, required=True, metavar=("A", "B"),
                        help="the two groups to compare (mixture component indices)")
    parser.add_argument("--tau", type=positive_float, default=math.log(1.5),
                        help="practical effect size on the log scale (default: log 1.5)")
    parser.add_argument("--target-pefp", type=positive_float, default=0.05,
                        help="target posterior expected false discovery proportion "
                             "(default: 0.05)")
    parser.add_argument("--rule", choices=("directional", "magnitude"), default="directional",
                        help="call rule: 'directional' counts a wrong sign as a false "
                             "discovery; 'magnitude' uses P(|lfc| > tau) (default: "
                             "directional)")
    parser.add_argument("--n-samples", type=positive_int, default=None,
                        help="posterior draws (default: the library's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, metavar="DE.csv",
                        help="where to write the table (.csv or .tsv)")


def _group(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def run(args: argparse.Namespace) -> None:
    import jax

    from scribe.cli.common import UsageError, check_output, load_fit

    output = check_output(args.output, (".csv", ".tsv"), "-o")
    if not 0 < args.target_pefp < 1:
        raise UsageError(f"--target-pefp must be in (0, 1), got {args.target_pefp}")
    results = load_fit(args.fit)
    if not hasattr(results, "differential_expression"):
        raise UsageError("differential expression is not available in this version of scribe")
    kwargs = {"tau": args.tau, "target_pefp": args.target_pefp,
              "rng_key": jax.random.PRNGKey(args.seed), "rule": args.rule}
    if args.n_samples is not None:
        kwargs["n_samples"] = args.n_samples
    table = results.differential_expression(_group(args.groups[0]), _group(args.groups[1]),
                                            **kwargs)
    table.to_csv(output, sep="\t" if output.suffix.lower() == ".tsv" else ",")
    print(f"scribe de: {int(table['is_de'].sum())} of {len(table)} genes called "
          f"(expected false discovery proportion {table.attrs.get('pefp', float('nan')):.3f}); "
          f"wrote {output}")
