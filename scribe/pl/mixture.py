"""Mixture fits: cells' assignment probabilities (sorted heatmap) and component weights."""

from __future__ import annotations

import numpy as np

from scribe.pl._axes import get_axes


def assignment_order(probabilities: np.ndarray) -> np.ndarray:
    """Cell order for the heatmap: by most probable component, then by its probability
    (highest first).

    Parameters
    ----------
    probabilities : numpy.ndarray, shape (C, K)

    Returns
    -------
    numpy.ndarray of int, shape (C,)
    """
    probabilities = _check_probabilities(probabilities)
    best = probabilities.argmax(axis=1)
    return np.lexsort((-probabilities.max(axis=1), best))


def _check_probabilities(probabilities) -> np.ndarray:
    values = np.asarray(probabilities, dtype=float)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (n_cells, n_components >= 2), got "
                         f"{values.shape}")
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError("probabilities must be finite and non-negative")
    return values


def assignments(probabilities, ax=None):
    """Heatmap of assignment probabilities, cells (rows) sorted by :func:`assignment_order`.

    Parameters
    ----------
    probabilities : numpy.ndarray, shape (C, K)
        E.g. ``results.cell_type_probabilities_map(counts)["probabilities"]``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Its one image holds ``probabilities[order]``.
    """
    values = _check_probabilities(probabilities)
    ax = get_axes(ax, (4, 5))
    image = ax.imshow(values[assignment_order(values)], aspect="auto", vmin=0, vmax=1,
                      cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]))
    ax.set_xlabel("component")
    ax.set_ylabel("cells (sorted)")
    ax.figure.colorbar(image, ax=ax, label="assignment probability")
    return ax


def mixture_weights(weights, ax=None):
    """Bar chart of the mixing weights.

    Parameters
    ----------
    weights : numpy.ndarray, shape (K,)
        E.g. ``results.get_map()["mixing_weights"]``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    values = np.asarray(weights, dtype=float).ravel()
    if values.size < 2 or not np.all(np.isfinite(values)) or values.min() < 0:
        raise ValueError(f"weights must be >= 2 finite non-negative values, got {values}")
    ax = get_axes(ax, (4, 3))
    ax.bar(np.arange(values.size), values, color="C0")
    ax.set_xticks(range(values.size))
    ax.set_xlabel("component")
    ax.set_ylabel("mixing weight")
    return ax
