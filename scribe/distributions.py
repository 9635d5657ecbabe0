"""Distributions NumPyro lacks, and analytic KL divergences it does not register.

``BetaPrime`` is the prior and variational family of the odds-ratio sites. ``FastBeta``
and ``FastDirichlet`` are NumPyro's ``Beta`` and ``Dirichlet`` (densities, moments, KLs
unchanged) whose draws come from ``scribe.gamma``: exact law, unbiased pathwise gradient,
tens of nanoseconds per draw instead of microseconds. The KL
registrations let ``TraceMeanField_ELBO`` use closed forms for every family scribe
uses instead of falling back to a Monte Carlo estimate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln
from numpyro.distributions import (
    Beta,
    Dirichlet,
    Distribution,
    LogNormal,
    Normal,
    constraints,
)
from numpyro.distributions.kl import kl_divergence
from numpyro.distributions.util import promote_shapes, validate_sample

from scribe.gamma import gamma
from scribe.special import betaln as fast_betaln
from scribe.special import digamma


def _paired_gammas(key, c1, c0, shape: tuple[int, ...]):
    """Independent ``Gamma(c1)`` and ``Gamma(c0)`` draws of ``shape``, made in one call."""
    both = gamma(key, jnp.stack(jnp.broadcast_arrays(c1, c0), axis=-1), (*shape, 2))
    return both[..., 0], both[..., 1]


def _clip_unit(x):
    finfo = jnp.finfo(x.dtype)
    return jnp.clip(x, finfo.tiny, 1 - finfo.eps)


class FastBeta(Beta):
    """NumPyro's ``Beta`` sampled as ``G_a / (G_a + G_b)`` with ``scribe.gamma`` draws."""

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        g1, g0 = _paired_gammas(key, self.concentration1, self.concentration0, shape)
        return _clip_unit(g1 / (g1 + g0))


class FastDirichlet(Dirichlet):
    """NumPyro's ``Dirichlet`` sampled as normalised ``scribe.gamma`` draws."""

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        g = gamma(key, self.concentration, shape)
        return _clip_unit(g / jnp.sum(g, axis=-1, keepdims=True))


class BetaPrime(Distribution):
    """Beta prime (inverted beta) distribution on (0, inf).

    Density ``x^(a-1) (1+x)^(-(a+b)) / B(a, b)``. If ``phi ~ BetaPrime(a, b)`` then
    ``1 / (1 + phi) ~ Beta(b, a)``. Sampled as ``Gamma(a) / Gamma(b)`` with
    ``scribe.gamma`` draws (exact law, unbiased pathwise gradient).

    Parameters
    ----------
    concentration1 : array_like
        ``a > 0``.
    concentration0 : array_like
        ``b > 0``.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
    }
    support = constraints.positive
    reparametrized_params = ["concentration1", "concentration0"]

    def __init__(self, concentration1, concentration0, *, validate_args=None):
        self.concentration1, self.concentration0 = promote_shapes(concentration1, concentration0)
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(concentration1), jnp.shape(concentration0)
        )
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        num, den = _paired_gammas(key, self.concentration1, self.concentration0, shape)
        # Ratio of logs keeps precision when either gamma draw is tiny.
        return jnp.exp(jnp.log(num) - jnp.log(den))

    @validate_sample
    def log_prob(self, value):
        a, b = self.concentration1, self.concentration0
        return (a - 1) * jnp.log(value) - (a + b) * jnp.log1p(value) - betaln(a, b)

    @property
    def mean(self):
        b = self.concentration0
        return jnp.where(b > 1, self.concentration1 / jnp.where(b > 1, b - 1, 1.0), jnp.inf)

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        safe_b = jnp.where(b > 2, b, 3.0)
        var = a * (a + safe_b - 1) / ((safe_b - 2) * (safe_b - 1) ** 2)
        return jnp.where(b > 2, var, jnp.inf)

    def cdf(self, value):
        # P(phi <= x) = P(Beta(a, b) <= x / (1 + x))
        return Beta(self.concentration1, self.concentration0).cdf(value / (1 + value))


def kl_beta(a, b, a0, b0):
    """``KL(Beta(a, b) || Beta(a0, b0))`` in closed form, with ``scribe.special``'s
    fixed-cost ``gammaln``/``digamma`` (JAX's cost several times more per cell)."""
    return (fast_betaln(a0, b0) - fast_betaln(a, b) + (a - a0) * digamma(a) + (b - b0) * digamma(b)
            + (a0 - a + b0 - b) * digamma(a + b))


@kl_divergence.register(FastBeta, Beta)
def _kl_fastbeta(p, q):
    return kl_beta(p.concentration1, p.concentration0, q.concentration1, q.concentration0)


@kl_divergence.register(BetaPrime, BetaPrime)
def _kl_betaprime(p, q):
    # x -> x / (1 + x) maps BetaPrime(a, b) onto Beta(a, b); KL is invariant under bijections.
    return kl_beta(p.concentration1, p.concentration0, q.concentration1, q.concentration0)


@kl_divergence.register(LogNormal, LogNormal)
def _kl_lognormal(p, q):
    # exp is a bijection, so the KL equals that of the underlying normals.
    return kl_divergence(Normal(p.loc, p.scale), Normal(q.loc, q.scale))
