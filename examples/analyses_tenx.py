"""Worked example of docs/analyses.md on the shipped 10x subset (1,107 cells x 507 genes).

    .venv/bin/python examples/analyses_tenx.py [path/to/tenx_v3_subset.h5ad]
"""

from __future__ import annotations

import sys
import time
import warnings

import anndata
import numpy as np

import scribe

path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/tenx_v3_subset.h5ad"
adata = anndata.read_h5ad(path)
adata = adata[:, np.asarray(adata.X.sum(axis=0)).ravel() > 0].copy()   # expressed genes
print(adata)

start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)    # a fit that hits n_steps warns
    fits = {m: scribe.fit(adata, m, n_steps=20_000, progress=False)
            for m in ("nbdm", "zinb", "nbvcp")}
    mix = scribe.fit(adata, "nbvcp_mix", n_components=2, n_steps=20_000, progress=False)
print(f"four fits: {time.perf_counter() - start:.0f} s")

# 1. Model comparison by PSIS-LOO over cells.
table = scribe.compare(fits, adata)
print(table[["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning"]]
      .round(2).to_string())
print("cells with Pareto k > 0.7:", table.attrs["pareto_k_bad"])

# 2. Goodness of fit per gene.
for name, fit in fits.items():
    frame = fit.goodness_of_fit(adata)
    print(f"{name}: {frame.attrs['fraction_flagged']:.1%} of genes flagged, "
          f"median KS {frame['rqr_ks'].median():.3f}, total elpd {frame['elpd'].sum():.0f}")

# 3. Denoised counts.
denoised = fits["nbvcp"].denoise_counts(adata)
print(f"observed UMIs per cell (median) {np.median(np.asarray(adata.X.sum(axis=1))):.0f}; "
      f"denoised molecules per cell (median) {np.median(denoised.sum(axis=1)):.0f}")

# 4. Differential expression between the two components of the mixture.
de = mix.differential_expression(0, 1)
magnitude = mix.differential_expression(0, 1, rule="magnitude")
print(f"{int(de['is_de'].sum())} genes called (directional rule, PEFP "
      f"{de.attrs['pefp']:.3f}); SPEC's magnitude rule calls {int(magnitude['is_de'].sum())}")
print(de.sort_values("prob_signed_effect", ascending=False).head(5).round(3).to_string())

# 5. Everything into the AnnData (a copy) and an h5ad round trip.
out = mix.to_anndata(adata, layers=("denoised", "normalized"))
print(out)
out.write_h5ad("/tmp/tenx_scribe.h5ad")
print(anndata.read_h5ad("/tmp/tenx_scribe.h5ad").uns["scribe_fit"]["keys"]["obs"])
