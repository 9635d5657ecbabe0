"""Shared machinery of the elementwise analyses (denoising, goodness of fit).

They need, per cell and gene, a quantity of the fitted law (a CDF, a posterior mean of
molecules), under the MAP or under posterior draws, on counts read in blocks of cells:

* :func:`prepared_counts` validates the user's counts against the fit;
* :func:`draws_for` gives canonical parameters with a leading draw axis (the MAP as one
  draw, or fresh posterior draws, never stored on the results);
* :func:`cell_blocks` yields dense ``(B, G)`` blocks of a sparse matrix, so memory is
  bounded by ``batch_size`` cells whatever the size of the data;
* :func:`per_component` and :func:`assignment_weights` apply a likelihood's elementwise
  method per mixture component and weight components by each cell's assignment
  probabilities ``P(k | x_c) = softmax_k(sum_g log f(x_cg | theta_k) + log w_k)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from scribe.data import prepare_counts
from scribe.likelihood import Likelihood
from scribe.mixture import component_axes
from scribe.progress import progress_blocks
from scribe.svi.lazy_counts import LazyCounts, lazy_counts
from scribe.svi.loglik import LogLikelihoodEvaluator

DEFAULT_BATCH_SIZE = 512
#: Key of the per-draw assignment probabilities among a block's parameters.
ASSIGNMENT = "assignment"


def likelihood_of(results, what: str) -> Likelihood:
    """The results' likelihood, or a ValueError saying why ``what`` cannot apply."""
    likelihood = results._view.spec.likelihood
    if likelihood is None:
        raise ValueError(
            f"{what} needs a model type composed from a scribe.Likelihood (it evaluates "
            f"the law per cell and gene); '{results.model_type}' is a whole-model plugin "
            f"that offers only its joint log_prob")
    return likelihood


def check_batch_size(batch_size) -> int:
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (cells per block), got "
                         f"{batch_size!r}")
    return int(batch_size)


def check_n_samples(n_samples, allow_none: bool = True) -> int | None:
    if n_samples is None and allow_none:
        return None
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) \
            or n_samples < 1:
        allowed = "a positive int or None (the MAP)" if allow_none else "a positive int"
        raise ValueError(f"n_samples must be {allowed}, got {n_samples!r}")
    return int(n_samples)


def read_counts(counts, layer: str | None = None):
    """Validated cells x genes counts (CSR or dense float32), without the fit-time
    warning about genes with no counts (reported when the model was fitted)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ genes have zero counts",
                                UserWarning)
        matrix, _ = prepare_counts(counts, layer=layer)
    return matrix


def prepared_counts(results, counts, layer: str | None = None):
    """Validated cells x genes counts (CSR or dense float32) matching the fit's shape;
    for counts on disk or lazy (backed AnnData, zarr, dask) a
    :class:`~scribe.svi.lazy_counts.LazyCounts` that reads (and validates) the cells it
    is sliced by, so that block-wise analyses never hold the whole matrix."""
    matrix = lazy_counts(counts, layer)
    if matrix is None:
        matrix = read_counts(counts, layer)
    n_cells, n_genes = matrix.shape
    if n_genes != results.n_genes:
        raise ValueError(f"counts have {n_genes} genes but the model was fitted to "
                         f"{results.n_genes} genes")
    if n_cells != results.n_cells:
        raise ValueError(f"counts have {n_cells} cells but the model was fitted to "
                         f"{results.n_cells} cells")
    return matrix


def draws_for(results, n_samples: int | None, rng_key) -> dict:
    """Canonical parameters ``{name: (S, ...)}``: the MAP (``S = 1``) or posterior draws."""
    if n_samples is None:
        point = results.get_map(use_mean=True, verbose=False)
        return {name: jnp.asarray(value)[None] for name, value in point.items()}
    if rng_key is None:
        rng_key = jax.random.PRNGKey(0)
    return dict(results._samplers.posterior(results.params, rng_key, n_samples))


def split_params(results, draws: dict) -> tuple[dict, dict]:
    """The parameters the likelihood needs, as (global, per-cell) dicts with draw axis."""
    evaluator = LogLikelihoodEvaluator(results._view)
    params = {n: jnp.asarray(draws[n], jnp.float32) for n in evaluator.parameter_names(draws)}
    cell_names = evaluator.cell_names(params, leading=1)
    return ({n: v for n, v in params.items() if n not in cell_names},
            {n: v for n, v in params.items() if n in cell_names})


def cell_blocks(matrix, batch_size: int, desc: str) -> Iterator[tuple[slice, np.ndarray]]:
    """``(cells, dense block (B, G) float32)`` over consecutive blocks of cells."""
    n_cells = matrix.shape[0]
    starts = range(0, n_cells, batch_size)
    for start in progress_blocks(starts, total=len(starts), desc=desc):
        cells = slice(start, min(start + batch_size, n_cells))
        block = matrix[cells]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        yield cells, block.astype(np.float32, copy=False)


def block_capacity(matrix, batch_size: int) -> int:
    """Most non-zeros in any block of ``batch_size`` cells (at least 1): one buffer size
    for every block, so the block program compiles once."""
    n_cells = matrix.shape[0]
    bounds = np.r_[np.arange(0, n_cells, batch_size), n_cells]
    if isinstance(matrix, LazyCounts):
        per_block = matrix.block_nonzeros(batch_size)
    elif sp.issparse(matrix):
        per_block = np.diff(np.asarray(matrix.indptr)[bounds])
    else:
        per_cell = np.count_nonzero(np.asarray(matrix), axis=1)
        per_block = np.add.reduceat(per_cell, bounds[:-1])
    return max(int(per_block.max()), 1)


def per_component(likelihood: Likelihood, fn: Callable, block, params: dict) -> jnp.ndarray:
    """``fn(block, component_params)`` for every component, stacked last: ``(B, G, K)``."""
    axes = component_axes(likelihood.scopes(), params)
    component_params = {name: params[name] for name in axes}
    return jax.vmap(lambda p: fn(block, p), in_axes=(axes,), out_axes=-1)(component_params)


def assignment_weights(results, matrix, draws: dict, batch_size: int,
                       devices=None) -> jnp.ndarray | None:
    """``P(k | x_c)`` under each draw, ``(S, C, K)``; None for a model without components.

    From the exact sparse per-cell log-likelihoods (:mod:`scribe.svi.loglik`, cost in
    proportion to the non-zeros), so no dense log-probability is needed for them.
    """
    if not results.model_config.is_mixture:
        return None
    log_lik = results._evaluate(matrix, draws, return_by="cell", split=True, weights=None,
                                weight_type=None, batch_size=batch_size, cells_axis=0,
                                dtype=jnp.float32, devices=devices)
    return jax.nn.softmax(log_lik, axis=-1)


def block_params(global_params: dict, cell_params: dict, cells: slice,
                 weights: jnp.ndarray | None = None) -> dict:
    """Parameters of one block of cells (per-cell ones sliced after the draw axis), with
    the block's assignment probabilities as ``"assignment"`` ``(S, B, K)`` if given."""
    params = {**global_params, **{n: v[:, cells] for n, v in cell_params.items()}}
    if weights is not None:
        params[ASSIGNMENT] = weights[:, cells]
    return params
