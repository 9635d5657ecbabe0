"""``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)``, exactly, with its gradient.

nbvcp's counts depend on a cell's capture ``nu`` only through ``log nu`` and
``log(1 - p (1 - nu))`` (:mod:`scribe_builtin.nb_capture_expectation`). ``E[log nu]`` is
``digamma(a) - digamma(a + b)``; the second expectation is the power series

    E[log(1 - p u)] = -sum_{k>=1} (p^k / k) m_k,    m_k = E[u^k] = prod_{j<k} (b + j)/(a + b + j),

with ``u = 1 - nu ~ Beta(b, a)``. Its partials follow from the same recurrences:
``d m_k / da = -m_k A_k`` and ``d m_k / db = m_k (B_k - A_k)`` with
``A_k = sum_{j<k} 1/(a + b + j)``, ``B_k = sum_{j<k} 1/(b + j)``, and
``d/dp = -sum_k p^(k-1) m_k``.

**Stopping.** ``p`` is one number per step, so the terms are summed for all cells
together, 16 at a time, until every cell's tail is below float32 resolution. Since
``m_k`` decreases, the tail of the ``p``-partial after ``K`` terms is at most
``T = m_(K+1) p^K / (1 - p)``; with ``A_k <= k/(a + b)``, ``B_k - A_k <= k a/(b (a + b))``
and ``m_1 >= (1 - p) S_p``, ``T <= eps (1 - p) S_p`` bounds the relative error of the
value and of all three partials by ``eps`` (``2^-24``). Terms decay like
``(p (1 - nu))^k``: about 30 for ``p = 0.6``. At most :data:`MAX_TERMS` are summed; where
that is not enough (``p`` close to 1 and wide or small captures) the expectation is
replaced by one exact draw, ``log(1 - p u)`` with ``u`` from :class:`scribe.distributions.FastBeta`
(unbiased, with the Gamma sampler's implicit gradient), chosen per step with ``lax.cond``
so that only one branch runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Terms summed per pass of the loop (unrolled: one fused kernel per pass).
CHUNK = 16
#: Most terms summed before falling back to a draw.
MAX_TERMS = 256
#: Relative accuracy of the value and of each partial.
EPS = 2.0**-24


def _series_terms(p, a, b):
    """``S = sum_k p^k m_k / k`` and its partials ``(S, dS/dp, dS/da, dS/db)`` ``(C,)``,
    and whether the tail bound was met (a float scalar, 1 or 0)."""
    dtype = jnp.result_type(a, b, p)
    a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    p = jnp.asarray(p, dtype)
    zero = jnp.zeros(jnp.broadcast_shapes(a.shape, b.shape), dtype)
    ab = a + b

    def term(kf, carry):
        # carry: m_k, A_k, D_k = B_k - A_k, S, S_p, S_a, S_b, p^(k-1). D_k is summed as
        # a / ((b + j)(a + b + j)): B_k - A_k would cancel for b >> a.
        m, big_a, big_d, s, sp, sa, sb, pkm1 = carry
        t = pkm1 * p * m / kf
        s, sp = s + t, sp + pkm1 * m
        sa, sb = sa - t * big_a, sb + t * big_d
        inv_ab = 1.0 / (ab + kf)
        bk = b + kf
        big_a, big_d = big_a + inv_ab, big_d + a * inv_ab / bk
        return m * bk * inv_ab, big_a, big_d, s, sp, sa, sb, pkm1 * p

    def tail_ok(state):
        m, _, _, _, sp, _, _, pkm1 = state[1]
        # After K terms: m = m_(K+1), pkm1 = p^K; tail of S_p <= m p^K / (1 - p).
        return jnp.all(m * pkm1 <= EPS * (1.0 - p) ** 2 * sp)

    def cond(state):
        k, carry = state
        return (k <= MAX_TERMS) & ~tail_ok(state)

    def body(state):
        k, carry = state
        first = k.astype(dtype)
        # A static trip count, so the chunk is unrolled into one fused kernel.
        carry = jax.lax.fori_loop(0, CHUNK, lambda i, c: term(first + i, c), carry,
                                  unroll=True)
        return k + CHUNK, carry

    carry = (b / ab + zero, 1.0 / ab + zero, a / (b * ab) + zero, zero, zero, zero, zero,
             jnp.ones((), dtype))
    state = jax.lax.while_loop(cond, body, (jnp.asarray(1, jnp.int32), carry))
    _, _, _, s, sp, sa, sb, _ = state[1]
    return s, sp, sa, sb, tail_ok(state).astype(dtype)


@jax.custom_vjp
def log1m_series(p, a, b):
    """``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)`` by the series, and whether it
    converged within :data:`MAX_TERMS` terms.

    Parameters
    ----------
    p : scalar array
        In ``(0, 1)``.
    a, b : arrays, broadcastable, shape ``(C,)``
        Positive.

    Returns
    -------
    value : array ``(C,)``
        Exact to float32 resolution where ``converged`` is 1; truncated otherwise.
    converged : scalar array
        1.0 or 0.0 (not differentiated).
    """
    s, _, _, _, converged = _series_terms(p, a, b)
    return -s, converged


def _log1m_series_fwd(p, a, b):
    s, sp, sa, sb, converged = _series_terms(p, a, b)
    return (-s, converged), (jnp.shape(p), sp, sa, sb)


def _log1m_series_bwd(residuals, cotangents):
    p_shape, sp, sa, sb = residuals
    ct, _ = cotangents
    grad_p = jnp.reshape(-jnp.sum(ct * sp), p_shape) if p_shape == () else -ct * sp
    return grad_p, -ct * sa, -ct * sb


log1m_series.defvjp(_log1m_series_fwd, _log1m_series_bwd)


def sampled_log1m(p, a, b, rng_key):
    """One exact draw of ``log(1 - p (1 - nu))``, ``nu ~ Beta(a, b)`` ``(C,)``: the
    unbiased fallback, with the Gamma sampler's implicit reparameterisation gradient."""
    from scribe.distributions import FastBeta

    u = FastBeta(b, a).sample(rng_key)     # 1 - nu ~ Beta(b, a)
    return jnp.log1p(-p * u)


def expected_log1m(p, a, b, rng_key=None):
    """``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)``, ``(C,)``.

    The series (exact value and gradient) when it converges within :data:`MAX_TERMS`
    terms for every cell; otherwise, with ``rng_key``, one exact draw per cell (an
    unbiased estimate, unbiased gradient). Without ``rng_key`` an unconverged series
    raises nothing under ``jit``: callers that cannot pass a key must check
    :func:`log1m_series`'s flag themselves.

    Parameters
    ----------
    p : scalar array
        In ``(0, 1)``, the same for all cells.
    a, b : arrays ``(C,)``
        ``nu``'s Beta arguments, positive.
    rng_key : jax PRNG key, optional
    """
    value, converged = log1m_series(p, a, b)
    if rng_key is None:
        return value
    return jax.lax.cond(converged > 0, lambda: value,
                        lambda: sampled_log1m(p, a, b, rng_key).astype(value.dtype))
