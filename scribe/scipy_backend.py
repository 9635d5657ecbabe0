"""Conversion of NumPyro posterior distributions into frozen scipy.stats distributions."""

from __future__ import annotations

import numpy as np
from scipy import stats

from scribe.families import family_of
from scribe.logit_normal import logitnorm

_CONVERTERS = {
    "beta": lambda a, b: stats.beta(a, b),
    "betaprime": lambda a, b: stats.betaprime(a, b),
    "lognormal": lambda loc, scale: stats.lognorm(s=scale, scale=np.exp(loc)),
    "normal": lambda loc, scale: stats.norm(loc=loc, scale=scale),
    "logitnormal": lambda loc, scale: logitnorm(loc, scale),
}


def _dirichlet(alpha: np.ndarray):
    # scipy's dirichlet takes one concentration vector: batches become (nested) lists.
    return stats.dirichlet(alpha) if alpha.ndim == 1 else [_dirichlet(a) for a in alpha]


def to_scipy(distribution):
    """A frozen scipy distribution equal to ``distribution`` (vectorised over its batch)."""
    found = family_of(distribution)
    if found is None:
        raise ValueError(f"no scipy equivalent known for {type(distribution).__name__}")
    family, args = found
    if family.name not in _CONVERTERS and family.name != "dirichlet":
        raise ValueError(f"no scipy equivalent known for the {family.name!r} marginal of "
                         f"{type(distribution).__name__}; use backend='numpyro'")
    args = [np.asarray(a, dtype=np.float64) for a in args]
    if family.name == "dirichlet":
        return _dirichlet(args[0])
    return _CONVERTERS[family.name](*args)
