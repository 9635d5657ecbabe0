"""Assignment probabilities and their entropy (scribe.stats.assignment, SPEC section 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from scribe.stats import assignment_entropy, assignment_probabilities


@pytest.fixture(scope="module")
def log_likelihoods():
    """(C, K) = (200, 4) log-likelihoods on the scale of summed gene log-probabilities."""
    rng = np.random.default_rng(0)
    return rng.normal(-5_000.0, 20.0, size=(200, 4)).astype(np.float32)


def test_probabilities_are_the_softmax_and_sum_to_one(log_likelihoods):
    probs = np.asarray(assignment_probabilities(log_likelihoods))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-6)
    expected = special.softmax(log_likelihoods.astype(np.float64), axis=-1)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    # Temperature divides the log-likelihoods.
    tempered = np.asarray(assignment_probabilities(log_likelihoods, temperature=7.0))
    expected = special.softmax(log_likelihoods.astype(np.float64) / 7.0, axis=-1)
    # float32 resolves |L| ~ 5e3 to 5e-4, which the quotient carries into the probabilities.
    np.testing.assert_allclose(tempered, expected, atol=1e-4)


def test_temperature_limits(log_likelihoods):
    hot = np.asarray(assignment_probabilities(log_likelihoods, temperature=1e7))
    np.testing.assert_allclose(hot, 0.25, atol=1e-4)
    cold = np.asarray(assignment_probabilities(log_likelihoods, temperature=1e-3))
    one_hot = np.eye(4)[np.argmax(log_likelihoods, axis=-1)]
    np.testing.assert_allclose(cold, one_hot, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_temperature_raises(temperature):
    with pytest.raises(ValueError, match="temperature"):
        assignment_probabilities(jnp.zeros((2, 3)), temperature=temperature)


def test_traced_temperature_under_jit(log_likelihoods):
    jitted = jax.jit(assignment_probabilities)
    got = np.asarray(jitted(log_likelihoods, 3.0))
    expected = special.softmax(log_likelihoods.astype(np.float64) / 3.0, axis=-1)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_entropy_matches_scipy_and_bounds():
    rng = np.random.default_rng(1)
    k = 5
    probs = rng.dirichlet(np.full(k, 0.3), size=300)
    probs[:20, :2] = 0.0  # exact zeros: 0 log 0 = 0
    probs /= probs.sum(axis=-1, keepdims=True)
    got = np.asarray(assignment_entropy(jnp.asarray(probs, jnp.float32)))
    np.testing.assert_allclose(got, stats.entropy(probs, axis=-1), atol=2e-6)
    assert np.all((got >= 0) & (got <= np.log(k)))
    # Another component axis gives the same values.
    transposed = np.asarray(assignment_entropy(jnp.asarray(probs.T, jnp.float32), axis=0))
    np.testing.assert_allclose(transposed, got, atol=1e-7)


def test_entropy_extremes_and_gradient():
    k = 6
    uniform = jnp.full((3, k), 1.0 / k)
    np.testing.assert_allclose(np.asarray(assignment_entropy(uniform)), np.log(k), rtol=1e-6)
    one_hot = jnp.eye(k)[:3]
    np.testing.assert_array_equal(np.asarray(assignment_entropy(one_hot)), 0.0)
    # The 0 log 0 guard holds in the gradient too: dH/dp_k = -(log p_k + 1) where p_k > 0.
    p = jnp.array([0.0, 0.25, 0.75])
    grad = np.asarray(jax.grad(assignment_entropy)(p))
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[1:], -(np.log([0.25, 0.75]) + 1), rtol=1e-6)
