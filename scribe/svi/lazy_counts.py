"""Counts on disk or lazy, read by the analyses one block of cells at a time.

The analyses of :mod:`scribe.svi.pointwise` (denoising, goodness of fit, the AnnData
write-back) slice their counts by blocks of cells. For a backed AnnData, a zarr / h5py
array or a dask array, :class:`LazyCounts` stands in for the in-memory matrix: slicing
rows reads and validates just those rows (:func:`scribe.cell_blocks._checked_csr`), so
the counts are never held whole. The log-likelihoods behind assignments stream the same
source (:mod:`scribe.svi.stream_loglik`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scribe.cell_blocks import DEFAULT_BLOCK_CELLS, _checked_csr, open_counts


class LazyCounts:
    """Rows of an on-disk / lazy cells x genes matrix, read when sliced.

    Parameters
    ----------
    matrix : h5py / zarr / anndata sparse dataset or dask array, ``(C, G')``
        Cells as rows; never modified.
    columns : (G,) int array, optional
        Genes to keep, in this order (a fit on a subset of the file's genes).

    Attributes
    ----------
    shape : (int, int)
    dtype : numpy dtype
        float32 (the validated blocks' dtype as the analyses use them).
    """

    def __init__(self, matrix: Any, columns: np.ndarray | None = None):
        self._matrix = matrix
        self._columns = None if columns is None else np.asarray(columns, np.int64)
        n_cells, n_genes = (int(n) for n in matrix.shape)
        self.shape = (n_cells, n_genes if self._columns is None else self._columns.size)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, cells) -> sp.csr_matrix:
        """The validated canonical CSR of rows ``cells`` (a slice with step 1)."""
        if not isinstance(cells, slice) or cells.step not in (None, 1):
            raise TypeError("LazyCounts reads consecutive cells only: index with a slice")
        start, stop, _ = cells.indices(self.shape[0])
        block = self._matrix[start:stop]
        if hasattr(block, "compute"):
            block = block.compute()
        csr = _checked_csr(block, start)
        if self._columns is not None:
            csr = csr[:, self._columns]
        return csr

    def blocks(self, block_cells: int = DEFAULT_BLOCK_CELLS):
        """``(first cell, CSR)`` of consecutive blocks of ``block_cells`` cells."""
        for start in range(0, self.shape[0], block_cells):
            yield start, self[start:start + block_cells]

    def block_nonzeros(self, block_cells: int) -> np.ndarray:
        """Non-zeros (stored entries, an upper bound) of each block of ``block_cells``
        cells: from a sparse dataset's row pointers, else counted in one pass."""
        bounds = np.r_[np.arange(0, self.shape[0], block_cells), self.shape[0]]
        group = getattr(self._matrix, "group", None)
        if (self._columns is None and getattr(self._matrix, "format", None) == "csr"
                and group is not None):
            return np.diff(np.asarray(group["indptr"][:], np.int64)[bounds])
        return np.array([csr.nnz for _, csr in self.blocks(block_cells)], np.int64)

    def sum(self, axis: int | None = None) -> np.ndarray | float:
        """Totals per cell (``axis=1``, ``(C, 1)`` like a scipy matrix), per gene
        (``axis=0``, ``(1, G)``) or of all counts, in one streamed pass (float64)."""
        if axis not in (None, 0, 1):
            raise ValueError(f"axis must be None, 0 or 1, got {axis!r}")
        if axis == 1:
            return np.concatenate([np.asarray(csr.sum(axis=1, dtype=np.float64))
                                   for _, csr in self.blocks()], axis=0)
        genes = sum(np.asarray(csr.sum(axis=0, dtype=np.float64)) for _, csr in self.blocks())
        return genes if axis == 0 else float(genes.sum())

    def to_memory(self) -> sp.csr_matrix:
        """All rows as one CSR (for results the size of the counts)."""
        return sp.vstack([csr for _, csr in self.blocks()], format="csr")


def lazy_counts(counts: Any, layer: str | None = None) -> LazyCounts | None:
    """:class:`LazyCounts` of ``counts`` (or its ``.X`` / ``layer``) when it is on disk
    or lazy, else None (in-memory counts keep their own path)."""
    from scribe.cell_blocks import is_lazy_counts

    if not is_lazy_counts(counts, layer):
        return None
    if isinstance(counts, LazyCounts):
        return counts
    blocks, _ = open_counts(counts, layer=layer)
    return LazyCounts(blocks._matrix)
