"""Divergences between two distributions of the same family, and between mixture components.

Families: Beta, ``BetaPrime``, LogNormal, Normal and Gamma, possibly wrapped in
``Independent`` / ``ExpandedDistribution``. Wrappers only reshape: a divergence is
computed elementwise for every scalar distribution, so the result has the broadcast of
both distributions' ``batch_shape + event_shape`` (nothing is summed over event axes).

KL divergence and Hellinger distance have closed forms. Two invariances keep the code
small: KL, Hellinger and Jensen-Shannon are unchanged by a bijection applied to both
distributions, so a LogNormal pair is treated as the Normal pair of its logarithm and
a BetaPrime(a, b) pair as the Beta(a, b) pair it maps to under ``x -> x / (1 + x)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import betaln, digamma, gammaln, polygamma
from numpyro.distributions import (
    Beta,
    Distribution,
    ExpandedDistribution,
    Gamma,
    Independent,
    LogNormal,
    Normal,
)

from scribe.distributions import BetaPrime

FAMILIES = ("beta", "betaprime", "lognormal", "normal", "gamma")
METRICS = ("hellinger", "kl", "js")

# The computations need only three shapes of density: normal (Normal, LogNormal on the
# log scale), beta (Beta, BetaPrime) and gamma.
_CANONICAL = {
    "beta": "beta",
    "betaprime": "beta",
    "lognormal": "normal",
    "normal": "normal",
    "gamma": "gamma",
}


def _unwrap(distribution: Distribution) -> tuple[str, tuple[jax.Array, ...]]:
    """Family name and arguments broadcast to ``batch_shape + event_shape``.

    Raises
    ------
    ValueError
        A family other than those in ``FAMILIES``.
    """
    shape = tuple(distribution.batch_shape) + tuple(distribution.event_shape)
    base = distribution
    while isinstance(base, Independent | ExpandedDistribution):
        base = base.base_dist
    # BetaPrime and LogNormal first: neither is a Beta or a Normal, but be explicit.
    if isinstance(base, BetaPrime):
        name, args = "betaprime", (base.concentration1, base.concentration0)
    elif isinstance(base, Beta):
        name, args = "beta", (base.concentration1, base.concentration0)
    elif isinstance(base, LogNormal):
        name, args = "lognormal", (base.loc, base.scale)
    elif isinstance(base, Normal):
        name, args = "normal", (base.loc, base.scale)
    elif isinstance(base, Gamma):
        name, args = "gamma", (base.concentration, base.rate)
    else:
        raise ValueError(
            f"unsupported distribution {type(base).__name__}; "
            f"supported families: {', '.join(FAMILIES)}"
        )
    args = tuple(jnp.asarray(a) for a in args)
    dtype = jnp.result_type(*args)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return name, tuple(jnp.broadcast_to(a.astype(dtype), shape) for a in args)


def _pair(p: Distribution, q: Distribution) -> tuple[str, tuple, tuple]:
    """Canonical family and the arguments of ``p`` and ``q`` in a common dtype."""
    name_p, args_p = _unwrap(p)
    name_q, args_q = _unwrap(q)
    if name_p != name_q:
        raise ValueError(
            f"divergences need two distributions of one family, got {name_p} and {name_q}"
        )
    dtype = jnp.result_type(*args_p, *args_q)
    args_p = tuple(a.astype(dtype) for a in args_p)
    args_q = tuple(a.astype(dtype) for a in args_q)
    return _CANONICAL[name_p], args_p, args_q


# ---- closed forms ----------------------------------------------------------------------------
def _stirling_correction(x: jax.Array) -> jax.Array:
    """``lgamma(x) - [(x - 1/2) log x - x + log(2 pi) / 2]`` for ``x >= 8`` (error < 1e-11)."""
    x2 = x * x
    return (1 / 12 - (1 / 360 - (1 / 1260 - 1 / (1680 * x2)) / x2) / x2) / x


def _lgamma_jensen_gap(x: jax.Array, y: jax.Array) -> jax.Array:
    """``lgamma((x + y) / 2) - (lgamma(x) + lgamma(y)) / 2`` (<= 0), without cancellation.

    For large arguments the direct difference loses everything to rounding (lgamma(1e3)
    is about 6e3, float32 resolves 5e-4 of it). Above 8 the Stirling form is differenced
    analytically: with ``m = (x + y) / 2``, ``d = |x - y| / 2``, ``u = d / m`` the main
    part is ``-[(m - 1/2) log1p(-u^2) + 2 d atanh(u)] / 2``. Exactly symmetric in x, y.
    """
    m = 0.5 * (x + y)
    d = 0.5 * jnp.abs(x - y)
    large = jnp.minimum(x, y) >= 8.0
    safe = lambda v: jnp.where(large, v, 8.0)  # noqa: E731 - keeps the unused branch finite
    ms, ds = safe(m), jnp.where(large, d, 0.0)
    u = ds / ms
    main = -0.5 * ((ms - 0.5) * jnp.log1p(-u * u) + 2.0 * ds * jnp.arctanh(u))
    corr = _stirling_correction(ms) - 0.5 * (
        _stirling_correction(safe(x)) + _stirling_correction(safe(y))
    )
    direct = gammaln(m) - 0.5 * (gammaln(x) + gammaln(y))
    return jnp.minimum(jnp.where(large, main + corr, direct), 0.0)


def _kl_closed(family: str, p: tuple, q: tuple) -> jax.Array:
    if family == "normal":
        (mu1, s1), (mu2, s2) = p, q
        t = 2.0 * (jnp.log(s1) - jnp.log(s2))  # log of the variance ratio
        kl = 0.5 * (jnp.expm1(t) - t + ((mu1 - mu2) / s2) ** 2)
    elif family == "beta":
        (a1, b1), (a2, b2) = p, q
        kl = (
            betaln(a2, b2)
            - betaln(a1, b1)
            + (a1 - a2) * digamma(a1)
            + (b1 - b2) * digamma(b1)
            + (a2 - a1 + b2 - b1) * digamma(a1 + b1)
        )
    else:  # gamma, shape k and rate r
        (k1, r1), (k2, r2) = p, q
        kl = (
            (k1 - k2) * digamma(k1)
            - gammaln(k1)
            + gammaln(k2)
            + k2 * (jnp.log(r1) - jnp.log(r2))
            + k1 * (r2 - r1) / r1
        )
    # Exactly 0 for identical arguments; rounding can otherwise dip a hair below 0.
    return jnp.maximum(kl, 0.0)


def _log_bhattacharyya(family: str, p: tuple, q: tuple) -> jax.Array:
    """``log BC = log int sqrt(p q)``, exactly symmetric in p and q."""
    if family == "normal":
        (mu1, s1), (mu2, s2) = p, q
        var_sum = s1 * s1 + s2 * s2
        return 0.5 * jnp.log(2.0 * s1 * s2 / var_sum) - (mu1 - mu2) ** 2 / (4.0 * var_sum)
    if family == "beta":
        # B((a1+a2)/2, (b1+b2)/2) / sqrt(B(a1,b1) B(a2,b2)), as three lgamma Jensen gaps.
        (a1, b1), (a2, b2) = p, q
        return (
            _lgamma_jensen_gap(a1, a2)
            + _lgamma_jensen_gap(b1, b2)
            - _lgamma_jensen_gap(a1 + b1, a2 + b2)
        )
    (k1, r1), (k2, r2) = p, q
    # With mean rate r and v = (r1 - r2) / (r1 + r2): r1 = r(1 + v), r2 = r(1 - v).
    v = (r1 - r2) / (r1 + r2)
    return _lgamma_jensen_gap(k1, k2) + 0.5 * (k1 * jnp.log1p(v) + k2 * jnp.log1p(-v))


def _hellinger_closed(family: str, p: tuple, q: tuple) -> jax.Array:
    log_bc = jnp.minimum(_log_bhattacharyya(family, p, q), 0.0)
    # 1 - BC via expm1: no cancellation for nearly identical distributions.
    return jnp.sqrt(jnp.clip(-jnp.expm1(log_bc), 0.0, 1.0))


# ---- Jensen-Shannon by composite Gauss-Legendre quadrature -----------------------------------
# Each density is integrated on a scale where it is smooth with tails decaying at least
# like exp(-|t|) in standard units: Normal as is, LogNormal and Gamma in log x, Beta and
# BetaPrime in logit x. Breakpoints for a pair are the union of, for each distribution,
# (a) mean + sd * sinh(0.55 j), |j| <= 8, reaching 40.7 sd, and (b) mode + min(1, sd) *
# sinh(0.55 j), |j| <= 5: the log-densities of Beta and Gamma bend on a scale of 1 near
# the mode, much finer than their sd when a shape parameter is small. Both sets follow
# each distribution, so a component 1000 times narrower than the other is still
# resolved. A 5-point Gauss-Legendre rule on each of the 55 intervals (275 nodes)
# integrates m(y) * phi(log p - log q). Against adaptive quadrature in float64, over 450
# random pairs (scale ratios up to 1e3, Beta and Gamma shapes 0.02 ... 2000) plus
# hand-picked ones, the absolute error was below 1e-5; in float32 rounding adds about
# 1e-6.
_TAU_WIDE = np.sinh(0.55 * np.arange(-8, 9))
_TAU_MODE = np.sinh(0.55 * np.arange(-5, 6))
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(5)
_LOG2 = float(np.log(2.0))


def _scale_stats(family: str, args: tuple) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean, sd and mode of a distribution on its smoothing scale."""
    if family == "normal":
        mu, s = args
        return mu, s, mu
    if family == "beta":  # y = logit x, E y = psi(a) - psi(b), var y = psi'(a) + psi'(b)
        a, b = args
        sd = jnp.sqrt(polygamma(1, a) + polygamma(1, b))
        return digamma(a) - digamma(b), sd, jnp.log(a) - jnp.log(b)
    k, r = args  # gamma, y = log x, E y = psi(k) - log r, var y = psi'(k)
    log_r = jnp.log(r)
    return digamma(k) - log_r, jnp.sqrt(polygamma(1, k)), jnp.log(k) - log_r


