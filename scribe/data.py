"""Reading count matrices from AnnData, NumPy, JAX or scipy sparse, with validation.

Counts must be 2-D, non-empty, finite, non-negative integers no larger than
:data:`MAX_COUNT`; an error names the problem and the first offending cell and gene.
Validation reads the entries in chunks (no full-size temporaries). The caller's object is
never modified: a CSR that is already canonical (sorted, no duplicates, no stored zeros)
of the prepared dtype is read as it is, through a new matrix object sharing its buffers
(read-only by contract); anything else is converted into a new array.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

#: The largest supported count, ``2**31 - 1``: counts are kept exactly as integers
#: (large entries as int32 on the device) and every statistic stays finite in float32.
MAX_COUNT = 2**31 - 1
#: Counts up to ``2**24`` are exact in float32; above it the prepared counts are float64.
FLOAT32_EXACT = 2**24

#: Entries per validation / statistics chunk (16 MB of float32).
CHUNK = 1 << 22


class CountsError(ValueError):
    """Counts that scribe cannot model (wrong shape, NaN, negative, non-integer...)."""


def chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _is_anndata(data: Any) -> bool:
    return type(data).__name__ == "AnnData" and hasattr(data, "layers")


#: Cells read at a time from a backed (on-disk) AnnData matrix.
BACKED_BLOCK = 10_000


def _is_in_memory(matrix) -> bool:
    # An h5py dataset has __array__ but lives in a file; anndata's sparse datasets have
    # neither: both are read in blocks.
    return sp.issparse(matrix) or isinstance(matrix, np.ndarray) or (
        hasattr(matrix, "__array__") and not hasattr(matrix, "file"))


def _select_matrix(data: Any, layer: str | None):
    from scribe.cell_blocks import _is_dask, read_in_memory

    if _is_anndata(data):
        if layer is None:
            if data.X is None:
                raise CountsError("the AnnData has no .X; pass layer= to choose a layer")
            matrix = data.X
        elif layer not in data.layers:
            raise CountsError(
                f"layer '{layer}' not found in the AnnData; its layers: "
                f"{', '.join(data.layers.keys()) or '(none)'}"
            )
        else:
            matrix = data.layers[layer]
        if _is_dask(matrix) or not _is_in_memory(matrix):
            # Backed, zarr or dask: read in blocks of cells (never densified).
            return read_in_memory(matrix, BACKED_BLOCK)
        return matrix
    if layer is not None:
        raise CountsError("layer= applies to AnnData input only")
    return read_in_memory(data, BACKED_BLOCK) if _is_dask(data) else data


_CHECKS = (
    ("NaN or infinite", lambda v: ~np.isfinite(v)),
    ("negative", lambda v: v < 0),
    ("non-integer", lambda v: v != np.floor(v)),
)


def _applicable_checks(dtype) -> tuple:
    if np.issubdtype(dtype, np.integer):   # integers are finite and whole
        return _CHECKS[1:2] if np.issubdtype(dtype, np.signedinteger) else ()
    return _CHECKS


def _entry_positions(matrix, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the stored entries at ``positions`` of a CSR/CSC/COO matrix."""
    if matrix.format == "coo":
        return matrix.row[positions], matrix.col[positions]
    major = np.searchsorted(matrix.indptr, positions, side="right") - 1
    minor = matrix.indices[positions]
    return (major, minor) if matrix.format == "csr" else (minor, major)


def _first_bad_sparse(matrix, mask_fn) -> tuple[int, int] | None:
    """(row, col), first in row-major order, of a stored entry where ``mask_fn`` holds."""
    best = None
    for part in chunks(matrix.data.shape[0]):
        bad = np.flatnonzero(mask_fn(matrix.data[part]))
        if bad.size == 0:
            continue
        rows, cols = _entry_positions(matrix, bad + part.start)
        first = np.lexsort((cols, rows))[0]
        candidate = (int(rows[first]), int(cols[first]))
        best = candidate if best is None else min(best, candidate)
    return best


