"""The stopping rule's parameter-drift criterion (scribe/svi/drift.py) on constructed traces."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import Beta, Dirichlet, Gamma, LogNormal, Normal
from scipy import integrate, special, stats

from scribe.distributions import BetaPrime
from scribe.logit_normal import LogitNormal
from scribe.svi.convergence import ConvergenceMonitor
from scribe.svi.drift import (
    DRIFT_TOL,
    MAX_COORDS,
    MAX_SPAN,
    DriftMonitor,
    site_check,
    snapshot_fn,
    span_statistics,
    unconstrained_moments,
)

N = 2000            # coordinates of a constructed site


def _quad_moments(pdf, transform, lo, hi):
    """Mean and sd of transform(X) by quadrature of the density."""
    m1 = integrate.quad(lambda x: transform(x) * pdf(x), lo, hi, limit=200)[0]
    m2 = integrate.quad(lambda x: transform(x) ** 2 * pdf(x), lo, hi, limit=200)[0]
    return m1, math.sqrt(m2 - m1**2)


@pytest.mark.parametrize("a, b", [(2.5, 7.0), (40.0, 3.0)])
def test_beta_and_betaprime_moments_match_quadrature(a, b):
    mean, sd = unconstrained_moments(Beta(a, b))
    want = _quad_moments(stats.beta(a, b).pdf, special.logit, 0, 1)
    np.testing.assert_allclose([float(mean), float(sd)], want, rtol=1e-4)
    mean, sd = unconstrained_moments(BetaPrime(a, b))
    want = _quad_moments(stats.betaprime(a, b).pdf, np.log, 0, np.inf)
    np.testing.assert_allclose([float(mean), float(sd)], want, rtol=1e-4)


def test_gamma_dirichlet_and_normal_families():
    mean, sd = unconstrained_moments(Gamma(3.0, 2.0))
    want = _quad_moments(stats.gamma(3.0, scale=0.5).pdf, np.log, 0, np.inf)
    np.testing.assert_allclose([float(mean), float(sd)], want, rtol=1e-4)
    alpha = jnp.array([2.0, 5.0, 9.0])
    mean, sd = unconstrained_moments(Dirichlet(alpha))
    want = _quad_moments(stats.beta(5.0, 11.0).pdf, special.logit, 0, 1)   # marginal of k=1
    np.testing.assert_allclose([float(mean[1]), float(sd[1])], want, rtol=1e-4)
    for dist in (Normal(0.3, 2.0), LogNormal(0.3, 2.0), LogitNormal(0.3, 2.0)):
        np.testing.assert_allclose([float(v) for v in unconstrained_moments(dist)], [0.3, 2.0])


def test_snapshot_strides_large_sites_and_skips_unknown_families():
    from numpyro.distributions import Uniform

    def posterior(params):
        return {"cells": Beta(params["a"], 3.0), "gene": Normal(params["m"], 1.0),
                "other": Uniform(params["m"], params["m"] + 1.0)}

    params = {"a": jnp.linspace(1, 5, 3 * MAX_COORDS + 7), "m": jnp.arange(5.0)}
    snap = snapshot_fn(posterior)(params)
    assert set(snap) == {"cells", "gene"}         # no unconstrained moments for Uniform
    n = snap["cells"][0].shape[0]
    assert MAX_COORDS / 2 < n <= MAX_COORDS
    np.testing.assert_allclose(snap["cells"][0][1], special.digamma(
        float(params["a"][4])) - special.digamma(3.0), rtol=1e-5)   # stride 4
    np.testing.assert_allclose(snap["gene"][0], np.arange(5.0))


def _trace(n_windows, eta, slope=0.0, seed=0, n=N):
    """Snapshots m(t) = slope t s + eta s eps (white jitter of eta sd per snapshot)."""
    rng = np.random.default_rng(seed)
    sd = rng.uniform(0.05, 2.0, n)                      # scale-free: any sd per coordinate
    t = np.arange(n_windows)[:, None]
    return (slope * t + eta * rng.standard_normal((n_windows, n))) * sd, sd


MEDIAN_ABS_Z = stats.norm.ppf(0.75)    # median of |N(0, 1)|


def white_noise(eta: float, span: int) -> float:
    """Stationary drift of white jitter (eta sd per snapshot) at ``span``: the span
    difference is N(0, 2 eta^2 / span), divided by span, median of its absolute value."""
    return MEDIAN_ABS_Z * math.sqrt(2 / span) * eta / span


def expected_span(eta: float) -> int:
    """Smallest span whose white-noise drift is at most DRIFT_TOL / 2 (capped)."""
    return next((j for j in range(1, MAX_SPAN + 1) if white_noise(eta, j) <= DRIFT_TOL / 2),
                MAX_SPAN)


@pytest.mark.parametrize("span", [1, 3, 8])
def test_noise_level_matches_white_jitter_and_ignores_a_trend(span):
    # The estimate is a median of 20 x 2,000 |N| values (relative se ~ 1.25 * 0.75 /
    # sqrt(40,000) < 1 %, inflated by the overlap of the 20 end points to < 3 %): 8 % is a
    # > 2.5-sigma band. A linear trend cancels exactly in the second difference, and the
    # drift then reads the trend (0.05 sd per window) plus the jitter's share.
    eta = 0.15
    means, sd = _trace(3 * span + 19, eta, slope=0.05)
    drift, noise = span_statistics(means, sd, span)
    assert noise == pytest.approx(white_noise(eta, span), rel=0.08)
    assert drift == pytest.approx(0.05, abs=2 * white_noise(eta, span))
    assert span_statistics(means[:3 * span - 1], sd, span) is None


def test_span_is_the_smallest_that_resolves_tol():
    for eta in (0.0, 0.01, 0.03, 0.06):
        means, sd = _trace(40, eta, seed=5)
        assert site_check(means, sd, DRIFT_TOL)[2] == expected_span(eta)
    # Too noisy for any span: the longest the history allows (3 j <= 40), threshold 2 noise.
    means, sd = _trace(40, 2.0, seed=5)
    drift, threshold, span, noise = site_check(means, sd, DRIFT_TOL)
    assert span == MAX_SPAN and threshold == 2 * noise > DRIFT_TOL
    drift, threshold, span, noise = site_check(means[:10], sd, DRIFT_TOL)
    assert span == 3 and threshold == 2 * noise
    assert site_check(means[:2], sd, DRIFT_TOL) is None


def detection_span(eta: float, d: float) -> int | None:
    """Span from which a collective trend of d sd per window is past the collective
    statistic's threshold with a margin. The mean of N standardized coordinates jitters
    by s = eta / sqrt(N); its threshold is tol where its noise is <= tol / 4, else 4 noise
    (the single-value resolution of scribe.svi.drift). Margin: the threshold 1.5x (its
    noise estimate scatters) plus 3 sd of the span difference, sqrt(2 / j) s / j."""
    for j in range(1, MAX_SPAN + 1):
        noise = white_noise(eta / math.sqrt(N), j)
        threshold = DRIFT_TOL if noise <= DRIFT_TOL / 4 else 4 * noise
        if 1.5 * threshold + 3 * math.sqrt(2 / j) * eta / math.sqrt(N) / j <= d:
            return j
    return None


@pytest.mark.parametrize("eta, d", [(0.0, 0.006), (0.03, 0.006), (0.15, 0.006),
                                    (1.0, 0.02)])
def test_slow_trend_keeps_the_fit_going(eta, d):
    # A collective drift of d sd per window (2 drift_tol; 0.02 under a jitter of 1 sd):
    # invisible in the spread's median |change| under jitter (it shifts that median only
    # quadratically), seen by the collective statistic once the history allows its
    # detection span (3 j snapshots; j = 5 for eta = 0.15). From then on it is never flat.
    monitor = DriftMonitor()
    means, sd = _trace(60, eta, slope=d)
    flat = np.array([monitor.update({"r": (m, sd)}) for m in means])
    first = 3 * detection_span(eta, d)
    assert first <= 24
    assert not flat[first - 1:].any()
    assert monitor.state.drift > monitor.state.threshold >= DRIFT_TOL


@pytest.mark.parametrize("eta", [0.0, 0.03, 0.15, 1.0])
def test_stationary_jitter_lets_the_fit_stop(eta):
    # Stationary jitter at Adam's noise floor (~0.15 sd per snapshot on nbvcp_mix's capture
    # factors, docs/convergence.md; 0.25 sd: the full-batch nbdm's r at 20,000 cells).
    # Spread: with 3 snapshots span 1 is allowed and the drift is the noise level itself
    # (a median over 2,000 coordinates: within a few %), below tol when the noise is
    # <= tol / 2 and below 2 noise otherwise. Collective (the mean of N = 2,000
    # standardized coordinates, jitter eta / sqrt(N)): one |N(0, s)| value against tol
    # where its noise (0.6745 s, floored at the spread's noise / sqrt(N)) is <= tol / 4,
    # else against 4 noise: above it with probability <= P(|Z| > 2.7) = 0.7 % per window.
    # Over 38 windows 0.27 misses are expected; 3 or more has Poisson probability 0.3 %.
    # So: flat from window 3, with at most 2 single misses.
    monitor = DriftMonitor()
    means, sd = _trace(40, eta, seed=1)
    flat = np.array([monitor.update({"r": (m, sd)}) for m in means])
    assert not flat[:2].any()
    assert (~flat[2:]).sum() <= 2


def test_the_slowest_site_decides_and_a_site_without_news_blocks():
    monitor = DriftMonitor()
    still, sd = _trace(20, 0.03, seed=2)
    moving, _ = _trace(20, 0.03, slope=5 * DRIFT_TOL, seed=3)
    for a, b in zip(still, moving, strict=True):
        flat = monitor.update({"r": (a, sd), "p_capture": (b, sd)})
    assert not flat and monitor.state.site.startswith("p_capture")
    assert DriftMonitor().update({}) is True          # nothing to watch: the loss decides


def test_monitor_stops_only_when_loss_and_drift_are_flat():
    # A flat (noise-free) loss: the loss rule alone stops at window 2 + patience - 1.
    losses = np.full(3000, 1e6)
    moving, sd = _trace(30, 0.0, slope=3 * DRIFT_TOL)
    alone = ConvergenceMonitor(tol=1e-5, patience=3)
    both = ConvergenceMonitor(tol=1e-5, patience=3, drift_tol=DRIFT_TOL)
    stops_alone = [alone.update(losses[:100 * (i + 1)]) for i in range(30)]
    stops_both = [both.update(losses[:100 * (i + 1)], {"r": (m, sd)})
                  for i, m in enumerate(moving)]
    assert stops_alone.index(True) == 3 and not any(stops_both)
    still, sd = _trace(30, 0.0, seed=4)
    both = ConvergenceMonitor(tol=1e-5, patience=3, drift_tol=DRIFT_TOL)
    stops = [both.update(losses[:100 * (i + 1)], {"r": (m, sd)}) for i, m in enumerate(still)]
    assert stops.index(True) == 3      # jitter-free: span 1, resolved from 3 snapshots
    assert both.drift_state.drift == 0.0


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (0, ValueError),
                                        (math.nan, ValueError), ("0.01", ValueError),
                                        ([0.01], TypeError), (True, TypeError)])
def test_bad_drift_tol_is_refused_before_training(bad, error):
    import scribe

    with pytest.raises(error, match="drift_tol"):
        scribe.fit(np.ones((5, 3)), "nbdm", drift_tol=bad)


def test_what_the_user_sees_of_the_drift():
    from scribe.fitting import _drift_note

    monitor = ConvergenceMonitor(tol=1e-5, drift_tol=DRIFT_TOL)
    assert "drift ?" in monitor.describe()
    assert _drift_note(monitor) == "; parameter drift not yet resolved"
    moving, sd = _trace(6, 0.0, slope=5 * DRIFT_TOL)
    for i, m in enumerate(moving):
        monitor.update(np.full(100 * (i + 1), 1e6), {"r": (m, sd)})
    # A noise-free collective trend of 5 tol: drift 0.015 at span 1 against tol.
    assert monitor.drift_state.drift == pytest.approx(5 * DRIFT_TOL)
    assert monitor.drift_state.site == "r" or monitor.drift_state.site == "r(mean)"
    assert "drift 0.015/0.003 sd" in monitor.describe()
    assert "parameter drift 0.015 sd per 100 steps" in _drift_note(monitor)
    assert _drift_note(ConvergenceMonitor(tol=1e-5)) == ""


def test_auto_drift_tol_per_model_type():
    from scribe.fitting import DRIFT_TOLS, default_drift_tol

    assert default_drift_tol("nbvcp_mix") == DRIFT_TOL == 0.003
    assert default_drift_tol("zinbvcp") == DRIFT_TOLS["zinbvcp"] == 0.01


def test_snapshot_watches_skew_gene_marginals():
    """skew_gene's marginals have no closed form; the snapshot reads their own
    unconstrained moments (quadrature, tested against draws in test_skew_gene.py), so a
    fit with that guide is watched like any other."""
    from scribe import ModelConfig
    from scribe.compose import Composition
    from tests._guide_params import hand_params

    config = ModelConfig("zinb", guide_family="skew_gene")
    composition = Composition(config)
    params = hand_params(config, 10, 6, shape_params=True)

    def posterior(p):
        distributions = composition.posterior_distributions(p)
        return {name: distributions[name] for name in ("r", "gate")}

    snap = snapshot_fn(posterior)(params)
    assert set(snap) == {"r", "gate"}
    for name in ("r", "gate"):
        mean, sd = posterior(params)[name].unconstrained_moments()
        np.testing.assert_allclose(snap[name][0], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(snap[name][1], sd, rtol=1e-5)
        assert np.all(np.asarray(sd) > 0)
