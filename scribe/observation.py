"""The ``counts`` observation.

Its ``log_prob`` is where model fitting evaluates the likelihood: on
:class:`~scribe.counts.SparseCounts` it calls the likelihood's sparse sums, which are
exact. Mixtures marginalise the component per cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Categorical, Distribution, constraints

from scribe.counts import SparseCounts
from scribe.likelihood import Likelihood
from scribe.mixture import (
    dense_cell_log_prob_mixture,
    mixture_cell_log_prob,
    select_components,
)


class CellCounts(Distribution):
    """Counts of ``G`` genes for each of ``C`` cells.

    Per cell (``joint=False``): batch ``(C,)``, event ``(G,)``, ``log_prob`` ``(C,)``;
    this is how the model samples counts. As one matrix (``joint=True``): batch ``()``,
    event ``(C, G)``, ``log_prob`` the scalar total; this is how fitting observes a
    :class:`SparseCounts`, whose total is cheaper than its per-cell values.

    Parameters
    ----------
    likelihood : Likelihood
    params : dict
        Canonical parameters; with ``mixing_weights`` for a mixture.
    shape : tuple of int
        ``(C, G)``.
    mixture : bool
    joint : bool
    """

    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, likelihood: Likelihood, params: dict, shape: tuple[int, int],
                 mixture: bool = False, joint: bool = False):
        self.likelihood, self.params, self.mixture = likelihood, params, mixture
        self.joint = joint
        split = 0 if joint else 1
        super().__init__(batch_shape=shape[:split], event_shape=shape[split:])

    def log_prob(self, value) -> jnp.ndarray:
        lik, params = self.likelihood, self.params
        if isinstance(value, SparseCounts):
            if self.mixture:
                per_cell = mixture_cell_log_prob(lik, value, params)
            elif self.joint:
                return lik.total_log_prob(value, params)
            else:
                per_cell = lik.cell_log_prob(value, params)
        elif self.mixture:
            per_cell = dense_cell_log_prob_mixture(lik.log_prob, lik.scopes(), value, params)
        else:
            per_cell = jnp.sum(lik.log_prob(value, params), axis=-1)
        return jnp.sum(per_cell, axis=-1) if self.joint else per_cell

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        if not self.mixture:
            return self.likelihood.distribution(self.params).expand(shape).sample(key)
        n_draws = int(jnp.prod(jnp.asarray(sample_shape))) if sample_shape else 1
        draws = jax.vmap(self._sample_mixture)(jax.random.split(key, n_draws))
        return draws.reshape(shape)

    def _sample_mixture(self, key):
        cells_shape = (self.shape()[-2],)
        key_assign, key_counts = jax.random.split(key)
        assignment = Categorical(probs=self.params["mixing_weights"]).sample(
            key_assign, cells_shape)
        per_cell = select_components(self.likelihood.scopes(), self.params, assignment)
        dist = self.likelihood.distribution({**self.params, **per_cell})
        return dist.expand(self.shape()[-2:]).sample(key_counts)
