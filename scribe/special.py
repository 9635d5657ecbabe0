"""``digamma`` whose derivative is a fixed-cost trigamma.

JAX differentiates ``digamma`` through ``polygamma(1, x)``, a generic Hurwitz-zeta series
that costs about 50 ns per element on CPU; the closed-form KL divergences of Beta and
BetaPrime factors evaluate three digammas per cell, so their gradient dominated the step
of models with per-cell factors. Here the derivative is the recurrence
``psi1(x) = sum_{i<6} (x+i)^-2 + psi1(x+6)`` with the asymptotic series of ``psi1`` at
``y = x + 6 >= 6`` (relative error < 1e-9 for ``x > 0``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma as _jax_digamma

_SHIFT = 6
# psi1(y) ~ 1/y + 1/(2y^2) + sum_k B_2k / y^(2k+1): B_2 ... B_10.
_BERNOULLI = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66)


def trigamma(x: jnp.ndarray) -> jnp.ndarray:
    """``psi'(x)`` for ``x > 0``, elementwise, in ``x``'s dtype."""
    x = jnp.asarray(x)
    total = jnp.zeros_like(x)
    for i in range(_SHIFT):
        total = total + 1 / ((x + i) * (x + i))
    y = x + _SHIFT
    inv = 1 / y
    inv2 = inv * inv
    series = jnp.zeros_like(x)
    for b in _BERNOULLI[::-1]:
        series = series * inv2 + b
    return total + inv + inv2 / 2 + inv * inv2 * series


@jax.custom_jvp
def digamma(x):
    """``jax.scipy.special.digamma`` with a cheap exact-to-float derivative (``trigamma``)."""
    return _jax_digamma(x)


@digamma.defjvp
def _digamma_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return _jax_digamma(x), trigamma(x) * x_dot
