"""Shared helpers of the plots: a fresh Axes when none is given, counts as a matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def get_axes(ax=None, figsize: tuple[float, float] = (5.0, 4.0)):
    """``ax``, or the Axes of a new Figure (created without pyplot's global state)."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


def counts_matrix(results, counts):
    """``counts`` (AnnData, array or sparse) cells x genes, or the fit's stored counts.

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_matrix, shape (C, G)
    """
    from scribe.data import prepare_counts

    if counts is None:
        stored = None if results is None else results.observed_counts
        if stored is None:
            raise ValueError("counts is required: the fit holds no observed counts (fit with "
                             "store_counts=True or pass counts=)")
        counts = stored
    matrix, _ = prepare_counts(counts)
    if results is not None and matrix.shape != (results.n_cells, results.n_genes):
        raise ValueError(f"counts have shape {matrix.shape}, but the fit is of "
                         f"({results.n_cells}, {results.n_genes}) cells x genes")
    return matrix


def row_sums(matrix) -> np.ndarray:
    """Per-row totals of a dense or sparse matrix, shape (C,)."""
    return np.asarray(matrix.sum(axis=1)).ravel() if sp.issparse(matrix) \
        else np.asarray(matrix).sum(axis=1)


def check_level(level: float) -> float:
    if not isinstance(level, int | float) or isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"level must be a probability in (0, 1), got {level!r}")
    return float(level)
