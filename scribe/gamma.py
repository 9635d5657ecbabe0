"""Fast Gamma draws with exact law and exact implicit-reparameterisation gradients.

Beta, BetaPrime and Dirichlet variational factors are ratios of Gamma draws. JAX's own
``jax.random.gamma`` lowers on CPU to a sequential loop with a rejection loop per element
and its gradient to a data-dependent series; both cost microseconds per draw. This module
replaces both with fixed-cost, vectorised arithmetic:

Random bits
    XLA's native ``RngBitGenerator`` (ThreeFry-2x32-20), started from one ThreeFry hash
    of the JAX key; each consumer (first proposals, each retry round, the boost factors)
    continues the stream from the state the previous call returned. About three times
    cheaper per word on CPU than ``jax.random.bits`` or Philox written in 32-bit ``jnp``
    arithmetic, and no ``fold_in`` hash per stream to compile.
Sampling
    Marsaglia-Tsang for shape ``d >= A0``: one proposal per element for all elements at
    once, then the first rejected element of every block of 64 is proposed again (a few
    times at once) until all are accepted, so the law is exact. Shapes ``a < A0`` are raised with
    ``Gamma(a) = Gamma(a + B) prod_{i<B} U_i^(1/(a+i))`` (``B = ceil(A0 - a)``); the
    words of the 8 possible factors are made in one call (a rolled loop combines them),
    and none when no shape is boosted.
Gradient
    Implicit reparameterisation ``dz/da = -(dP(a, z)/da) / f(z; a)`` of the ``Gamma(d)``
    part, evaluated by Temme's uniform expansion differentiated in ``a`` (derivation in
    ``tools/derive_temme.py``)::

        dz/dd = lambda (1 + Gamma*(d) sum_{k<4} E_k(eta) d^-k),
        lambda = z/d,  eta = sign(lambda - 1) sqrt(2 (lambda - 1 - log lambda)),

    plus the exact pathwise derivative of the uniform factors at fixed ``U_i``. With
    ``d >= 8`` and 16 Taylor terms per ``E_k`` the relative error is below 3e-6 against a
    float64 reference over the 1e-6 ... 1 - 1e-6 quantiles. The map from the noise
    (quantile of the ``Gamma(d)`` draw, the ``U_i``) to ``z`` is a valid reparameterisation,
    so the gradient is unbiased.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Shapes below this are raised by uniform factors before the Temme gradient is used.
A0 = 8.0
#: Each retry round re-proposes the first rejected element of every block this long.
_BLOCK = 64
_ROUNDS = 4
_LOG1PMX_TERMS = 17
#: Most uniform factors a shape is raised by (``ceil(A0 - a)`` for ``a > 0``).
_MAX_BOOST = 8

# Taylor coefficients in eta of E_0 ... E_3 (lowest order first), printed by
# ``python tools/derive_temme.py``; tests/test_fast_gamma.py re-derives and compares them.
_E = np.array([
    [
        0.0, -0.5, 0.16666666666666666,
        -0.041666666666666664, 0.007407407407407408, -0.0005787037037037037,
        -0.0001763668430335097, 8.93775720164609e-05, -1.959631589261219e-05,
        1.092724255339996e-06, 9.2703110535758e-07, -4.148355670476543e-07,
        8.832976368413039e-08, -3.353926771700749e-09, -5.130904892120154e-09,
        2.1910180092266765e-09,
    ],
    [
        0.16666666666666666, -0.041666666666666664, 0.008333333333333333,
        0.0011574074074074073, -0.0014991181657848325, 0.0005844907407407408,
        -0.00012247697432882617, 1.2936630413482265e-06, 9.97630627260257e-06,
        -4.23941602508821e-06, 8.943748084123027e-07, -5.677490673104467e-09,
        -7.40625772379062e-08, 3.09537460268152e-08, -6.433199279000913e-09,
        2.1528717857346947e-11,
    ],
    [
        0.002777777777777778, 0.005208333333333333, -0.00603505291005291,
        0.002826003086419753, -0.0006944444444444445, -4.018775720164609e-07,
        8.083109163356076e-05, -3.793546578868173e-05, 8.79845272849388e-06,
        -2.4088585374691842e-08, -8.928928824905048e-07, 4.0123779097176833e-07,
        -8.933051392998843e-08, 1.287003546895758e-10, 8.559996512023822e-09,
        -3.738905991237398e-09,
    ],
    [
        -0.01033399470899471, 0.006703317901234568, -0.0022537294238683127,
        -0.00011975951646090535, 0.0005030110778567569, -0.00026616893810421974,
        6.97105963309667e-05, 3.423578734096138e-08, -8.971816384939384e-06,
        4.412224448090812e-06, -1.0685603917734002e-06, 5.258580006955357e-10,
        1.200233452368202e-07, -5.606975973924547e-08, 1.2973206342141106e-08,
        -3.5535200617440753e-12,
    ],
])
# Stirling series of Gamma*(d) = Gamma(d) / (sqrt(2 pi / d) d^d e^-d); 6 terms: < 1e-9 at d=8.
_STIRLING = (1.0, 1 / 12, 1 / 288, -139 / 51840, -571 / 2488320, 163879 / 209018880)



def _stream_bits(key, rows: int, n: int, stream, part: int) -> jnp.ndarray:
    """``(rows, n)`` random uint32 words of stream ``(part, stream)`` of ``key``.

    Each stream gets its own ThreeFry key (``fold_in``), and the words come from XLA's
    native ``RngBitGenerator`` (ThreeFry-2x32-20), about three times cheaper per word on
    CPU than Philox written in 32-bit ``jnp`` arithmetic and ``jax.random.bits``.
    """
    state = jax.random.bits(jax.random.fold_in(jax.random.fold_in(key, part), stream),
                            (4,), jnp.uint32)

    @jax.custom_batching.custom_vmap
    def generate(state):
        return jax.lax.rng_bit_generator(state, (rows, n), jnp.uint32,
                                         algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY)[1]

    # JAX batches rng_bit_generator by drawing every row's words from the first row's
    # state, so vmapped draws would depend on the batch (and on the batch size of a
    # ``lax.map``). One generator call per row keeps each row's words its own.
    @generate.def_vmap
    def generate_rows(axis_size, in_batched, state):
        return jax.lax.map(generate, state), True

    return generate(state)


def _key_state(key) -> jnp.ndarray:
    """The ``RngBitGenerator`` state (4 uint32 words) of a JAX key: one ThreeFry hash."""
    return jax.random.bits(key, (4,), jnp.uint32)


def _chained_bits(state, rows: int, n: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(rows, n)`` uint32 words from ``state`` and the state that continues the stream.

    Chaining the generator's own output state gives every consumer fresh words without a
    ThreeFry ``fold_in`` per stream: each ``fold_in`` is a hash of its own in the compiled
    program, and compiling them was a large part of a Gamma site's compile time.
    """
    @jax.custom_batching.custom_vmap
    def generate(state):
        return jax.lax.rng_bit_generator(state, (rows, n), jnp.uint32,
                                         algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY)

    # As in _stream_bits: one generator call per batch row keeps each row's words its own.
    @generate.def_vmap
    def generate_rows(axis_size, in_batched, state):
        return jax.lax.map(generate, state), (True, True)

    return generate(state)


