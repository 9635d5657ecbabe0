"""Fast exact Poisson and negative binomial draws, vectorised over whole arrays.

``jax.random.poisson`` runs, on CPU, a rejection loop whose every iteration splits keys
for all elements (about 3 us per draw); the negative binomial of NumPyro adds
``jax.random.gamma`` (4 us). Predictive counts, the fit report and denoising draw
millions of them. This module draws them with fixed-cost, fused arithmetic:

Means ``lam < LAM_SWITCH`` (10): inversion
    ``X = min{k : u < F(k)}`` with the CDF summed term by term, ``K_UNROLLED`` terms
    unrolled for all elements in one fused pass. The rare elements whose ``u`` lies
    beyond ``F(K_UNROLLED - 1)`` keep their ``u`` and are finished in groups (same ``u``,
    so the law is exact). Terms below ``P_FLOOR`` are not counted: float32 cannot
    resolve the CDF beyond that, and this stops a rounded CDF from running away.
Means ``lam >= LAM_SWITCH``: PTRS
    Hörmann's transformed rejection with squeeze (1993). One proposal per element in the
    same pass; rejected elements (about 10 %) are proposed again, for the whole array
    while many are left and then in groups of ``_GROUP`` with ``_ROUNDS`` proposals
    each, until all are accepted. The acceptance test is written as
    ``-lam ((1 + t) log1pmx(t) + t^2) - log(2 pi k)/2 - stirlerr(k)``, ``t = k/lam - 1``,
    which keeps float32 precision for means up to ``2^24`` (``-lam + k log lam -
    lgamma(k + 1)`` would lose it to cancellation above about 1e4).

Random words come from XLA's ThreeFry ``RngBitGenerator`` as in :mod:`scribe.gamma`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scribe.gamma import _stream_bits, _uniform_open, gamma, log1pmx

#: Means below this are drawn by inversion, the others by PTRS (valid for ``lam >= 10``).
LAM_SWITCH = 10.0
#: CDF terms summed in the first, fused pass of the inversion.
K_UNROLLED = 24
#: The inversion stops counting once a term is below this (float32 CDF resolution).
P_FLOOR = 1e-9
#: Terms of the grouped finish of the inversion; ``P(k) < P_FLOOR`` beyond it for lam < 10.
_K_MAX = 64
_GROUP = 1024
_ROUNDS = 4
_FIRST, _RETRY, _FULL = 10, 11, 12
_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def _uniform_mid(bits: jnp.ndarray, dtype) -> jnp.ndarray:
    """Uniform on the open interval (0, 1), 24 random bits."""
    return ((bits >> 8).astype(dtype) + dtype(0.5)) * dtype(2.0**-24)


def _invert(u, lam, n_terms: int):
    """``#{k < n_terms : u >= F(k), P(k) >= P_FLOOR}``: the inversion draw if below
    ``n_terms``; ``n_terms`` means that ``u`` lies beyond the summed terms."""
    p = jnp.exp(-lam)
    cdf = p
    x = jnp.zeros_like(lam)
    for k in range(1, n_terms + 1):
        x = x + ((u >= cdf) & (p >= P_FLOOR)).astype(lam.dtype)
        p = p * lam * (1.0 / k)
        cdf = cdf + p
    return x


def _stirlerr(k):
    """``lgamma(k + 1) - (k + 1/2) log k + k - log(2 pi)/2`` for ``k >= 1``."""
    small = k < 16
    ks = jnp.where(small, k, 1.0)
    direct = jax.lax.lgamma(ks + 1) - (ks + 0.5) * jnp.log(ks) + ks - _HALF_LOG_2PI
    kl = jnp.where(small, 16.0, k)
    inv2 = 1 / (kl * kl)
    series = (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680))) / kl
    return jnp.where(small, direct, series)


def _log_pmf(k, lam):
    """``log P(k | lam)`` written without the cancellation of large terms (``lam >= 1``)."""
    ks = jnp.maximum(k, 1.0)
    t = (ks - lam) / lam
    t = jnp.maximum(t, -0.999999)
    value = (-lam * ((1 + t) * log1pmx(t) + t * t)
             - 0.5 * jnp.log(ks) - _HALF_LOG_2PI - _stirlerr(ks))
    return jnp.where(k < 1, -lam, value)


def _ptrs(lam, u, v):
    """One PTRS proposal per element: the draw where accepted, ``-1`` where rejected."""
    b = 0.931 + 2.53 * jnp.sqrt(lam)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    us = 0.5 - jnp.abs(u - 0.5)
    k = jnp.floor((2 * a / us + b) * (u - 0.5) + lam + 0.43)
    quick = (us >= 0.07) & (v <= v_r)
    impossible = (k < 0) | ((us < 0.013) & (v > us))
    test = (jnp.log(v) + jnp.log(inv_alpha) - jnp.log(a / (us * us) + b)
            <= _log_pmf(k, lam))
    return jnp.where(quick | (~impossible & test), k, -1.0)


@jax.jit
def _poisson_flat(key, lam):
    dtype = lam.dtype.type
    n = lam.size
    small = lam < LAM_SWITCH
    words = _stream_bits(key, 2, n, 0, _FIRST)
    u, v = _uniform_mid(words[0], dtype), _uniform_open(words[1], dtype)
    x_inv = _invert(u, jnp.where(small, lam, 0.0), K_UNROLLED)
    lam_big = jnp.where(small, LAM_SWITCH, lam)
    # Typical single-cell means are all small: skip the PTRS arithmetic when none is large.
    x_big = jax.lax.cond(jnp.all(small), lambda: jnp.zeros_like(lam),
                         lambda: _ptrs(lam_big, u, v))
    x = jnp.where(small, jnp.where(x_inv >= K_UNROLLED, -2.0, x_inv), x_big)
    group = min(_GROUP, n)

    # Inversion beyond the unrolled terms: same u, so X | X >= K_UNROLLED is exact.
    def finish_inversion(x):
        idx = jax.lax.top_k((x == -2).astype(dtype), group)[1]
        done = _invert(u[idx], jnp.where(small[idx], lam[idx], 0.0), _K_MAX)
        return x.at[idx].set(jnp.where(x[idx] == -2, done, x[idx]))

    x = jax.lax.while_loop(lambda x: jnp.any(x == -2), finish_inversion, x)

    # PTRS rejections: fresh proposals until accepted (rejection sampling is exact).
    def full_round(state):
        it, x = state
        w = _stream_bits(key, 2, n, it, _FULL)
        y = _ptrs(lam_big, _uniform_mid(w[0], dtype), _uniform_open(w[1], dtype))
        return it + 1, jnp.where(x == -1, y, x)

    def group_round(state):
        it, x = state
        idx = jax.lax.top_k((x == -1).astype(dtype), group)[1]
        w = _stream_bits(key, 2, group * _ROUNDS, it, _RETRY)
        y = _ptrs(jnp.tile(lam_big[idx], _ROUNDS), _uniform_mid(w[0], dtype),
                  _uniform_open(w[1], dtype)).reshape(_ROUNDS, group)
        first = jnp.argmax(y >= 0, axis=0)
        y = jnp.take_along_axis(y, first[None], axis=0)[0]
        old = x[idx]
        return it + 1, x.at[idx].set(jnp.where(old == -1, y, old))

    def retry(state):
        many = jnp.sum(state[1] == -1) > 4 * group
        return jax.lax.cond(many, full_round, group_round, state)

    _, x = jax.lax.while_loop(lambda s: jnp.any(s[1] == -1), retry, (jnp.uint32(0), x))
    return x


def poisson(key, lam) -> jnp.ndarray:
    """``Poisson(lam)`` draws, exact in law (float32 CDF resolution, see module).

    Parameters
    ----------
    key : jax PRNG key
    lam : array_like, float, shape S
        Means, ``0 <= lam < 2^24``; NaN means give NaN.

    Returns
    -------
    array, shape S, ``lam``'s float dtype: integer-valued draws.
    """
    lam = jnp.asarray(lam)
    if not jnp.issubdtype(lam.dtype, jnp.floating):
        lam = lam.astype(jnp.result_type(float))
    if lam.size == 0:
        return jnp.zeros(lam.shape, lam.dtype)
    finite = jnp.isfinite(lam)
    flat = jnp.where(finite, lam, 0.0).ravel()
    x = _poisson_flat(key, flat).reshape(lam.shape)
    return jnp.where(finite, x, jnp.nan)


def negative_binomial(key, r, p, shape: tuple[int, ...] | None = None) -> jnp.ndarray:
    """``NB(r, p)`` draws in NumPyro's convention (mean ``r p / (1 - p)``), exact in law.

    ``X ~ Poisson(G p / (1 - p))`` with ``G ~ Gamma(r)`` (:func:`scribe.gamma.gamma`).

    Parameters
    ----------
    key : jax PRNG key
    r : array_like, float, broadcastable to ``shape``
        Dispersions ``> 0``.
    p : array_like, float, broadcastable to ``shape``
        Success probabilities in ``[0, 1)`` (0 gives 0).
    shape : tuple of int, optional
        Output shape (default: ``r`` and ``p`` broadcast).

    Returns
    -------
    array of ``shape``, float: integer-valued draws.
    """
    r, p = jnp.asarray(r), jnp.asarray(p)
    dtype = jnp.result_type(r, p, float)
    out = jnp.broadcast_shapes(r.shape, p.shape) if shape is None else tuple(shape)
    # Flat arrays: one compilation per number of values, whatever the shape.
    return _negative_binomial(key, jnp.broadcast_to(r.astype(dtype), out).ravel(),
                              jnp.broadcast_to(p.astype(dtype), out).ravel()).reshape(out)


@jax.jit
def _negative_binomial(key, r, p):
    key_gamma, key_poisson = jax.random.split(key)
    return poisson(key_poisson, gamma(key_gamma, r) * (p / (1.0 - p)))
