"""Count matrices read as consecutive blocks of cells, wherever they live.

One reader for every source :func:`scribe.fit` accepts, so that fitting makes a single
pass over the counts whether they are in memory or on disk:

* in memory: numpy / JAX arrays, scipy sparse matrices and arrays, pandas DataFrames;
* on disk: the ``.X`` of a backed AnnData (``anndata.read_h5ad(path, backed="r")``, an
  h5py dataset or anndata's sparse dataset), a zarr array, or anndata's sparse dataset
  of a zarr group;
* lazy: a ``dask.array.Array`` (``data`` itself, or the ``.X`` / layer of an AnnData,
  e.g. from ``anndata.experimental.read_lazy``); its blocks are computed one row-block at
  a time with dask's current scheduler (a distributed client, when one is active).

Each block is returned as a validated, canonical CSR (sorted unique indices, no stored
zeros); validation errors name the cell and gene in the whole matrix. Only one source
block (plus its CSR) is held at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from scribe.data import (
    MAX_COUNT,
    CountsError,
    _check_values,
    _first_bad_sparse,
    _frame_names,
    _is_anndata,
)

#: Cells per block: with a 20,000-gene dense source a block is 10,000 x 20,000 float32,
#: 800 MB; sparse sources hold ~nnz/C x 12 bytes per cell (a few MB).
DEFAULT_BLOCK_CELLS = 10_000
#: Non-zeros per block at most, where the source tells how many it stores: the pass
#: holds ~64 bytes of float64 / int64 temporaries per entry of a block, so 10,000 cells
#: of a 20,000-gene atlas (~15 M entries) would need ~1 GB of them.
BLOCK_ENTRIES = 1 << 22


def _is_dask(matrix: Any) -> bool:
    return type(matrix).__module__.split(".")[0] == "dask" and hasattr(matrix, "blocks")


def _is_lazy(matrix: Any) -> bool:
    """On disk or lazy (read in blocks), as opposed to an in-memory array."""
    if _is_dask(matrix):
        return True
    if sp.issparse(matrix) or isinstance(matrix, np.ndarray):
        return False
    # h5py datasets, zarr arrays, anndata's sparse datasets: sliceable, not in memory.
    return hasattr(matrix, "shape") and hasattr(matrix, "__getitem__") and not (
        hasattr(matrix, "__jax_array__") or type(matrix).__module__.startswith("jax"))


class CellBlocks:
    """A cells x genes count matrix read in blocks of consecutive cells.

    Parameters
    ----------
    matrix : array-like, scipy sparse, h5py/zarr dataset, sparse dataset or dask array
        Counts; cells are rows after ``cells_axis`` is applied. Never modified.
    cells_axis : {0, 1}
    block_cells : int, default DEFAULT_BLOCK_CELLS
        Cells per block handed out (a dask source is computed one of its own row-blocks
        at a time and then split).

    Attributes
    ----------
    shape : (int, int)
        ``(C, G)``.
    lazy : bool
        Whether the counts are read from disk or computed (not held in memory).
    """

    def __init__(self, matrix: Any, cells_axis: int = 0,
                 block_cells: int = DEFAULT_BLOCK_CELLS):
        if isinstance(block_cells, bool) or not isinstance(block_cells, int | np.integer) \
                or block_cells < 1:
            raise ValueError(f"block_cells must be a positive integer, got {block_cells!r}")
        self.block_cells = int(block_cells)
        self.lazy = _is_lazy(matrix)
        shape = tuple(int(n) for n in getattr(matrix, "shape", np.shape(matrix)))
        if len(shape) != 2:
            raise CountsError(f"counts must be a 2-D cells x genes matrix, got "
                              f"{len(shape)}-D with shape {shape}")
        if 0 in shape:
            raise CountsError(f"counts are empty: shape {shape}")
        if cells_axis == 1:
            matrix = matrix.T    # numpy / scipy / dask: a view (on-disk ones are refused)
            shape = shape[::-1]
        if not self.lazy:
            matrix = _in_memory(matrix)   # after the transpose: CSC.T is a CSR, no copy
        self._matrix = matrix
        self.shape = shape
        self._check_dtype(getattr(matrix, "dtype", None))

    @staticmethod
    def _check_dtype(dtype) -> None:
        if dtype is None:
            return
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise CountsError(f"counts must be real numbers, got dtype {dtype}")

    def stored_entries(self) -> int | None:
        """Entries the source stores, an upper bound of its non-zeros (stored zeros are
        dropped by the reader), when it is known without reading the values: a sparse
        matrix in memory, or the last row pointer of a backed / zarr sparse dataset.
        None for dense and dask sources (a dense array in memory is counted)."""
        matrix = self._matrix
        if sp.issparse(matrix):
            return int(matrix.nnz)
        if isinstance(matrix, np.ndarray):
            return int(np.count_nonzero(matrix))
        group = getattr(matrix, "group", None)
        if getattr(matrix, "format", None) == "csr" and group is not None:
            try:
                return int(group["indptr"][-1])
            except (KeyError, TypeError, IndexError):
                return None
        return None

    def bound_block_entries(self, max_entries: int = BLOCK_ENTRIES) -> None:
        """Fewer cells per block where the average block would hold more than
        ``max_entries`` stored entries (sources that tell their count only)."""
        stored = self.stored_entries()
        if stored:
            per_block = int(max_entries * self.shape[0] // stored)
            self.block_cells = max(1, min(self.block_cells, per_block))

    # ---- reading ---------------------------------------------------------------------------
    def _source_blocks(self) -> Iterator[tuple[int, Any]]:
        """``(first cell, block)`` of the source's own reading unit."""
        matrix = self._matrix
        if _is_dask(matrix):
            start = 0
            for i in range(matrix.numblocks[0]):
                block = matrix.blocks[i].compute()   # all column blocks of row-block i
                yield start, block
                start += int(block.shape[0])
            return
        for start in range(0, self.shape[0], self.block_cells):
            yield start, matrix[start:min(start + self.block_cells, self.shape[0])]

    def __iter__(self) -> Iterator[tuple[int, sp.csr_matrix]]:
        """``(first cell, canonical CSR block)`` over all cells, in order."""
        for start, block in self._source_blocks():
            for offset in range(0, int(block.shape[0]), self.block_cells):
                part = block[offset:offset + self.block_cells]
                yield start + offset, _checked_csr(part, start + offset)


