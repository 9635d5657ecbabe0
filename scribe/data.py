"""Reading count matrices from AnnData, NumPy, JAX or scipy sparse, with validation.

Counts must be 2-D, non-empty, finite, non-negative and integer-valued; an error names
the problem and the first offending cell and gene. The caller's object is never
modified: every conversion makes a new array.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp


class CountsError(ValueError):
    """Counts that scribe cannot model (wrong shape, NaN, negative, non-integer...)."""


def _is_anndata(data: Any) -> bool:
    return type(data).__name__ == "AnnData" and hasattr(data, "layers")


#: Cells read at a time from a backed (on-disk) AnnData matrix.
BACKED_BLOCK = 10_000


def _read_backed(matrix):
    """An on-disk matrix of a backed AnnData (h5py dataset or sparse dataset), in memory.

    Read in blocks of ``BACKED_BLOCK`` rows, so that the peak is the result plus one
    block (a sparse dataset is never densified).
    """
    n_rows = int(matrix.shape[0])
    blocks = [matrix[start:min(start + BACKED_BLOCK, n_rows)]
              for start in range(0, n_rows, BACKED_BLOCK)]
    if any(sp.issparse(block) for block in blocks):
        return sp.vstack([sp.csr_matrix(block) for block in blocks], format="csr")
    return np.concatenate([np.asarray(block) for block in blocks], axis=0)


def _is_in_memory(matrix) -> bool:
    # An h5py dataset has __array__ but lives in a file; anndata's sparse datasets have
    # neither: both are read in blocks.
    return sp.issparse(matrix) or isinstance(matrix, np.ndarray) or (
        hasattr(matrix, "__array__") and not hasattr(matrix, "file"))


def _select_matrix(data: Any, layer: str | None):
    if _is_anndata(data):
        if layer is None:
            if data.X is None:
                raise CountsError("the AnnData has no .X; pass layer= to choose a layer")
            if getattr(data, "isbacked", False) and not _is_in_memory(data.X):
                return _read_backed(data.X)
            return data.X
        if layer not in data.layers:
            raise CountsError(
                f"layer '{layer}' not found in the AnnData; its layers: "
                f"{', '.join(data.layers.keys()) or '(none)'}"
            )
        return data.layers[layer]
    if layer is not None:
        raise CountsError("layer= applies to AnnData input only")
    return data


def _first_bad(matrix, mask_fn) -> tuple[int, int] | None:
    """(row, col) of the first stored entry where ``mask_fn(values)`` holds, else None."""
    if sp.issparse(matrix):
        coo = matrix.tocoo()
        bad = np.flatnonzero(mask_fn(coo.data))
        if bad.size == 0:
            return None
        order = np.lexsort((coo.col[bad], coo.row[bad]))
        first = bad[order[0]]
        return int(coo.row[first]), int(coo.col[first])
    bad = np.argwhere(mask_fn(matrix))
    return (int(bad[0, 0]), int(bad[0, 1])) if bad.size else None


def _check_values(matrix, cells_axis: int) -> None:
    values = matrix.data if sp.issparse(matrix) else matrix
    dtype = values.dtype
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise CountsError(f"counts must be real numbers, got dtype {values.dtype}")
    checks = (
        ("NaN or infinite", lambda v: ~np.isfinite(v)),
        ("negative", lambda v: v < 0),
        ("non-integer", lambda v: v != np.round(v)),
    )
    for problem, mask_fn in checks:
        where = _first_bad(matrix, mask_fn)
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


def prepare_counts(
    data: Any, layer: str | None = None, cells_axis: int = 0, warn_zero_genes: bool = True
) -> tuple[np.ndarray | sp.csr_matrix, Any]:
    """Validate counts and return them cells-as-rows, with the AnnData if one was given.

    Parameters
    ----------
    data : AnnData, numpy.ndarray, jax.Array or scipy.sparse matrix/array
        Raw UMI counts.
    layer : str, optional
        AnnData layer to read; None reads ``.X``.
    cells_axis : {0, 1}
        0 if cells are rows, 1 if cells are columns.
    warn_zero_genes : bool, default True
        Warn about genes with no counts (fitting warns; analyses of the same data don't).

    Returns
    -------
    counts : numpy.ndarray of float32, shape (C, G), or scipy.sparse.csr_matrix
        A new array; the input is untouched. Sparse input stays sparse (CSR). A backed
        AnnData's ``.X`` (dense or sparse) is read into memory in blocks of cells.
    adata : AnnData or None
        The AnnData given; for a pandas DataFrame, an AnnData without data whose
        ``obs`` / ``var`` are indexed by the frame's row / column names (as strings).

    Raises
    ------
    CountsError
        Wrong dimensionality, empty, non-numeric, NaN/inf, negative or non-integer.
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
        matrix = sp.csr_matrix(matrix, copy=True)  # never sort or cast the caller's matrix
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
        matrix = matrix.T
    if sp.issparse(matrix):
        counts = sp.csr_matrix(matrix, dtype=np.float32)
        counts.sum_duplicates()
        gene_totals = np.asarray(counts.sum(axis=0)).ravel()
    else:
        counts = np.array(matrix, dtype=np.float32)  # always a copy
        gene_totals = counts.sum(axis=0)
    n_zero = int(np.sum(gene_totals == 0))
    if n_zero and warn_zero_genes:
        warnings.warn(
            f"{n_zero} of {counts.shape[1]} genes have zero counts in every cell; their "
            f"posteriors will follow the prior", UserWarning, stacklevel=3)
    return counts, adata


def to_dense(counts) -> np.ndarray:
    """Dense float32 copy of prepared counts."""
    return counts.toarray() if sp.issparse(counts) else np.asarray(counts, np.float32)
