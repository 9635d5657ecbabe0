"""BetaPrime, the registered KL divergences and the distribution families (SPEC section 2-3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions.kl import kl_divergence
from scipy import stats

from scribe import families
from scribe.distributions import BetaPrime
from scribe.families import (
    BETA,
    BETA_PRIME,
    DIRICHLET,
    LOG_NORMAL,
    NORMAL,
    family_of,
    validate_prior_args,
)

# (a, b) pairs covering a < 1, a = 1, a > 1 and b on both sides of 1 and 2.
AB = [(0.5, 0.7), (1.0, 1.0), (2.0, 3.0), (3.5, 1.5), (5.0, 8.0), (0.8, 4.0)]


def _f32(x):
    return np.asarray(np.asarray(x, np.float32), np.float64)


# ---- BetaPrime -----------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", AB)
def test_betaprime_log_prob_matches_scipy(a, b):
    x = _f32(np.geomspace(1e-3, 1e3, 41))
    got = np.asarray(BetaPrime(a, b).log_prob(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, stats.betaprime(a, b).logpdf(x), rtol=1e-5, atol=1e-5)


def test_betaprime_log_prob_broadcasts_batch():
    a = np.array([0.5, 2.0, 4.0])
    b = np.array([[1.5], [3.0]])
    x = np.array([0.3, 1.7, 12.0])
    d = BetaPrime(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    assert d.batch_shape == (2, 3)
    got = np.asarray(d.log_prob(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, stats.betaprime(a, b).logpdf(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a,b", AB)
def test_betaprime_mean_variance_match_scipy(a, b):
    d = BetaPrime(a, b)
    ref = stats.betaprime(a, b)
    mean, var = float(d.mean), float(d.variance)
    if b > 1:
        np.testing.assert_allclose(mean, ref.mean(), rtol=1e-5)
        np.testing.assert_allclose(mean, a / (b - 1), rtol=1e-5)
    else:
        assert mean == np.inf
    if b > 2:
        np.testing.assert_allclose(var, ref.var(), rtol=1e-5)
    else:
        assert var == np.inf


@pytest.mark.parametrize("a,b", AB)
def test_betaprime_cdf_matches_scipy(a, b):
    x = _f32(np.geomspace(1e-3, 1e3, 25))
    got = np.asarray(BetaPrime(a, b).cdf(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, stats.betaprime(a, b).cdf(x), rtol=1e-4, atol=1e-6)


def test_betaprime_sample_moments_and_beta_transform():
    # A batch of two: the first checked thoroughly, the second shows batching works.
    n = 20_000
    d = BetaPrime(jnp.array([3.0, 1.0]), jnp.array([7.0, 3.0]))
    both = np.asarray(d.sample(jax.random.PRNGKey(0), (n,)), np.float64)
    assert both.shape == (n, 2)
    assert np.all(both > 0) and np.all(np.isfinite(both))
    for (a, b), draws in zip([(3.0, 7.0), (1.0, 3.0)], both.T, strict=True):
        ref = stats.betaprime(a, b)
        # Sample mean within 5 standard errors; 1 / (1 + phi) ~ Beta(b, a) (KS test).
        assert abs(draws.mean() - ref.mean()) < 5 * ref.std() / np.sqrt(n)
        assert stats.kstest(1 / (1 + draws), stats.beta(b, a).cdf).pvalue > 1e-3
        assert stats.kstest(draws, ref.cdf).pvalue > 1e-3
    draws = both[:, 0]
    # variance (finite fourth moment needs b > 4) within a loose relative band
    np.testing.assert_allclose(draws.var(), stats.betaprime(3.0, 7.0).var(), rtol=0.15)
    # ... and the wrong orientation is rejected, so the KS test has power.
    assert stats.kstest(1 / (1 + draws), stats.beta(3.0, 7.0).cdf).pvalue < 1e-6


# ---- KL divergences ------------------------------------------------------------------------
@pytest.mark.parametrize("p_args,q_args", [((2.0, 3.0), (1.0, 1.0)), ((0.7, 4.0), (3.0, 2.5)),
                                           ((5.0, 6.0), (4.0, 9.0))])
def test_kl_betaprime_matches_monte_carlo(p_args, q_args):
    n = 100_000
    p, q = stats.betaprime(*p_args), stats.betaprime(*q_args)
    x = p.rvs(size=n, random_state=np.random.default_rng(3))
    log_ratio = p.logpdf(x) - q.logpdf(x)
    est, se = log_ratio.mean(), log_ratio.std() / np.sqrt(n)
    got = float(kl_divergence(BetaPrime(*p_args), BetaPrime(*q_args)))
    assert abs(got - est) < 5 * se + 1e-4, (got, est, se)
    assert got >= 0


def test_kl_betaprime_self_is_zero_and_batched():
    a = jnp.array([0.5, 2.0, 7.0])
    b = jnp.array([1.5, 3.0, 0.9])
    np.testing.assert_allclose(np.asarray(kl_divergence(BetaPrime(a, b), BetaPrime(a, b))), 0,
                               atol=1e-5)
    # Independent-wrapped (as in a guide) sums the elementwise KLs.
    q = BetaPrime(jnp.ones(3), jnp.ones(3))
    elementwise = np.asarray(kl_divergence(BetaPrime(a, b), q))
    summed = float(kl_divergence(BetaPrime(a, b).to_event(1), q.to_event(1)))
    np.testing.assert_allclose(summed, elementwise.sum(), rtol=1e-5)


@pytest.mark.parametrize("p_args,q_args", [((0.0, 1.0), (0.5, 2.0)), ((1.5, 0.3), (-1.0, 0.8))])
def test_kl_lognormal_matches_monte_carlo_and_closed_form(p_args, q_args):
    (m1, s1), (m2, s2) = p_args, q_args
    got = float(kl_divergence(dist.LogNormal(m1, s1), dist.LogNormal(m2, s2)))
    closed = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    np.testing.assert_allclose(got, closed, rtol=1e-5)
    n = 100_000
    p = stats.lognorm(s1, scale=np.exp(m1))
    q = stats.lognorm(s2, scale=np.exp(m2))
    x = p.rvs(size=n, random_state=np.random.default_rng(4))
    log_ratio = p.logpdf(x) - q.logpdf(x)
    assert abs(got - log_ratio.mean()) < 5 * log_ratio.std() / np.sqrt(n)


# ---- families: modes and means -------------------------------------------------------------
def _grid_argmax(logpdf, lo, hi, n=200_001):
    grid = np.linspace(lo, hi, n)
    return grid[np.argmax(logpdf(grid))], grid[1] - grid[0]


@pytest.mark.parametrize("a,b", [(2.0, 5.0), (1.5, 1.2), (8.0, 3.0), (30.0, 60.0)])
def test_beta_mode_and_mean(a, b):
    mode = float(BETA.mode(jnp.float32(a), jnp.float32(b)))
    argmax, step = _grid_argmax(stats.beta(a, b).logpdf, 1e-6, 1 - 1e-6)
    assert abs(mode - argmax) <= 2 * step
    np.testing.assert_allclose(float(BETA.mean(a, b)), stats.beta(a, b).mean(), rtol=1e-6)


@pytest.mark.parametrize("a,b", [(1.0, 3.0), (0.5, 0.5), (3.0, 1.0), (2.0, 0.9), (0.3, 4.0)])
def test_beta_mode_nan_when_not_interior(a, b):
    assert np.isnan(float(BETA.mode(jnp.float32(a), jnp.float32(b))))


def test_beta_mode_vectorised_mixed():
    a = jnp.array([2.0, 1.0, 3.0])
    b = jnp.array([2.0, 4.0, 0.5])
    got = np.asarray(BETA.mode(a, b))
    np.testing.assert_allclose(got[0], 0.5, rtol=1e-6)
    assert np.isnan(got[1]) and np.isnan(got[2])


@pytest.mark.parametrize("a,b", [(2.0, 3.0), (1.5, 0.5), (6.0, 10.0)])
def test_betaprime_mode_and_mean(a, b):
    mode = float(BETA_PRIME.mode(jnp.float32(a), jnp.float32(b)))
    argmax, step = _grid_argmax(stats.betaprime(a, b).logpdf, 1e-6, 20.0)
    assert abs(mode - argmax) <= 2 * step
    np.testing.assert_allclose(mode, (a - 1) / (b + 1), rtol=1e-6)
    mean = float(BETA_PRIME.mean(jnp.float32(a), jnp.float32(b)))
    if b > 1:
        np.testing.assert_allclose(mean, stats.betaprime(a, b).mean(), rtol=1e-5)
    else:
        assert mean == np.inf


@pytest.mark.parametrize("a,b", [(1.0, 3.0), (0.5, 2.0)])
def test_betaprime_mode_nan_when_not_interior(a, b):
    assert np.isnan(float(BETA_PRIME.mode(jnp.float32(a), jnp.float32(b))))


@pytest.mark.parametrize("loc,scale", [(0.0, 1.0), (1.3, 0.4), (-2.0, 0.1)])
def test_lognormal_mode_and_mean(loc, scale):
    ref = stats.lognorm(scale, scale=np.exp(loc))
    mode = float(LOG_NORMAL.mode(jnp.float32(loc), jnp.float32(scale)))
    hi = ref.ppf(0.999)
    argmax, step = _grid_argmax(ref.logpdf, 1e-9, hi, 400_001)
    assert abs(mode - argmax) <= 2 * step
    np.testing.assert_allclose(float(LOG_NORMAL.mean(jnp.float32(loc), jnp.float32(scale))),
                               ref.mean(), rtol=1e-5)


def test_normal_mode_and_mean():
    loc, scale = jnp.array([-1.0, 0.0, 2.5]), jnp.array([0.1, 1.0, 3.0])
    np.testing.assert_allclose(np.asarray(NORMAL.mode(loc, scale)), [-1.0, 0.0, 2.5])
    np.testing.assert_allclose(np.asarray(NORMAL.mean(loc, scale)), [-1.0, 0.0, 2.5])


@pytest.mark.parametrize("alpha", [[2.0, 3.0, 5.0], [1.2, 1.5, 9.0, 4.0]])
def test_dirichlet_mode_and_mean(alpha):
    alpha = np.array(alpha)
    mode = np.asarray(DIRICHLET.mode(jnp.asarray(alpha, jnp.float32)), np.float64)
    np.testing.assert_allclose(mode.sum(), 1.0, rtol=1e-6)
    ref = stats.dirichlet(alpha)
    # The mode beats every nearby point of the simplex.
    rng = np.random.default_rng(0)
    at_mode = ref.logpdf(mode / mode.sum())
    for _ in range(200):
        step = rng.normal(scale=1e-2, size=alpha.size)
        step -= step.mean()
        other = mode + step
        if np.all(other > 0):
            assert ref.logpdf(other / other.sum()) < at_mode + 1e-9
    np.testing.assert_allclose(mode, (alpha - 1) / (alpha.sum() - alpha.size), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(DIRICHLET.mean(jnp.asarray(alpha))), ref.mean(),
                               rtol=1e-6)


def test_dirichlet_mode_nan_when_any_alpha_le_one():
    alpha = jnp.array([[2.0, 3.0, 1.0], [2.0, 3.0, 4.0], [0.5, 5.0, 5.0]])
    got = np.asarray(DIRICHLET.mode(alpha))
    assert np.all(np.isnan(got[0])) and np.all(np.isnan(got[2]))
    np.testing.assert_allclose(got[1], [1 / 6, 2 / 6, 3 / 6], rtol=1e-6)


def test_families_make_the_right_distribution():
    x = 0.37
    checks = [
        (BETA, (2.0, 3.0), stats.beta(2.0, 3.0).logpdf(x)),
        (BETA_PRIME, (2.0, 3.0), stats.betaprime(2.0, 3.0).logpdf(x)),
        (LOG_NORMAL, (0.2, 0.7), stats.lognorm(0.7, scale=np.exp(0.2)).logpdf(x)),
        (NORMAL, (0.2, 0.7), stats.norm(0.2, 0.7).logpdf(x)),
        (families.LOGIT_NORMAL, (0.2, 0.7), stats.logitnorm(0.2, 0.7).logpdf(x)
         if hasattr(stats, "logitnorm") else
         stats.norm(0.2, 0.7).logpdf(np.log(x / (1 - x))) - np.log(x * (1 - x))),
    ]
    for fam, args, want in checks:
        d = fam.make(*(jnp.float32(a) for a in args))
        np.testing.assert_allclose(float(d.log_prob(jnp.float32(x))), want, rtol=1e-5,
                                   err_msg=fam.name)
        found = family_of(d.expand((3,)).to_event(1))
        assert found is not None and found[0] is fam, fam.name
    d = DIRICHLET.make(jnp.array([2.0, 3.0, 4.0]))
    v = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(float(d.log_prob(jnp.asarray(v, jnp.float32))),
                               stats.dirichlet([2.0, 3.0, 4.0]).logpdf(v), rtol=1e-5)
    assert family_of(d)[0] is DIRICHLET
    assert families.FAMILIES == {f.name: f for f in (BETA, BETA_PRIME, LOG_NORMAL, NORMAL,
                                                     DIRICHLET, families.LOGIT_NORMAL)}


# ---- prior argument validation ------------------------------------------------------------
def test_validate_prior_args_accepts_and_returns_floats():
    assert validate_prior_args(BETA, (2, 3), "p", None) == (2.0, 3.0)
    assert validate_prior_args(LOG_NORMAL, [-1.5, 0.5], "r", None) == (-1.5, 0.5)
    assert validate_prior_args(NORMAL, (-3, 2), "p_unconstrained", None) == (-3.0, 2.0)
    assert validate_prior_args(DIRICHLET, (1, 2, 3), "mixing_weights", 3) == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("family,args,k", [
    (BETA, (1.0,), None),                 # too few
    (BETA, (1.0, 2.0, 3.0), None),        # too many
    (BETA, (0.0, 1.0), None),             # not positive
    (BETA_PRIME, (1.0, -2.0), None),
    (LOG_NORMAL, (0.0, 0.0), None),       # zero scale
    (LOG_NORMAL, (np.nan, 1.0), None),    # location must be finite
    (NORMAL, (np.inf, 1.0), None),
    (NORMAL, (0.0, -1.0), None),
    (DIRICHLET, (1.0, 1.0), 3),           # one per component
    (DIRICHLET, (1.0, 0.0, 1.0), 3),
    (DIRICHLET, (1.0, -1.0, 1.0), 3),
    (DIRICHLET, (1.0, np.inf, 1.0), 3),
])
def test_validate_prior_args_rejects(family, args, k):
    with pytest.raises(ValueError, match="prior for 'site'"):
        validate_prior_args(family, args, "site", k)