def _in_memory(matrix: Any):
    """numpy / scipy view of in-memory counts (JAX arrays are copied to the host)."""
    if sp.issparse(matrix):
        if matrix.format == "csr":
            return matrix
        return sp.csr_matrix(matrix)   # row blocks of CSC/COO: convert once (a new object)
    array = np.asarray(matrix)
    if array.dtype == object:
        raise CountsError("counts must be a numeric array, got dtype object")
    return array


def _checked_csr(block: Any, first_cell: int) -> sp.csr_matrix:
    """A validated canonical CSR of ``block`` (a new object; the source is not written)."""
    if sp.issparse(block):
        csr = sp.csr_matrix(block, copy=True)
    else:
        block = np.asarray(block)
        CellBlocks._check_dtype(block.dtype)
        csr = None
    try:
        _check_values(csr if csr is not None else block, 0)
    except CountsError as error:
        raise CountsError(_shift_cell(str(error), first_cell)) from None
    if csr is None:
        csr = sp.csr_matrix(block)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if csr.nnz and float(csr.data.max()) > MAX_COUNT:
        row, col = _first_bad_sparse(csr, lambda v: v.astype(np.float64) > MAX_COUNT)
        raise CountsError(
            f"counts must be at most {MAX_COUNT:,} (2**31 - 1, kept exactly as integers): "
            f"found {csr[row, col]:.6g} at cell {row + first_cell}, gene {col}")
    return csr