def _uniform_open(bits: jnp.ndarray, dtype) -> jnp.ndarray:
    """Uniform on (0, 1] with 24 random bits (log is finite)."""
    return ((bits >> 8) + 1).astype(dtype) * dtype(2.0**-24)


def _normal(bits: jnp.ndarray, dtype) -> jnp.ndarray:
    """Standard normal by inversion of a 24-bit uniform on (0, 1) (as ``jax.random.normal``)."""
    v = ((bits >> 8).astype(dtype) + dtype(0.5)) * dtype(2.0**-23) - dtype(1.0)
    return dtype(np.sqrt(2.0)) * jax.lax.erf_inv(v)


def log1pmx(t: jnp.ndarray) -> jnp.ndarray:
    """``log(1 + t) - t`` without cancellation for small ``|t|``; ``t > -1``.

    For ``|t| <= 1/4`` the Taylor series ``sum_{k>=2} (-1)^(k+1) t^k / k`` to ``k = 17``
    (truncation below ``2 * 4^-16 / 18``, 1e-10 relative to the leading ``t^2 / 2``);
    otherwise ``log1p(t) - t``, whose magnitude is then at least 0.026. Multiply-adds
    only: a division here kept XLA's CPU emitter from vectorising the fused Marsaglia-Tsang
    test and tripled the cost of a draw.
    """
    small = jnp.abs(t) <= 0.25
    ts = jnp.where(small, t, 0.0)
    series = jnp.zeros_like(ts)
    for k in range(_LOG1PMX_TERMS, 1, -1):
        series = series * ts + (1.0 if k % 2 else -1.0) / k
    return jnp.where(small, series * ts * ts, jnp.log1p(t) - t)


