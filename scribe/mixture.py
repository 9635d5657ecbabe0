"""The mixture wrapper: any likelihood, K components, one cell from one component.

``log p(x_c) = logsumexp_k [log w_k + sum_g log f(x_cg | theta_k)]``. Which canonical
parameters carry a leading component axis follows from their scope and rank: gene
parameters always do in a mixture, shared ones only with component-specific
parameters, per-cell ones never.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from scribe.counts import SparseCounts
from scribe.parameterization import CELL, GENE, SHARED

# Rank of a canonical parameter without a component axis, by scope.
_BASE_NDIM = {SHARED: 0, GENE: 1, CELL: 1}


def component_axes(scopes: dict[str, str], params: dict) -> dict[str, int | None]:
    """Map each canonical parameter named in ``scopes`` to 0 (has component axis) or None."""
    axes = {}
    for name, scope in scopes.items():
        if name not in params:
            continue
        has_axis = scope != CELL and jnp.ndim(params[name]) == _BASE_NDIM[scope] + 1
        axes[name] = 0 if has_axis else None
    return axes


def _map_components(fn: Callable, scopes: dict[str, str], params: dict,
                    out_axes: int = 0) -> jnp.ndarray:
    """``fn(component_params)`` for every component, stacked along ``out_axes``."""
    axes = component_axes(scopes, params)
    component_params = {name: params[name] for name in axes}
    return jax.vmap(fn, in_axes=(axes,), out_axes=out_axes)(component_params)


def component_log_prob(
    log_prob: Callable, scopes: dict[str, str], counts: jnp.ndarray, params: dict
) -> jnp.ndarray:
    """Elementwise log-probability under each component, shape ``(C, G, K)``.

    Mixing weights are not included; callers add ``log w_k`` after summing over genes.
    """
    return _map_components(lambda p: log_prob(counts, p), scopes, params, out_axes=-1)


def select_components(scopes: dict[str, str], params: dict, assignment: jnp.ndarray) -> dict:
    """Per-cell parameters for a component assignment ``(C,)`` (e.g. ``r`` becomes ``(C, G)``)."""
    return {name: (params[name][assignment] if axis == 0 else params[name])
            for name, axis in component_axes(scopes, params).items()}


def component_cell_log_prob(likelihood, counts: SparseCounts, params: dict,
                             gene_weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Log-likelihood of each cell under each component, ``(C, K)``, without weights.

    The likelihood's joint evaluation over components when it has one
    (:meth:`~scribe.likelihood.Likelihood.component_cell_log_prob`), else one evaluation
    per component.
    """
    joint = likelihood.component_cell_log_prob(counts, params, gene_weights)
    if joint is not None:
        return joint
    return _map_components(lambda p: likelihood.cell_log_prob(counts, p, gene_weights),
                           likelihood.scopes(), params, out_axes=-1)


def component_gene_log_prob(likelihood, counts: SparseCounts, params: dict) -> jnp.ndarray:
    """Log-likelihood of each gene over all cells under each component, ``(G, K)``."""
    return _map_components(lambda p: likelihood.gene_log_prob(counts, p),
                           likelihood.scopes(), params, out_axes=-1)


def mixture_cell_log_prob(likelihood, counts: SparseCounts, params: dict) -> jnp.ndarray:
    """Marginal log-likelihood of each cell's count vector, ``(C,)``:
    ``logsumexp_k [log w_k + log f(x_c | theta_k)]``.

    Per component the likelihood is evaluated on the non-zeros (O(nnz) for the built-in
    likelihoods), so only ``(C, K)`` arrays are written.
    """
    per_component = component_cell_log_prob(likelihood, counts, params)
    return logsumexp(per_component + jnp.log(params["mixing_weights"]), axis=-1)


def dense_cell_log_prob_mixture(
    log_prob: Callable, scopes: dict[str, str], counts: jnp.ndarray, params: dict
) -> jnp.ndarray:
    """:func:`mixture_cell_log_prob` for dense counts ``(C, G)`` and an elementwise law.

    Genes are summed inside the map over components, so no ``(C, G, K)`` array is
    written.
    """
    per_component = _map_components(lambda p: jnp.sum(log_prob(counts, p), axis=-1),
                                    scopes, params)
    return logsumexp(per_component.T + jnp.log(params["mixing_weights"]), axis=-1)
