"""One streamed pass over counts in memory, in a backed h5ad, in zarr and in dask.

Truth here is exact: the statistics are sums of integers and of ``log x!`` that the
in-memory :meth:`SparseCounts.from_matrix` computes independently, and a fit is a
deterministic function of the streamed statistics, so every source must give the same
parameters as the in-memory fit (float32 arithmetic in the same order: equal up to the
last bits, hence ``rtol=1e-6``).
"""

from __future__ import annotations

import hashlib
import tracemalloc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

import scribe
from scribe.cell_blocks import CellBlocks, open_counts
from scribe.counts import SparseCounts
from scribe.counts_stream import SAMPLE_ATTR, stream_counts
from scribe.data import CountsError
from scribe.plugins import lookup_model_type

anndata = pytest.importorskip("anndata")
da = pytest.importorskip("dask.array", reason="dask is the [atlas] extra")

N_CELLS, N_GENES = 600, 40


def _counts(n_cells=N_CELLS, n_genes=N_GENES, seed=0, empty_cells=(3, 4, 599)):
    """Two-component NB counts with a few large entries and empty cells, CSR float32."""
    rng = np.random.default_rng(seed)
    mean = np.where(np.arange(n_cells)[:, None] % 2 == 0, 2.0, 6.0) * rng.uniform(
        0.2, 2.0, n_genes)
    x = rng.negative_binomial(1.5, 1.5 / (1.5 + mean)).astype(np.float32)
    x[0, :3] = [40, 1000, 70000]    # above 16 (large entries) and above uint16
    x[list(empty_cells)] = 0
    return sp.csr_matrix(x)


@pytest.fixture(scope="module")
def matrix():
    return _counts()


