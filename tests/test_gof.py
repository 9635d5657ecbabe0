"""Goodness of fit: randomized quantile residuals and per-gene elpd (SPEC section 6).

Fixed parameters (MAP of hand-chosen variational parameters), references from scipy.
The comparison of fits on simulated data is ``slow`` (tests/test_biology_fits.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax
from test_analyses import reference_elementwise
from test_results import make_results

import scribe
from scribe.svi import gof


def _np(estimate: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in estimate.items()}


def reference_cdf(x, estimate: dict) -> np.ndarray:
    """``P(X <= x)`` per component from scipy, ``(C, G, K)`` (gate and capture)."""
    r, gate = estimate["r"], estimate["gate"]
    nu, p = estimate["p_capture"], estimate["p"]
    p_hat = (p * nu / (1 - p * (1 - nu)))[:, None, None]
    cdf = stats.nbinom.cdf(x[..., None], r.T[None], 1 - p_hat)
    return np.where(x[..., None] < 0, 0.0, gate.T[None] + (1 - gate.T[None]) * cdf)


def test_residuals_lie_in_the_cdf_interval():
    """``Phi(residual)`` is in ``[F(x - 1), F(x)]`` with ``F = sum_k P(k | x_c) F_k``."""
    n_cells, n_genes = 12, 5
    results = make_results("zinbvcp_mix", "standard", 2, n_cells=n_cells,
                           n_genes=n_genes, seed=4)
    x = np.random.default_rng(2).negative_binomial(1.5, 0.5, (n_cells, n_genes))
    estimate = _np(results.get_map(use_mean=True, verbose=False))
    weights = softmax(reference_elementwise(x, estimate).sum(1)
                      + np.log(estimate["mixing_weights"]), axis=1)[:, None, :]
    lower = (reference_cdf(x - 1, estimate) * weights).sum(-1)
    upper = (reference_cdf(x, estimate) * weights).sum(-1)
    u = stats.norm.cdf(results.quantile_residuals(x, batch_size=5).astype(np.float64))
    # float32 CDFs and Phi^{-1}: 1e-4 absolute on u.
    assert np.all(u >= lower - 1e-4) and np.all(u <= upper + 1e-4)
    assert np.all(upper - lower > 0)   # a non-degenerate interval, so u is random


def test_generic_cdf_sums_the_law():
    """The base-class CDF (plugins' fallback) sums ``exp(log_prob)``: equal to the NB's
    closed form (regularised incomplete beta)."""
    likelihood = scribe.plugins.lookup_model_type("zinb").likelihood
    x = jnp.asarray([[0.0, 1, 4], [7, 0, 2]])
    params = {"r": jnp.asarray([0.7, 2.0, 5.0]), "p": jnp.float32(0.6),
              "gate": jnp.asarray([0.1, 0.3, 0.0])}
    generic = scribe.Likelihood.cdf(likelihood, x, params)
    np.testing.assert_allclose(generic, likelihood.cdf(x, params), rtol=1e-5, atol=1e-6)
    expected = 0.3 + 0.7 * stats.nbinom.cdf(0, 2.0, 0.4)
    assert float(likelihood.cdf(x, params)[1, 1]) == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def nbdm_case():
    """Counts simulated from the MAP of a fixed nbdm: the model is correct."""
    n_cells, n_genes = 3000, 4
    results = make_results("nbdm", n_cells=n_cells, n_genes=n_genes, seed=5)
    estimate = _np(results.get_map(use_mean=True, verbose=False))
    x = np.random.default_rng(7).negative_binomial(
        estimate["r"], 1 - estimate["p"], (n_cells, n_genes))
    return results, x, estimate


def test_residuals_of_a_correct_model_are_standard_normal(nbdm_case):
    """Per gene, mean within 5 / sqrt(C) of 0 and variance within 5 sqrt(2 / C) of 1
    (standard errors of a mean and a variance of C normal draws); no gene flagged (each
    is flagged with probability alpha / G)."""
    results, x, estimate = nbdm_case
    key = jax.random.PRNGKey(3)
    residuals = results.quantile_residuals(x, batch_size=1000, rng_key=key)
    frame = results.goodness_of_fit(x, batch_size=1000, rng_key=key)
    n_cells = x.shape[0]
    assert np.all(np.abs(residuals.mean(0)) < 5 / np.sqrt(n_cells))
    assert np.all(np.abs(residuals.var(0) - 1) < 5 * np.sqrt(2 / n_cells))
    assert not frame["flagged"].any() and frame.attrs["fraction_flagged"] == 0.0
    # The summaries are those of the residuals drawn with the same key.
    np.testing.assert_allclose(frame["rqr_mean"], residuals.mean(0), atol=1e-5)
    np.testing.assert_allclose(frame["rqr_var"], residuals.var(0, ddof=1), rtol=1e-4)
    ks = [stats.kstest(residuals[:, g].astype(np.float64), "norm").statistic
          for g in range(x.shape[1])]
    # Histogram KS: exact at bin edges, so within 1 / N_BINS (+ float32 rounding).
    assert np.all(np.abs(frame["rqr_ks"] - ks) <= 1 / gof.N_BINS + 1e-4)
    elpd = stats.nbinom.logpmf(x, estimate["r"], 1 - estimate["p"]).sum(0)
    np.testing.assert_allclose(frame["elpd"], elpd, rtol=1e-4)


def test_misfit_is_flagged(nbdm_case):
    """Counts from r / 3 (a third of the mean, more dispersed): every gene flagged,
    residuals shifted down."""
    results, _, estimate = nbdm_case
    x = np.random.default_rng(8).negative_binomial(
        estimate["r"] / 3, 1 - estimate["p"], (3000, 4))
    frame = scribe.tl.goodness_of_fit(results, x, batch_size=1000)
    assert frame["flagged"].all() and np.all(frame["rqr_mean"] < -5 / np.sqrt(3000))


def test_bad_input(nbdm_case):
    results, x, _ = nbdm_case
    with pytest.raises(ValueError, match="alpha"):
        results.goodness_of_fit(x, alpha=2)
    with pytest.raises(ValueError, match="cells"):
        results.quantile_residuals(x[:10])
    with pytest.raises(ValueError, match="batch_size"):
        results.quantile_residuals(x, batch_size=-3)
