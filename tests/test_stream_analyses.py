"""Analyses of counts streamed from a backed h5ad / dask array equal the in-memory ones.

The streamed path (:mod:`scribe.svi.stream_loglik`) sums the same float32 terms per cell
or gene as the in-memory path but in other groupings (blocks of cells, entry by entry
instead of the per-gene histogram). A float32 sum of ``n`` terms carries a relative
rounding error of at most about ``n * 2**-24`` of the sum of the absolute terms; the
largest sum here has ``n = 80`` cells x 25 genes = 2,000 terms, so ``rtol = 2,000 *
6e-8 = 1.2e-4`` bounds it (we use 2e-4, with ``atol`` 1e-3 for sums near zero).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import scribe
from scribe.simulate import simulate_counts
from tests._tiny_fits import N_CELLS, N_GENES, capture_mixture_fit

anndata = pytest.importorskip("anndata")

RTOL, ATOL = 2e-4, 1e-3


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The shared anchored nbvcp_mix fit (per-cell capture, K = 2; tests/_tiny_fits.py)
    and its counts in memory and as a backed h5ad."""
    results, dense = capture_mixture_fit()
    counts = sp.csr_matrix(dense.astype(np.float32))
    path = tmp_path_factory.mktemp("backed") / "counts.h5ad"
    anndata.AnnData(X=counts).write_h5ad(path)
    return results, counts, anndata.read_h5ad(path, backed="r")


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def test_map_log_likelihood_from_a_backed_file(fitted):
    """Per cell, components kept (per-gene sums over blocks and gene weights: the slow
    tests below)."""
    results, counts, backed = fitted
    kw = dict(return_by="cell", split_components=True, verbose=False)
    _close(results.log_likelihood_map(backed, **kw), results.log_likelihood_map(counts, **kw))


@pytest.mark.slow
def test_map_per_gene_log_likelihood_over_blocks(fitted):
    """Per gene, blocks of 30 cells: sums over blocks, additive weights applied once."""
    results, counts, backed = fitted
    kw = dict(return_by="gene", batch_size=30, weights=np.linspace(0.5, 2.0, N_GENES),
              weight_type="additive", verbose=False)
    _close(results.log_likelihood_map(backed, **kw), results.log_likelihood_map(counts, **kw))