def _shift_cell(message: str, first_cell: int) -> str:
    """Rewrite ``at cell i`` in a block's validation message to the whole matrix's cell."""
    head, sep, tail = message.rpartition("at cell ")
    if not sep:
        return message
    number, _, rest = tail.partition(",")
    return f"{head}{sep}{int(number) + first_cell},{rest}"


def open_counts(data: Any, layer: str | None = None, cells_axis: int = 0,
                block_cells: int = DEFAULT_BLOCK_CELLS) -> tuple[CellBlocks, Any]:
    """The counts of ``data`` as :class:`CellBlocks`, with the AnnData if one was given.

    Parameters
    ----------
    data : AnnData (in memory, backed or lazy), array-like, scipy sparse, DataFrame,
        h5py/zarr array or dask array
    layer : str, optional
        AnnData layer; None reads ``.X`` (scverse convention).
    cells_axis : {0, 1}
        AnnData input must have cells as rows (0); an on-disk array must too.
    block_cells : int

    Returns
    -------
    blocks : CellBlocks
    adata : AnnData or None
        As :func:`scribe.data.prepare_counts` returns it (a DataFrame's names included).

    Raises
    ------
    CountsError
        As :func:`scribe.data.prepare_counts`, before any block is read.
    """
    if isinstance(cells_axis, bool) or cells_axis not in (0, 1):
        raise CountsError(f"cells_axis must be 0 (cells are rows) or 1, got {cells_axis!r}")
    adata = data if _is_anndata(data) else None
    if adata is not None:
        if cells_axis != 0:
            raise CountsError("AnnData stores cells as rows: cells_axis must be 0")
        if layer is None:
            if data.X is None:
                raise CountsError("the AnnData has no .X; pass layer= to choose a layer")
            matrix = data.X
        elif layer not in data.layers:
            raise CountsError(
                f"layer '{layer}' not found in the AnnData; its layers: "
                f"{', '.join(data.layers.keys()) or '(none)'}")
        else:
            matrix = data.layers[layer]
    else:
        if layer is not None:
            raise CountsError("layer= applies to AnnData input only")
        matrix = data
        if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
            adata, matrix = _frame_names(data, cells_axis), data.to_numpy()
    if cells_axis == 1 and _is_lazy(matrix) and not _is_dask(matrix):
        raise CountsError("an on-disk matrix must store cells as rows: cells_axis must be 0 "
                          "(wrap it in dask.array.from_array(...) to transpose it lazily)")
    return CellBlocks(matrix, cells_axis, block_cells), adata


def is_lazy_counts(data: Any, layer: str | None = None) -> bool:
    """Whether ``data`` (or its ``.X`` / layer) is on disk or lazy rather than in memory."""
    if _is_anndata(data):
        matrix = data.X if layer is None else data.layers.get(layer) \
            if layer in data.layers else None
        return matrix is not None and _is_lazy(matrix)
    return _is_lazy(data) and type(data).__name__ != "DataFrame"


def read_in_memory(matrix: Any, block_cells: int = DEFAULT_BLOCK_CELLS):
    """An on-disk or lazy matrix read into memory block by block: a CSR when any block is
    sparse (never densified), else a dense array. Peak: the result plus one block.
    Values are not validated here (:func:`scribe.data.prepare_counts` does)."""
    reader = CellBlocks.__new__(CellBlocks)
    reader._matrix, reader.block_cells = matrix, int(block_cells)
    reader.shape = tuple(int(n) for n in matrix.shape)
    blocks = [block for _, block in reader._source_blocks()]
    if any(sp.issparse(block) for block in blocks):
        return sp.vstack([sp.csr_matrix(block) for block in blocks], format="csr")
    return np.concatenate([np.asarray(block) for block in blocks], axis=0)
