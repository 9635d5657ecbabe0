"""Every step of docs/tutorial.md on the shipped 10x subset, and its figures.

    .venv/bin/python examples/tutorial_tenx.py [--data PATH] [--figures DIR] [--quick]

The blocks between ``# --- tutorial: NAME ---`` and ``# --- end ---`` are shown verbatim
in docs/tutorial.md (tests/test_tutorial.py checks it); the rest is plumbing. ``--quick``
runs every step on the first 150 cells with fits capped at 300 steps (a smoke test: its
numbers mean nothing) and writes its figures to a temporary folder unless told otherwise.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default="../shared/data/tenx_v3_subset.h5ad")
parser.add_argument("--figures", default=None, help="default: docs/figures (--quick: a tmp dir)")
parser.add_argument("--quick", action="store_true", help="150 cells, 300 steps per fit")
args = parser.parse_args()
figures = Path(args.figures or (tempfile.mkdtemp() if args.quick
                                else Path(__file__).parents[1] / "docs" / "figures"))
figures.mkdir(parents=True, exist_ok=True)
path = args.data
script_start = time.perf_counter()
output = Path(tempfile.mkdtemp())                # where the h5ad goes


def save(ax, name: str) -> None:
    """A small PNG of the Axes' figure (dpi 80) under the figures folder."""
    ax.figure.savefig(figures / name, dpi=80, bbox_inches="tight")
    matplotlib.pyplot.close(ax.figure)


# --- tutorial: load ---
import anndata
import numpy as np

import scribe

adata = anndata.read_h5ad(path)                  # raw UMI counts in .X (CSR)
expressed = np.asarray(adata.X.sum(axis=0)).ravel() > 0
adata = adata[:, expressed].copy()               # drop genes with no counts at all
print(adata.shape, f"{adata.X.nnz / np.prod(adata.shape):.1%} non-zero")
# --- end ---

if args.quick:
    # Smoke test only: a tenth of the cells and fits capped at 300 steps.
    adata = adata[:150].copy()
    scribe.fit = functools.partial(scribe.fit, n_steps=300)
    warnings.simplefilter("ignore", RuntimeWarning)   # capped fits warn

# --- tutorial: fit ---
fits = {}
for model in ("nbdm", "nbvcp"):
    start = time.perf_counter()
    fits[model] = scribe.fit(adata, model)       # defaults: stops once the loss converged
    print(f"{model}: {time.perf_counter() - start:.0f} s, "
          f"{fits[model].n_steps_run} steps, converged={fits[model].converged}")
# --- end ---

# --- tutorial: loss ---
ax = scribe.pl.loss(fits["nbvcp"])
save(ax, "tutorial_loss.png")
# --- end ---

# --- tutorial: compare ---
table = scribe.compare(fits, adata)
print(table[["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse"]].round(1))
print("cells with Pareto k > 0.7:", table.attrs["pareto_k_bad"])
# --- end ---

# --- tutorial: gof ---
for model, fit in fits.items():
    gof = fit.goodness_of_fit(adata)
    print(f"{model}: {gof.attrs['fraction_flagged']:.1%} of genes flagged, "
          f"median KS {gof['rqr_ks'].median():.3f}")
residuals = fits["nbvcp"].quantile_residuals(adata)     # (cells, genes), N(0, 1) if right
save(scribe.pl.residual_qq(residuals), "tutorial_qq.png")
save(scribe.pl.ppc_library_size(fits["nbvcp"], adata), "tutorial_ppc.png")
# --- end ---

# --- tutorial: anndata ---
start = time.perf_counter()
out = fits["nbvcp"].to_anndata(adata, layers=("denoised",))   # a copy; adata is unchanged
print(f"to_anndata: {time.perf_counter() - start:.0f} s")
print(out)
totals = np.asarray(out.layers["scribe_denoised"].sum(axis=1)).ravel()
print(f"median per cell: {np.median(np.asarray(adata.X.sum(axis=1))):.0f} UMIs observed, "
      f"{np.median(totals):.0f} molecules denoised")
out.write_h5ad(output / "tenx_scribe.h5ad")
# --- end ---

# --- tutorial: scanpy ---
try:
    import scanpy as sc
except ImportError:
    sc = None
    print("scanpy is not installed (pip install -e '.[tutorial]'): skipping PCA/UMAP")
if sc is not None:
    out.X = out.layers["scribe_denoised"]
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    sc.pp.pca(out, n_comps=20)
    sc.pp.neighbors(out, random_state=0)
    sc.tl.umap(out, random_state=0)
    ax = sc.pl.umap(out, color="scribe_p_capture", show=False)
    save(ax, "tutorial_umap.png")
# --- end ---

# --- tutorial: mixture ---
start = time.perf_counter()
mix = scribe.fit(adata, "nbvcp_mix", n_components=2)
print(f"nbvcp_mix: {time.perf_counter() - start:.0f} s, {mix.n_steps_run} steps, "
      f"converged={mix.converged}")
weights = mix.get_map(point="mean")["mixing_weights"]
print("mixing weights:", np.round(np.asarray(weights), 3))
de = mix.differential_expression(0, 1)
called = de[de["is_de"]].sort_values("prob_signed_effect", ascending=False)
print(f"{len(called)} genes called (PEFP {de.attrs['pefp']:.3f})")
print(called.head(5)[["lfc_mean", "lfc_sd", "lfsr", "prob_signed_effect"]].round(3))
save(scribe.pl.volcano(de), "tutorial_volcano.png")
# --- end ---

print(f"whole script: {time.perf_counter() - script_start:.0f} s")
