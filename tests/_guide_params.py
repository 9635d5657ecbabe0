"""Hand-chosen variational parameters and guide traces shared by the guide-family tests."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from numpyro import handlers

import scribe.families
from scribe.compose import Composition


def hand_params(config, n_cells: int, n_genes: int, seed: int = 0,
                shape_params: bool = False) -> dict:
    """A value for every variational parameter the composition declares: locations in
    ``[-1, 1]``, couplings and off-diagonals in ``[-0.8, 0.8]``, scales in
    ``[0.2, 0.6]``, other positive parameters in ``[2, 9]``. With ``shape_params``,
    ``skew_gene``'s tails in ``[0.6, 1.5]`` and skews and softplus shifts in
    ``[-0.8, 0.8]``, away from their identity start so that every term is exercised."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, param in Composition(config).variational_params(n_cells, n_genes).items():
        if shape_params and name.endswith("_tail"):
            value = rng.uniform(0.6, 1.5, param.shape)
        elif shape_params and (name.endswith("_skew") or "_softplus_" in name):
            value = rng.uniform(-0.8, 0.8, param.shape)
        elif param.constraint is scribe.families.constraints.real:
            low, high = (-0.8, 0.8) if ("tril" in name or "_on_" in name) else (-1.0, 1.0)
            value = rng.uniform(low, high, param.shape)
        else:
            value = rng.uniform(0.2, 0.6, param.shape) if "scale" in name \
                else rng.uniform(2.0, 9.0, param.shape)
        params[name] = jnp.asarray(value, jnp.float32)
    return params


def guide_trace(config, params: dict, n_cells: int, n_genes: int, key: int = 0):
    """The composed guide's trace at ``params`` with seed ``key``."""
    guide = Composition(config).guide
    seeded = handlers.seed(handlers.substitute(guide, data=params), key)
    return handlers.trace(seeded).get_trace(n_cells, n_genes)
