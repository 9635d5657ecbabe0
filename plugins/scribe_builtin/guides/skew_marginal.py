"""Marginals of the ``skew_gene`` guide: a site's value ``T(x)`` with

    x = loc + scale y(eps) + anchor_sd e
          + lead_weight y0 + lead_softplus softplus(lead_loc + lead_scale y0),

``y(eps) = sinh((asinh(eps) + skew) / tail)`` (sinh-arcsinh of a standard Normal),
``y0`` the same map of an independent ``eps0`` with ``lead_skew`` / ``lead_tail``, ``e``
standard Normal, and ``T`` the bijection of the site's support (``exp``, ``sigmoid`` or
identity). The first site of a block has no lead (``lead_weight = lead_softplus = 0``).

Draws are exact. Given ``(eps0, e)`` the law of ``x`` is a shifted, scaled sinh-arcsinh
Normal with a closed-form density and cdf, so the marginal density and cdf are
integrals over ``(eps0, e)``: a 201-point trapezoid rule over ``eps0 in [-7.5, 7.5]``
(a fine grid, since the conditional density can be narrower than the shift's range)
times 8-point Gauss-Hermite over ``e`` (a block's first site has no lead: the ``e``
rule alone). Quantiles bisect the cdf; means and variances use Gauss-Hermite over
``(eps0, e, eps)`` (24 x 8 x 24 nodes); the mode is the best of a 33-point grid over
``mean(x) +- 6 sd(x)`` refined by a 17-point grid around it (resolution 0.047 sd of
``x``; an end of the grid where the density rises towards the support's boundary).
With a tail parameter below 1/2 the draws' tails grow faster than ``eps^2``, so
``E[exp(x)]`` (the mean of a positive site) is infinite and reported as ``inf``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import promote_shapes

from scribe.families import Family

ARG_NAMES = ("loc", "scale", "skew", "tail", "anchor_sd", "lead_loc", "lead_scale",
             "lead_skew", "lead_tail", "lead_weight", "lead_softplus")
_POSITIVE = ("scale", "tail", "lead_scale", "lead_tail")

_GRID = np.linspace(-7.5, 7.5, 201)
_GRID_W = np.exp(-0.5 * _GRID**2)
_GRID_W = _GRID_W / _GRID_W.sum()
_COARSE_GRID = np.linspace(-7.5, 7.5, 51)
_COARSE_GRID_W = np.exp(-0.5 * _COARSE_GRID**2)
_COARSE_GRID_W = _COARSE_GRID_W / _COARSE_GRID_W.sum()
_GH8, _GH8_W = np.polynomial.hermite_e.hermegauss(8)
_GH8_W = _GH8_W / _GH8_W.sum()
_DRIFT_NODES = (8, 4, 8)
_BISECTIONS = 50
_MODE_POINTS = 33
_MODE_FINE_POINTS = 17
_MODE_RANGE = 6.0


def sinh_arcsinh(eps, skew, tail):
    """``y = sinh((asinh(eps) + skew) / tail)`` and ``log dy/deps`` (elementwise)."""
    a = (jnp.arcsinh(eps) + skew) / tail
    return jnp.sinh(a), jnp.log(jnp.cosh(a)) - jnp.log(tail) - 0.5 * jnp.log1p(eps**2)


def _inverse(y, skew, tail):
    """``eps`` with ``sinh_arcsinh(eps) = y`` and ``log d eps / dy``."""
    a = tail * jnp.arcsinh(y) - skew
    return jnp.sinh(a), jnp.log(jnp.cosh(a)) + jnp.log(tail) - 0.5 * jnp.log1p(y**2)


# ---- pure, jitted pieces (``args`` is the tuple of ARG_NAMES, all of one batch shape) ----
def _lead_shift(args, eps0, e):
    """``loc + anchor_sd e + lead terms`` for outer nodes on a trailing axis."""
    loc, _, _, _, anchor_sd, lead_loc, lead_scale, lead_skew, lead_tail, weight, soft = (
        a[..., None] for a in args)
    y0, _ = sinh_arcsinh(eps0, lead_skew, lead_tail)
    return loc + anchor_sd * e + weight * y0 + soft * jax.nn.softplus(lead_loc + lead_scale * y0)


def _conditional(args, x, lead: bool | str = True):
    """Conditional ``eps``, ``log d eps / dx`` and log weights at ``x`` (``(...)`` ->
    ``(..., N)``) over the outer nodes ``(eps0, e)``. ``lead=False`` (a block's first
    site, whose lead terms are zero): no ``eps0`` grid, 201x fewer nodes; ``"coarse"``:
    a 51-point ``eps0`` grid (the mode's first, coarse search)."""
    if lead == "coarse":
        grid, grid_w = _COARSE_GRID, _COARSE_GRID_W
    else:
        grid, grid_w = (_GRID, _GRID_W) if lead else (np.zeros(1), np.ones(1))
    eps0 = jnp.asarray(np.repeat(grid, _GH8.size))
    e = jnp.asarray(np.tile(_GH8, grid.size))
    log_w = jnp.asarray(np.log(np.outer(grid_w, _GH8_W).ravel()))
    shift = _lead_shift(args, eps0, e)
    scale, skew, tail = (a[..., None] for a in args[1:4])
    eps, log_slope = _inverse((x[..., None] - shift) / scale, skew, tail)
    return eps, log_slope - jnp.log(scale), log_w


@functools.partial(jax.jit, static_argnames="lead")
def _log_prob_x(args, x, lead: bool | str = True):
    eps, log_slope, log_w = _conditional(args, x, lead)
    return jax.nn.logsumexp(-0.5 * eps**2 - 0.5 * np.log(2 * np.pi) + log_slope + log_w, -1)


@functools.partial(jax.jit, static_argnames="lead")
def _cdf_x(args, x, lead: bool = True):
    eps, _, log_w = _conditional(args, x, lead)
    return jnp.sum(jax.scipy.stats.norm.cdf(eps) * jnp.exp(log_w), axis=-1)


def _gauss_hermite(n: int):
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / weights.sum()


def _expect(args, function, nodes: tuple[int, int, int] = (24, 8, 24)):
    """``E[function(x)]`` by Gauss-Hermite over ``(eps0, e, eps)`` with ``nodes`` points
    on each axis."""
    (g0, w0), (ge, we), (g1, w1) = (_gauss_hermite(n) for n in nodes)
    eps0 = jnp.asarray(np.repeat(g0, ge.size))
    e = jnp.asarray(np.tile(ge, g0.size))
    shift = _lead_shift(args, eps0, e)[..., :, None]                    # (..., N, n_eps)
    scale, skew, tail = (a[..., None, None] for a in args[1:4])
    y, _ = sinh_arcsinh(jnp.asarray(g1), skew, tail)
    w = jnp.asarray(np.outer(np.outer(w0, we).ravel(), w1))
    return jnp.sum(function(shift + scale * y) * w, axis=(-2, -1))


@functools.partial(jax.jit, static_argnames="nodes")
def _moments_x(args, nodes: tuple[int, int, int] = (24, 8, 24)):
    """Mean and sd of the unconstrained ``x``."""
    mean = _expect(args, lambda x: x, nodes)
    var = _expect(args, lambda x: (x - mean[..., None, None]) ** 2, nodes)
    return mean, jnp.sqrt(jnp.maximum(var, 0.0))


@functools.partial(jax.jit, static_argnames="lead")
def _icdf_x(args, q, lead: bool = True):
    mean, sd = _moments_x(args)
    shape = jnp.broadcast_shapes(q.shape, mean.shape)
    # Chebyshev: the 0.001 and 0.999 quantiles lie within 40 sd of the mean.
    lo, hi = (jnp.broadcast_to(v, shape) for v in (mean - 40 * sd, mean + 40 * sd))

    def bisect(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        below = _cdf_x(args, mid, lead) < q
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, bisect, (lo, hi))
    return (lo + hi) / 2


def _transformed_moments(args, support_index):
    """Mean and variance of ``T(x)`` for the support's bijection."""
    transform = _TRANSFORMS[support_index]
    mean = _expect(args, transform)
    return mean, _expect(args, lambda x: (transform(x) - mean[..., None, None]) ** 2)


def _mode(args, support_index, lead: bool = True):
    transform = biject_to(_BY_SUPPORT[support_index][0])
    mean, sd = _moments_x(args)

    def density(step, grid=lead):
        x = mean + step * sd
        return (_log_prob_x(args, x, grid)
                - transform.log_abs_det_jacobian(x, transform(x)))

    # A coarse grid over mean +- 6 sd (33 points, and a 51-point lead grid), then a fine
    # one around its best point: for a unimodal density the mode lies within one coarse
    # spacing of the coarse maximum, so 33 + 17 densities give the resolution, 0.047 sd,
    # of 257 on one grid, at a tenth of the cost.
    # Where the density rises towards the support's boundary (a wide logit or log
    # marginal) this is the grid's end, a value near that boundary: kept finite, since
    # NaN modes would make every mixture assignment built on get_map NaN.
    coarse = jnp.linspace(-_MODE_RANGE, _MODE_RANGE, _MODE_POINTS)
    spacing = 2 * _MODE_RANGE / (_MODE_POINTS - 1)
    coarse_density = functools.partial(density, grid="coarse" if lead else False)
    best = coarse[jnp.argmax(jax.lax.map(coarse_density, coarse), axis=0)]
    offsets = jnp.linspace(-spacing, spacing, _MODE_FINE_POINTS)
    fine = jax.lax.map(lambda o: density(jnp.clip(best + o, -_MODE_RANGE, _MODE_RANGE)),
                       offsets)
    best = jnp.clip(best + offsets[jnp.argmax(fine, axis=0)], -_MODE_RANGE, _MODE_RANGE)
    return transform(mean + best * sd)


_mode = jax.jit(_mode, static_argnums=(1, 2))
_transformed_moments = jax.jit(_transformed_moments, static_argnums=1)


def _has_lead(weight, softplus) -> bool:
    """False when both lead terms are zero everywhere (a block's first site); True when
    they are not, or cannot be read (traced arrays): always a correct answer."""
    try:
        return bool(np.any(np.asarray(weight) != 0) or np.any(np.asarray(softplus) != 0))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return True


class SkewMarginal(Distribution):
    """Marginal of one site of a ``skew_gene`` block (module docstring); batch shape is
    the broadcast shape of the arguments (``(G,)`` or ``(K, G)``)."""

    arg_constraints = {name: constraints.positive if name in _POSITIVE
                       else constraints.real for name in ARG_NAMES}
    support = constraints.real
    family: Family
    _support_index = 2
    #: False for a block's first site (both lead terms zero, read from the arguments
    #: when they are concrete): its density and cdf then need no grid over the lead's
    #: noise. True is always correct.
    has_lead: bool = True

    def __init__(self, *args, validate_args=None):
        args = promote_shapes(*(jnp.asarray(a, jnp.result_type(float)) for a in args))
        batch_shape = jax.lax.broadcast_shapes(*(jnp.shape(a) for a in args))
        self.args = tuple(jnp.broadcast_to(a, batch_shape) for a in args)
        for name, value in zip(ARG_NAMES, self.args, strict=True):
            setattr(self, name, value)
        self.has_lead = _has_lead(self.lead_weight, self.lead_softplus)
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def family_and_args(self):
        """The family and arguments (what :func:`scribe.families.family_of` returns)."""
        return self.family, self.args

    @property
    def transform(self):
        return biject_to(self.support)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        k0, k1, k2 = jax.random.split(key, 3)
        y0, _ = sinh_arcsinh(jax.random.normal(k0, shape), self.lead_skew, self.lead_tail)
        y, _ = sinh_arcsinh(jax.random.normal(k1, shape), self.skew, self.tail)
        x = (self.loc + self.scale * y + self.anchor_sd * jax.random.normal(k2, shape)
             + self.lead_weight * y0
             + self.lead_softplus * jax.nn.softplus(self.lead_loc + self.lead_scale * y0))
        return self.transform(x)

    def log_prob(self, value):
        x = self.transform.inv(value)
        return (_log_prob_x(self.args, x, self.has_lead)
                - self.transform.log_abs_det_jacobian(x, value))

    def cdf(self, value):
        # Every bijection used here is increasing.
        return _cdf_x(self.args, self.transform.inv(jnp.asarray(value)), self.has_lead)

    def icdf(self, q):
        """Quantiles; ``q`` broadcasts against the batch shape (e.g. ``(L, 1)``)."""
        return self.transform(_icdf_x(self.args, jnp.asarray(q, self.loc.dtype),
                                      self.has_lead))

    @property
    def mean(self):
        return _transformed_moments(self.args, self._support_index)[0]

    @property
    def variance(self):
        return _transformed_moments(self.args, self._support_index)[1]

    @property
    def mode(self):
        return _mode(self.args, self._support_index, self.has_lead)

    def unconstrained_moments(self):
        """Mean and sd of the site's unconstrained value ``x`` (``log``, ``logit`` or
        the value itself): what the convergence stop's drift rule compares between
        windows (:mod:`scribe.svi.drift`). A coarse Gauss-Hermite rule (8 x 4 x 8
        nodes, 18x cheaper than :attr:`mean`'s): the rule needs a smooth function of
        the parameters and the sd's scale, not the last digit."""
        return _moments_x(self.args, _DRIFT_NODES)


class SkewLogMarginal(SkewMarginal):
    support = constraints.positive
    _support_index = 0


class SkewLogitMarginal(SkewMarginal):
    support = constraints.unit_interval
    _support_index = 1


class SkewRealMarginal(SkewMarginal):
    support = constraints.real
    _support_index = 2


def _family(cls, name: str) -> Family:
    def unavailable(*_):
        raise ValueError(f"{name} is a guide marginal, not a prior or mean-field family")

    family = Family(name=name, arg_names=ARG_NAMES,
                    arg_constraints=tuple(SkewMarginal.arg_constraints[n] for n in ARG_NAMES),
                    make=cls, mode=lambda *args: cls(*args).mode,
                    mean=lambda *args: cls(*args).mean, init_args=unavailable,
                    default_prior=(), support=cls.support)
    cls.family = family
    return family


SKEW_LOG = _family(SkewLogMarginal, "skew_lognormal")
SKEW_LOGIT = _family(SkewLogitMarginal, "skew_logitnormal")
SKEW_REAL = _family(SkewRealMarginal, "skew_normal")
_BY_SUPPORT = ((constraints.positive, SkewLogMarginal),
               (constraints.unit_interval, SkewLogitMarginal),
               (constraints.real, SkewRealMarginal))
_TRANSFORMS = (jnp.exp, jax.nn.sigmoid, lambda x: x)


def skew_marginal(support, loc, scale, skew, tail, anchor_sd, lead=None) -> SkewMarginal:
    """The marginal of a site with ``support``; ``lead`` is ``(lead_loc, lead_scale,
    lead_skew, lead_tail, lead_weight, lead_softplus)`` or None (the block's first site)."""
    cls = next(c for s, c in _BY_SUPPORT if s is support)
    if lead is None:
        zero, one = jnp.zeros_like(loc), jnp.ones_like(loc)
        lead = (zero, one, zero, one, zero, zero)
    return cls(loc, scale, skew, tail, anchor_sd, *lead)
