"""scribe.poisson: the laws of the fast Poisson and negative binomial samplers.

Goodness of fit: Pearson's chi-square over integer bins with expected count >= 20
(tails merged). Under the null the statistic is chi-square with ``bins - 1`` degrees of
freedom; a check fails when its p-value is below 1e-5, a false alarm rate of 1e-5 per
check (fixed seeds make the outcome reproducible). Moments: the sample mean of N draws
has standard error ``sqrt(var / N)``, the sample variance ``sqrt((mu4 - var^2) / N)``
with ``mu4`` the fourth central moment (Poisson: ``lam (1 + 3 lam)``); checks allow
5 standard errors (two-sided false alarm 6e-7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from numpyro.distributions import NegativeBinomialProbs
from scribe_builtin.nb_fast import FastNegativeBinomialProbs

from scribe import poisson as fast

#: One size for every call: the samplers compile once per size, and compiling dominates.
N = 96_000
P_MIN = 1e-5


def _chi_square_p(draws: np.ndarray, dist) -> float:
    """p-value of Pearson's chi-square of integer ``draws`` against scipy ``dist``."""
    n = draws.size
    lo, hi = int(dist.ppf(1e-6)), int(dist.ppf(1 - 1e-6)) + 1
    ks = np.arange(lo, hi + 1)
    expected = n * dist.pmf(ks)
    keep = expected >= 20
    edges_lo, edges_hi = ks[keep][0], ks[keep][-1]
    inner = np.arange(edges_lo, edges_hi + 1)
    exp_inner = n * dist.pmf(inner)
    obs_inner = np.array([(draws == k).sum() for k in inner])
    # Merged tails: k < first kept bin, k > last kept bin.
    exp = np.concatenate([[n * dist.cdf(edges_lo - 1)], exp_inner, [n * dist.sf(edges_hi)]])
    obs = np.concatenate([[(draws < edges_lo).sum()], obs_inner, [(draws > edges_hi).sum()]])
    used = exp > 0
    stat = np.sum((obs[used] - exp[used]) ** 2 / exp[used])
    return float(st.chi2.sf(stat, used.sum() - 1))


# 0.03 / 2.5: inversion; 9.99: inversion with its grouped finish (P(X >= 24) = 1.2e-4);
# 10 / 37.5 / 2000: PTRS with re-proposals.
@pytest.mark.parametrize("lam", [0.03, 2.5, 9.99, 10.0, 37.5, 2000.0])
def test_poisson_law_against_scipy(lam):
    draws = np.asarray(fast.poisson(jax.random.PRNGKey(3), jnp.full((N,), lam)))
    assert np.all(draws == np.round(draws)) and draws.min() >= 0
    assert _chi_square_p(draws, st.poisson(lam)) > P_MIN
    se_mean, se_var = np.sqrt(lam / N), np.sqrt((lam * (1 + 3 * lam) - lam**2) / N)
    assert abs(draws.mean() - lam) < 5 * se_mean
    assert abs(draws.var() - lam) < 5 * se_var


def test_poisson_large_means_keep_precision():
    """Means 1e4 ... 1e6: the acceptance test would lose float32 precision if written as
    ``-lam + k log lam - lgamma(k + 1)``; quantile bins against scipy."""
    for lam in (1e4, 1e6):
        draws = np.asarray(fast.poisson(jax.random.PRNGKey(4), jnp.full((N,), lam)))
        edges = st.poisson(lam).ppf(np.linspace(0, 1, 21)[1:-1])
        obs = np.bincount(np.searchsorted(edges, draws, side="left"), minlength=20)
        cdf = st.poisson(lam).cdf(edges - 1)
        exp = N * np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        assert st.chi2.sf(np.sum((obs - exp) ** 2 / exp), 19) > P_MIN
        assert abs(draws.mean() - lam) < 5 * np.sqrt(lam / N)


def test_poisson_grouped_finish_tail():
    """Means just below the switch reach beyond the unrolled terms: the finished elements
    keep their law. ``P(X >= 24 | 9.99)`` (1.2e-4, 11 expected) against its binomial
    standard error."""
    lam = 9.99
    draws = np.asarray(fast.poisson(jax.random.PRNGKey(5), jnp.full((N,), lam)))
    tail = st.poisson(lam).sf(fast.K_UNROLLED - 1)
    observed = np.mean(draws >= fast.K_UNROLLED)
    assert observed > 0   # the finish ran
    assert abs(observed - tail) < 5 * np.sqrt(tail * (1 - tail) / N)


def test_poisson_mixed_means_and_inputs():
    values = jnp.array([0.0, 1.0, 50.0, jnp.nan, 3.0, 1e3])
    lam = jnp.tile(values, N // values.size)
    out = fast.poisson(jax.random.PRNGKey(0), lam).reshape(-1, values.size)
    assert jnp.all(out[:, 0] == 0) and jnp.all(jnp.isnan(out[:, 3]))
    np.testing.assert_allclose(np.asarray(out[:, [1, 2, 4, 5]]).mean(0), [1, 50, 3, 1e3],
                               atol=5 * np.sqrt(1e3 / out.shape[0]))
    assert fast.poisson(jax.random.PRNGKey(0), jnp.zeros((0, 4))).shape == (0, 4)
    ints = fast.poisson(jax.random.PRNGKey(0), jnp.full((N,), 2))
    assert jnp.issubdtype(ints.dtype, jnp.floating)
    # Same key, same draws; another key, other draws.
    a, b = fast.poisson(jax.random.PRNGKey(1), lam), fast.poisson(jax.random.PRNGKey(1), lam)
    assert jnp.array_equal(a, b, equal_nan=True)
    assert not jnp.array_equal(a, fast.poisson(jax.random.PRNGKey(2), lam), equal_nan=True)


# (r, p): mean 0.075 (inversion), 4.7 (both branches), 950 (mostly PTRS).
@pytest.mark.parametrize("r,p", [(0.3, 0.2), (2.0, 0.7), (50.0, 0.95)])
def test_negative_binomial_against_scipy(r, p):
    draws = np.asarray(fast.negative_binomial(jax.random.PRNGKey(6), r, p, (N,)))
    law = st.nbinom(r, 1 - p)   # numpy/scipy's p is NumPyro's 1 - p
    assert _chi_square_p(draws, law) > P_MIN
    assert abs(draws.mean() - law.mean()) < 5 * np.sqrt(law.var() / N)


def test_distribution_matches_numpyro_shapes_and_means():
    """Broadcast (C, 1) probabilities against (G,) dispersions, as the likelihood does;
    per-column means of S draws against ``r p / (1 - p)`` (5 standard errors)."""
    r = jnp.array([0.5, 3.0, 20.0])
    p = jnp.array([[0.3], [0.8]])
    ours, ref = FastNegativeBinomialProbs(r, p), NegativeBinomialProbs(r, p)
    assert ours.batch_shape == ref.batch_shape == (2, 3)
    s = N // 6
    draws = ours.sample(jax.random.PRNGKey(8), (s,))
    assert draws.shape == (s, 2, 3) and jnp.issubdtype(draws.dtype, jnp.integer)
    np.testing.assert_allclose(ours.log_prob(draws[:3]), ref.log_prob(draws[:3]))
    mean, var = np.asarray(ref.mean), np.asarray(ref.variance)
    assert np.all(np.abs(np.asarray(draws).mean(0) - mean) < 5 * np.sqrt(var / s))
