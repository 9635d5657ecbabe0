"""Parameter drift: the stopping rule's second criterion, on the variational posterior.

Why
---
The loss rule (:mod:`scribe.svi.convergence`) compares the loss's *relative* change per
window with ``tol``. A slow collective drift of many weakly identified latents (the
capture ridge ``p̂ = pν / (1 - p(1 - ν))`` of the capture models, ~26,000 dimensions in
nbvcp_mix at 20,000 x 2,000) lowers a loss of ~7e6 nats by ~70 nats per 100 steps: far
below ``tol = 1e-5``, yet the posterior means still move by a sizeable fraction of their
posterior sd per window and the stop comes with 1.5x the attainable ``r`` error
(docs/convergence.md). This module watches the posterior itself.

The criterion
-------------
After every window of ``window`` steps the engine takes a *snapshot*: for each per-gene
and per-cell site of the guide, the mean ``m`` and sd ``s`` of its variational factor in
unconstrained space (log of a positive site, logit of a probability;
:func:`unconstrained_moments`) at up to :data:`MAX_COORDS` coordinates (an even stride,
fixed for the fit). Global sites (``p``, mixing weights) are not watched: a median over one
to K values is no robust statistic, and in the unanchored capture models ``p`` is the
unidentified direction of the capture ridge.

1. Drift. ``S(t)`` is the mean of the last ``j`` snapshots (span means, like the loss
   rule's span medians: they average out the optimiser's jitter); the change per window
   is ``(S(t) - S(t - j)) / j``, in units of the current sd. Two statistics per site:
   *spread*, the median over coordinates of its absolute value; *collective* (per-gene
   sites only), the same on the mean of the standardized coordinates, where a drift of all
   genes in one direction shows with their independent jitter averaged out (a small trend
   shifts the spread's median of absolute values only quadratically). A per-cell site's
   collective direction is the capture scale, unidentified unless anchored: left out.
2. Noise floor. Adam's last iterates jitter around the optimum (the final rate, mini-batch
   and guide-draw noise), so even a converged fit shows a drift. Its level at span ``j`` is
   measured at that span: the second difference of consecutive span means,
   ``D = S(t) - 2 S(t-j) + S(t-2j)``, cancels a linear trend, and for white jitter of
   ``η`` sd per snapshot has sd ``η sqrt(6 / j)`` against the span difference's
   ``η sqrt(2 / j)``; the stationary drift is therefore ``noise(j) = median |D / s| /
   (sqrt(3) j)``, taken over coordinates and the last :data:`NOISE_WINDOWS` end points
   (so it includes jitter correlated from window to window). The collective noise, from
   one value per snapshot, is floored at the spread's noise / ``sqrt(n)`` (independent
   coordinates), which is precise. The span is the smallest with ``noise(j) <= drift_tol
   / z`` (``z`` = 2 for the spread, 4 for the single collective value) among those the
   history allows (``3 j`` snapshots, ``j <= MAX_SPAN``).
3. Flat. The window is flat for drift when every statistic of every site is below
   ``drift_tol``. When no allowed span brings a statistic's noise below ``drift_tol / z``,
   the longest allowed span decides with threshold ``max(drift_tol, z noise(j))``: the
   drift must then only be indistinguishable from the jitter. So the rule waits on a
   trend it can resolve, never on jitter: a stationary trace is flat from its third
   snapshot on, whatever its jitter. Not waiting for the longest span matters for the fits
   the loss rule already stops at convergence: a full-batch nbdm at 20,000 x 2,000
   jitters by ~0.25 of its posterior sd per window (Adam's step in ``log r`` against the
   sd of well-measured genes) and stops after 4 windows.

The fit stops when the loss rule has had ``patience`` flat windows *and* the drift is flat
at that check (:class:`~scribe.svi.convergence.ConvergenceMonitor`).

The threshold
-------------
``drift_tol = 0.003`` sd per 100-step window. A drift still at ``d`` per window that
relaxes with time constant ``τ`` windows moves the estimate by ``d τ`` more before it
settles; on nbvcp_mix at 5,000 x 1,000 the collective drift of ``r`` relaxes with
``τ ≈ 50`` windows (docs/convergence.md), so ``d = 0.003`` leaves ~0.15 sd. A bias of
``b`` sd moves a central 90 % interval's coverage to ``Φ(1.645 - b) - Φ(-1.645 - b)``:
89.6 % at ``b = 0.15``, 85.8 % at 0.5 (the loss rule's stop there had ``d ≈ 0.01``).
``scribe.fit``'s ``drift_tol="auto"`` uses 0.01 for zinbvcp (measured,
``scribe.fitting.DRIFT_TOLS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import (
    Beta,
    Dirichlet,
    Gamma,
    Normal,
    TransformedDistribution,
)
from numpyro.distributions.transforms import ExpTransform, SigmoidTransform

from scribe.distributions import BetaPrime
from scribe.special import digamma, trigamma

#: Default drift threshold: posterior sd per window (module docstring, "The threshold").
DRIFT_TOL = 0.003
#: Coordinates watched per site (an even stride over genes/cells): the median of
#: 4,096 values has a relative sampling error of ~2 %.
MAX_COORDS = 4096
#: Longest span (windows) over which the drift is resolved against the jitter.
MAX_SPAN = 8
#: Most second differences of span means (ending at successive windows) in the noise.
NOISE_WINDOWS = 20
#: Fewest second differences (coordinates x offsets) a noise level is taken from: one, so
#: that the collective statistic (one value per snapshot) is resolved from 3 snapshots
#: like the spread; the fits the loss rule already stops right stop after 4-5 windows.
MIN_NOISE_VALUES = 1
_Z = 2.0                     # resolution: stationary noise at most drift_tol / _Z
_Z_ONE = 4.0                 # the same for a single value (the collective statistic)
_SQRT3 = math.sqrt(3.0)


def check_drift_tol(drift_tol) -> None:
    """Validate ``drift_tol`` (None: no drift criterion)."""
    if drift_tol is None:
        return
    if isinstance(drift_tol, bool) or not isinstance(
            drift_tol, int | float | np.integer | np.floating):
        raise TypeError(f"drift_tol must be a positive float or None, got {drift_tol!r}")
    if not math.isfinite(drift_tol) or drift_tol <= 0:
        raise ValueError(f"drift_tol must be a finite number > 0 (None: loss rule only), "
                         f"got {drift_tol!r}")


def _normal_base(distribution) -> tuple | None:
    """``(loc, scale)`` of a Normal pushed through exp or sigmoid (LogNormal, LogitNormal)."""
    if not isinstance(distribution, TransformedDistribution):
        return None
    if len(distribution.transforms) != 1 or not isinstance(
            distribution.transforms[0], ExpTransform | SigmoidTransform):
        return None
    base = distribution.base_dist
    return (base.loc, base.scale) if isinstance(base, Normal) else None


def unconstrained_moments(distribution) -> tuple[jnp.ndarray, jnp.ndarray] | None:
    """Mean and sd of a variational factor in unconstrained space, exactly.

    Normal: itself; LogNormal / LogitNormal: the Normal's ``loc`` and ``scale``;
    Beta(a, b): ``logit x`` has mean ``ψ(a) - ψ(b)``, variance ``ψ'(a) + ψ'(b)``;
    BetaPrime(a, b): ``log x``, the same; Gamma(a, rate): ``log x``, ``ψ(a) - log rate``,
    ``ψ'(a)``; Dirichlet(α): each coordinate's Beta(α_k, Σα - α_k) marginal in logit space;
    a distribution with an ``unconstrained_moments()`` method (``skew_gene``'s marginals):
    what it returns.

    Parameters
    ----------
    distribution : numpyro Distribution
        Batch shape ``(...)`` (``(..., K)`` event for the Dirichlet).

    Returns
    -------
    (mean, sd) : arrays of the batch (and event) shape, or None for another family.
    """
    if isinstance(distribution, Normal):
        return distribution.loc, distribution.scale
    own = getattr(distribution, "unconstrained_moments", None)
    if callable(own):       # a guide family's marginal that computes them itself
        return own()
    base = _normal_base(distribution)
    if base is not None:
        return base
    if isinstance(distribution, Beta | BetaPrime):
        a, b = distribution.concentration1, distribution.concentration0
    elif isinstance(distribution, Dirichlet):
        a = distribution.concentration
        b = jnp.sum(a, axis=-1, keepdims=True) - a
    elif isinstance(distribution, Gamma):
        a = distribution.concentration
        return digamma(a) - jnp.log(distribution.rate), jnp.sqrt(trigamma(a))
    else:
        return None
    return digamma(a) - digamma(b), jnp.sqrt(trigamma(a) + trigamma(b))


def _strided(x: jnp.ndarray) -> jnp.ndarray:
    """Flattened ``x`` at an even stride of at most :data:`MAX_COORDS` entries."""
    flat = jnp.ravel(x)
    step = max(1, -(-flat.size // MAX_COORDS))
    return flat[::step]


def snapshot_fn(posterior: Callable[[dict], dict],
                params_of: Callable | None = None) -> Callable:
    """A jitted map from the variational parameters to the drift snapshot.

    Parameters
    ----------
    posterior : callable
        ``params -> {site: Distribution}`` (the guide family's posterior marginals).
    params_of : callable, optional
        Maps the function's argument to the constrained parameters inside the compiled
        program (the engine passes ``svi.get_params`` of an SVI state); None: identity.

    Returns
    -------
    callable
        ``argument -> {site: (mean, sd)}``, each a ``(n_i,)`` array with
        ``n_i <= MAX_COORDS``, sites whose family has no unconstrained moments left out.
    """
    def snapshot(argument) -> dict:
        params = argument if params_of is None else params_of(argument)
        out = {}
        for name, distribution in posterior(params).items():
            moments = unconstrained_moments(distribution)
            if moments is not None:
                out[name] = tuple(_strided(jnp.broadcast_to(
                    v, distribution.batch_shape + distribution.event_shape)) for v in moments)
        return out

    return jax.jit(snapshot)


def span_statistics(means: np.ndarray, sd: np.ndarray, span: int,
                    n_offsets: int = NOISE_WINDOWS) -> tuple[float, float] | None:
    """The drift over ``span`` windows and its stationary noise level.

    Parameters
    ----------
    means : numpy.ndarray, shape (n_snapshots, n)
        Snapshots of the unconstrained means, oldest first.
    sd : numpy.ndarray, shape (n,)
        The current posterior sd of each coordinate.
    span : int
        Windows per span mean.
    n_offsets : int
        Most second differences (ending 0, 1, ... windows ago) the noise is taken from.

    Returns
    -------
    (drift, noise) or None
        ``drift``: median over coordinates of ``|S(t) - S(t - span)| / (span s)``, with
        ``S(t)`` the mean of the ``span`` snapshots ending at ``t``; ``noise``: the
        drift a stationary trace shows, ``median |S(t) - 2 S(t-span) + S(t-2 span)| / s``
        ``/ (sqrt(3) span)``. None: fewer than ``3 span`` snapshots, or fewer than
        :data:`MIN_NOISE_VALUES` second differences.
    """
    n_snapshots = means.shape[0]
    n_offsets = min(n_offsets, n_snapshots - 3 * span + 1)
    if n_offsets < 1 or n_offsets * means.shape[1] < MIN_NOISE_VALUES:
        return None
    cum = np.concatenate([np.zeros((1, means.shape[1])), np.cumsum(means, axis=0)])
    ends = n_snapshots - np.arange(n_offsets)

    def span_mean(end):
        return (cum[end] - cum[end - span]) / span

    drift = float(np.median(np.abs(span_mean(ends[0]) - span_mean(ends[0] - span)) / sd)
                  / span)
    second = span_mean(ends) - 2 * span_mean(ends - span) + span_mean(ends - 2 * span)
    noise = float(np.median(np.abs(second) / sd)) / (_SQRT3 * span)
    return drift, noise


def site_check(means: np.ndarray, sd: np.ndarray, drift_tol: float,
               z: float = _Z, floors: Callable[[int], float] | None = None,
               stats_of: Callable[[int], tuple | None] | None = None) -> tuple | None:
    """The drift rule on one site: ``(drift, threshold, span, noise)`` or None (unresolved).

    The span is the smallest (up to :data:`MAX_SPAN`) whose noise is at most
    ``drift_tol / z``, with threshold ``drift_tol``; when none that the history allows
    (``3 span`` snapshots) reaches that, the longest it allows, with threshold
    ``max(drift_tol, z noise)``. None with fewer than 3 snapshots. ``z``: 2 for the median
    over many coordinates (concentrated near its noise level), :data:`_Z_ONE` for a
    single value (``|N|`` exceeds 2.7 times its median 0.7 % of the time). ``floors``:
    ``span -> lowest noise``; a noise estimate below it is raised to it. ``stats_of``:
    ``span -> span_statistics(means, sd, span)``, e.g. cached (default: computed).
    """
    if stats_of is None:
        def stats_of(span):
            return span_statistics(means, sd, span)
    last = None
    for span in range(1, MAX_SPAN + 1):
        stats = stats_of(span)
        if stats is None:
            break
        drift, noise = stats
        noise = max(noise, 0.0 if floors is None else floors(span))
        if noise <= drift_tol / z:
            return drift, drift_tol, span, noise
        last = (drift, noise, span)
    if last is None:
        return None
    drift, noise, span = last
    return drift, max(drift_tol, z * noise), span, noise


@dataclass
class DriftState:
    """What the drift rule saw at its latest check (all None before the first)."""

    drift: float | None = None       # largest site drift, sd per window
    site: str | None = None          # the site it came from
    threshold: float | None = None   # max(drift_tol, 2 noise) at that check
    span: int | None = None          # windows per span


@dataclass
class DriftMonitor:
    """The drift criterion, fed one snapshot per window.

    Parameters
    ----------
    drift_tol : float
        Posterior sd per window below which the drift is flat (:data:`DRIFT_TOL`).

    Attributes
    ----------
    state : DriftState
        The latest check; ``flat`` whether it passed.
    trace : list of dict
        Per window since the monitor was made (resets keep it): ``{site: (spread,
        collective)}``, each ``(drift, threshold, span, noise)`` of :func:`site_check`, for
        the sites resolved at that window (diagnostics, benchmarks).
    """

    drift_tol: float = DRIFT_TOL
    state: DriftState = field(default_factory=DriftState, init=False)
    flat: bool = field(default=False, init=False)
    trace: list = field(default_factory=list, init=False, repr=False)
    _history: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_drift_tol(self.drift_tol)
        self.drift_tol = float(self.drift_tol)

    def reset(self) -> None:
        self.state, self.flat, self._history = DriftState(), False, {}

    def update(self, snapshot: dict) -> bool:
        """Add a snapshot ``{site: (mean, sd[, collective])}``; True when the drift is flat.

        ``mean``, ``sd``: arrays ``(n,)``; ``collective`` (default True): also judge the
        site's collective drift (False for the per-cell sites, see the module docstring).
        """
        keep = 3 * MAX_SPAN + NOISE_WINDOWS
        worst = DriftState()
        flat, resolved = True, True
        seen = {}
        for name, site in snapshot.items():
            mean, sd = site[0], site[1]
            collective_too = len(site) < 3 or bool(site[2])
            mean = np.asarray(mean, dtype=np.float64)
            sd = np.maximum(np.asarray(sd, dtype=np.float64), np.finfo(np.float64).tiny)
            history = self._history.setdefault(name, [])
            history.append(mean)
            del history[:-keep]
            means = np.stack(history)
            # Spread: each coordinate on its own (median |change|); collective: the mean
            # of the standardized coordinates, whose independent jitter averages out. Its
            # noise, from one value per snapshot, scatters widely with a short history (10 %
            # of estimates below 0.55 of the truth at 10 snapshots); it cannot be below the
            # independent coordinates' level, the spread's noise / sqrt(n), which is
            # precise (a median over n): that is its floor.
            cache = {}

            def stats_of(span, means=means, sd=sd, cache=cache):
                if span not in cache:
                    cache[span] = span_statistics(means, sd, span)
                return cache[span]

            spread = site_check(means, sd, self.drift_tol, stats_of=stats_of)
            root_n = math.sqrt(means.shape[1])

            def floors(span, stats_of=stats_of, root_n=root_n):
                stats = stats_of(span)
                return 0.0 if stats is None else stats[1] / root_n

            collective = (site_check(np.mean(means / sd, axis=1, keepdims=True),
                                     np.ones(1), self.drift_tol, _Z_ONE, floors)
                          if collective_too else (0.0, self.drift_tol, 1, 0.0))
            if spread is None or collective is None:
                resolved = False
                continue
            seen[name] = (spread, collective)
            for kind, (drift, threshold, span, _) in (("", spread), ("(mean)", collective)):
                if worst.drift is None or drift / threshold > worst.drift / worst.threshold:
                    worst = DriftState(drift, name + kind, threshold, span)
                flat = flat and drift < threshold
        self.trace.append(seen)
        self.state = worst if worst.drift is not None else self.state
        # No watchable site (a plugin's own guide): the loss rule decides alone.
        self.flat = bool(flat and resolved)
        return self.flat

    def describe(self) -> str:
        """Short state for a progress bar."""
        if self.state.drift is None:
            return "drift ?"
        return f"drift {self.state.drift:.2g}/{self.state.threshold:.2g} sd ({self.state.site})"
