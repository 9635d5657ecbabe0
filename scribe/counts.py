"""Counts stored by their non-zeros, with the sufficient statistics of the likelihood.

Every likelihood evaluation in scribe reads counts through :class:`SparseCounts`: the
non-zero entries in cell-major order plus statistics computed once, in one pass, when
the matrix is built:

* per cell: total count ``X_c``, ``sum_g log x_cg!`` and the number of non-zeros;
* per gene: total count, ``sum_c log x_cg!`` and the number of non-zero cells;
* the exceedance histogram ``m_gj = #{c : x_cg > j}`` for ``j < max_c x_cg``, stored
  flat (``L = sum_g max_c x_cg`` entries, at most the total count), which turns
  ``sum_c [lgamma(x_cg + r_g) - lgamma(r_g)]`` into ``sum_j m_gj log(r_g + j)``.

A mini-batch (:meth:`SparseCounts.take_cells`) gathers its cells' non-zeros into a
buffer of fixed capacity, padded with zero entries, so it compiles once; it has no
histogram and likelihoods then evaluate the same sums entry by entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.scipy.special import gammaln
from scipy.special import gammaln as np_gammaln

_ARRAYS = ("values", "cells", "genes", "cell_totals", "cell_log_factorial", "cell_nonzero",
           "gene_totals", "gene_log_factorial", "gene_nonzero", "indptr",
           "hist_genes", "hist_shifts", "hist_counts",
           "large_values", "large_cells", "large_genes", "large_indptr")

#: Entries above this count are also listed on their own (``large_*``), so that a
#: likelihood can tabulate small counts per gene and treat the rare large ones apart.
LARGE_COUNT = 16


@jax.tree_util.register_pytree_node_class
class SparseCounts:
    """A cells x genes count matrix as non-zero entries plus sufficient statistics.

    Build it with :meth:`from_matrix`; the attributes are JAX arrays.

    Attributes
    ----------
    values : (N,) float32
        Non-zero counts in cell-major order (zero only in padding entries).
    cells, genes : (N,) int32
        Row (cell) and column (gene) of each entry.
    cell_totals, cell_log_factorial, cell_nonzero : (C,) float32
        ``sum_g x_cg``, ``sum_g log x_cg!`` and ``#{g : x_cg > 0}``.
    gene_totals, gene_log_factorial, gene_nonzero : (G,) float32
        The same per gene.
    indptr : (C + 1,) int32 or None
        CSR row pointers (full matrices only; used to gather mini-batches).
    hist_genes : (L,) int32 or None
        Gene of each histogram entry ``(g, j)``.
    hist_shifts, hist_counts : (L,) float32 or None
        ``j`` and ``m_gj``.
    large_values, large_cells, large_genes : (M,)
        The entries with counts above :data:`LARGE_COUNT` (also among the entries above).
    large_indptr : (C + 1,) int32 or None
        Row pointers of the large entries (full matrices only).
    shape : tuple of int
        ``(C, G)``.
    batch_capacity : (int, int) or None
        Entries and large entries reserved for a mini-batch by :meth:`take_cells` (set by
        :meth:`with_batch_size`).
    """

    def __init__(self, arrays: dict, shape: tuple[int, int],
                 batch_capacity: tuple[int, int] | None = None):
        for name in _ARRAYS:
            setattr(self, name, arrays.get(name))
        self.shape = (int(shape[0]), int(shape[1]))
        self.batch_capacity = batch_capacity

    # ---- pytree ------------------------------------------------------------------------
    def tree_flatten(self):
        return tuple(getattr(self, n) for n in _ARRAYS), (self.shape, self.batch_capacity)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(dict(zip(_ARRAYS, children, strict=True)), *aux)

    def _replace(self, **changes) -> SparseCounts:
        arrays = {n: getattr(self, n) for n in _ARRAYS}
        arrays.update({k: v for k, v in changes.items() if k in _ARRAYS})
        return SparseCounts(arrays, changes.get("shape", self.shape),
                            changes.get("batch_capacity", self.batch_capacity))

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, matrix, dtype=np.float32) -> SparseCounts:
        """Non-zeros and statistics of a cells x genes count matrix, in one pass.

        Parameters
        ----------
        matrix : scipy.sparse matrix/array or array-like, shape (C, G)
            Validated counts (see :func:`scribe.data.prepare_counts`); not modified.
        dtype : numpy dtype, default float32
            Of values and statistics (float64 for reference computations with x64).
        """
        csr = _canonical_csr(matrix, dtype)
        n_cells, n_genes = csr.shape
        values = csr.data
        cells = np.repeat(np.arange(n_cells, dtype=np.int32), np.diff(csr.indptr))
        genes = csr.indices.astype(np.int32, copy=False)
        max_count = int(values.max()) if values.size else 0
        # Statistics accumulated over chunks of entries, so that no float64 copy of all
        # the entries is ever held (the per-entry log-factorials, the (gene, value) keys).
        cell_lf, gene_lf = np.zeros(n_cells), np.zeros(n_genes)
        pairs = _PairCounts(n_genes, max_count)
        for start in range(0, values.size, _CHUNK):
            part = slice(start, start + _CHUNK)
            log_factorial = np_gammaln(values[part].astype(np.float64) + 1.0)
            cell_lf += np.bincount(cells[part], log_factorial, minlength=n_cells)
            gene_lf += np.bincount(genes[part], log_factorial, minlength=n_genes)
            pairs.add(genes[part], values[part])

        def per(index, weights, size):
            return jnp.asarray(np.bincount(index, weights=weights, minlength=size).astype(dtype))

        large = values > LARGE_COUNT
        arrays = {
            "cell_totals": per(cells, values, n_cells),
            "cell_log_factorial": jnp.asarray(cell_lf.astype(dtype)),
            "cell_nonzero": jnp.asarray(np.diff(csr.indptr).astype(dtype)),
            "gene_totals": per(genes, values, n_genes),
            "gene_log_factorial": jnp.asarray(gene_lf.astype(dtype)),
            "gene_nonzero": per(genes, None, n_genes),
            "indptr": jnp.asarray(csr.indptr.astype(np.int32)),
            "large_values": jnp.asarray(values[large]),
            "large_cells": jnp.asarray(cells[large]),
            "large_genes": jnp.asarray(genes[large]),
            "large_indptr": jnp.asarray(np.r_[0, np.cumsum(np.bincount(
                cells[large], minlength=n_cells))].astype(np.int32)),
            **{k: jnp.asarray(v) for k, v in pairs.histogram(dtype).items()},
        }
        del large
        # One device copy at a time: the host arrays are released as they are converted.
        arrays["values"] = jnp.asarray(values)
        arrays["genes"] = jnp.asarray(genes)
        del genes
        arrays["cells"] = jnp.asarray(cells)
        return cls(arrays, (n_cells, n_genes))

    # ---- properties --------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return self.shape[0]

    @property
    def n_genes(self) -> int:
        return self.shape[1]

    @property
    def ndim(self) -> int:
        """2, like the matrix it stands for (NumPyro reads ``ndim`` of observed values)."""
        return 2

    @property
    def nnz(self) -> int:
        """Stored entries (padding included in a mini-batch)."""
        return int(self.values.shape[0])

    @property
    def has_histogram(self) -> bool:
        return self.hist_genes is not None

    @property
    def log_factorial(self) -> jnp.ndarray:
        """``log x!`` of each stored entry, ``(N,)`` (0 for padding)."""
        # float32 lgamma(1) is not exactly 0: padding entries must not add it.
        return jnp.where(self.values > 0, gammaln(self.values + 1.0), 0.0)

    def to_dense(self) -> jnp.ndarray:
        """Dense ``(C, G)`` counts (only for small blocks and plugin fallbacks)."""
        return jnp.zeros(self.shape, self.values.dtype).at[self.cells, self.genes].add(self.values)

    # ---- mini-batches ------------------------------------------------------------------
    def with_batch_size(self, batch_size: int | None) -> SparseCounts:
        """A copy that reserves room for ``batch_size`` cells in :meth:`take_cells`.

        The capacities are the numbers of (large) entries of the ``batch_size`` cells
        with the most, so any batch fits; they are fixed, so a jitted step compiles once.
        """
        if batch_size is None:
            return self._replace(batch_capacity=None)
        return self._replace(batch_capacity=tuple(
            max(int(np.sort(np.diff(np.asarray(pointers)))[::-1][: int(batch_size)].sum()), 1)
            for pointers in (self.indptr, self.large_indptr)))

    def take_cells(self, index: jnp.ndarray,
                   capacity: tuple[int, int] | None = None) -> SparseCounts:
        """The counts of cells ``index`` ``(B,)``, as a padded batch without histogram.

        Parameters
        ----------
        index : (B,) int array
            Cells to take (traced indices are fine).
        capacity : (int, int), optional
            Entries and large entries in the batch buffers; default
            :attr:`batch_capacity`.
        """
        if self.indptr is None:
            raise ValueError("take_cells needs a full matrix (with row pointers)")
        capacity = self.batch_capacity if capacity is None else capacity
        if capacity is None:
            raise ValueError("no batch capacity: call with_batch_size() first")
        index = jnp.asarray(index, jnp.int32)
        row, source, valid = _gather_rows(self.indptr, index, capacity[0])
        values = jnp.where(valid, self.values[source], 0.0)
        genes = jnp.where(valid, self.genes[source], 0)
        log_factorial = jnp.where(valid, gammaln(values + 1.0), 0.0)
        nonzero = (values > 0).astype(values.dtype)
        large_row, large_source, large_valid = _gather_rows(self.large_indptr, index,
                                                            capacity[1])

        def per_gene(weights):
            return jax.ops.segment_sum(weights, genes, num_segments=self.n_genes)

        arrays = {
            "values": values, "cells": row, "genes": genes.astype(jnp.int32),
            "cell_totals": self.cell_totals[index],
            "cell_log_factorial": self.cell_log_factorial[index],
            "cell_nonzero": self.cell_nonzero[index],
            "gene_totals": per_gene(values),
            "gene_log_factorial": per_gene(log_factorial),
            "gene_nonzero": per_gene(nonzero),
            "large_values": jnp.where(large_valid, _gathered(self.large_values, large_source),
                                      0.0),
            "large_cells": large_row,
            "large_genes": jnp.where(large_valid, _gathered(self.large_genes, large_source), 0),
        }
        return SparseCounts(arrays, (index.shape[0], self.n_genes))

    def split_cells(self, block_size: int | None) -> tuple[SparseCounts | None,
                                                         SparseCounts | None]:
        """Consecutive blocks of ``block_size`` cells, for ``jax.lax.map`` over blocks.

        Returns
        -------
        blocks : SparseCounts or None
            The ``n_cells // block_size`` full blocks stacked on a leading axis, all with
            the capacity of the densest one; None if there is no full block.
        remainder : SparseCounts or None
            The last ``n_cells % block_size`` cells, or None. No block holds padding
            cells, so sums over cells need no mask.
        """
        n_cells = self.n_cells
        block_size = n_cells if block_size is None else max(1, min(int(block_size), n_cells))
        n_blocks, n_left = divmod(n_cells, block_size)
        indptr = np.asarray(self.indptr)
        blocks = remainder = None
        pointers = (indptr, np.asarray(self.large_indptr))
        if n_blocks:
            capacity = tuple(max(int(np.max(np.diff(p[np.arange(n_blocks + 1) * block_size]))), 1)
                             for p in pointers)
            index = jnp.arange(n_blocks * block_size, dtype=jnp.int32).reshape(n_blocks, -1)
            blocks = jax.vmap(lambda i: self.take_cells(i, capacity))(index)
        if n_left:
            first = n_blocks * block_size
            capacity = tuple(max(int(p[-1] - p[first]), 1) for p in pointers)
            remainder = self.take_cells(jnp.arange(first, n_cells, dtype=jnp.int32), capacity)
        return blocks, remainder


def _gathered(array: jnp.ndarray, source: jnp.ndarray) -> jnp.ndarray:
    """``array[source]``; zeros when ``array`` is empty (no count above LARGE_COUNT), where
    a gather of a non-empty buffer would fail."""
    if array.shape[0] == 0:
        return jnp.zeros(source.shape, array.dtype)
    return array[source]


def _gather_rows(indptr: jnp.ndarray, index: jnp.ndarray, capacity: int):
    """Positions in a buffer of ``capacity`` for the entries of rows ``index`` of a CSR
    layout: batch row ``(capacity,)``, source entry ``(capacity,)``, valid mask."""
    starts = indptr[index]
    lengths = indptr[index + 1] - starts
    ends = jnp.cumsum(lengths)
    position = jnp.arange(capacity, dtype=jnp.int32)
    # Batch row of each position: count the row ends at or before it (a scatter and a
    # cumulative sum, cheaper than a binary search per position).
    row_ends = jnp.zeros(capacity + 1, jnp.int32).at[jnp.minimum(ends, capacity)].add(1)
    row = jnp.minimum(jnp.cumsum(row_ends)[:capacity], index.shape[0] - 1).astype(jnp.int32)
    valid = position < ends[-1]
    source = jnp.where(valid, starts[row] + position - (ends[row] - lengths[row]), 0)
    return row, source, valid


#: Entries per chunk when statistics are accumulated.
_CHUNK = 1 << 22


def _canonical_csr(matrix, dtype) -> sp.csr_matrix:
    """CSR of ``dtype`` with sorted, unique indices and no stored zeros.

    The input itself when it already is one (it is only read, never modified); a copy
    otherwise.
    """
    if (sp.issparse(matrix) and matrix.format == "csr" and matrix.dtype == dtype
            and matrix.has_canonical_format and not np.any(matrix.data == 0)):
        return matrix
    if not sp.issparse(matrix):
        matrix = np.asarray(matrix)
    csr = sp.csr_matrix(matrix, dtype=dtype, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


class _PairCounts:
    """Number of entries of each (gene, value) pair, accumulated chunk by chunk.

    A dense ``G x (max + 1)`` count table when that is small; otherwise the distinct
    pairs of each chunk are merged by ``np.unique``.
    """

    def __init__(self, n_genes: int, max_count: int):
        self.width = max_count + 1
        self.table = (np.zeros(n_genes * self.width, np.int64)
                      if n_genes * self.width <= 1 << 26 else None)
        self.keys, self.counts = [], []

    def add(self, genes: np.ndarray, values: np.ndarray) -> None:
        key = genes.astype(np.int64) * self.width + values.astype(np.int64)
        if self.table is not None:
            self.table += np.bincount(key, minlength=self.table.size)
        else:
            unique, counts = np.unique(key, return_counts=True)
            self.keys.append(unique)
            self.counts.append(counts)

    def histogram(self, dtype) -> dict:
        if self.table is not None:
            unique = np.flatnonzero(self.table)
            counts = self.table[unique]
        elif self.keys:
            keys, inverse = np.unique(np.concatenate(self.keys), return_inverse=True)
            counts = np.bincount(inverse, np.concatenate(self.counts)).astype(np.int64)
            unique = keys
        else:
            unique = counts = np.zeros(0, np.int64)
        return _exceedance_histogram(unique // self.width, unique % self.width, counts, dtype)


def _exceedance_histogram(run_gene: np.ndarray, run_value: np.ndarray, counts: np.ndarray,
                          dtype=np.float32) -> dict:
    """Flat ``m_gj = #{c : x_cg > j}`` for every gene ``g`` and ``0 <= j < max_c x_cg``.

    Input: the distinct (gene, value) pairs sorted by gene then value, with their numbers
    of entries. Between consecutive distinct values ``v_{i-1} <= j < v_i`` of a gene,
    ``m_gj`` is the number of its entries ``>= v_i``.
    """
    if run_gene.size == 0:
        empty_f, empty_i = np.zeros(0, dtype), np.zeros(0, np.int32)
        return {"hist_genes": empty_i, "hist_shifts": empty_f, "hist_counts": empty_f}
    # Entries of the same gene with value >= v_i: a suffix sum within each gene.
    first_of_gene = np.r_[True, run_gene[1:] != run_gene[:-1]]
    gene_start = np.flatnonzero(first_of_gene)
    gene_of_run = np.cumsum(first_of_gene) - 1
    suffix = np.cumsum(counts[::-1])[::-1]
    gene_end_suffix = np.r_[suffix[gene_start[1:]], 0]
    at_least = suffix - gene_end_suffix[gene_of_run]
    previous = np.where(first_of_gene, 0, np.r_[0, run_value[:-1]])
    lengths = run_value - previous
    total = int(lengths.sum())
    run_of_entry = np.repeat(np.arange(run_gene.size), lengths)
    offset = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return {
        "hist_genes": run_gene[run_of_entry].astype(np.int32),
        "hist_shifts": (previous[run_of_entry] + offset).astype(dtype),
        "hist_counts": at_least[run_of_entry].astype(dtype),
    }