@pytest.fixture(scope="module")
def files(matrix, tmp_path_factory):
    """The counts as a sparse and a dense h5ad and a zarr store (written once)."""
    root = tmp_path_factory.mktemp("stream")
    adata = anndata.AnnData(X=matrix)
    adata.layers["dense"] = matrix.toarray()
    paths = {"h5ad": root / "counts.h5ad", "zarr": root / "counts.zarr"}
    adata.write_h5ad(paths["h5ad"])
    dense = anndata.AnnData(X=matrix.toarray())
    paths["dense_h5ad"] = root / "dense.h5ad"
    dense.write_h5ad(paths["dense_h5ad"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_zarr(paths["zarr"])
    return paths


def _sources(matrix, files):
    """Every source kind, each yielding the same counts."""
    from anndata.experimental import read_lazy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = read_lazy(str(files["zarr"]))
    return {
        "csr": matrix,
        "dense": matrix.toarray(),
        "backed_sparse": anndata.read_h5ad(files["h5ad"], backed="r"),
        "backed_dense": anndata.read_h5ad(files["dense_h5ad"], backed="r"),
        "zarr_lazy": lazy,
        # Uneven dask chunks: boundaries that the block size does not divide.
        "dask": da.from_array(matrix.toarray(), chunks=((250, 1, 349), (15, 25))),
        "dask_sparse": da.from_array(matrix, chunks=(128, N_GENES), asarray=False),
    }


def _stream(data, block_cells=97, keep_entries=True, **kw):
    blocks, _ = open_counts(data, block_cells=block_cells)
    return stream_counts(blocks, keep_entries=keep_entries, **kw)


_STATS = ("cell_totals", "cell_log_factorial", "cell_nonzero", "gene_totals",
          "gene_log_factorial", "gene_nonzero", "gene_squares", "gene_cubes", "pairs")


def _assert_same_stream(a, b):
    for name in _STATS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("values", "cells", "genes"):
        np.testing.assert_array_equal(a.large[name], b.large[name])
    np.testing.assert_array_equal(a.entries.indptr, b.entries.indptr)
    np.testing.assert_array_equal(a.entries.values, b.entries.values)
    np.testing.assert_array_equal(a.entries.genes, b.entries.genes)
    assert (a.sample != b.sample).nnz == 0


def test_every_source_streams_the_same_statistics(matrix, files):
    reference = _stream(matrix)
    for name, data in _sources(matrix, files).items():
        streamed = _stream(data)
        assert streamed.shape == matrix.shape, name
        _assert_same_stream(streamed, reference)


def test_streamed_statistics_equal_the_in_memory_ones(matrix):
    streamed = _stream(matrix, block_cells=50)
    ref = SparseCounts.from_matrix(matrix)
    got = streamed.sparse_counts()
    for name in ("cell_totals", "cell_log_factorial", "cell_nonzero", "gene_totals",
                 "gene_nonzero", "hist_genes", "hist_shifts", "hist_counts", "large_values",
                 "large_cells", "large_genes", "values", "cells", "genes", "indptr",
                 "large_indptr"):
        np.testing.assert_array_equal(np.asarray(getattr(got, name)),
                                      np.asarray(getattr(ref, name)), err_msg=name)
    # float64 sums of log x! in another order, rounded to float32: at most one ulp apart.
    np.testing.assert_allclose(got.gene_log_factorial, ref.gene_log_factorial, rtol=2**-23)
    # Moments against a dense computation.
    x = matrix.toarray().astype(np.float64)
    np.testing.assert_array_equal(streamed.gene_squares, (x**2).sum(0))
    np.testing.assert_array_equal(streamed.gene_cubes, (x**3).sum(0))
    assert streamed.max_count == 70000 and streamed.entries.values.dtype == np.uint32
    assert streamed.entries.genes.dtype == np.uint16


@pytest.mark.parametrize("block_cells", [1, 7, N_CELLS, 10 * N_CELLS])
def test_block_boundaries(matrix, block_cells):
    """A block of one cell, blocks that split the data unevenly, one block, a block larger
    than the data: the same statistics (integer sums exactly), the same entries."""
    reference = _stream(matrix, block_cells=N_CELLS)
    streamed = _stream(matrix, block_cells=block_cells)
    for name in ("cell_totals", "cell_nonzero", "gene_totals", "gene_nonzero",
                 "gene_squares", "gene_cubes", "pairs"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(reference, name))
    np.testing.assert_allclose(streamed.gene_log_factorial, reference.gene_log_factorial,
                               rtol=1e-13)   # float64 sums in another grouping
    np.testing.assert_array_equal(streamed.entries.indptr, matrix.indptr)
    np.testing.assert_array_equal(streamed.entries.values, matrix.data)
    assert streamed.cell_totals[[3, 4, 599]].sum() == 0


def test_all_empty_blocks_and_small_sample():
    x = sp.csr_matrix(([5.0], ([10], [2])), shape=(50, 6), dtype=np.float32)
    streamed = _stream(x, block_cells=4, sample_cells=8, seed=3)
    assert streamed.nnz == 1 and streamed.cell_totals[10] == 5
    assert streamed.sample.shape == (8, 6) and streamed.sample_cells.size == 8
    np.testing.assert_array_equal(streamed.sample.toarray(),
                                  x.toarray()[streamed.sample_cells])
    # The seed fixes the sample.
    again = _stream(x, block_cells=50, sample_cells=8, seed=3)
    np.testing.assert_array_equal(again.sample_cells, streamed.sample_cells)


def test_statistics_only_counts_give_the_same_likelihood(matrix):
    """nbdm, zinb and nbvcp totals from the statistics alone equal those with entries."""
    full = SparseCounts.from_matrix(matrix)
    stats_only = _stream(matrix, keep_entries=False).sparse_counts()
    assert stats_only.nnz == 0 and stats_only.indptr is None
    rng = np.random.default_rng(1)
    params = {"p": jnp.float32(0.4), "r": jnp.asarray(rng.uniform(0.5, 3, N_GENES)),
              "gate": jnp.asarray(rng.uniform(0.05, 0.3, N_GENES)),
              "p_capture": jnp.asarray(rng.uniform(0.3, 0.9, N_CELLS))}
    for name in ("nbdm", "zinb", "nbvcp"):
        likelihood = lookup_model_type(name).likelihood
        assert not likelihood.needs_entries(False)
        assert likelihood.needs_entries(True)
        total = jax.jit(likelihood.total_log_prob)   # one compilation, not op by op
        np.testing.assert_allclose(total(stats_only, params), total(full, params),
                                   rtol=1e-6)
    assert lookup_model_type("zinbvcp").likelihood.needs_entries(False)


def test_input_file_is_not_modified(matrix, files):
    before = hashlib.sha256(files["h5ad"].read_bytes()).hexdigest()
    data = anndata.read_h5ad(files["h5ad"], backed="r")
    _stream(data)
    data.file.close()
    assert hashlib.sha256(files["h5ad"].read_bytes()).hexdigest() == before


def test_invalid_counts_in_a_later_block_name_the_cell():
    x = np.ones((30, 4), np.float32)
    x[23, 1] = -2
    with pytest.raises(CountsError, match="negative value .* at cell 23, gene 1"):
        _stream(da.from_array(x, chunks=(10, 4)), block_cells=4)
    x[23, 1] = 2.5
    with pytest.raises(CountsError, match="non-integer .* at cell 23, gene 1"):
        _stream(x, block_cells=4)
    x[23, 1] = 2**31
    with pytest.raises(CountsError, match="at most .* at cell 23, gene 1"):
        _stream(x, block_cells=4)
    with pytest.raises(ValueError, match="block_cells must be a positive integer"):
        CellBlocks(x, block_cells=0)
    with pytest.raises(CountsError, match="cells_axis must be 0"):
        open_counts(anndata.AnnData(X=x), cells_axis=1)


# ---- fits: every source gives the in-memory fit ----------------------------------------

_FIT = dict(n_steps=40, tol=None, progress=False, seed=5)
_MEMORY_FITS: dict = {}


def _params(results):
    return {k: np.asarray(v) for k, v in results.params.items()}


def _fit(data, model_type, batch_size):
    n_components = 2 if model_type.endswith("_mix") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scribe.fit(data, model_type, n_components=n_components,
                          batch_size=batch_size, **_FIT)


def _check_same_fit(matrix, files, model_type, source, batch_size):
    key = (model_type, batch_size)
    if key not in _MEMORY_FITS:     # one in-memory reference per case, shared
        _MEMORY_FITS[key] = _fit(matrix, model_type, batch_size)
    memory = _MEMORY_FITS[key]
    streamed = _fit(_sources(matrix, files)[source], model_type, batch_size)
    assert streamed.idata.optimization.attrs[SAMPLE_ATTR] == N_CELLS
    np.testing.assert_allclose(streamed.loss_history, memory.loss_history, rtol=1e-6)
    for name, value in _params(memory).items():
        np.testing.assert_allclose(_params(streamed)[name], value, rtol=1e-6, err_msg=name)


# Each fit compiles (~10 s on two loaded cores): one pair in the default suite; every
# model type from every source behind `slow` (the statistics test above covers sources).
def test_fit_from_a_backed_file_equals_the_in_memory_fit(matrix, files):
    _check_same_fit(matrix, files, "nbdm", "backed_sparse", None)


@pytest.mark.slow
@pytest.mark.parametrize("model_type, source, batch_size", [
    *[(m, s, None) for m in ("nbdm", "nbvcp", "nbdm_mix", "zinbvcp")
      for s in ("backed_sparse", "backed_dense", "zarr_lazy", "dask")],
    ("nbdm", "backed_sparse", 128), ("nbdm_mix", "zarr_lazy", 128),
    ("zinbvcp", "dask", 128),
])
def test_every_fit_from_every_source(matrix, files, model_type, source, batch_size):
    _check_same_fit(matrix, files, model_type, source, batch_size)


def test_mixture_sample_keeps_components_apart():
    """k-means on a 300-cell sample of 3,000 still separates two components whose means
    differ 4-fold: each component's starting ``r`` mean is within 25% of the method-of-
    moments value on its true cells (sampling error of a mean over ~150 cells of NB
    counts with r = 2: sd/mean ~ sqrt((1 + mu/r)/(r mu 150)) < 5%, so 25% is 5 sd)."""
    from scribe.initial_stream import initial_from_stream

    rng = np.random.default_rng(7)
    n_cells, n_genes = 3000, 30
    labels = rng.integers(0, 2, n_cells)
    # Profiles differ (k-means works on library-normalised counts): each component is
    # 4-fold higher on its own half of the genes.
    high = (np.arange(n_genes) < n_genes // 2) == (labels[:, None] == 0)
    mean = np.where(high, 4.0, 1.0) * rng.uniform(1, 3, n_genes)
    x = sp.csr_matrix(rng.negative_binomial(2, 2 / (2 + mean)).astype(np.float32))
    streamed = _stream(x, block_cells=500, keep_entries=False, sample_cells=300, seed=0)
    guess = initial_from_stream(streamed, lookup_model_type("nbdm").likelihood, 2, False,
                                seed=0)
    p = float(guess["p"])
    means = guess["r"] * p / (1 - p)     # NB mean r p / (1 - p), (K, G)
    order = np.argsort(means[:, 0])      # component 1 is high on the first genes
    truth = np.stack([np.asarray(x[labels == k].mean(axis=0)).ravel() for k in (0, 1)])
    np.testing.assert_allclose(means[order].mean(axis=1), truth[np.argsort(truth[:, 0])]
                               .mean(axis=1), rtol=0.25)
    halves = means[order][:, :n_genes // 2].sum(1) / means[order][:, n_genes // 2:].sum(1)
    assert halves[0] < 0.5 < 2 < halves[1]     # each component high on its own half
    # Capture starts of all cells: proportional to the library outside the sample.
    guess = initial_from_stream(streamed, lookup_model_type("nbvcp").likelihood, 2, False,
                                seed=0)
    assert guess["p_capture"].shape == (n_cells,)
    library = np.asarray(x.sum(axis=1)).ravel()
    outside = np.setdiff1d(np.arange(n_cells), streamed.sample_cells)
    inside = (guess["p_capture"][outside] > 1e-4) & (guess["p_capture"][outside] < 0.98)
    ratio = guess["p_capture"][outside][inside] / library[outside][inside]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)


@pytest.mark.slow
def test_statistics_memory_is_bounded_by_the_block(tmp_path):
    """tracemalloc peak of a statistics-only pass over a backed h5ad of 80,000 x 500
    (~4M non-zeros, a 32 MB CSR) with blocks of 500 cells (~25k non-zeros).

    Bound: per block, the CSR read (8 B/nnz + row pointers) and its canonical copy (8),
    float64 values, log x!, keys (3 x 8), the cell of each entry (8) and bincount
    temporaries (~16): < 100 B per block non-zero; plus the kept per-cell arrays
    (3 x 8 B x C) and per-gene ones (~24 x 8 B x G). Twice that is below half of what
    the whole matrix takes, so a pass that held the matrix would fail.
    """
    n_cells, n_genes, block = 80_000, 500, 500
    rng = np.random.default_rng(0)
    x = sp.random(n_cells, n_genes, density=0.1, format="csr", dtype=np.float32,
                  random_state=rng)
    x.data = np.ceil(x.data * 5)
    path = tmp_path / "big.h5ad"
    anndata.AnnData(X=x).write_h5ad(path)
    block_nnz = int(np.max(np.diff(x.indptr[::block])))
    bound = 2 * (100 * block_nnz + 24 * n_cells + 24 * 8 * n_genes)
    assert bound < (x.data.nbytes + x.indices.nbytes) / 2
    data = anndata.read_h5ad(path, backed="r")
    blocks, _ = open_counts(data, block_cells=block)
    tracemalloc.start()
    streamed = stream_counts(blocks, keep_entries=False, sample_cells=100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert streamed.nnz == x.nnz
    assert peak < bound, (peak, bound)


def test_host_batches_equal_device_batches(matrix):
    """A batch gathered on the host by callback equals SparseCounts.take_cells on the
    device, padding included (an empty cell and the cell with counts above 2**16 in it)."""
    from scribe.counts import _ARRAYS
    from scribe.host_batches import host_batched

    hosted = host_batched(_stream(matrix, block_cells=64)).with_batch_size(50)
    device = SparseCounts.from_matrix(matrix).with_batch_size(50)
    assert hosted.batch_capacity == device.batch_capacity
    assert hosted.nnz == 0     # nothing but statistics on the device
    index = jnp.asarray(np.r_[0, 3, np.random.default_rng(2).choice(
        np.arange(5, N_CELLS), 48, replace=False)], jnp.int32)
    take = jax.jit(lambda counts, i: counts.take_cells(i))
    a, b = take(hosted, index), take(device, index)
    for name in _ARRAYS:
        if getattr(b, name) is None:
            assert getattr(a, name) is None
        else:
            np.testing.assert_array_equal(np.asarray(getattr(a, name)),
                                          np.asarray(getattr(b, name)), err_msg=name)


def test_genes_by_cells_sources(matrix):
    """cells_axis=1: a CSC of genes x cells, a dense transpose and a lazy dask transpose
    give the statistics and entries of the cells x genes CSR."""
    reference = _stream(matrix)
    for data in (sp.csc_matrix(matrix.T), matrix.T.toarray(),
                 da.from_array(matrix.T.toarray(), chunks=(N_GENES, 100))):
        blocks, _ = open_counts(data, cells_axis=1, block_cells=97)
        _assert_same_stream(stream_counts(blocks, keep_entries=True), reference)
