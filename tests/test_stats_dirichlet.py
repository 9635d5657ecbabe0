"""Inverse digamma and the Minka Dirichlet fit (scribe.stats.dirichlet, SPEC section 4)."""

from __future__ import annotations

import jax
import jax.experimental
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import digamma
from scipy import optimize, special

from scribe.stats import fit_dirichlet_minka, inverse_digamma

ALPHAS = np.array([[0.5, 2.0, 7.0], [1.0, 1.0, 1.0], [10.0, 20.0, 5.0], [0.1, 0.2, 0.3]])


def _x64():
    """float64 only inside a test (``jax.experimental.enable_x64`` in older JAX)."""
    legacy = getattr(jax.experimental, "enable_x64", None)
    return legacy() if legacy is not None else jax.enable_x64(True)


@pytest.fixture(scope="module")
def draws():
    """20 000 Dirichlet draws for each row of ALPHAS: (S, C, K), float32."""
    rng = np.random.default_rng(0)
    x = np.stack([rng.dirichlet(a, size=20_000) for a in ALPHAS], axis=1)
    return jnp.asarray(x, jnp.float32)


# ---- inverse digamma -----------------------------------------------------------------------
def test_inverse_digamma_inverts_digamma_float64():
    with _x64():
        x = jnp.geomspace(1e-3, 1e4, 401, dtype=jnp.float64)
        got = inverse_digamma(digamma(x))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), np.asarray(x), rtol=1e-10)


def test_inverse_digamma_float32_shapes_and_limits():
    x = jnp.geomspace(1e-3, 1e4, 60, dtype=jnp.float32).reshape(3, 4, 5)
    got = inverse_digamma(digamma(x))
    assert got.shape == x.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), np.asarray(x), rtol=1e-5)
    # Beyond the test range and at the limits of digamma's range.
    np.testing.assert_array_equal(
        np.asarray(inverse_digamma(jnp.array([-jnp.inf, jnp.inf]))), [0.0, np.inf]
    )
    # Newton matters: Minka's start alone is only accurate to about a percent.
    start = inverse_digamma(digamma(x), n_iter=0)
    assert np.max(np.abs(np.asarray(start) / np.asarray(x) - 1)) > 1e-3


# ---- Minka fixed point ---------------------------------------------------------------------
def test_minka_recovers_known_concentrations(draws):
    fitted = np.asarray(fit_dirichlet_minka(draws[:, 0]))  # (S, K) -> (K,)
    np.testing.assert_allclose(fitted, ALPHAS[0], rtol=0.05)


def test_minka_vectorised_over_cells_equals_separate_fits(draws):
    together = np.asarray(fit_dirichlet_minka(draws))  # (S, C, K) -> (C, K)
    assert together.shape == ALPHAS.shape
    separate = np.stack([np.asarray(fit_dirichlet_minka(draws[:, c])) for c in range(4)])
    # Equal up to the convergence tolerance (sums over draws are rounded in another order).
    np.testing.assert_allclose(together, separate, rtol=1e-5)
    np.testing.assert_allclose(together, ALPHAS, rtol=0.05)
    # Draws on another axis, and a batch axis after the sample axis: (C, S, K), (S, K, G).
    moved = fit_dirichlet_minka(jnp.swapaxes(draws, 0, 1), sample_axis=1)
    np.testing.assert_allclose(np.asarray(moved), together, rtol=1e-5)


def _scipy_dirichlet_mle(x: np.ndarray) -> np.ndarray:
    """Maximise the Dirichlet log-likelihood of draws ``x`` (S, K) over log alpha with BFGS."""
    mean_log = np.log(x).mean(axis=0)

    def negative_log_likelihood(log_a):
        a = np.exp(log_a)
        value = -(special.gammaln(a.sum()) - special.gammaln(a).sum() + (a - 1) @ mean_log)
        grad = -(special.digamma(a.sum()) - special.digamma(a) + mean_log) * a
        return value, grad

    start = np.zeros(x.shape[1])
    best = optimize.minimize(
        negative_log_likelihood, start, jac=True, method="BFGS", options={"gtol": 1e-10}
    )
    return np.exp(best.x)


def test_minka_matches_scipy_maximum_likelihood():
    rng = np.random.default_rng(3)
    # A moderate row and a concentrated one (precision 1400), where the plain fixed-point
    # iteration moves by less than tol per step while still ~1e-3 from the optimum.
    alphas = np.array([[0.7, 3.0, 1.5, 9.0], [100.0, 400.0, 300.0, 600.0]])
    x = np.stack([rng.dirichlet(a, size=2_000) for a in alphas], axis=1)  # (S, 2, K)
    expected = np.stack([_scipy_dirichlet_mle(x[:, c]) for c in range(2)])
    with _x64():
        fitted = fit_dirichlet_minka(jnp.asarray(x))  # default tol and max_iter
        assert fitted.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(fitted), expected, rtol=1e-5)


def test_minka_degenerate_rows_are_finite(draws):
    # Same shape as `draws` (one compilation): row 0 identical draws, row 1 a coordinate
    # that is always 0, row 2 unchanged, row 3 with a NaN draw.
    mean = np.array([0.2, 0.3, 0.5], np.float32)
    samples = np.array(draws)
    samples[:, 0] = mean
    samples[:, 1, 0] = 0.0
    samples[:, 1] /= samples[:, 1].sum(axis=-1, keepdims=True)
    samples[7, 3, 1] = np.nan
    fitted = np.asarray(fit_dirichlet_minka(samples))
    assert np.all(np.isnan(fitted[3]))
    fitted = fitted[:3]
    assert np.all(np.isfinite(fitted)) and np.all(fitted > 0)
    # Identical draws: the mean is kept, the total is capped at 1 / eps.
    cap = 1.0 / np.finfo(np.float32).eps
    np.testing.assert_allclose(fitted[0].sum(), cap, rtol=1e-5)
    np.testing.assert_allclose(fitted[0] / fitted[0].sum(), mean, rtol=1e-5)
    # A coordinate that is always 0 gets a concentration near 0, the others stay sensible.
    assert fitted[1, 0] < 0.05 and np.all(fitted[1, 1:] > 1.0)
    # Degenerate rows do not disturb the others.
    np.testing.assert_allclose(fitted[2], np.asarray(fit_dirichlet_minka(draws))[2], rtol=1e-6)


def test_minka_rejects_bad_axes():
    with pytest.raises(ValueError, match="simplex"):
        fit_dirichlet_minka(jnp.ones((5, 3)) / 3, sample_axis=-1)
    with pytest.raises(ValueError, match="shape"):
        fit_dirichlet_minka(jnp.ones(3) / 3)