def _log_density(family: str, args: tuple, y: jax.Array) -> jax.Array:
    """Log-density on the smoothing scale at nodes ``y`` of shape ``(..., n, m)``."""
    args = tuple(a[..., None, None] for a in args)
    if family == "normal":
        mu, s = args
        return -0.5 * ((y - mu) / s) ** 2 - jnp.log(s) - 0.5 * np.log(2 * np.pi)
    if family == "beta":
        a, b = args
        return -a * jax.nn.softplus(-y) - b * jax.nn.softplus(y) - betaln(a, b)
    k, r = args
    z = y + jnp.log(r)
    return k * z - jnp.exp(z) - gammaln(k)


def _breakpoints(family: str, args: tuple) -> jax.Array:
    """``(..., 28)`` breakpoints following one distribution (see the module constants)."""
    mean, sd, mode = _scale_stats(family, args)
    dtype = jnp.result_type(mean)
    wide = mean[..., None] + sd[..., None] * jnp.asarray(_TAU_WIDE, dtype)
    local = jnp.minimum(sd, 1.0)[..., None]
    near_mode = mode[..., None] + local * jnp.asarray(_TAU_MODE, dtype)
    return jnp.concatenate([wide, near_mode], axis=-1)


def _js_quadrature(family: str, p: tuple, q: tuple) -> jax.Array:
    bp, bq = _breakpoints(family, p), _breakpoints(family, q)
    shape = jnp.broadcast_shapes(bp.shape[:-1], bq.shape[:-1])
    both = [jnp.broadcast_to(b, shape + b.shape[-1:]) for b in (bp, bq)]
    breaks = jnp.sort(jnp.concatenate(both, axis=-1), axis=-1)  # (..., 56)
    dtype = breaks.dtype
    lo, hi = breaks[..., :-1, None], breaks[..., 1:, None]
    half = 0.5 * (hi - lo)
    y = 0.5 * (lo + hi) + half * jnp.asarray(_GL_NODES, dtype)  # (..., 55, 5)
    weights = half * jnp.asarray(_GL_WEIGHTS, dtype)
    lp, lq = _log_density(family, p, y), _log_density(family, q, y)
    # Far tails can make both log-densities -inf (their difference NaN); those nodes
    # have zero mixture density and contribute 0 once the difference is made finite.
    d = jnp.minimum(jnp.nan_to_num(jnp.abs(lp - lq), nan=0.0, posinf=100.0), 100.0)
    # phi(d) = log 2 - H(sigmoid(d)) in [0, log 2]: the Jensen-Shannon integrand per unit
    # of mixture density, written for d >= 0 without cancellation at large d; exactly 0
    # where the densities agree.
    phi = _LOG2 - jax.nn.softplus(-d) - d * jax.nn.sigmoid(-d)
    phi = jnp.where(d > 0, jnp.clip(phi, 0.0, _LOG2), 0.0)
    log_mix = jnp.logaddexp(lp, lq) - _LOG2
    js = jnp.sum(weights * jnp.exp(log_mix) * phi, axis=(-2, -1))
    return jnp.clip(js, 0.0, _LOG2)


