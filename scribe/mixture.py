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


def cell_log_prob_mixture(
    log_prob: Callable, scopes: dict[str, str], counts: jnp.ndarray, params: dict
) -> jnp.ndarray:
    """Marginal log-likelihood of each cell's count vector, shape ``(C,)``.

    Genes are summed inside the map over components, so no ``(C, G, K)`` array (nor
    its transpose) is written; only ``(K, C)`` leaves it.
    """
    per_component = _map_components(lambda p: jnp.sum(log_prob(counts, p), axis=-1),
                                    scopes, params)
    return logsumexp(per_component.T + jnp.log(params["mixing_weights"]), axis=-1)
