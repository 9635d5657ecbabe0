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
together, 16 at a time (one fused kernel per pass). Since ``m_k`` decreases, the tail of
the ``p``-partial after ``K`` terms is at most ``T = m_(K+1) p^K / (1 - p)``; with
``A_k <= k/(a + b)``, ``B_k - A_k <= k a/(b (a + b))`` and ``m_1 >= (1 - p) S_p``,
``T <= eps (1 - p) S_p`` bounds the relative error of the value and of all three partials
by ``eps`` (``2^-24``). Terms decay like ``(p (1 - nu))^k`` for a narrow factor (about 30
terms at ``p (1 - nu) = 0.57``) but only like ``p^k`` for a wide one, so a few wide cells
would set the count for all: the loop stops once at most ``C/32`` cells are short of the
bound (or after :data:`MAX_TERMS` terms), and those cells get one exact draw each,
``log(1 - p u)`` with ``u`` from :class:`scribe.distributions.FastBeta` (unbiased, with
the Gamma sampler's implicit gradient), gathered into a fixed-size block; after
:data:`MAX_TERMS` terms with more cells short (``p`` close to 1) they are drawn block
after block (one compiled sampler of ``C/32`` cells serves all blocks; a second one for
all ``C`` cells cost 3 s more compile). ``lax.cond`` skips what is not needed. The sum
over cells is thus exact, or unbiased where draws stand in.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

#: Terms summed per pass of the loop (unrolled: one fused kernel per pass).
CHUNK = 8
#: Most terms summed before the cells still short of the bound are drawn instead.
MAX_TERMS = 256
#: Relative accuracy of the value and of each partial.
EPS = 2.0**-24
#: The series stops once at most ``C // SPARE_FRACTION`` cells (at least 1) are short of
#: the bound; those cells get one exact draw each (a fixed-size gather).
SPARE_FRACTION = 32


def spare_cells(n_cells: int) -> int:
    """How many cells may be left to draws when the series stops, for ``n_cells`` cells."""
    return max(1, n_cells // SPARE_FRACTION)


def _series_terms(p, a, b, spare: int):
    """``S = sum_k p^k m_k / k``, its partials ``dS/dp``, ``dS/da``, ``dS/db`` ``(C,)`` and
    which cells met the tail bound (``(C,)`` floats, 1 or 0).

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
    return s, sp, sa, sb, met(state).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def log1m_series(p, a, b, spare: int = 0):
    """``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)`` by the series, and which cells
    it converged for.

    Parameters
    ----------
    p : scalar array
        In ``(0, 1)``.
    a, b : arrays, broadcastable, shape ``(C,)``
        Positive.
    spare : int, default 0
        Stop once at most this many cells are short of the tail bound.

    Returns
    -------
    value : array ``(C,)``
        Exact to float32 resolution where ``converged`` is 1; truncated elsewhere.
    converged : array ``(C,)``
        1.0 or 0.0 per cell (not differentiated).
    """
    s, _, _, _, converged = _series_terms(p, a, b, spare)
    return -s, converged


def _log1m_series_fwd(p, a, b, spare):
    s, sp, sa, sb, converged = _series_terms(p, a, b, spare)
    return (-s, converged), (jnp.shape(p), sp, sa, sb)


def _log1m_series_bwd(spare, residuals, cotangents):
    p_shape, sp, sa, sb = residuals
    ct, _ = cotangents
    grad_p = jnp.reshape(-jnp.sum(ct * sp), p_shape) if p_shape == () else -ct * sp
    return grad_p, -ct * sa, -ct * sb


log1m_series.defvjp(_log1m_series_fwd, _log1m_series_bwd)


def sampled_log1m(p, a, b, rng_key):
    """One exact draw of ``log(1 - p (1 - nu))``, ``nu ~ Beta(a, b)``, per cell: the
    unbiased fallback, with the Gamma sampler's implicit reparameterisation gradient."""
    from scribe.distributions import FastBeta

    u = FastBeta(b, a).sample(rng_key)     # 1 - nu ~ Beta(b, a)
    return jnp.log1p(-p * u)


def expected_log1m(p, a, b, rng_key=None):
    """``E[log(1 - p (1 - nu))]`` for ``nu ~ Beta(a, b)``, ``(C,)``.

    The series (exact value and gradient) for every cell it converges for; the cells it
    leaves (at most :func:`spare_cells`, or all of them after :data:`MAX_TERMS` terms) get
    one exact draw each with ``rng_key`` (an unbiased estimate with an unbiased gradient),
    so the sum over cells is exact or unbiased. Without ``rng_key`` the series runs for
    every cell up to :data:`MAX_TERMS` and unconverged cells keep the truncated sum:
    for checks only.

    Parameters
    ----------
    p : scalar array
        In ``(0, 1)``, the same for all cells.
    a, b : arrays ``(C,)``
        ``nu``'s Beta arguments, positive.
    rng_key : jax PRNG key, optional
    """
    if rng_key is None:
        return log1m_series(p, a, b, 0)[0]
    n_cells = jnp.shape(a)[0]
    spare = spare_cells(n_cells)
    value, converged = log1m_series(p, a, b, spare)
    short = converged == 0
    n_short = jnp.sum(short)
    n_blocks = -(-n_cells // spare)
    # The cells short of the bound first, padded with an index past the end (dropped by
    # the scatter), in blocks of `spare`: one block unless the series ran out of terms.
    order = jnp.nonzero(short, size=n_blocks * spare, fill_value=n_cells)[0]

    def block(i, value):
        def draw(value):
            cells = jax.lax.dynamic_slice(order, (i * spare,), (spare,))
            take = jnp.minimum(cells, n_cells - 1)
            draws = sampled_log1m(p, a[take], b[take], jax.random.fold_in(rng_key, i))
            return value.at[cells].set(draws.astype(value.dtype), mode="drop")

        return jax.lax.cond(i * spare < n_short, draw, lambda v: v, value)

    # A static number of blocks (reverse-mode needs it), all but the needed ones skipped;
    # one compiled sampler of `spare` cells serves every block.
    return jax.lax.cond(n_short == 0, lambda: value,
                        lambda: jax.lax.fori_loop(0, n_blocks, block, value))
