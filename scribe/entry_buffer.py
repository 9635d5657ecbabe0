"""Compact non-zeros appended block by block into one allocation per array.

The streamed pass (:mod:`scribe.counts_stream`) keeps every non-zero of the models that
need them. Collecting per-block parts and concatenating them at the end holds the parts
and the result together, twice the kept bytes at the peak. :class:`EntryBuffer` writes
each block into arrays allocated once instead:

* when the source tells how many entries it stores (a CSR in memory, the row pointers of
  a backed / zarr sparse dataset: :meth:`scribe.cell_blocks.CellBlocks.stored_entries`),
  the arrays are allocated at that size (an upper bound: stored zeros are dropped) and
  trimmed at the end;
* otherwise (dask, dense on disk) the capacity is estimated from the first block and
  grown by ``ndarray.resize``, which reallocates in place (on Linux a large block is
  moved by ``mremap``, without a second copy of the data).

Pages that are never written are never touched, so an over-estimate costs address
space, not memory.
"""

from __future__ import annotations

import numpy as np

#: Growth factor of the capacity when an estimate turns out short.
GROWTH = 1.25


class EntryBuffer:
    """Values and gene indices of non-zeros, appended in cell order.

    Parameters
    ----------
    gene_dtype : numpy dtype
        uint16 when the genes fit, else int32.
    capacity : int, optional
        Entries to allocate at the first append; None: estimated then (see
        :meth:`append`).

    Attributes
    ----------
    size : int
        Entries written so far.
    """

    def __init__(self, gene_dtype, capacity: int | None = None):
        self._gene_dtype = np.dtype(gene_dtype)
        self._capacity = capacity
        self.values = self.genes = None
        self.size = 0

    def _allocate(self, capacity: int) -> None:
        capacity = max(int(capacity), 1)
        self.values = np.empty(capacity, np.uint16)
        self.genes = np.empty(capacity, self._gene_dtype)
        self._capacity = capacity

    def _grow(self, needed: int) -> None:
        capacity = max(needed, int(self._capacity * GROWTH) + 1)
        # In-place reallocation: no view of these arrays exists outside this object.
        self.values.resize(capacity, refcheck=False)
        self.genes.resize(capacity, refcheck=False)
        self._capacity = capacity

    def append(self, values: np.ndarray, genes: np.ndarray, expected_total: int) -> None:
        """Append one block's entries.

        Parameters
        ----------
        values : (n,) array
            Non-zero counts (integers up to 2**32 - 1).
        genes : (n,) int array
        expected_total : int
            The first call's estimate of all entries when no capacity was given.
        """
        if self.values is None:
            self._allocate(self._capacity if self._capacity is not None else expected_total)
        n = int(values.size)
        end = self.size + n
        if end > self._capacity:
            self._grow(end)
        if n and self.values.dtype == np.uint16 and float(values.max()) > 65_535:
            self.values = self.values.astype(np.uint32)   # rare: one copy, once
        self.values[self.size:end] = values
        self.genes[self.size:end] = genes
        self.size = end

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The written entries ``(values (N,) uint16/uint32, genes (N,))``, trimmed in
        place (the buffer is then empty)."""
        if self.values is None:
            self._allocate(0)
        values, genes = self.values, self.genes
        values.resize(self.size, refcheck=False)
        genes.resize(self.size, refcheck=False)
        self.values = self.genes = None
        return values, genes
