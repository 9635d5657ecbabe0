"""The streamed pass's compact non-zeros, written into arrays allocated once.

Truth is exact: the kept entries must equal the canonical CSR's ``data`` / ``indices``
whatever the capacity (exact, over-estimated by stored zeros, or estimated short and
grown), and the dtype must widen to uint32 only when a count exceeds 65,535.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scribe.cell_blocks import open_counts
from scribe.counts_stream import stream_counts
from scribe.entry_buffer import EntryBuffer


def _csr(n_cells=300, n_genes=50, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.negative_binomial(1.0, 0.6, (n_cells, n_genes)).astype(np.float32)
    x[:150] *= rng.random((150, n_genes)) < 0.1   # the first half much sparser
    return sp.csr_matrix(x)


@pytest.mark.parametrize("capacity", [None, 1, 10_000])
def test_appended_blocks_equal_their_concatenation(capacity):
    """Short (grown), tiny and generous capacities give the concatenated entries."""
    rng = np.random.default_rng(0)
    parts = [(rng.integers(1, 500, n).astype(np.float32), rng.integers(0, 60_000, n))
             for n in (3, 0, 700, 41)]
    buffer = EntryBuffer(np.uint16, capacity)
    for values, genes in parts:
        buffer.append(values, genes, expected_total=5)   # the estimate is short
    values, genes = buffer.finish()
    np.testing.assert_array_equal(values, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(genes, np.concatenate([p[1] for p in parts]))
    assert values.dtype == np.uint16 and genes.dtype == np.uint16


def test_values_widen_to_uint32_past_65535():
    buffer = EntryBuffer(np.int32, 4)
    buffer.append(np.array([1.0, 7.0]), np.array([0, 70_000]), 4)
    buffer.append(np.array([70_000.0, 3.0, 2.0]), np.array([5, 6, 7]), 4)
    values, genes = buffer.finish()
    assert values.dtype == np.uint32 and genes.dtype == np.int32
    np.testing.assert_array_equal(values, [1, 7, 70_000, 3, 2])
    np.testing.assert_array_equal(genes, [0, 70_000, 5, 6, 7])


def test_empty_buffer():
    values, genes = EntryBuffer(np.uint16).finish()
    assert values.shape == genes.shape == (0,)


def test_stored_zeros_are_dropped_from_the_bound(tmp_path):
    """A CSR with stored zeros: the bound counts them, the entries do not."""
    csr = _csr()
    padded = csr.copy()
    padded.data[::7] = 0          # stored zeros, still in indptr
    blocks, _ = open_counts(padded, block_cells=64)
    assert blocks.stored_entries() == csr.nnz
    streamed = stream_counts(blocks, keep_entries=True)
    canonical = sp.csr_matrix(padded)
    canonical.eliminate_zeros()
    np.testing.assert_array_equal(streamed.entries.values, canonical.data)
    np.testing.assert_array_equal(streamed.entries.genes, canonical.indices)
    np.testing.assert_array_equal(streamed.entries.indptr, canonical.indptr)


def test_backed_file_bound_and_dense_counting(tmp_path):
    """A backed h5ad's bound is its last row pointer; a dense array is counted; a dask
    source has none and grows from its first (sparse) block's estimate."""
    anndata = pytest.importorskip("anndata")
    da = pytest.importorskip("dask.array")
    csr = _csr()
    anndata.AnnData(X=csr).write_h5ad(tmp_path / "x.h5ad")
    backed = anndata.read_h5ad(tmp_path / "x.h5ad", backed="r")
    assert open_counts(backed)[0].stored_entries() == csr.nnz
    assert open_counts(csr.toarray())[0].stored_entries() == csr.nnz
    lazy = da.from_array(csr.toarray(), chunks=(50, 50))
    blocks, _ = open_counts(lazy, block_cells=50)
    assert blocks.stored_entries() is None
    streamed = stream_counts(blocks, keep_entries=True)
    np.testing.assert_array_equal(streamed.entries.values, csr.data)
    np.testing.assert_array_equal(streamed.entries.genes, csr.indices)


def test_block_cells_bounded_by_stored_entries():
    """Blocks hold at most about ``max_entries`` entries on average; the pass then keeps
    the same statistics and entries as with one block."""
    csr = _csr()
    blocks, _ = open_counts(csr)
    blocks.bound_block_entries(max_entries=csr.nnz // 10)
    assert blocks.block_cells == 300 * (csr.nnz // 10) // csr.nnz
    few = stream_counts(blocks, keep_entries=True)
    one = stream_counts(open_counts(csr, block_cells=300)[0], keep_entries=True)
    np.testing.assert_array_equal(few.gene_totals, one.gene_totals)
    np.testing.assert_array_equal(few.pairs, one.pairs)
    np.testing.assert_array_equal(few.entries.values, one.entries.values)
