"""``scribe fit COUNTS -o FIT``: fit a model and save it."""

from __future__ import annotations

import argparse

HELP = "fit a model to a file of UMI counts and save the fit"
EXAMPLE = """examples:
  scribe fit counts.h5ad --model nbvcp --parameterization odds_ratio --organism human \\
      --batch-size 512 -o fit.nc
  scribe fit counts.h5ad --model zinb --components 3 --layer counts -o fit.nc \\
      --write-back annotated.h5ad
  scribe fit counts.h5ad --model zinb --guide-family skew_gene -o fit.nc
  scribe fit matrix.mtx --transpose --model nbdm --max-steps 20000 -o fit.nc

COUNTS may be .h5ad, .loom, .mtx[.gz], 10x .h5 (with scanpy), .csv/.tsv (cells as rows,
header of gene names) or .npz (scipy.sparse.save_npz). The fit stops when the loss has
converged, or after --max-steps."""


AUTO = "auto"   # scribe.batching.AUTO (not imported here: the CLI starts without JAX)


def _batch_size(text: str) -> int | str | None:
    """``--batch-size``: a positive integer, ``auto`` or ``all`` (None: every cell)."""
    from scribe.cli.common import positive_int

    if text in (AUTO, "all"):
        return None if text == "all" else AUTO
    return positive_int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scribe.cli.common import add_counts_options, positive_float, positive_int

    parser.add_argument("counts", metavar="COUNTS", help="file of raw UMI counts")
    parser.add_argument("--model", default="nbdm",
                        help="model type: nbdm, zinb, nbvcp, zinbvcp (and plugins'); with "
                             "--components a mixture (default: nbdm)")
    parser.add_argument("--parameterization", default="standard",
                        help="standard, linked, odds_ratio, unconstrained (default: standard)")
    parser.add_argument("--components", type=positive_int, default=None, metavar="K",
                        help="number of mixture components (K >= 2)")
    parser.add_argument("--guide-family", default=None, metavar="FAMILY",
                        help="shape of the variational posterior: mean_field, joint_gene, "
                             "skew_gene, joint_capture (and plugins'); default: the model "
                             "type's (docs/models.md 'Guides and point estimates')")
    add_counts_options(parser)
    parser.add_argument("--batch-size", type=_batch_size, default=AUTO, metavar="B",
                        help="cells per step, or 'all' (default: auto, see "
                             "docs/models.md 'Default batching')")
    parser.add_argument("--max-steps", type=positive_int, default=100_000, metavar="N",
                        help="cap on SVI steps; the fit stops earlier once converged "
                             "(default: 100000)")
    parser.add_argument("--seed", type=int, default=42, metavar="S")
    anchor = parser.add_mutually_exclusive_group()
    anchor.add_argument("--mrna-per-cell", type=positive_float, default=None, metavar="M0",
                        help="capture models: mRNA molecules per cell, anchors the capture")
    anchor.add_argument("--organism", default=None,
                        help="capture models: anchor with the organism's documented "
                             "mRNA per cell (human, mouse)")
    parser.add_argument("--no-store-counts", action="store_true",
                        help="do not keep the counts in the fit file (then 'scribe report' "
                             "needs --counts)")
    parser.add_argument("-o", "--output", required=True, metavar="FIT",
                        help="where to save the fit (.nc or .zarr)")
    parser.add_argument("--write-back", default=None, metavar="OUT.h5ad",
                        help="also write the counts' AnnData with the fit's per-cell and "
                             "per-gene results added")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_type(args: argparse.Namespace) -> str:
    from scribe.cli.common import UsageError
    from scribe.plugins import available_model_types

    name = args.model
    if args.components is not None and not name.endswith("_mix"):
        name = f"{name}_mix"
    if args.components is None and name.endswith("_mix"):
        raise UsageError(f"--model {name} is a mixture: give --components K (K >= 2)")
    if name not in available_model_types():
        plain = sorted(m for m in available_model_types() if not m.endswith("_mix"))
        raise UsageError(f"--model {args.model}: unknown model type; choose one of "
                         f"{', '.join(plain)} (with --components for a mixture)")
    return name


def run(args: argparse.Namespace) -> None:
    import scribe
    from scribe.cli.common import UsageError, check_output
    from scribe.plugins import available_parameterizations
    from scribe.readers import read_counts

    # Everything the user can get wrong is checked before the (long) fit.
    model_type = _model_type(args)
    if args.parameterization not in available_parameterizations():
        raise UsageError(f"--parameterization {args.parameterization}: choose one of "
                         f"{', '.join(available_parameterizations())}")
    if args.guide_family is not None:
        from scribe.plugins import available_guide_families

        if args.guide_family not in available_guide_families():
            raise UsageError(f"--guide-family {args.guide_family}: choose one of "
                             f"{', '.join(available_guide_families())}")
    output = check_output(args.output, (".nc", ".zarr"), "-o")
    write_back = None
    if args.write_back is not None:
        write_back = check_output(args.write_back, (".h5ad",), "--write-back")
        if not hasattr(scribe, "to_anndata"):
            raise UsageError("--write-back needs scribe.to_anndata, which this version of "
                             "scribe does not have")
    adata = read_counts(args.counts, transpose=args.transpose)
    mrna = args.mrna_per_cell if args.mrna_per_cell is not None else args.organism
    results = scribe.fit(adata, model_type, args.parameterization,
                         n_components=args.components, n_steps=args.max_steps,
                         batch_size=args.batch_size, seed=args.seed, layer=args.layer,
                         mrna_per_cell=mrna, progress=not args.quiet,
                         store_counts=not args.no_store_counts,
                         guide_family=args.guide_family)
    results.save(output)
    status = "converged" if results.converged else "not converged"
    print(f"scribe fit: {model_type}/{args.parameterization} on {results.n_cells} cells x "
          f"{results.n_genes} genes, {results.n_steps_run} steps ({status}); saved {output}")
    if write_back is not None:
        scribe.to_anndata(results, adata).write_h5ad(write_back)
        print(f"scribe fit: wrote {write_back}")
