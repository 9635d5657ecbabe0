"""SparseCounts: statistics built in one pass, mini-batches and cell blocks (issue 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import gammaln

from scribe.counts import LARGE_COUNT, SparseCounts


def _counts(n_cells=37, n_genes=11, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(0.6, 0.3, size=(n_cells, n_genes)).astype(np.float32)
    counts[rng.random(counts.shape) < 0.5] = 0
    counts[[1, 3, 3, 20], [0, 2, 5, 5]] = [17, 40, 250, 18]  # large counts (> LARGE_COUNT)
    counts[:, 4] = 0   # an all-zero gene
    counts[6] = 0      # an empty cell
    return counts


def test_statistics_match_numpy():
    x = _counts()
    s = SparseCounts.from_matrix(sp.csr_matrix(x))
    np.testing.assert_array_equal(s.cell_totals, x.sum(1))
    np.testing.assert_array_equal(s.gene_totals, x.sum(0))
    np.testing.assert_array_equal(s.cell_nonzero, (x > 0).sum(1))
    np.testing.assert_array_equal(s.gene_nonzero, (x > 0).sum(0))
    np.testing.assert_allclose(s.cell_log_factorial, gammaln(x + 1).sum(1), rtol=1e-6)
    np.testing.assert_allclose(s.gene_log_factorial, gammaln(x + 1).sum(0), rtol=1e-6)
    assert s.nnz == int((x > 0).sum())
    np.testing.assert_array_equal(s.to_dense(), x)
    large = np.zeros_like(x)
    large[np.asarray(s.large_cells), np.asarray(s.large_genes)] = np.asarray(s.large_values)
    np.testing.assert_array_equal(large, np.where(x > LARGE_COUNT, x, 0))
    np.testing.assert_array_equal(np.diff(s.large_indptr), (x > LARGE_COUNT).sum(1))


def test_exceedance_histogram_is_brute_force_count():
    x = _counts()
    s = SparseCounts.from_matrix(x)
    # The table stops at LARGE_COUNT: m_gj for j < min(max_c x_cg, 16), whatever the max.
    brute = np.stack([(x > j).sum(0) for j in range(LARGE_COUNT)], axis=1)  # (G, 16)
    rebuilt = np.zeros_like(brute, dtype=np.float64)
    np.add.at(rebuilt, (np.asarray(s.hist_genes), np.asarray(s.hist_shifts).astype(int)),
              np.asarray(s.hist_counts))
    np.testing.assert_array_equal(rebuilt, brute)
    assert s.hist_genes.shape[0] == int(np.minimum(x.max(0), LARGE_COUNT).sum())


@pytest.mark.parametrize("kind", ["dense", "csr", "csc", "coo", "csr_array"])
def test_every_input_format_gives_the_same_statistics(kind):
    x = _counts()
    matrix = {"dense": x, "csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x),
              "coo": sp.coo_matrix(x), "csr_array": sp.csr_array(x)}[kind]
    before = matrix.copy()
    s = SparseCounts.from_matrix(matrix)
    reference = SparseCounts.from_matrix(x)
    for name in ("values", "cells", "genes", "hist_counts", "cell_log_factorial"):
        np.testing.assert_array_equal(getattr(s, name), getattr(reference, name))
    after = matrix if kind == "dense" else matrix.toarray()
    np.testing.assert_array_equal(after, before if kind == "dense" else before.toarray())


def test_take_cells_gathers_rows_with_padding():
    x = _counts()
    s = SparseCounts.from_matrix(x).with_batch_size(5)
    # The capacities hold the five cells with the most (large) entries.
    assert s.batch_capacity == (int(np.sort((x > 0).sum(1))[::-1][:5].sum()),
                                int(np.sort((x > LARGE_COUNT).sum(1))[::-1][:5].sum()))
    index = jnp.array([6, 0, 36, 17, 6])
    batch = jax.jit(lambda c, i: c.take_cells(i))(s, index)
    np.testing.assert_array_equal(batch.to_dense(), x[np.asarray(index)])
    np.testing.assert_array_equal(batch.gene_totals, x[np.asarray(index)].sum(0))
    np.testing.assert_array_equal(batch.gene_nonzero, (x[np.asarray(index)] > 0).sum(0))
    np.testing.assert_allclose(batch.gene_log_factorial,
                               gammaln(x[np.asarray(index)] + 1).sum(0), rtol=1e-6)
    assert not batch.has_histogram and batch.nnz == s.batch_capacity[0]
    # Large entries of the batch: the same (cell, gene, value) triples as the dense rows.
    rows = x[np.asarray(index)]
    large = np.zeros_like(rows)
    np.add.at(large, (np.asarray(batch.large_cells), np.asarray(batch.large_genes)),
              np.asarray(batch.large_values))
    np.testing.assert_array_equal(large, np.where(rows > LARGE_COUNT, rows, 0))


@pytest.mark.parametrize("block_size", [1, 5, 37, 100])
def test_split_cells_partitions_the_matrix(block_size):
    x = _counts()
    blocks, remainder = SparseCounts.from_matrix(x).split_cells(block_size)
    parts = []
    if blocks is not None:
        parts.append(np.asarray(jax.vmap(lambda b: b.to_dense())(blocks)).reshape(-1, x.shape[1]))
    if remainder is not None:
        parts.append(np.asarray(remainder.to_dense()))
    np.testing.assert_array_equal(np.concatenate(parts), x)
