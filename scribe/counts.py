"""Counts stored by their non-zeros, with the sufficient statistics of the likelihood.

Every likelihood evaluation in scribe reads counts through :class:`SparseCounts`: the
non-zero entries in cell-major order plus statistics computed once, in one pass, when
the matrix is built:

* per cell: total count ``X_c``, ``sum_g log x_cg!`` and the number of non-zeros;
* per gene: total count, ``sum_c log x_cg!`` and the number of non-zero cells;
* the exceedance histogram ``m_gj = #{c : x_cg > j}`` for ``j < min(max_c x_cg, 16)``,
  stored flat (at most ``16 G`` entries, whatever the largest count), which turns
  ``sum_c [lgamma(min(x_cg, 16) + r_g) - lgamma(r_g)]`` into ``sum_j m_gj log(r_g + j)``;
  the entries above 16 (rare) are listed apart and add ``lgamma(x + r) - lgamma(16 + r)``.

Supported counts are integers in ``[0, 2**31 - 1]`` (:data:`scribe.data.MAX_COUNT`). Row
pointers are int64 on the host and int32 on the device while the number of non-zeros fits
(:func:`device_offsets`); positions inside a batch are always int32.

A mini-batch (:meth:`SparseCounts.take_cells`) gathers its cells' non-zeros into a
buffer of fixed capacity, padded with zero entries, so it compiles once; it has no
histogram and likelihoods then evaluate the same sums entry by entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from scipy.special import gammaln as np_gammaln

from scribe.data import _canonical_csr
from scribe.data import chunks as _chunks

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
        Non-zero counts in cell-major order (zero only in padding entries); exact up to
        ``2**24`` (the large entries below keep every count exactly).
    cells, genes : (N,) int32
        Row (cell) and column (gene) of each entry.
    cell_totals, cell_log_factorial, cell_nonzero : (C,) float32
        ``sum_g x_cg``, ``sum_g log x_cg!`` and ``#{g : x_cg > 0}``.
    gene_totals, gene_log_factorial, gene_nonzero : (G,) float32
        The same per gene.
    indptr : (C + 1,) int32 (int64 past 2**31 non-zeros, under x64) or None
        CSR row pointers (full matrices only; used to gather mini-batches).
    hist_genes : (L,) int32 or None
        Gene of each histogram entry ``(g, j)``.
    hist_shifts, hist_counts : (L,) float32 or None
        ``j`` and ``m_gj``.
    large_values, large_cells, large_genes : (M,) int32
        The entries with counts above :data:`LARGE_COUNT` (also among the entries above),
        exact integers.
    large_indptr : (C + 1,) int32 (or int64, as ``indptr``) or None
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
        """Non-zeros and statistics of a cells x genes count matrix, in one chunked pass.

        Parameters
        ----------
        matrix : scipy.sparse matrix/array or array-like, shape (C, G)
            Validated counts (see :func:`scribe.data.prepare_counts`): integers in
            ``[0, MAX_COUNT]``; not modified. A canonical CSR is read as it is.
        dtype : numpy dtype, default float32
            Of values and statistics (float64 for reference computations with x64).

        Notes
        -----
        Memory: the device arrays (``values``, ``genes``, ``cells``: 12 bytes per non-zero
        in float32) plus, while they are built, one host array of 4 bytes per non-zero
        (the cell of each entry) and chunk-sized temporaries. Row pointers are int64 on
        the host; see :func:`device_offsets` for the device.
        """
        csr = _canonical_csr(matrix)
        n_cells, n_genes = csr.shape
        indptr = csr.indptr.astype(np.int64)
        device_indptr = device_offsets(indptr)
        n_entries = int(indptr[-1])
        cell_totals, cell_lf = np.zeros(n_cells), np.zeros(n_cells)
        gene_totals, gene_lf = np.zeros(n_genes), np.zeros(n_genes)
        gene_nonzero = np.zeros(n_genes)
        pairs = np.zeros(n_genes * (LARGE_COUNT + 1), np.int64)   # (gene, min(x, 16))
        large = {"values": [], "cells": [], "genes": []}
        # Statistics accumulated over chunks, so that no float64 copy of all the entries
        # (log-factorials, keys of the exceedance table) is ever held.
        for part in _chunks(n_entries):
            values = csr.data[part].astype(np.float64)
            genes = csr.indices[part]
            cells = np.searchsorted(indptr, np.arange(part.start, part.stop),
                                    side="right") - 1
            log_factorial = np_gammaln(values + 1.0)
            cell_totals += np.bincount(cells, values, minlength=n_cells)
            cell_lf += np.bincount(cells, log_factorial, minlength=n_cells)
            gene_totals += np.bincount(genes, values, minlength=n_genes)
            gene_lf += np.bincount(genes, log_factorial, minlength=n_genes)
            gene_nonzero += np.bincount(genes, minlength=n_genes)
            short = np.minimum(values, LARGE_COUNT).astype(np.int64)
            pairs += np.bincount(genes.astype(np.int64) * (LARGE_COUNT + 1) + short,
                                 minlength=pairs.size)
            is_large = values > LARGE_COUNT
            large["values"].append(values[is_large].astype(np.int32))
            large["cells"].append(cells[is_large].astype(np.int32))
            large["genes"].append(genes[is_large].astype(np.int32))
        large = {k: np.concatenate(v) if v else np.zeros(0, np.int32) for k, v in large.items()}

        def device(array):
            return jnp.asarray(np.asarray(array).astype(dtype))

        unique = np.flatnonzero(pairs)
        arrays = {
            "cell_totals": device(cell_totals),
            "cell_log_factorial": device(cell_lf),
            "cell_nonzero": device(np.diff(indptr)),
            "gene_totals": device(gene_totals),
            "gene_log_factorial": device(gene_lf),
            "gene_nonzero": device(gene_nonzero),
            "indptr": device_indptr,
            "large_values": jnp.asarray(large["values"]),
            "large_cells": jnp.asarray(large["cells"]),
            "large_genes": jnp.asarray(large["genes"]),
            "large_indptr": device_offsets(np.r_[0, np.cumsum(np.bincount(
                large["cells"], minlength=n_cells))]),
            **{k: jnp.asarray(v) for k, v in _exceedance_histogram(
                unique // (LARGE_COUNT + 1), unique % (LARGE_COUNT + 1), pairs[unique],
                dtype).items()},
        }
        # One device copy at a time, each finished before the next starts. The cell
        # index is the only full-size host temporary: it is copied first and released
        # before the caller's values and genes are copied. ``jax.device_put`` copies
        # once; ``jnp.asarray`` of a numpy array makes a second, host, copy first (jax
        # 0.10: +4 bytes per non-zero at the peak).
        cells = np.repeat(np.arange(n_cells, dtype=np.int32), np.diff(indptr))
        arrays["cells"] = _to_device(cells)
        del cells
        arrays["values"] = _to_device(csr.data.astype(dtype, copy=False))
        arrays["genes"] = _to_device(csr.indices.astype(np.int32, copy=False))
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
    def host_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Row pointers of all entries and of the large ones, int64 on the host."""
        if self.indptr is None:
            raise ValueError("row pointers exist only for a full matrix (not a batch)")
        return (np.asarray(self.indptr).astype(np.int64),
                np.asarray(self.large_indptr).astype(np.int64))

    def with_batch_size(self, batch_size: int | None) -> SparseCounts:
        """A copy that reserves room for ``batch_size`` cells in :meth:`take_cells`.

        The capacities are the numbers of (large) entries of the ``batch_size`` cells
        with the most, so any batch fits; they are fixed, so a jitted step compiles once.
        """
        if batch_size is None:
            return self._replace(batch_capacity=None)
        return self._replace(batch_capacity=tuple(
            batch_capacity(pointers, int(batch_size)) for pointers in self.host_offsets()))

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
        row, source, valid = gather_rows(self.indptr, index, capacity[0])
        large_row, large_source, large_valid = gather_rows(self.large_indptr, index,
                                                           capacity[1])
        return self._batch(index, {
            "values": _take(self.values, source, valid), "cells": row,
            "genes": _take(self.genes, source, valid),
            "large_values": _take(self.large_values, large_source, large_valid),
            "large_cells": large_row,
            "large_genes": _take(self.large_genes, large_source, large_valid)})

    def _batch(self, index: jnp.ndarray, entries: dict) -> SparseCounts:
        """The batch of cells ``index`` from its gathered entries (``values``, ``cells``,
        ``genes`` and the ``large_*`` ones, padded with zero values): per-cell statistics
        are read, per-gene ones summed over the batch's entries."""
        values, genes = entries["values"], entries["genes"]
        valid = values > 0
        log_factorial = jnp.where(valid, gammaln(values + 1.0), 0.0)

        def per_gene(weights):
            return jax.ops.segment_sum(weights, genes, num_segments=self.n_genes)

        arrays = {
            **entries,
            "cell_totals": self.cell_totals[index],
            "cell_log_factorial": self.cell_log_factorial[index],
            "cell_nonzero": self.cell_nonzero[index],
            "gene_totals": per_gene(values),
            "gene_log_factorial": per_gene(log_factorial),
            "gene_nonzero": per_gene(valid.astype(values.dtype)),
        }
        return SparseCounts(arrays, (index.shape[0], self.n_genes))

    def block_capacity(self, block_size: int) -> tuple[int, int]:
        """Entries and large entries of the densest run of ``block_size`` consecutive
        cells starting at a multiple of ``block_size`` (the last, shorter run included)."""
        return tuple(block_capacity(p, int(block_size)) for p in self.host_offsets())

    def take_block(self, first, size: int, capacity: tuple[int, int]) -> SparseCounts:
        """Cells ``first .. first + size - 1`` (``first`` may be traced), see
        :meth:`take_cells`."""
        return self.take_cells(first + jnp.arange(size, dtype=jnp.int32), capacity)

    def split_cells(self, block_size: int | None) -> tuple[SparseCounts | None,
                                                         SparseCounts | None]:
        """Consecutive blocks of ``block_size`` cells, stacked (small matrices and tests;
        :mod:`scribe.svi.loglik` gathers one block at a time with :meth:`take_block`).

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
        capacity = self.block_capacity(block_size)
        blocks = remainder = None
        if n_blocks:
            starts = jnp.arange(n_blocks, dtype=jnp.int32) * block_size
            blocks = jax.vmap(lambda s: self.take_block(s, block_size, capacity))(starts)
        if n_left:
            remainder = self.take_block(n_blocks * block_size, n_left, capacity)
        return blocks, remainder


# ---- offsets -----------------------------------------------------------------------------

#: Largest offset (count of entries) an int32 holds.
INT32_MAX = 2**31 - 1


def _to_device(array: np.ndarray) -> jax.Array:
    """A device copy of a full-size host array ``(N,)``, completed before returning (so
    the host array can be released at once), without an intermediate host copy."""
    return jax.block_until_ready(jax.device_put(array))


def device_offsets(indptr: np.ndarray) -> jnp.ndarray:
    """Row pointers for the device: int32 when every offset fits, int64 otherwise.

    JAX computes in 32 bits unless ``jax_enable_x64`` is set, and an int32 offset past
    ``2**31 - 1`` would wrap silently, so a matrix with more non-zeros needs x64 and is
    refused without it. Only the base offsets of rows are 64-bit: positions within a
    batch are int32 (:func:`gather_rows`).
    """
    indptr = np.asarray(indptr, np.int64)
    total = int(indptr[-1]) if indptr.size else 0
    if total <= INT32_MAX:
        return jnp.asarray(indptr.astype(np.int32))
    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"counts have {total:,} non-zeros, more than 2**31 - 1 = {INT32_MAX:,}: their "
            f"offsets need 64-bit integers on the device; enable them with "
            f"jax.config.update('jax_enable_x64', True) before fitting, or fit a subset "
            f"of the cells")
    return jnp.asarray(indptr, jnp.int64)


def _check_capacity(capacity: int) -> int:
    if capacity > INT32_MAX:
        raise ValueError(f"a batch or block would hold {capacity:,} non-zeros, more than "
                         f"2**31 - 1: use a smaller batch_size")
    return max(int(capacity), 1)   # a buffer of at least one (padding) entry


def batch_capacity(indptr: np.ndarray, batch_size: int) -> int:
    """Entries of the ``batch_size`` rows with the most, ``indptr`` int64 ``(C + 1,)``."""
    lengths = np.diff(np.asarray(indptr, np.int64))
    top = np.partition(lengths, lengths.size - batch_size)[lengths.size - batch_size:] \
        if batch_size < lengths.size else lengths
    return _check_capacity(int(top.sum()))


def block_capacity(indptr: np.ndarray, block_size: int) -> int:
    """Entries of the densest block of ``block_size`` consecutive rows (blocks start at
    multiples of ``block_size``; the last one may be shorter), ``indptr`` int64."""
    indptr = np.asarray(indptr, np.int64)
    bounds = np.r_[np.arange(0, indptr.size - 1, block_size), indptr.size - 1]
    return _check_capacity(int(np.max(np.diff(indptr[bounds]))) if bounds.size > 1 else 0)


def gather_rows(indptr: jnp.ndarray, index: jnp.ndarray, capacity: int):
    """Where the entries of rows ``index`` of a CSR layout go in a buffer of ``capacity``.

    Parameters
    ----------
    indptr : (R + 1,) int32 or int64
        Row pointers (int64 only when offsets pass ``2**31 - 1``, under x64).
    index : (B,) int32
    capacity : int
        Buffer length, ``< 2**31``.

    Returns
    -------
    row : (capacity,) int32
        Batch row of each position (the last row for padding).
    source : (capacity,) indptr's dtype
        Entry read at each position (0 for padding): the row's 64-bit base offset plus an
        int32 position within the batch.
    valid : (capacity,) bool
    """
    starts = indptr[index]
    lengths = (indptr[index + 1] - starts).astype(jnp.int32)   # one row: < 2**31
    ends = jnp.cumsum(lengths)              # within the batch: <= capacity < 2**31
    position = jnp.arange(capacity, dtype=jnp.int32)
    # Batch row of each position: count the row ends at or before it (a scatter and a
    # cumulative sum, cheaper than a binary search per position).
    row_ends = jnp.zeros(capacity + 1, jnp.int32).at[jnp.minimum(ends, capacity)].add(1)
    row = jnp.minimum(jnp.cumsum(row_ends)[:capacity], index.shape[0] - 1).astype(jnp.int32)
    valid = position < ends[-1]
    within = position - (ends[row] - lengths[row])
    source = jnp.where(valid, starts[row] + within.astype(starts.dtype), 0)
    return row, source, valid


def _take(array: jnp.ndarray, source: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
    """``array[source]`` where valid, else 0; an empty ``array`` gives zeros (XLA cannot
    gather a slice out of an empty operand)."""
    if array.shape[0] == 0:
        return jnp.zeros(source.shape, array.dtype)
    return jnp.where(valid, array[source], jnp.zeros((), array.dtype))


def _exceedance_histogram(run_gene: np.ndarray, run_value: np.ndarray, counts: np.ndarray,
                          dtype=np.float32) -> dict:
    """Flat ``m_gj = #{c : x_cg > j}`` for every gene ``g`` and ``0 <= j < v_g``.

    Input: the distinct (gene, value) pairs sorted by gene then value, with their numbers
    of entries; values above :data:`LARGE_COUNT` are given as ``LARGE_COUNT`` (so
    ``v_g = min(max_c x_cg, LARGE_COUNT)`` and the table has at most ``16 G`` entries).
    Between consecutive distinct values ``v_{i-1} <= j < v_i`` of a gene,
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
