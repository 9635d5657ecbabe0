"""``scribe.compare``: fits of different model types to the same counts, by PSIS-LOO.

Cells are the observations: each fit's per-cell log-likelihood ``log p(x_c | theta_s)``
under ``n_samples`` posterior draws goes to ArviZ's ``compare`` (through
:mod:`scribe.svi.idata`, the only module that talks to ArviZ), which ranks the fits by
``elpd_loo`` and gives stacking weights. Cells whose Pareto shape ``k`` exceeds 0.7 make
the PSIS estimate unreliable: the table's ``warning`` column says so per fit, a
``UserWarning`` names the fits and ``table.attrs["pareto_k_bad"]`` counts the cells.

A comparison is only valid between fits to the same cells and genes, evaluated on the
same counts: anything else is refused with a ValueError naming the first difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from scribe.parameterization import CELL, GENE
from scribe.svi import idata, pointwise

METHODS = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")


def _check_same_axes(fits: Mapping) -> None:
    names = list(fits)
    first = fits[names[0]]
    for name in names[1:]:
        other = fits[name]
        for dim, size_a, size_b in ((CELL, first.n_cells, other.n_cells),
                                    (GENE, first.n_genes, other.n_genes)):
            what = "cells" if dim == CELL else "genes"
            if size_a != size_b:
                raise ValueError(f"the comparison is not valid: fit {names[0]!r} has "
                                 f"{size_a} {what}, fit {name!r} {size_b}")
            coords_a = np.asarray(first._axes().coords[dim]).astype(str)
            coords_b = np.asarray(other._axes().coords[dim]).astype(str)
            differ = np.flatnonzero(coords_a != coords_b)
            if differ.size:
                i = int(differ[0])
                raise ValueError(f"the comparison is not valid: {what} differ at position "
                                 f"{i}: {coords_a[i]!r} in fit {names[0]!r}, "
                                 f"{coords_b[i]!r} in fit {name!r}")


def _check_counts(name: str, results, matrix) -> None:
    """Fits that stored their counts must have been fitted to these."""
    stored = results.observed_counts
    if stored is None:
        return
    given = np.asarray(matrix.sum(axis=1)).ravel()
    kept = np.asarray(stored.sum(axis=1)).ravel()
    differ = np.flatnonzero(np.abs(given - kept) > 0.5)
    if differ.size:
        raise ValueError(f"the comparison is not valid: fit {name!r} was fitted to other "
                         f"counts (cell {int(differ[0])} has {kept[differ[0]]:g} counts "
                         f"there, {given[differ[0]]:g} here)")


def compare(fits: Mapping, counts, *, n_samples: int = 100, batch_size: int | None = None,
            method: str = "stacking", rng_key=None) -> pd.DataFrame:
    """Rank fits to the same counts by PSIS-LOO over cells (ArviZ's ``compare``).

    Parameters
    ----------
    fits : dict of str to ScribeSVIResults
        At least two fits to the same cells and genes (any model types).
    counts : AnnData (``.X``), array or scipy sparse matrix, shape (C, G)
        The counts all of them were fitted to.
    n_samples : int, default 100
        Posterior draws per fit (fresh, not stored: the fits are not modified).
    batch_size : int, optional
        Cells per block of the log-likelihood evaluation (memory bound).
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}, default "stacking"
        ArviZ's model weights.
    rng_key : jax PRNG key, optional

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table indexed by fit name (``rank``, ``elpd_loo``, ``p_loo``,
        ``elpd_diff``, ``weight``, ``se``, ``dse``, ``warning``, ``scale``);
        ``attrs["pareto_k_bad"]``: per fit, the number of cells with Pareto ``k > 0.7``;
        ``attrs["n_samples"]``.

    Raises
    ------
    TypeError, ValueError
        Fewer than two fits, something other than results, fits to other cells, genes or
        counts, bad options.
    """
    from scribe.svi.results import ScribeSVIResults

    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise ValueError("fits must be a dict {name: results} of at least two fits")
    for name, results in fits.items():
        if not isinstance(name, str):
            raise TypeError(f"fit names must be str, got {name!r}")
        if not isinstance(results, ScribeSVIResults):
            raise TypeError(f"fit {name!r} is a {type(results).__name__}, not results")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n_samples = pointwise.check_n_samples(n_samples, allow_none=False)
    if batch_size is not None:
        batch_size = pointwise.check_batch_size(batch_size)
    _check_same_axes(fits)
    first = next(iter(fits.values()))
    matrix = pointwise.prepared_counts(first, counts)
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    for name, results in fits.items():
        _check_counts(name, results, matrix)
    log_likelihoods = {}
    for index, (name, results) in enumerate(fits.items()):
        draws = pointwise.draws_for(results, n_samples, jax.random.fold_in(key, index))
        log_likelihoods[name] = np.asarray(results._evaluate(
            matrix, draws, return_by="cell", split=False, weights=None, weight_type=None,
            batch_size=batch_size, cells_axis=0, dtype=jnp.float32))
    table, pareto_k = idata.compare_loo(log_likelihoods, method=method)
    bad = {name: int(np.sum(k > idata.PARETO_K_THRESHOLD)) for name, k in pareto_k.items()}
    flagged = [f"{name} ({count} cells)" for name, count in bad.items() if count]
    if flagged:
        warnings.warn(f"PSIS-LOO may be unreliable: Pareto k > {idata.PARETO_K_THRESHOLD} "
                      f"for {', '.join(flagged)}", UserWarning, stacklevel=2)
    table.attrs.update(pareto_k_bad=bad, n_samples=n_samples)
    return table