# ---- public API ------------------------------------------------------------------------------
def kl_divergence(p: Distribution, q: Distribution) -> jax.Array:
    """Kullback-Leibler divergence ``KL(p || q)`` in closed form, elementwise.

    Parameters
    ----------
    p, q : Distribution
        Two distributions of one family (see ``FAMILIES``); their shapes
        ``batch_shape + event_shape`` broadcast.

    Returns
    -------
    jax.Array, broadcast shape
        ``KL >= 0`` in nats; exactly 0 for identical arguments.

    Raises
    ------
    ValueError
        Unsupported or different families.
    """
    family, args_p, args_q = _pair(p, q)
    return _kl_closed(family, args_p, args_q)


def hellinger_distance(p: Distribution, q: Distribution) -> jax.Array:
    """Hellinger distance ``H = sqrt(1 - BC)``, ``BC = int sqrt(p q)``, in closed form.

    ``H^2 = (1/2) int (sqrt p - sqrt q)^2``, so ``H`` lies in ``[0, 1]``: 0 for identical
    distributions, 1 for disjoint supports. Symmetric in ``p`` and ``q``.

    Parameters
    ----------
    p, q : Distribution
        Two distributions of one family (see ``FAMILIES``); shapes broadcast.

    Returns
    -------
    jax.Array, broadcast shape

    Raises
    ------
    ValueError
        Unsupported or different families.
    """
    family, args_p, args_q = _pair(p, q)
    return _hellinger_closed(family, args_p, args_q)