def _first_bad_dense(matrix: np.ndarray, mask_fn) -> tuple[int, int] | None:
    rows_per_chunk = max(1, CHUNK // max(matrix.shape[1], 1))
    for part in chunks(matrix.shape[0], rows_per_chunk):
        bad = np.argwhere(mask_fn(matrix[part]))
        if bad.size:
            return int(bad[0, 0]) + part.start, int(bad[0, 1])
    return None


def _check_values(matrix, cells_axis: int) -> None:
    values = matrix.data if sp.issparse(matrix) else matrix
    dtype = values.dtype
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise CountsError(f"counts must be real numbers, got dtype {values.dtype}")
    for problem, mask_fn in _applicable_checks(dtype):
        where = (_first_bad_sparse(matrix, mask_fn) if sp.issparse(matrix)
                 else _first_bad_dense(matrix, mask_fn))
        if where is not None:
            row, col = where
            cell, gene = (row, col) if cells_axis == 0 else (col, row)
            value = matrix[row, col]
            raise CountsError(
                f"counts must be finite non-negative integers: found a {problem} value "
                f"({value}) at cell {cell}, gene {gene}"
            )


def _frame_names(frame, cells_axis: int):
    """An AnnData without data carrying a DataFrame's row and column names as obs/var."""
    import anndata
    import pandas as pd

    cells, genes = (frame.index, frame.columns) if cells_axis == 0 else (
        frame.columns, frame.index)
    obs = pd.DataFrame(index=pd.Index(cells.astype(str), name=cells.name))
    var = pd.DataFrame(index=pd.Index(genes.astype(str), name=genes.name))
    return anndata.AnnData(obs=obs, var=var)


def _max_count(counts) -> float:
    values = counts.data if sp.issparse(counts) else counts
    return float(np.max(values)) if values.size else 0.0


def _check_range(counts, maximum: float) -> None:
    """Refuse counts above :data:`MAX_COUNT`, naming the first (cells-as-rows) offender."""
    if maximum <= MAX_COUNT:
        return
    too_large = lambda v: v > MAX_COUNT  # noqa: E731
    row, col = (_first_bad_sparse(counts, too_large) if sp.issparse(counts)
                else _first_bad_dense(counts, too_large))
    raise CountsError(
        f"counts must be at most {MAX_COUNT:,} (2**31 - 1, kept exactly as integers): "
        f"found {counts[row, col]:.6g} at cell {row}, gene {col}")


def _shares(csr: sp.csr_matrix, data: np.ndarray | None = None) -> sp.csr_matrix:
    """A new CSR object over the buffers of ``csr`` (``data`` replacing its values)."""
    return sp.csr_matrix((csr.data if data is None else data, csr.indices, csr.indptr),
                         shape=csr.shape, copy=False)


def _canonical_csr(matrix) -> sp.csr_matrix:
    """Cells-as-rows CSR with sorted unique indices and no stored zeros; shares the
    caller's buffers when the input already is one, never writes to them."""
    if sp.issparse(matrix) and matrix.format == "csr":
        shallow = _shares(matrix)    # scipy caches format flags on the object it checks
        zeros = sum(int(np.count_nonzero(matrix.data[p] == 0))
                    for p in chunks(matrix.data.shape[0]))
        if shallow.has_canonical_format and zeros == 0:
            return shallow
    if not sp.issparse(matrix):
        matrix = np.asarray(matrix)
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _prepared_dtype(maximum: float):
    return np.float32 if maximum <= FLOAT32_EXACT else np.float64


def prepare_counts(
    data: Any, layer: str | None = None, cells_axis: int = 0, warn_zero_genes: bool = True
) -> tuple[np.ndarray | sp.csr_matrix, Any]:
    """Validate counts and return them cells-as-rows, with the AnnData if one was given.

    Parameters
    ----------
    data : AnnData, numpy.ndarray, jax.Array or scipy.sparse matrix/array
        Raw UMI counts: integers in ``[0, MAX_COUNT]``.
    layer : str, optional
        AnnData layer to read; None reads ``.X``.
    cells_axis : {0, 1}
        0 if cells are rows, 1 if cells are columns.
    warn_zero_genes : bool, default True
        Warn about genes with no counts (fitting warns; analyses of the same data don't).

    Returns
    -------
    counts : numpy.ndarray or scipy.sparse.csr_matrix, shape (C, G)
        float32 (float64 when a count exceeds ``2**24``, so that every count is exact).
        Dense input gives a new array. Sparse input gives a canonical CSR (sorted unique
        indices, no stored zeros); it shares the caller's buffers when they already are
        one, so it must only be read. A backed AnnData's ``.X`` (dense or sparse) is read
        into memory in blocks of cells.
    adata : AnnData or None
        The AnnData given; for a pandas DataFrame, an AnnData without data whose
        ``obs`` / ``var`` are indexed by the frame's row / column names (as strings).

    Raises
    ------
    CountsError
        Wrong dimensionality, empty, non-numeric, NaN/inf, negative, non-integer or above
        :data:`MAX_COUNT`.
    """
    if isinstance(cells_axis, bool) or cells_axis not in (0, 1):
        raise CountsError(f"cells_axis must be 0 (cells are rows) or 1, got {cells_axis!r}")
    adata = data if _is_anndata(data) else None
    if adata is not None and cells_axis != 0:
        raise CountsError("AnnData stores cells as rows: cells_axis must be 0")
    if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
        if layer is not None:
            raise CountsError("layer= applies to AnnData input only")
        adata, data = _frame_names(data, cells_axis), data.to_numpy()
    matrix = _select_matrix(data, layer)
    if sp.issparse(matrix):
        if matrix.format not in ("csr", "csc"):
            matrix = sp.csr_matrix(matrix)   # a new object (COO: duplicates summed)
        elif not isinstance(matrix, sp.spmatrix):
            matrix = (sp.csr_matrix if matrix.format == "csr" else sp.csc_matrix)(
                (matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape, copy=False)
    else:
        matrix = np.asarray(matrix)
        if matrix.dtype == object:
            raise CountsError("counts must be a numeric array, got dtype object")
    if matrix.ndim != 2:
        raise CountsError(f"counts must be a 2-D cells x genes matrix, got {matrix.ndim}-D "
                          f"with shape {matrix.shape}")
    if 0 in matrix.shape:
        raise CountsError(f"counts are empty: shape {matrix.shape}")
    _check_values(matrix, cells_axis)
    if cells_axis == 1:
        matrix = matrix.T            # CSC <-> CSR: a view, no copy
    if sp.issparse(matrix):
        counts = _canonical_csr(matrix)
        maximum = _max_count(counts)
        _check_range(counts, maximum)
        dtype = _prepared_dtype(maximum)
        if counts.dtype != dtype:
            data = np.empty(counts.data.shape, dtype)
            for part in chunks(data.shape[0]):
                data[part] = counts.data[part]
            counts = _shares(counts, data)
        expressed = np.zeros(counts.shape[1], bool)
        for part in chunks(counts.indices.shape[0]):
            expressed[counts.indices[part]] = True
    else:
        maximum = _max_count(matrix)
        _check_range(matrix, maximum)
        counts = np.array(matrix, dtype=_prepared_dtype(maximum))  # always a copy
        expressed = counts.max(axis=0) > 0     # no (C, G) temporary
    n_zero = int(np.sum(~expressed))
    if n_zero and warn_zero_genes:
        warnings.warn(
            f"{n_zero} of {counts.shape[1]} genes have zero counts in every cell; their "
            f"posteriors will follow the prior", UserWarning, stacklevel=3)
    return counts, adata


def to_dense(counts) -> np.ndarray:
    """Dense copy of prepared counts (their dtype: float32, or float64 for huge counts)."""
    return counts.toarray() if sp.issparse(counts) else np.array(counts)
