"""Capture anchoring (SPEC section 6): a per-cell capture prior centred on ``L_c / M_0``.

Counts identify only ``p_hat_c = p nu_c / (1 - p (1 - nu_c))``: ``p`` and the capture
``nu_c`` slide along a ridge. Cells of one organism hold roughly ``M_0`` mRNA molecules, so
``nu_c ~ L_c / M_0`` with ``L_c`` the cell's UMI total fixes the scale. The anchoring prior
gives ``nu_c`` **median** ``L_c / M_0`` (``L_c`` clipped below at 1, the ratio clipped into
``[NU_MIN, NU_MAX]``) and **log-scale spread** ``sd(log nu_c) = mrna_log_sd``, written in
the family of the parameterization's own capture site:

- ``p_capture ~ Beta(a, b)`` (standard, linked);
- ``phi_capture = (1 - nu)/nu ~ BetaPrime(b, a)`` (odds_ratio; then ``nu ~ Beta(a, b)``);
- ``p_capture_unconstrained = logit(nu) ~ Normal(logit(L_c/M_0), s)`` (unconstrained).

The arguments are solved once per family and spread on a grid of ``log(L_c/M_0)`` (in
float64, with scipy) and interpolated inside the model for the cells of each (mini-)batch,
so the training step stays cheap and jittable. A parameterization whose capture site is
another family or another function of ``nu`` is refused with a clear error (see
:func:`capture_anchor`).
"""

from __future__ import annotations

import functools
import numbers

import attrs
import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpyro.distributions import Distribution, constraints
from scipy import special

from scribe.mrna_totals import organism_total

#: Default log-scale spread of the anchored capture prior.
DEFAULT_LOG_SD = 0.3
#: Range of ``mrna_log_sd``: below it the prior pins nu; above it nothing is anchored.
LOG_SD_RANGE = (0.01, 2.0)
#: Prior medians of the capture are clipped into this range.
NU_MIN, NU_MAX = 1e-6, 0.9
_GRID_SIZE = 512


# ---- user arguments ---------------------------------------------------------------------
def resolve_mrna_per_cell(value) -> float | None:
    """``M_0`` from ``mrna_per_cell``: a positive number, an organism name, or None.

    Raises
    ------
    TypeError
        Neither a number, a string nor None.
    ValueError
        A number that is not finite and positive, or an unknown organism name.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return float(organism_total(value).molecules)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"mrna_per_cell must be a positive number of mRNA molecules per cell "
                        f"or an organism name, got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"mrna_per_cell must be a positive, finite number of mRNA molecules "
                         f"per cell (e.g. 2e5), got {value!r}")
    return float(value)


def check_mrna_log_sd(value) -> float:
    """Validate ``mrna_log_sd`` (the log-scale spread of the anchored capture prior).

    Raises
    ------
    TypeError, ValueError
        Not a real number, or outside :data:`LOG_SD_RANGE`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"mrna_log_sd must be a number, got {type(value).__name__}")
    low, high = LOG_SD_RANGE
    if not np.isfinite(value) or not low <= value <= high:
        raise ValueError(f"mrna_log_sd must lie in [{low}, {high}] (the sd of log capture), "
                         f"got {value!r}")
    return float(value)


def anchor_capture(library, mrna_per_cell: float):
    """Prior median of each cell's capture, ``clip(max(L_c, 1) / M_0, NU_MIN, NU_MAX)``.

    Works on NumPy and JAX arrays alike; ``library`` has shape ``(C,)``.
    """
    xp = jnp if isinstance(library, jnp.ndarray) else np
    return xp.clip(xp.maximum(library, 1.0) / mrna_per_cell, NU_MIN, NU_MAX)


