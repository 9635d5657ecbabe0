"""The ``counts`` observation: one cell's count vector per plate element.

Its ``log_prob`` is where model fitting evaluates the likelihood, so a faster exact
evaluation changes this one class. Mixtures marginalise the component per cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Categorical, Distribution, constraints

from scribe.likelihood import Likelihood
from scribe.mixture import cell_log_prob_mixture, select_components


class CellCounts(Distribution):
    """Counts of ``G`` genes for each of ``C`` cells: batch ``(C,)``, event ``(G,)``.

    Parameters
    ----------
    likelihood : Likelihood
    params : dict
        Canonical parameters; with ``mixing_weights`` for a mixture.
    shape : tuple of int
        ``(C, G)``.
    mixture : bool
    """

    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, likelihood: Likelihood, params: dict, shape: tuple[int, int],
                 mixture: bool = False):
        self.likelihood, self.params, self.mixture = likelihood, params, mixture
        super().__init__(batch_shape=shape[:1], event_shape=shape[1:])

    def log_prob(self, value: jnp.ndarray) -> jnp.ndarray:
        if self.mixture:
            return cell_log_prob_mixture(
                self.likelihood.log_prob, self.likelihood.scopes(), value, self.params
            )
        return jnp.sum(self.likelihood.log_prob(value, self.params), axis=-1)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        if not self.mixture:
            return self.likelihood.distribution(self.params).expand(shape).sample(key)
        n_draws = int(jnp.prod(jnp.asarray(sample_shape))) if sample_shape else 1
        draws = jax.vmap(self._sample_mixture)(jax.random.split(key, n_draws))
        return draws.reshape(shape)

    def _sample_mixture(self, key):
        key_assign, key_counts = jax.random.split(key)
        assignment = Categorical(probs=self.params["mixing_weights"]).sample(
            key_assign, self.batch_shape
        )
        per_cell = select_components(self.likelihood.scopes(), self.params, assignment)
        dist = self.likelihood.distribution({**self.params, **per_cell})
        return dist.expand(self.batch_shape + self.event_shape).sample(key_counts)