def jensen_shannon_divergence(p: Distribution, q: Distribution) -> jax.Array:
    """Jensen-Shannon divergence ``(KL(p || m) + KL(q || m)) / 2``, ``m = (p + q) / 2``.

    No closed form exists; it is computed by fixed-order composite Gauss-Legendre
    quadrature (275 nodes per pair) on breakpoints that follow both distributions on
    a scale where their densities are smooth (log x for LogNormal and Gamma, logit x
    for Beta and BetaPrime). Absolute error below 1e-5 in float64 on overlapping,
    well-separated and very unequal-width pairs (width ratios up to 1e3, Beta/Gamma
    shapes from 0.02 to 2000); float32 rounding adds about 1e-6.

    Parameters
    ----------
    p, q : Distribution
        Two distributions of one family (see ``FAMILIES``); shapes broadcast.

    Returns
    -------
    jax.Array, broadcast shape
        In nats, within ``[0, log 2]``; exactly 0 for identical arguments and exactly
        symmetric in ``p`` and ``q``. Memory: about 275 values per element.

    Raises
    ------
    ValueError
        Unsupported or different families.
    """
    family, args_p, args_q = _pair(p, q)
    return _js_quadrature(family, args_p, args_q)


_CLOSED = {"kl": _kl_closed, "hellinger": _hellinger_closed}


def pairwise_component_divergences(distribution: Distribution, metric: str) -> jax.Array:
    """Divergence between every pair of mixture components.

    Parameters
    ----------
    distribution : Distribution
        A batched distribution whose leading axis of ``batch_shape + event_shape`` is
        the component axis ``K``, e.g. LogNormal posteriors of ``r`` with batch
        ``(K, G)``.
    metric : {"hellinger", "kl", "js"}
        Hellinger distance, KL divergence or Jensen-Shannon divergence.

    Returns
    -------
    jax.Array, shape (K, K, ...)
        Entry ``[i, j]`` is the metric between components ``i`` and ``j`` (for KL,
        ``KL(component i || component j)``). Zero diagonal; symmetric for
        ``"hellinger"`` and ``"js"``.

    Raises
    ------
    ValueError
        Unknown metric, unsupported family, or no component axis.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid choices: {', '.join(METRICS)}")
    name, args = _unwrap(distribution)
    if args[0].ndim == 0:
        raise ValueError("pairwise_component_divergences needs a leading component axis")
    family = _CANONICAL[name]
    if metric in _CLOSED:
        # Broadcast rows (i) against columns (j): (K, 1, ...) vs (1, K, ...).
        rows, cols = tuple(a[:, None] for a in args), tuple(a[None] for a in args)
        return _CLOSED[metric](family, rows, cols)

    # The quadrature holds ~275 values per pair: map over rows to bound memory by K, not K^2.
    def row(args_i):
        return _js_quadrature(family, tuple(a[None] for a in args_i), args)

    return lax.map(row, args)
