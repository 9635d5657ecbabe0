"""Mini-batches gathered from non-zeros held in host memory.

A mini-batch fit needs only its batch's entries on the device at each step.
:class:`HostBatchedCounts` keeps the statistics on the device (``O(C + 17 G)``) and the
non-zeros on the host in compact dtypes (:class:`~scribe.counts_stream.HostEntries`,
4 bytes each with fewer than 65,536 genes and counts); :meth:`~HostBatchedCounts.take_cells`
gathers a batch with ``jax.pure_callback`` inside the compiled step, into buffers of the
fixed capacity :meth:`~scribe.counts.SparseCounts.with_batch_size` reserves, and returns
exactly what :meth:`SparseCounts.take_cells` returns for the same cells.

The host arrays ride in the pytree's static part, compared by identity, so they are
never traced or copied to the device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scribe.counts import _ARRAYS, SparseCounts
from scribe.counts_stream import HostEntries


class HostStore:
    """Host arrays of a count matrix's entries; hashed and compared by identity.

    Parameters
    ----------
    entries : HostEntries
        All non-zeros, cell-major.
    large : dict
        ``values``, ``cells``, ``genes`` (int32, ``(M,)``) of the entries above 16.
    """

    def __init__(self, entries: HostEntries, large: dict, n_cells: int):
        self.values, self.genes, self.indptr = entries.values, entries.genes, entries.indptr
        self.large_values = np.asarray(large["values"], np.int32)
        self.large_genes = np.asarray(large["genes"], np.int32)
        self.large_indptr = np.r_[0, np.cumsum(np.bincount(
            np.asarray(large["cells"], np.int64), minlength=n_cells))].astype(np.int64)

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in (self.values, self.genes, self.indptr,
                                            self.large_values, self.large_genes,
                                            self.large_indptr))

    def gather(self, index: np.ndarray, capacity: int, large_capacity: int, dtype):
        """Padded entries of cells ``index`` ``(B,)`` (see :func:`_gather`)."""
        index = np.asarray(index, np.int64)
        values, rows, genes = _gather(self.indptr, (self.values, self.genes), index,
                                      capacity)
        large_values, large_rows, large_genes = _gather(
            self.large_indptr, (self.large_values, self.large_genes), index, large_capacity)
        return (values.astype(dtype), rows, genes.astype(np.int32),
                large_values.astype(np.int32), large_rows, large_genes.astype(np.int32))


def _gather(indptr: np.ndarray, arrays: tuple, index: np.ndarray, capacity: int):
    """``arrays`` at the entries of rows ``index``, padded to ``capacity`` with zeros;
    and the batch row of each position (the last row for padding, as
    :func:`scribe.counts.gather_rows`)."""
    starts = indptr[index]
    lengths = indptr[index + 1] - starts
    total = int(lengths.sum())
    if total > capacity:
        raise ValueError(f"a batch holds {total} entries, more than its capacity {capacity}")
    first = np.cumsum(lengths) - lengths
    source = np.repeat(starts - first, lengths) + np.arange(total)
    rows = np.full(capacity, max(index.size - 1, 0), np.int32)
    rows[:total] = np.repeat(np.arange(index.size, dtype=np.int32), lengths)
    out = []
    for array in arrays:
        padded = np.zeros(capacity, array.dtype)
        padded[:total] = array[source]
        out.append(padded)
    return out[0], rows, out[1]


@jax.tree_util.register_pytree_node_class
class HostBatchedCounts(SparseCounts):
    """:class:`SparseCounts` whose non-zeros stay on the host (mini-batch fits only).

    The device holds the statistics (histogram, large entries, totals); ``values``,
    ``cells`` and ``genes`` are empty, so the full-data sums that need entries are not
    available: use it only with ``batch_size``.
    """

    def __init__(self, arrays: dict, shape: tuple[int, int],
                 batch_capacity: tuple[int, int] | None = None, host: HostStore | None = None):
        super().__init__(arrays, shape, batch_capacity)
        self.host = host

    def tree_flatten(self):
        children, (shape, capacity) = super().tree_flatten()
        return children, (shape, capacity, self.host)

    @classmethod
    def tree_unflatten(cls, aux, children):
        shape, capacity, host = aux
        return cls(dict(zip(_ARRAYS, children, strict=True)), shape, capacity, host)

    def _replace(self, **changes) -> HostBatchedCounts:
        arrays = {n: getattr(self, n) for n in _ARRAYS}
        arrays.update({k: v for k, v in changes.items() if k in _ARRAYS})
        return HostBatchedCounts(arrays, changes.get("shape", self.shape),
                                 changes.get("batch_capacity", self.batch_capacity), self.host)

    def host_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        return self.host.indptr, self.host.large_indptr

    def take_cells(self, index: jnp.ndarray,
                   capacity: tuple[int, int] | None = None) -> SparseCounts:
        """As :meth:`SparseCounts.take_cells`, gathered on the host by a callback."""
        capacity = self.batch_capacity if capacity is None else capacity
        if capacity is None:
            raise ValueError("no batch capacity: call with_batch_size() first")
        index = jnp.asarray(index, jnp.int32)
        dtype = self.cell_totals.dtype
        shapes = tuple(jax.ShapeDtypeStruct((n,), d) for n, d in (
            (capacity[0], dtype), (capacity[0], jnp.int32), (capacity[0], jnp.int32),
            (capacity[1], jnp.int32), (capacity[1], jnp.int32), (capacity[1], jnp.int32)))
        host, capacity = self.host, tuple(int(c) for c in capacity)

        def gather(idx):
            return host.gather(idx, capacity[0], capacity[1], np.dtype(dtype))

        gathered = jax.pure_callback(gather, shapes, index, vmap_method="sequential")
        names = ("values", "cells", "genes", "large_values", "large_cells", "large_genes")
        return self._batch(index, dict(zip(names, gathered, strict=True)))


def host_batched(streamed, dtype=np.float32) -> HostBatchedCounts:
    """The :class:`HostBatchedCounts` of a :class:`~scribe.counts_stream.StreamedCounts`
    that kept its entries (which then live in the result's host store)."""
    if streamed.entries is None:
        raise ValueError("the non-zeros were not kept: stream with keep_entries=True")
    stats = streamed.sparse_counts(dtype=dtype, with_entries=False)
    store = HostStore(streamed.entries, streamed.large, streamed.n_cells)
    arrays = {n: getattr(stats, n) for n in _ARRAYS}
    return HostBatchedCounts(arrays, stats.shape, None, store)
