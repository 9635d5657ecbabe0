"""The logit-normal distribution: ``sigmoid(Normal(loc, scale))`` on (0, 1).

It is the marginal of a probability site (e.g. ``gate``) under a guide that is Normal in
unconstrained space (the ``joint_gene`` guide family). Its mean has no closed form and is
taken by Gauss-Hermite quadrature; its mode solves ``logit(x) = loc + scale^2 (2x - 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Normal, TransformedDistribution, constraints
from numpyro.distributions.transforms import SigmoidTransform
from scipy import special, stats

# Probabilists' Gauss-Hermite rule: E[f(Z)] = sum_i w_i f(z_i) / sqrt(2 pi), Z ~ N(0, 1).
# 64 nodes integrate sigmoid(loc + scale z) to float32 precision for scale up to ~10.
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
_WEIGHTS = _WEIGHTS / np.sqrt(2 * np.pi)
_BISECTIONS = 60


def logit_normal_mean(loc, scale) -> jnp.ndarray:
    """``E[sigmoid(loc + scale Z)]``, broadcast over ``loc`` and ``scale``."""
    loc, scale = jnp.asarray(loc)[..., None], jnp.asarray(scale)[..., None]
    values = jax.nn.sigmoid(loc + scale * jnp.asarray(_NODES, loc.dtype))
    return jnp.sum(values * jnp.asarray(_WEIGHTS, loc.dtype), axis=-1)


def logit_normal_mode(loc, scale) -> jnp.ndarray:
    """Mode of the logit-normal; NaN where ``scale^2 >= 2`` (it may be bimodal there).

    In ``y = logit(x)`` the mode solves ``h(y) = y - loc - scale^2 tanh(y / 2) = 0``;
    ``h' >= 1 - scale^2 / 2 > 0`` for ``scale^2 < 2``, so the root is unique and lies in
    ``[loc - scale^2, loc + scale^2]`` (``|tanh| <= 1``): bisection finds it.
    """
    loc, scale = jnp.broadcast_arrays(jnp.asarray(loc), jnp.asarray(scale))
    s2 = scale**2

    def bisect(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        above = mid - loc - s2 * jnp.tanh(mid / 2) > 0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, bisect, (loc - s2, loc + s2))
    return jnp.where(s2 < 2, jax.nn.sigmoid((lo + hi) / 2), jnp.nan)


class LogitNormal(TransformedDistribution):
    """``sigmoid(X)`` with ``X ~ Normal(loc, scale)``.

    Parameters
    ----------
    loc : array_like
        Location of ``logit(x)``.
    scale : array_like
        Scale of ``logit(x)``, positive.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    reparametrized_params = ["loc", "scale"]

    def __init__(self, loc=0.0, scale=1.0, *, validate_args=None):
        base = Normal(loc, scale)
        self.loc, self.scale = base.loc, base.scale
        super().__init__(base, SigmoidTransform(), validate_args=validate_args)

    @property
    def mean(self) -> jnp.ndarray:
        return logit_normal_mean(self.loc, self.scale)

    @property
    def variance(self) -> jnp.ndarray:
        mean = logit_normal_mean(self.loc, self.scale)
        loc, scale = self.loc[..., None], self.scale[..., None]
        squares = jax.nn.sigmoid(loc + scale * jnp.asarray(_NODES, loc.dtype)) ** 2
        moment2 = jnp.sum(squares * jnp.asarray(_WEIGHTS, loc.dtype), axis=-1)
        return moment2 - mean**2


class _LogitNormalScipy(stats.rv_continuous):
    """scipy's form: shape parameters ``mu`` (real) and ``s`` (positive)."""

    def _argcheck(self, mu, s):
        return np.isfinite(mu) & (s > 0)

    def _pdf(self, x, mu, s):
        return stats.norm.pdf((special.logit(x) - mu) / s) / (s * x * (1 - x))

    def _logpdf(self, x, mu, s):
        return (stats.norm.logpdf((special.logit(x) - mu) / s) - np.log(s)
                - np.log(x) - np.log1p(-x))

    def _cdf(self, x, mu, s):
        return stats.norm.cdf((special.logit(x) - mu) / s)

    def _ppf(self, q, mu, s):
        return special.expit(mu + s * stats.norm.ppf(q))

    def _rvs(self, mu, s, size=None, random_state=None):
        return special.expit(mu + s * random_state.standard_normal(size))

    def _munp(self, n, mu, s):
        mu, s = np.asarray(mu, float)[..., None], np.asarray(s, float)[..., None]
        return np.sum(special.expit(mu + s * _NODES) ** n * _WEIGHTS, axis=-1)


#: ``logitnorm(mu, s)``: frozen scipy logit-normal distributions.
logitnorm = _LogitNormalScipy(a=0.0, b=1.0, name="logitnorm")
