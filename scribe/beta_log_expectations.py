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
together, 8 at a time (one fused kernel per pass). Since ``m_k`` decreases, the tail of
the ``p``-partial after ``K`` terms is at most ``T = m_(K+1) p^K / (1 - p)``; with
``A_k <= k/(a + b)``, ``B_k - A_k <= k a/(b (a + b))`` and ``m_1 >= (1 - p) S_p``,
``T <= eps (1 - p) S_p`` bounds the relative error of the value and of all three partials
by ``eps`` (``2^-24``). Terms decay like ``(p (1 - nu))^k`` for a narrow factor (about 30
terms at ``p (1 - nu) = 0.57``) but only like ``p^k`` for a wide one, so a few wide cells
would set the count for all: the pass over all cells stops once at most ``C/32`` cells
are short of the bound, and those are gathered into a block of ``C/32`` that goes on
alone until each meets it. No draws and no random numbers: the value and its gradient
are exact for every cell. After :data:`MAX_TERMS` terms (``p`` within ~5e-4 of 1, where
the terms barely decay) a cell still short is NaN, never a truncated value: the training
step is then non-finite (skipped by ``stable_update`` and reported).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Terms summed per pass of the loop (unrolled: one fused kernel per pass).
CHUNK = 8
#: Most terms summed for any cell; a cell still short of the bound after them is NaN.
MAX_TERMS = 2**16
#: Relative accuracy of the value and of each partial.
EPS = 2.0**-24
#: The pass over all cells stops once at most ``C // SPARE_FRACTION`` cells (at least 1)
#: are short of the bound; those go on in a block of their own.
SPARE_FRACTION = 32


def spare_cells(n_cells: int) -> int:
    """Size of the block of slow cells that go on alone, for ``n_cells`` cells."""
    return max(1, n_cells // SPARE_FRACTION)


def _series_terms(p, a, b, spare: int):
    """``S = sum_k p^k m_k / k``, its partials ``dS/dp``, ``dS/da``, ``dS/db`` ``(C,)`` and
    which cells met the tail bound (``(C,)`` bool).

    Stops once at most ``spare`` cells are short of the bound, or after :data:`MAX_TERMS`.
    """
    dtype = jnp.result_type(a, b, p)
    a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    p = jnp.asarray(p, dtype)
    zero = jnp.zeros(jnp.broadcast_shapes(a.shape, b.shape), dtype)
    ab = a + b

    def term(kf, carry):
        # carry: m_k, A_k, D_k = B_k - A_k, S, S_p, S_a, S_b, p^(k-1). D_k is summed as
        # a / ((b + j)(a + b + j)): B_k - A_k would cancel for b >> a. One division per
        # cell and term: inv = 1 / ((b + k)(a + b + k)) gives both reciprocals.
        m, big_a, big_d, s, sp, sa, sb, pkm1 = carry
        pm = pkm1 * m
        t = pm * (p / kf)
        s, sp = s + t, sp + pm
        sa, sb = sa - t * big_a, sb + t * big_d
        bk = b + kf
        inv = 1.0 / (bk * (ab + kf))
        inv_ab = bk * inv
        big_a, big_d = big_a + inv_ab, big_d + a * inv
        return m * bk * inv_ab, big_a, big_d, s, sp, sa, sb, pkm1 * p

    def met(state):
        m, _, _, _, sp, _, _, pkm1 = state[1]
        # After K terms: m = m_(K+1), pkm1 = p^K; tail of S_p <= m p^K / (1 - p).
        return m * pkm1 <= EPS * (1.0 - p) ** 2 * sp

    def cond(state):
        k, _ = state
        return (k <= MAX_TERMS) & (jnp.sum(~met(state)) > spare)

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
    return s, sp, sa, sb, met(state)


def _series(p, a, b):
    """:func:`_series_terms` for every cell: the bulk until at most ``C/32`` are short,
    then those in a block of their own until each meets the bound. NaN where a cell is
    still short after :data:`MAX_TERMS` terms."""
    a, b = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(b))
    n_cells = a.shape[0]
    spare = spare_cells(n_cells)
    *sums, ok = _series_terms(p, a, b, spare)
    short = ~ok

    def finish(sums_ok):
        sums, ok = sums_ok
        cells = jnp.nonzero(short, size=spare, fill_value=n_cells)[0]
        take = jnp.minimum(cells, n_cells - 1)
        real = cells < n_cells
        # Padding gets a factor that meets the bound at once (m_2 = 2e-6 m_1).
        few = _series_terms(p, jnp.where(real, a[take], 1e6), jnp.where(real, b[take], 1.0), 0)
        sums = [x.at[cells].set(y, mode="drop") for x, y in zip(sums, few[:4], strict=True)]
        return sums, ok.at[cells].set(few[4], mode="drop")

    sums, ok = jax.lax.cond(jnp.any(short), finish, lambda x: x, (list(sums), ok))
    nan = jnp.asarray(jnp.nan, sums[0].dtype)
    return (*(jnp.where(ok, x, nan) for x in sums), ok)


@jax.custom_vjp
def log1m_series(p, a, b):
    """``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)``, exact, and which cells met the
    tail bound.

    Parameters
    ----------
    p : scalar array
        In ``(0, 1)``.
    a, b : arrays, broadcastable, shape ``(C,)``
        Positive.

    Returns
    -------
    value : array ``(C,)``
        Exact to float32 resolution; NaN for a cell still short of the bound after
        :data:`MAX_TERMS` terms.
    converged : array ``(C,)``
        1.0 or 0.0 per cell (not differentiated).
    """
    s, _, _, _, ok = _series(p, a, b)
    return -s, ok.astype(s.dtype)


def _log1m_series_fwd(p, a, b):
    s, sp, sa, sb, ok = _series(p, a, b)
    return (-s, ok.astype(s.dtype)), (jnp.shape(p), sp, sa, sb)


def _log1m_series_bwd(residuals, cotangents):
    p_shape, sp, sa, sb = residuals
    ct, _ = cotangents
    grad_p = jnp.reshape(-jnp.sum(ct * sp), p_shape) if p_shape == () else -ct * sp
    return grad_p, -ct * sa, -ct * sb


log1m_series.defvjp(_log1m_series_fwd, _log1m_series_bwd)


def expected_log1m(p, a, b):
    """``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)``, ``(C,)``, with its exact
    gradient in ``p`` (a scalar), ``a`` and ``b`` (:func:`log1m_series`'s value)."""
    return log1m_series(p, a, b)[0]
