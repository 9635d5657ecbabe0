"""Distribution families used for priors and mean-field variational factors.

A family knows its argument names (the suffixes of variational parameter names), the
constraints of those arguments, how to build the NumPyro distribution, its mode and
mean, and how to place a variational factor around a guessed value (data-informed
initialisation). Each sampled site uses the same family for prior and guide.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import (
    Beta,
    Dirichlet,
    Distribution,
    ExpandedDistribution,
    Independent,
    LogNormal,
    Normal,
    constraints,
)

from scribe.distributions import BetaPrime, FastBeta, FastDirichlet
from scribe.logit_normal import LogitNormal, logit_normal_mean, logit_normal_mode

# Initial variational factors are centred on a data-informed guess with a concentration
# chosen by the caller from how many observations inform the site (see
# ``Composition.initial_params``): a factor far wider than the posterior lets the
# mean-field optimum slide along the p-r ridge, and Adam needs thousands of steps to
# shrink it. Beta arguments stay >= 2 so that modes are defined from the start.
_MAX_SCALE = 0.1


@attrs.frozen
class Family:
    """A parametric family used for a site's prior and its variational factor.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"beta"``.
    arg_names : tuple of str
        Argument names; variational parameters are named ``<site>_<arg>``.
    arg_constraints : tuple
        NumPyro constraints of the arguments (locations real, the rest positive).
    make : callable
        ``make(*args) -> Distribution``.
    mode : callable
        ``mode(*args) -> array``; NaN where the mode is not interior.
    mean : callable
        ``mean(*args) -> array``.
    init_args : callable
        ``init_args(value, concentration) -> tuple`` of variational arguments centred on
        ``value``; ``concentration`` (pseudo-observations) sets their width.
    default_prior : tuple of float
        Prior arguments used when the user gives none.
    support : constraint
        Support of a draw.
    event_ndim : int
        1 for the Dirichlet (a draw is a vector), else 0.
    """

    name: str
    arg_names: tuple[str, ...]
    arg_constraints: tuple
    make: Callable[..., Distribution]
    mode: Callable[..., jnp.ndarray]
    mean: Callable[..., jnp.ndarray]
    init_args: Callable[[jnp.ndarray], tuple]
    default_prior: tuple[float, ...]
    support: constraints.Constraint
    event_ndim: int = 0


def _beta_mode(a, b):
    interior = (a > 1) & (b > 1)
    return jnp.where(interior, (a - 1) / jnp.where(interior, a + b - 2, 1.0), jnp.nan)


def _beta_init(value, concentration):
    value = jnp.clip(value, 1e-3, 1 - 1e-3)
    return (
        jnp.maximum(value * concentration, 2.0),
        jnp.maximum((1 - value) * concentration, 2.0),
    )


def _betaprime_mode(a, b):
    return jnp.where(a > 1, (a - 1) / (b + 1), jnp.nan)


def _betaprime_mean(a, b):
    return BetaPrime(a, b).mean


def _betaprime_init(value, concentration):
    # phi / (1 + phi) ~ Beta(a, b): centre that Beta on the guessed value.
    return _beta_init(value / (1 + value), concentration)


def _lognormal_mode(loc, scale):
    return jnp.exp(loc - scale**2)


def _scale(concentration):
    # A scalar concentration is a rule of thumb, capped at _MAX_SCALE; per-element ones are
    # Laplace widths from the data (scribe.initial_widths) and are used as given.
    scale = jnp.asarray(concentration, jnp.float32) ** -0.5
    return jnp.minimum(_MAX_SCALE, scale) if jnp.ndim(concentration) == 0 else scale


def _lognormal_init(value, concentration):
    loc = jnp.log(jnp.maximum(value, 1e-6))
    return loc, jnp.broadcast_to(_scale(concentration), jnp.shape(loc))


def _normal_init(value, concentration):
    value = jnp.asarray(value, dtype=jnp.float32)
    return value, jnp.broadcast_to(_scale(concentration), jnp.shape(value))


def _logitnormal_init(value, concentration):
    value = jnp.clip(value, 1e-3, 1 - 1e-3)
    loc = jnp.log(value) - jnp.log1p(-value)
    return loc, jnp.broadcast_to(_scale(concentration), jnp.shape(loc))


def _dirichlet_mode(alpha):
    k = alpha.shape[-1]
    interior = jnp.all(alpha > 1, axis=-1, keepdims=True)
    total = jnp.sum(alpha, axis=-1, keepdims=True)
    return jnp.where(interior, (alpha - 1) / jnp.where(interior, total - k, 1.0), jnp.nan)


def _dirichlet_init(value, concentration):
    value = jnp.clip(value, 1e-3, None)
    value = value / jnp.sum(value, axis=-1, keepdims=True)
    return (jnp.maximum(value * concentration, 2.0),)


BETA = Family(
    name="beta",
    arg_names=("alpha", "beta"),
    arg_constraints=(constraints.positive, constraints.positive),
    make=FastBeta,
    mode=_beta_mode,
    mean=lambda a, b: a / (a + b),
    init_args=_beta_init,
    default_prior=(1.0, 1.0),
    support=constraints.unit_interval,
)

BETA_PRIME = Family(
    name="betaprime",
    arg_names=("alpha", "beta"),
    arg_constraints=(constraints.positive, constraints.positive),
    make=BetaPrime,
    mode=_betaprime_mode,
    mean=_betaprime_mean,
    init_args=_betaprime_init,
    default_prior=(1.0, 1.0),
    support=constraints.positive,
)

LOG_NORMAL = Family(
    name="lognormal",
    arg_names=("loc", "scale"),
    arg_constraints=(constraints.real, constraints.positive),
    make=LogNormal,
    mode=_lognormal_mode,
    mean=lambda loc, scale: jnp.exp(loc + scale**2 / 2),
    init_args=_lognormal_init,
    default_prior=(0.0, 1.0),
    support=constraints.positive,
)

NORMAL = Family(
    name="normal",
    arg_names=("loc", "scale"),
    arg_constraints=(constraints.real, constraints.positive),
    make=Normal,
    mode=lambda loc, scale: loc,
    mean=lambda loc, scale: loc,
    init_args=_normal_init,
    default_prior=(0.0, 1.0),
    support=constraints.real,
)

# The marginal of a probability site under a guide that is Normal in logit space.
LOGIT_NORMAL = Family(
    name="logitnormal",
    arg_names=("loc", "scale"),
    arg_constraints=(constraints.real, constraints.positive),
    make=LogitNormal,
    mode=logit_normal_mode,
    mean=logit_normal_mean,
    init_args=_logitnormal_init,
    default_prior=(0.0, 1.0),
    support=constraints.unit_interval,
)

DIRICHLET = Family(
    name="dirichlet",
    arg_names=("concentrations",),
    arg_constraints=(constraints.positive,),
    make=FastDirichlet,
    mode=_dirichlet_mode,
    mean=lambda alpha: alpha / jnp.sum(alpha, axis=-1, keepdims=True),
    init_args=_dirichlet_init,
    default_prior=(1.0,),
    support=constraints.simplex,
    event_ndim=1,
)

FAMILIES = {f.name: f for f in (BETA, BETA_PRIME, LOG_NORMAL, NORMAL, LOGIT_NORMAL, DIRICHLET)}


def family_of(distribution: Distribution) -> tuple[Family, tuple] | None:
    """Return the family of a (possibly ``Independent``-wrapped) distribution and its args.

    Used by the generic analyses (modes, means, scipy conversion) so that a plugin's
    posterior distributions need no extra description.
    """
    base = distribution
    # Unwrap batch reshaping only: LogNormal is itself a transformed Normal.
    while isinstance(base, Independent | ExpandedDistribution):
        base = base.base_dist
    # A plugin's distribution may name its own family (e.g. the skew_gene marginals).
    if hasattr(base, "family_and_args"):
        return base.family_and_args()
    if isinstance(base, BetaPrime):
        return BETA_PRIME, (base.concentration1, base.concentration0)
    if isinstance(base, LogitNormal):
        return LOGIT_NORMAL, (base.loc, base.scale)
    if isinstance(base, Beta):
        return BETA, (base.concentration1, base.concentration0)
    if isinstance(base, LogNormal):
        return LOG_NORMAL, (base.loc, base.scale)
    if isinstance(base, Normal):
        return NORMAL, (base.loc, base.scale)
    if isinstance(base, Dirichlet):
        return DIRICHLET, (base.concentration,)
    return None


def validate_prior_args(family: Family, args, site: str, n_components: int | None) -> tuple:
    """Check user prior arguments for a site against its family.

    Each argument is a number or an array (e.g. one value per gene); its shape is checked
    against the site's once the data's size is known
    (:func:`scribe.compose.check_prior_shapes`).

    Returns
    -------
    tuple
        Each argument as a ``float`` (a number) or a float ``numpy.ndarray`` (a copy).

    Raises
    ------
    ValueError
        Wrong number of arguments, a non-numeric one, or a value outside the argument's
        support.
    """
    try:
        values = [np.array(a, dtype=float) for a in args]
    except (TypeError, ValueError) as error:
        raise ValueError(f"prior for '{site}' must hold numbers or numeric arrays, got "
                         f"{args!r}") from error
    if family is DIRICHLET:
        expected = n_components
        if len(values) != expected or any(v.ndim for v in values):
            got = len(values) if not any(v.ndim for v in values) else f"arrays {args!r}"
            raise ValueError(
                f"prior for '{site}' needs {expected} Dirichlet concentrations "
                f"(one per component), got {got}"
            )
        if any(v <= 0 or not np.isfinite(v) for v in values):
            raise ValueError(f"prior for '{site}': concentrations must be positive, got {args}")
        return tuple(float(v) for v in values)
    if len(values) != len(family.arg_names):
        names = ", ".join(family.arg_names)
        raise ValueError(
            f"prior for '{site}' ({family.name}) needs {len(family.arg_names)} values "
            f"({names}), got {len(values)}"
        )
    for name, constraint, value in zip(family.arg_names, family.arg_constraints, values):
        bad = ~np.isfinite(value) | ~np.asarray(constraint(value), dtype=bool)
        if np.any(bad):
            shown = float(value) if value.ndim == 0 else (
                f"{float(value[bad].ravel()[0])} (at index "
                f"{tuple(int(i) for i in np.argwhere(bad)[0])})")
            raise ValueError(
                f"prior for '{site}' ({family.name}): {name}={shown} is outside "
                f"its support (finite, "
                f"{'positive' if constraint is constraints.positive else 'real'})"
            )
    return tuple(float(v) if v.ndim == 0 else v for v in values)
