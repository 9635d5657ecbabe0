"""Dirichlet normalisation of posterior draws of r (scribe.stats.normalize, SPEC section 4).

Each distinct (shape, n) compiles JAX's gamma sampler (~2 s), so the tests share a few.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scribe.stats import dirichlet_normalize

KEY = jax.random.PRNGKey(0)


def _dirichlet_moments(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each coordinate of Dirichlet(alpha) over the last axis."""
    alpha = np.asarray(alpha, np.float64)
    total = alpha.sum(axis=-1, keepdims=True)
    mean = alpha / total
    return mean, mean * (1 - mean) / (total + 1)


def _check_moments(samples: np.ndarray, alpha: np.ndarray, axis: int) -> None:
    """Means within five standard errors, variances within 12 %, of Dirichlet(alpha)."""
    n = samples.shape[axis]
    mean, var = _dirichlet_moments(alpha)
    np.testing.assert_allclose(samples.mean(axis=axis), mean, atol=5 * np.sqrt(var.max() / n))
    np.testing.assert_allclose(samples.var(axis=axis), var, rtol=0.12)


def test_mixture_draws_per_component():
    rng = np.random.default_rng(0)
    r = rng.uniform(0.5, 8.0, size=(2, 3, 5)).astype(np.float32)  # (S, K, G)
    samples = np.asarray(dirichlet_normalize(KEY, r, n_samples_dirichlet=4_000))
    assert samples.shape == (2, 3, 5, 4_000)
    np.testing.assert_allclose(samples.sum(axis=2), 1.0, atol=1e-5)
    _check_moments(samples, r, axis=-1)
    # Concentrations far below 1 (lowly expressed genes): still on the simplex, no NaN.
    tiny = np.asarray(dirichlet_normalize(KEY, np.full_like(r, 0.01), n_samples_dirichlet=4_000))
    assert np.all(np.isfinite(tiny)) and np.all(tiny >= 0)
    np.testing.assert_allclose(tiny.sum(axis=2), 1.0, atol=1e-5)


def test_non_mixture_draws():
    r = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 0.5, 0.5, 9.0]], np.float32)  # (S, G)
    samples = np.asarray(dirichlet_normalize(KEY, r, n_samples_dirichlet=3_000))
    assert samples.shape == (2, 4, 3_000)
    np.testing.assert_allclose(samples.sum(axis=1), 1.0, atol=1e-5)
    _check_moments(samples, r, axis=-1)


def test_single_dirichlet_sample_per_posterior_draw():
    """n = 1 drops the last axis; every posterior draw gets its own key, so 3 000 copies
    of the same r give 3 000 independent proportion vectors with the Dirichlet's moments.
    (The non-mixture case differs only in having no component axis.)"""
    r = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 0.5, 0.5, 9.0]], np.float32)  # (K, G)
    copies = np.broadcast_to(r, (3_000, 2, 4))
    samples = np.asarray(dirichlet_normalize(KEY, copies))
    assert samples.shape == (3_000, 2, 4)
    np.testing.assert_allclose(samples.sum(axis=-1), 1.0, atol=1e-5)
    _check_moments(samples, r, axis=0)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="n_genes"):
        dirichlet_normalize(KEY, jnp.ones(5))
    with pytest.raises(ValueError, match="n_samples_dirichlet"):
        dirichlet_normalize(KEY, jnp.ones((2, 5)), n_samples_dirichlet=0)