def test_cell_type_probabilities_map_from_dask(fitted):
    """A dask array source with uneven chunks (two blocks, per-cell capture sliced)."""
    da = pytest.importorskip("dask.array")
    results, counts, _ = fitted
    lazy = da.from_array(counts.toarray(), chunks=((33, N_CELLS - 33), (N_GENES,)))
    _close(results.cell_type_probabilities_map(lazy, verbose=False)["probabilities"],
           results.cell_type_probabilities_map(counts, verbose=False)["probabilities"])


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """An nbvcp_mix fit of its own with 4 stored posterior draws."""
    counts, _ = simulate_counts("nbvcp_mix", 80, 25, n_components=2, seed=5)
    counts = sp.csr_matrix(np.asarray(counts, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = scribe.fit(counts, "nbvcp_mix", n_components=2, n_steps=40,
                             progress=False, seed=0)
    results.get_posterior_samples(n_samples=4)
    path = tmp_path_factory.mktemp("sampled") / "counts.h5ad"
    anndata.AnnData(X=counts).write_h5ad(path)
    return results, counts, anndata.read_h5ad(path, backed="r")


@pytest.mark.slow
@pytest.mark.parametrize("return_by", ["cell", "gene"])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_log_likelihood_from_a_backed_file(sampled, return_by, split, batch_size):
    results, counts, backed = sampled
    kw = dict(return_by=return_by, split_components=split, batch_size=batch_size)
    _close(results.log_likelihood(backed, **kw), results.log_likelihood(counts, **kw))


@pytest.mark.slow
@pytest.mark.parametrize("weight_type", ["multiplicative", "additive"])
@pytest.mark.parametrize("return_by", ["cell", "gene"])
def test_weighted_log_likelihood(sampled, weight_type, return_by):
    results, counts, backed = sampled
    kw = dict(return_by=return_by, weights=np.linspace(0.5, 2.0, 25),
              weight_type=weight_type, batch_size=30)
    _close(results.log_likelihood(backed, **kw), results.log_likelihood(counts, **kw))


@pytest.mark.slow
def test_cell_type_probabilities_from_dask(sampled):
    da = pytest.importorskip("dask.array")
    results, counts, _ = sampled
    lazy = da.from_array(counts.toarray(), chunks=((33, 47), (25,)))
    _close(results.cell_type_probabilities(lazy, fit_distribution=False)[
               "sample_probabilities"],
           results.cell_type_probabilities(counts, fit_distribution=False)[
               "sample_probabilities"])


def test_streamed_source_of_the_wrong_shape(fitted, tmp_path):
    results, counts, _ = fitted
    anndata.AnnData(X=counts[:, :24]).write_h5ad(tmp_path / "genes.h5ad")
    with pytest.raises(ValueError, match="24 genes but the model was fitted to 25"):
        results.log_likelihood_map(anndata.read_h5ad(tmp_path / "genes.h5ad", backed="r"))
    anndata.AnnData(X=counts[:70]).write_h5ad(tmp_path / "cells.h5ad")
    with pytest.raises(ValueError, match="70 cells but the model has per-cell"):
        results.log_likelihood_map(anndata.read_h5ad(tmp_path / "cells.h5ad", backed="r"))


@pytest.mark.slow
def test_write_back_and_denoise_from_a_backed_file(fitted, tmp_path):
    """``to_anndata`` on the backed AnnData (in place) writes what it writes for the
    in-memory one: log-likelihoods, assignments, goodness of fit (same blocks, same
    random keys) and the denoised layer; ``denoise_counts(out=...)`` fills ``out``."""
    results, counts, _ = fitted
    path = tmp_path / "write.h5ad"
    anndata.AnnData(X=counts).write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    with pytest.raises(ValueError, match="inplace=True"):
        results.to_anndata(backed)
    memory = results.to_anndata(anndata.AnnData(X=counts), layers=("denoised",))
    streamed = results.to_anndata(backed, inplace=True, layers=("denoised",))
    assert streamed is backed
    for key in ("scribe_log_likelihood", "scribe_assignment_entropy"):
        _close(streamed.obs[key], memory.obs[key])
    for key in ("scribe_rqr_mean", "scribe_rqr_var", "scribe_elpd"):
        _close(streamed.var[key], memory.var[key])
    _close(streamed.obsm["scribe_assignment_probabilities"],
           memory.obsm["scribe_assignment_probabilities"])
    np.testing.assert_allclose(streamed.layers["scribe_denoised"],
                               memory.layers["scribe_denoised"], rtol=RTOL)
    out = np.zeros(counts.shape, np.float32)
    assert results.denoise_counts(backed, batch_size=30, out=out) is out
    np.testing.assert_allclose(out, memory.layers["scribe_denoised"], rtol=RTOL)
    with pytest.raises(ValueError, match="out must have the result's shape"):
        results.denoise_counts(backed, out=np.zeros((3, 3)))


def test_bucketed_capacities():
    """Buffer sizes hold what they must and waste at most 2**(1/4) - 1 = 19 %."""
    from scribe.svi.stream_loglik import bucket

    n = np.r_[0, 1, 2, 3, np.unique(np.geomspace(4, 10**8, 300).astype(int))]
    sizes = np.array([bucket(int(k)) for k in n])
    assert np.all(sizes >= np.maximum(n, 1))
    assert np.all(sizes[n > 8] <= np.ceil(2 ** 0.25 * n[n > 8]))
    assert np.unique(sizes[(n >= 1000) & (n <= 2000)]).size <= 6   # few compilations


def test_lazy_counts_read_validated_blocks(fitted):
    """LazyCounts (denoise, goodness of fit, compare) give the counts' rows and sums."""
    from scribe.data import CountsError
    from scribe.svi.lazy_counts import LazyCounts, lazy_counts

    _, counts, backed = fitted
    lazy = lazy_counts(backed)
    assert isinstance(lazy, LazyCounts) and lazy.shape == counts.shape
    assert (lazy[10:43] != counts[10:43]).nnz == 0
    np.testing.assert_array_equal(lazy.sum(axis=1), counts.sum(axis=1))
    np.testing.assert_array_equal(lazy.sum(axis=0), counts.sum(axis=0))
    assert lazy.sum() == counts.sum()
    np.testing.assert_array_equal(lazy.block_nonzeros(30),
                                  [counts[i:i + 30].nnz for i in range(0, N_CELLS, 30)])
    columns = LazyCounts(backed.X, np.array([4, 0, 2]))
    assert (columns[0:N_CELLS] != counts[:, [4, 0, 2]]).nnz == 0
    bad = counts.copy()
    bad.data[bad.indptr[50]] = 0.5
    with pytest.raises(CountsError, match="at cell 50"):
        LazyCounts(bad)[40:60]
    assert lazy_counts(counts) is None      # in memory: the in-memory path
