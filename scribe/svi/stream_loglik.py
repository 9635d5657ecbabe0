"""Log-likelihoods of counts streamed from disk, block by block (private).

:meth:`~scribe.svi.ScribeSVIResults.log_likelihood` and the analyses built on it
(``cell_type_probabilities``, entropies, ``denoise_counts``' assignments, the AnnData
write-back) take a backed AnnData, a zarr / dask ``.X`` or an on-disk array without
reading it whole: :func:`streamed_log_likelihood` reads blocks of cells
(:class:`scribe.cell_blocks.CellBlocks`, validated as they are read), evaluates each as a
padded batch and keeps only the result.

* Per-cell results ``(S, C[, K])`` are written into one host array block by block;
* per-gene results ``(S, G[, K])`` are summed over blocks before the component weights
  and ``logsumexp`` (:meth:`LogLikelihoodEvaluator._finish`) are applied once.

Memory: one source block (10,000 cells, or ``batch_size``), one padded batch on the
device and the result. Each batch's entry buffer is rounded up to a power of 2**(1/4),
so the program compiles for a few buffer sizes, not once per block.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln

from scribe.cell_blocks import DEFAULT_BLOCK_CELLS, open_counts
from scribe.counts import LARGE_COUNT, SparseCounts
from scribe.svi.loglik import AUTO_BLOCK_NONZEROS, LogLikelihoodEvaluator


def bucket(n: int) -> int:
    """The smallest ``ceil(2**(k/4))`` at least ``n`` (at least 1): buffer sizes at most
    19 % above what they hold."""
    if n <= 1:
        return 1
    k = int(np.ceil(4 * np.log2(n)))
    size = int(np.ceil(2 ** (k / 4)))
    return size if size >= n else int(np.ceil(2 ** ((k + 1) / 4)))


def padded_block(csr: sp.csr_matrix, dtype) -> SparseCounts:
    """A cells block as the padded batch :meth:`SparseCounts.take_cells` would give:
    entries (zero-padded to :func:`bucket` sizes, padding on the last row), the block's
    per-cell statistics and per-gene sums over its entries; no histogram.

    Parameters
    ----------
    csr : canonical CSR ``(B, G)``
    dtype : numpy dtype of values and statistics
    """
    n_rows, n_genes = csr.shape
    lengths = np.diff(csr.indptr)
    rows = np.repeat(np.arange(n_rows, dtype=np.int32), lengths)
    values = csr.data.astype(np.float64)
    log_factorial = gammaln(values + 1.0)
    genes = csr.indices.astype(np.int32)

    def padded(array, size, out_dtype, fill=0):
        out = np.full(size, fill, out_dtype)
        out[:array.size] = array
        return out

    capacity = bucket(values.size)
    large = values > LARGE_COUNT
    large_capacity = bucket(int(large.sum()))
    last = max(n_rows - 1, 0)
    arrays = {
        "values": padded(values, capacity, dtype),
        "cells": padded(rows, capacity, np.int32, last),
        "genes": padded(genes, capacity, np.int32),
        "cell_totals": np.bincount(rows, values, minlength=n_rows).astype(dtype),
        "cell_log_factorial": np.bincount(rows, log_factorial, minlength=n_rows)
        .astype(dtype),
        "cell_nonzero": lengths.astype(dtype),
        "gene_totals": np.bincount(genes, values, minlength=n_genes).astype(dtype),
        "gene_log_factorial": np.bincount(genes, log_factorial, minlength=n_genes)
        .astype(dtype),
        "gene_nonzero": np.bincount(genes, minlength=n_genes).astype(dtype),
        "large_values": padded(values[large].astype(np.int32), large_capacity, np.int32),
        "large_cells": padded(rows[large], large_capacity, np.int32, last),
        "large_genes": padded(genes[large], large_capacity, np.int32),
    }
    return SparseCounts({k: jnp.asarray(v) for k, v in arrays.items()}, (n_rows, n_genes))


def streamed_log_likelihood(evaluator: LogLikelihoodEvaluator, counts: Any, draws: dict, *,
                            n_cells: int, n_genes: int, by: str, split: bool, weights,
                            weight_type: str | None, batch_size: int | None,
                            dtype) -> jnp.ndarray:
    """:meth:`LogLikelihoodEvaluator.__call__` on counts read from disk in blocks.

    Parameters
    ----------
    evaluator : LogLikelihoodEvaluator
    counts : backed AnnData, on-disk array or dask array ``(C', G')`` (cells as rows)
    draws : dict
        Canonical parameters with a leading draw axis ``S``, already cast to ``dtype``.
    n_cells, n_genes : int
        The fit's shape: the counts must have ``n_genes`` genes, and ``n_cells`` cells
        when there are per-cell parameters.
    by, split, weights, weight_type : as the evaluator
    batch_size : int or None
        Cells per block; None: blocks of about :data:`AUTO_BLOCK_NONZEROS` non-zeros
        (from the first source block's density).
    dtype : jnp dtype

    Returns
    -------
    jax.Array
        As the evaluator: ``(S, C)`` / ``(S, G)``, trailing ``K`` with ``split``.

    Raises
    ------
    ValueError
        Wrong number of genes or cells (before any block is read); invalid counts
        (:class:`scribe.data.CountsError`, naming the cell and gene).
    """
    blocks, _ = open_counts(counts, block_cells=batch_size or DEFAULT_BLOCK_CELLS)
    rows_total, genes_total = blocks.shape
    if genes_total != n_genes:
        raise ValueError(f"counts have {genes_total} genes but the model was fitted to "
                         f"{n_genes} genes")
    names = evaluator.parameter_names(draws)
    params = {n: draws[n] for n in names}
    cell_names = frozenset(evaluator.cell_names(params, leading=1))
    if cell_names and rows_total != n_cells:
        raise ValueError(f"counts have {rows_total} cells but the model has per-cell "
                         f"parameters ({', '.join(sorted(cell_names))}) for {n_cells} cells")
    np_dtype = np.dtype(dtype)
    if weights is None:
        weights = jnp.zeros(n_genes, dtype)
    kind = weight_type if weight_type is not None else None
    out = total = None
    rows = batch_size
    for first, source in blocks:
        if rows is None:   # bound each batch's temporaries as the in-memory path does
            density = max(source.nnz / max(source.shape[0], 1), 1.0)
            rows = max(1, min(source.shape[0], int(AUTO_BLOCK_NONZEROS // density)))
        for offset in range(0, source.shape[0], rows):
            csr = source[offset:offset + rows]
            start = first + offset
            block = padded_block(csr, np_dtype)
            block_params = {n: (v[:, start:start + csr.shape[0]] if n in cell_names else v)
                            for n, v in params.items()}
            result = evaluator(block, block_params, by=by, split=split, weights=weights,
                               weight_type=kind, batch_size=csr.shape[0],
                               finish=by == "cell", cell_names=cell_names)
            if by == "cell":
                if out is None:
                    out = np.empty((result.shape[0], rows_total, *result.shape[2:]),
                                   np_dtype)
                out[:, start:start + csr.shape[0]] = np.asarray(result)
            else:
                total = result if total is None else total + result
    if by == "cell":
        return jnp.asarray(out)
    return evaluator._finish(total, params, weights, rows_total, by=by, split=split,
                             weight_type=kind)