def gamma_shape_derivative(d: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
    """``dz/dd`` of ``z ~ Gamma(d)`` at a fixed quantile, for ``d >= A0``.

    Parameters
    ----------
    d : array, shape S
        Shapes, ``>= A0`` (8).
    z : array, shape S
        Draws.

    Returns
    -------
    array, shape S: ``-(dP(d, z)/dd) / f(z; d)``, relative error < 3e-6 (see module).
    """
    mu = (z - d) / d
    eta = jnp.sign(mu) * jnp.sqrt(jnp.maximum(-2 * log1pmx(mu), 0.0))
    inv_d = 1 / d
    total = jnp.zeros_like(eta)
    for row in _E[::-1]:                       # sum_k E_k(eta) d^-k by Horner in 1/d
        poly = jnp.zeros_like(eta)
        for c in row[::-1]:                    # E_k(eta) by Horner in eta
            poly = poly * eta + c
        total = total * inv_d + poly
    gstar = jnp.zeros_like(inv_d)
    for c in _STIRLING[::-1]:
        gstar = gstar * inv_d + c
    return (1 + mu) * (1 + gstar * total)


def _marsaglia_tsang(d, x, u):
    """One Marsaglia-Tsang proposal per element for shapes ``d >= 1``: the draw where it is
    accepted, ``-1`` where it is rejected.

    The acceptance test ``log u < x^2/2 + d'(1 - v + log v)``, ``v = (1 + c x)^3``, is
    written with ``log1pmx`` so that it keeps float32 precision for shapes up to 1e5+.
    Rejection is folded into the draw's sign because a separate boolean output splits the
    fused computation in two and doubled its cost on CPU.
    """
    dp = d - 1 / 3
    w = x * jax.lax.rsqrt(9 * dp)
    inside = w > -1
    w = jnp.where(inside, w, 0.0)
    # 1 - v + log v = 3 (log1p(w) - w) - 3 w^2 - w^3
    threshold = x * x / 2 + dp * (3 * log1pmx(w) - w * w * (3 + w))
    accepted = inside & (jnp.log(u) < threshold)
    return jnp.where(accepted, dp * (1 + w) ** 3, -1.0)


def _gamma_with_derivative(key, a: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Draws ``z ~ Gamma(a)`` and their pathwise derivatives ``dz/da`` (same shape as ``a``)."""
    dtype = a.dtype.type
    shape, size = a.shape, a.size
    # Padded to whole blocks of the retry rounds (so their reshape is free); the padding
    # has shape A0 and is cut off at the end.
    block = min(_BLOCK, size)
    n_blocks = -(-size // block)
    n = n_blocks * block
    a = jnp.pad(a.ravel(), (0, n - size), constant_values=A0)
    boost = jnp.where(a < A0, jnp.ceil(A0 - a), 0.0)
    d = a + boost

    state, words = _chained_bits(_key_state(key), 2, n)
    g = _marsaglia_tsang(d, _normal(words[0], dtype), _uniform_open(words[1], dtype))

    def rejected_left(carry):
        return jnp.any(carry[1] < 0)

    starts = jnp.arange(n_blocks) * block

    def retry(carry):
        # The first rejected element of every block of _BLOCK elements is proposed again
        # _ROUNDS times; the first accepted proposal is kept, so every element's law is
        # exactly Gamma(d). Rejections are rare (~0.3 % at d = 8) and scattered, so one
        # round of n / _BLOCK candidates settles nearly all of them whatever n is (a
        # fixed-size gather of rejected elements took n / 256 rounds of an O(n) top_k).
        state, g = carry
        rejected = (g < 0).reshape(n_blocks, block)
        has = jnp.any(rejected, axis=1)
        idx = starts + jnp.argmax(rejected, axis=1)    # a block's start if none rejected
        state, words = _chained_bits(state, 2, n_blocks * _ROUNDS)
        g_r = _marsaglia_tsang(jnp.tile(d[idx], _ROUNDS), _normal(words[0], dtype),
                               _uniform_open(words[1], dtype)).reshape(_ROUNDS, n_blocks)
        first = jnp.argmax(g_r > 0, axis=0)
        g_new = jnp.take_along_axis(g_r, first[None], axis=0)[0]
        return state, g.at[idx].set(jnp.where(has, g_new, g[idx]), indices_are_sorted=True,
                                    unique_indices=True)

    state, g = jax.lax.while_loop(rejected_left, retry, (state, g))
    dg = gamma_shape_derivative(d, g)

    def boost_factors(state):
        # z = G(a + B) prod_{i<B} U_i^(1/(a+i)); d log z / da gains -log U_i / (a+i)^2.
        # B <= 8: the words of all 8 possible factors come from one call, combined in a
        # rolled loop (unrolled, or one variant per factor count, compiled several times
        # slower).
        words = _chained_bits(state, _MAX_BOOST, n)[1]

        def factor(i, sums):
            log_u = jnp.log(_uniform_open(words[i], dtype))
            inv = jnp.where(i < boost, 1 / (a + i.astype(a.dtype)), 0.0)
            return sums[0] + log_u * inv, sums[1] - log_u * inv * inv

        log_f, dlog_f = jax.lax.fori_loop(0, _MAX_BOOST, factor,
                                          (jnp.zeros_like(a), jnp.zeros_like(a)))
        f = jnp.exp(log_f)
        z = g * f
        return z, dg * f + z * dlog_f

    def no_boost(_):
        # The draws themselves: no pass over the arrays when nothing is boosted.
        return g, dg

    z, dz = jax.lax.cond(jnp.any(boost > 0), boost_factors, no_boost, state)
    return z[:size].reshape(shape), dz[:size].reshape(shape)


@jax.custom_jvp
def _standard_gamma(key, a):
    return _gamma_with_derivative(key, a)[0]


@_standard_gamma.defjvp
def _standard_gamma_jvp(primals, tangents):
    key, a = primals
    z, dz = _gamma_with_derivative(key, a)
    return z, dz * tangents[1]


def gamma(key, a, shape: tuple[int, ...] | None = None) -> jnp.ndarray:
    """``Gamma(a, 1)`` draws with exact law and an unbiased pathwise gradient in ``a``.

    Parameters
    ----------
    key : jax PRNG key
    a : array_like, float
        Shapes ``> 0``; draws are made in ``a``'s float dtype.
    shape : tuple of int, optional
        Output shape, broadcast with ``a``'s shape (default ``a``'s shape).

    Returns
    -------
    array of ``shape``: the draws, differentiable in ``a`` (``jax.grad``/``jvp``).
    """
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    shape = a.shape if shape is None else jnp.broadcast_shapes(tuple(shape), a.shape)
    a = jnp.broadcast_to(a, shape)
    if a.size == 0:
        return jnp.zeros(shape, a.dtype)
    return _standard_gamma(key, a)