# ---- solving a family's arguments for a median and a log-scale sd ------------------------
def beta_for_capture(median, log_sd: float, n_iter: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` such that ``nu ~ Beta(a, b)`` has the given median and ``sd(log nu)``.

    ``Var(log nu) = trigamma(a) - trigamma(a + b)`` exactly; the median is the exact Beta
    median. Solved by Newton's method in ``(log a, log b)`` from Kerman's approximation
    ``median ~ (a - 1/3) / (a + b - 2/3)``.

    Parameters
    ----------
    median : array of float, shape (N,)
        In (0, 1).
    log_sd : float

    Returns
    -------
    a, b : numpy.ndarray, shape (N,)
    """
    median = np.asarray(median, np.float64)
    target = np.stack([np.log(median), np.full(median.shape, 2 * np.log(log_sd))])

    def residual(x):
        a, b = np.exp(x)
        var = special.polygamma(1, a) - special.polygamma(1, a + b)
        return np.stack([np.log(special.betaincinv(a, b, 0.5)), np.log(var)]) - target

    # Start: for small nu, Var(log nu) ~ (1 - nu) / a; b from Kerman's median.
    a = np.maximum((1 - median) / log_sd**2, 0.5)
    b = np.maximum((a - 1 / 3) * (1 / median - 1) + 1 / 3, 0.05)
    x = np.log(np.stack([a, b]))
    h = 1e-6
    for _ in range(n_iter):
        f = residual(x)
        if np.all(np.abs(f) < 1e-11):
            break
        j0 = (residual(x + [[h], [0]]) - f) / h
        j1 = (residual(x + [[0], [h]]) - f) / h
        det = j0[0] * j1[1] - j1[0] * j0[1]
        step = np.stack([(j1[1] * f[0] - j1[0] * f[1]) / det,
                         (-j0[1] * f[0] + j0[0] * f[1]) / det])
        x = x - np.clip(step, -1.0, 1.0)   # damped: at most a factor e per iteration
    if not np.all(np.abs(residual(x)) < 1e-8):
        raise ValueError(f"no Beta capture prior with sd(log nu) = {log_sd} for medians in "
                         f"[{median.min():.3g}, {median.max():.3g}]")
    return np.exp(x[0]), np.exp(x[1])


def logit_normal_for_capture(median, log_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """``(loc, scale)`` such that ``nu = sigmoid(z)``, ``z ~ Normal(loc, scale)``, has the
    given median and ``sd(log nu)``.

    ``loc = logit(median)`` exactly; ``scale`` by bisection, with ``sd(log sigmoid(z))``
    computed by 120-node Gauss-Hermite quadrature (smooth integrand: error far below 1e-8).
    """
    median = np.asarray(median, np.float64)
    loc = special.logit(median)
    nodes, weights = hermegauss(120)
    weights = weights / weights.sum()

    def sd_log(scale):
        log_nu = -np.logaddexp(0.0, -(loc[:, None] + scale[:, None] * nodes[None, :]))
        mean = log_nu @ weights
        return np.sqrt(np.maximum((log_nu - mean[:, None]) ** 2 @ weights, 0.0))

    low = np.full(median.shape, np.log(log_sd * 1e-2))
    high = np.full(median.shape, np.log(log_sd * 1e4))
    for _ in range(64):   # sd(log nu) increases with the scale; 2^-64 of the bracket
        mid = (low + high) / 2
        too_wide = sd_log(np.exp(mid)) > log_sd
        high, low = np.where(too_wide, mid, high), np.where(too_wide, low, mid)
    return loc, np.exp((low + high) / 2)


# ---- rules: how each supported capture site relates to nu ---------------------------------
def _probe_map(name: str):
    return {
        "nu": lambda nu: nu,
        "1-nu": lambda nu: 1 - nu,
        "odds-": lambda nu: (1 - nu) / nu,
        "odds+": lambda nu: nu / (1 - nu),
        "logit": lambda nu: np.log(nu / (1 - nu)),
    }[name]


def _args_for(rule: tuple[str, str], median, log_sd: float) -> tuple[np.ndarray, ...]:
    family, relation = rule
    if family == "normal":
        loc, scale = logit_normal_for_capture(median, log_sd)
        return (loc, scale)   # relation "logit"
    a, b = beta_for_capture(median, log_sd)   # nu ~ Beta(a, b)
    # 1 - nu ~ Beta(b, a); (1 - nu)/nu ~ BetaPrime(b, a); nu/(1 - nu) ~ BetaPrime(a, b).
    return (a, b) if relation in ("nu", "odds+") else (b, a)


#: (family name, site as a function of nu) pairs that can be anchored.
SUPPORTED = (("beta", "nu"), ("beta", "1-nu"), ("betaprime", "odds-"),
             ("betaprime", "odds+"), ("normal", "logit"))
_DESCRIBE = {"nu": "nu", "1-nu": "1 - nu", "odds-": "(1 - nu)/nu", "odds+": "nu/(1 - nu)",
             "logit": "logit(nu)"}


@functools.lru_cache(maxsize=32)
def _table(rule: tuple[str, str], log_sd: float, log_args: tuple[bool, ...]):
    """Grid of ``log(median)`` and the family's arguments there (log of positive ones).

    NumPy arrays: a JAX array made on a first call inside ``jit`` would be a tracer, and
    the cache would hand it to later traces.
    """
    grid = np.linspace(np.log(NU_MIN), np.log(NU_MAX), _GRID_SIZE)
    args = _args_for(rule, np.exp(grid), log_sd)
    stored = [np.log(a) if use_log else a for a, use_log in zip(args, log_args, strict=True)]
    return grid.astype(np.float32), tuple(np.asarray(s, np.float32) for s in stored)


@attrs.frozen
class CaptureAnchor:
    """The anchoring prior of one capture site.

    Parameters
    ----------
    site : Site
        The parameterization's capture site.
    rule : (str, str)
        Its family name and its relation to ``nu`` (one of :data:`SUPPORTED`).
    mrna_per_cell : float
        ``M_0``.
    log_sd : float
        ``sd(log nu)``.
    """

    site: object
    rule: tuple[str, str]
    mrna_per_cell: float
    log_sd: float

    def prior_args(self, cell_totals) -> tuple[jnp.ndarray, ...]:
        """The capture family's arguments for cells with UMI totals ``cell_totals`` ``(B,)``.

        Jittable; each argument has shape ``(B,)``.
        """
        log_args = tuple(c is constraints.positive for c in self.site.family.arg_constraints)
        grid, stored = _table(self.rule, self.log_sd, log_args)
        log_median = jnp.log(anchor_capture(jnp.asarray(cell_totals, jnp.float32),
                                            self.mrna_per_cell))
        values = [jnp.interp(log_median, grid, s) for s in stored]
        return tuple(jnp.exp(v) if use_log else v
                     for v, use_log in zip(values, log_args, strict=True))

    def prior(self, cell_totals) -> Distribution:
        """The anchored prior of the cells with UMI totals ``cell_totals``, batch ``(B,)``."""
        return self.site.family.make(*self.prior_args(cell_totals))


def capture_anchor(block, capture_name: str, parameterization: str, mrna_per_cell: float,
                   log_sd: float) -> CaptureAnchor:
    """The anchoring prior for a parameterization's capture block.

    The block's relation to ``nu`` is read from its ``from_canonical`` map at a few
    capture values, so a third-party parameterization is anchored whenever its capture
    site is one of :data:`SUPPORTED`.

    Raises
    ------
    ValueError
        The block samples several sites, or one whose family and relation to the capture
        are not supported (the message lists those that are).
    """
    supported = "; ".join(f"{fam} on {_DESCRIBE[rel]}" for fam, rel in SUPPORTED)
    refusal = (f"mrna_per_cell: parameterization '{parameterization}' samples the capture "
               f"'{capture_name}' as {{what}}, which capture anchoring cannot centre on "
               f"L_c / M_0. Anchoring supports one site that is: {supported}")
    if len(block.sites) != 1:
        names = ", ".join(s.name for s in block.sites)
        raise ValueError(refusal.format(what=f"several sites ({names})"))
    site = block.sites[0]
    rule = capture_rule(block, capture_name)
    if rule is None:
        raise ValueError(refusal.format(what=f"site '{site.name}' of family "
                                             f"'{site.family.name}'"))
    return CaptureAnchor(site, rule, float(mrna_per_cell), float(log_sd))


def capture_rule(block, capture_name: str) -> tuple[str, str] | None:
    """The (family, relation to ``nu``) of a capture block's single site, one of
    :data:`SUPPORTED`, or None (several sites, or another family or relation).

    The relation is read from the block's ``from_canonical`` map at a few capture values.
    """
    if len(block.sites) != 1:
        return None
    site = block.sites[0]
    probe = np.array([0.02, 0.3, 0.8])
    # The composition may be built while a sampler is being traced (jit): evaluate the
    # probe eagerly, or it would be a tracer that numpy cannot read.
    with jax.ensure_compile_time_eval():
        value = np.asarray(block.from_canonical({capture_name: jnp.asarray(probe)})[site.name],
                           np.float64)
    for family, relation in SUPPORTED:
        if site.family.name == family and np.allclose(value, _probe_map(relation)(probe),
                                                      rtol=1e-4, atol=1e-6):
            return family, relation
    return None


def warn_clipped_anchor(counts, mrna_per_cell: float) -> None:
    """Warn when cells hold more UMIs than ``NU_MAX * M_0`` (their prior median is clipped).

    ``counts`` is a ``(C, G)`` array or scipy sparse matrix.
    """
    import warnings

    library = np.asarray(counts.sum(axis=1)).ravel()
    clipped = library > NU_MAX * mrna_per_cell
    if np.any(clipped):
        warnings.warn(
            f"mrna_per_cell={mrna_per_cell:g}: {int(clipped.sum())} cells have more than "
            f"{NU_MAX:g} x that many UMIs (largest {library.max():g}), so their capture prior "
            f"is centred at {NU_MAX:g}; is M_0 too small for these cells?",
            UserWarning, stacklevel=3)
