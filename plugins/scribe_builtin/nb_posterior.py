"""Closed forms of the negative binomial family used by the analyses on a fit.

* ``nb_cdf``: ``P(X <= x)`` of ``NB(r, p)`` (NumPyro convention), ``I_{1-p}(r, x + 1)``
  (the regularised incomplete beta; scipy's ``nbinom(r, 1 - p).cdf``).
* ``molecules_mean`` / ``molecules_sample``: the molecules ``m`` behind a count ``x``
  (SPEC section 6). With ``m ~ NB(r, p)`` and ``x | m ~ Binomial(m, nu)`` the molecules
  not captured, ``d = m - x``, follow ``NB(r + x, p (1 - nu))`` given ``x``. A zero of
  a zero-inflated model is technical with probability
  ``pi = g / (g + (1 - g) NB(0 | r, p_hat))``, and then ``m ~ NB(r, p)`` (the count
  says nothing about it).

Shapes: ``x`` ``(C, G)``; ``r``, ``gate`` ``(G,)`` or ``(C, G)``; ``p`` scalar or ``(C,)``;
``nu`` ``(C,)`` or None (no capture: ``nu = 1``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc

from scribe.gamma import gamma
from scribe.poisson import poisson


def _column(value):
    value = jnp.asarray(value)
    return value[..., None] if value.ndim == 1 else value


def nb_cdf(x, r, p):
    """``P(X <= x)`` for ``X ~ NB(r, p)``; 0 where ``x < 0``."""
    safe = jnp.maximum(x, 0.0)
    return jnp.where(x < 0, 0.0, betainc(r, safe + 1.0, 1.0 - p))


def _rates(x, r, p, nu, gate):
    """``q = p (1 - nu)`` and the probability that each zero is technical."""
    p = _column(p)
    q = jnp.zeros_like(p) if nu is None else p * (1.0 - _column(nu))
    if gate is None:
        return p, q, None
    p_hat = p if nu is None else p * _column(nu) / (1.0 - q)
    zero_nb = jnp.exp(r * jnp.log1p(-p_hat))
    technical = jnp.where(x == 0, gate / (gate + (1.0 - gate) * zero_nb), 0.0)
    return p, q, technical


def molecules_mean(x, r, p, nu=None, gate=None):
    """``E[m | x]``, ``(C, G)``."""
    p, q, technical = _rates(x, r, p, nu, gate)
    captured = x + (r + x) * q / (1.0 - q)
    if technical is None:
        return captured
    return technical * r * p / (1.0 - p) + (1.0 - technical) * captured


def _nb_draw(key, r, odds):
    """``NB`` draws with mean ``r odds`` as a Gamma-Poisson mixture (0 where odds = 0).

    Fast exact samplers of :mod:`scribe.poisson` (``jax.random.gamma``/``poisson`` cost
    microseconds per draw on CPU).
    """
    key_gamma, key_poisson = jax.random.split(key)
    rate = gamma(key_gamma, r) * odds
    return poisson(key_poisson, rate).astype(jnp.result_type(float))


def molecules_sample(key, x, r, p, nu=None, gate=None):
    """One draw of ``m | x``, ``(C, G)``."""
    p, q, technical = _rates(x, r, p, nu, gate)
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(r), jnp.shape(q))
    key_nb, key_gate = jax.random.split(key)
    lost_shape = jnp.broadcast_to(r + x, shape)
    lost_odds = jnp.broadcast_to(q / (1.0 - q), shape)
    if technical is None:
        return x + _nb_draw(key_nb, lost_shape, lost_odds)
    # The molecules lost to capture and, for technical zeros, the prior draw: one
    # Gamma-Poisson call for both (each sampler compiles to a loop of its own).
    both = _nb_draw(key_nb, jnp.stack([lost_shape, jnp.broadcast_to(r, shape)]),
                    jnp.stack([lost_odds, jnp.broadcast_to(p / (1.0 - p), shape)]))
    is_technical = jax.random.uniform(key_gate, shape) < technical
    return jnp.where(is_technical, both[1], x + both[0])
