"""scribe.gamma: Philox bits, the Gamma sampler's law, dz/da accuracy, unbiased gradients.

Monte-Carlo tolerances: a mean gradient over N independent draws has standard error
``s / sqrt(N)`` (``s`` the sample standard deviation of the per-draw gradient); checks
allow 5 standard errors (combined in quadrature when both sides are estimates), a false
alarm rate of about 6e-7 per comparison.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as st

from scribe import gamma as fast
from scribe.distributions import BetaPrime, FastBeta, FastDirichlet
from scribe.families import BETA, BETA_PRIME, DIRICHLET, family_of

KEY = jax.random.PRNGKey(7)
SHAPES = (0.3, 1.0, 5.0, 100.0, 1e4)


def test_philox_known_answers():
    # Random123 known-answer vectors for philox4x32-10.
    assert [int(w) for w in fast.philox4x32((0, 0, 0, 0), (0, 0))] == [
        0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    ones = 0xFFFFFFFF
    assert [int(w) for w in fast.philox4x32((ones,) * 4, (ones, ones))] == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def test_table_matches_derivation():
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from derive_temme import e_coefficients

    derived = np.array([[float(x) for x in row] for row in e_coefficients()])
    np.testing.assert_array_equal(fast._E, derived)
    # Known values: E_0 = -eta/2 + eta^2/6 - ..., E_1(0) = -c_0(0)/2 = 1/6,
    # E_2(0) uses c_1(0) = -1/540 (DLMF 8.12.12).
    assert fast._E[0][1] == -0.5 and fast._E[0][2] == pytest.approx(1 / 6)
    assert fast._E[2][0] == pytest.approx(float(Fraction(1, 540) * 3 / 2))


def test_log1pmx_against_float64():
    t = np.concatenate([-np.logspace(-8, np.log10(0.99), 200), np.logspace(-8, 3, 200)])
    ref = np.log1p(t) - t
    small = np.abs(t) < 1e-3
    ref[small] = -t[small] ** 2 / 2 + t[small] ** 3 / 3 - t[small] ** 4 / 4 + t[small] ** 5 / 5
    got = np.asarray(fast.log1pmx(jnp.asarray(t, jnp.float32)), np.float64)
    assert np.max(np.abs(got / ref - 1)) < 2e-6


@pytest.mark.parametrize("a", [8.0, 12.0, 30.0, 100.0, 1e3, 1e4, 1e5])
def test_shape_derivative_against_float64_reference(a):
    # Reference: JAX's series for -(dP/da)/f in float64 at the exact quantiles.
    q = np.array([1e-6, 1e-4, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-4, 1 - 1e-6])
    z = sc.gammaincinv(a, q)
    with jax.experimental.enable_x64():
        ref = np.asarray(jax.lax.random_gamma_grad(jnp.full(z.shape, a, jnp.float64),
                                                   jnp.asarray(z, jnp.float64)))
    z32 = jnp.asarray(z, jnp.float32)
    got = np.asarray(fast.gamma_shape_derivative(jnp.full(z.shape, a, jnp.float32), z32))
    # float32 inputs carry a relative rounding of 6e-8 in z, amplified by |d log(dz/da)/d log z|
    # (below ~20 here); the expansion itself is accurate to 3e-6 at a = 8.
    assert np.max(np.abs(got / ref - 1)) < 1e-5


@pytest.mark.parametrize("a", SHAPES)
def test_gamma_law(a):
    z = np.asarray(fast.gamma(KEY, a, (100_000,)), np.float64)
    assert np.all(z > 0) and np.all(np.isfinite(z))
    assert st.kstest(z, st.gamma(a).cdf).pvalue > 1e-4


def test_gamma_law_mixed_shapes_and_dtype():
    # One call with shapes on both sides of the boost threshold, in float64 too.
    a = jnp.tile(jnp.array([0.5, 3.0, 8.0, 50.0]), 25_000)
    z = np.asarray(fast.gamma(jax.random.PRNGKey(3), a))
    u = st.gamma(np.asarray(a)).cdf(z)        # probability integral transform: uniform
    assert st.kstest(u, "uniform").pvalue > 1e-4
    with jax.experimental.enable_x64():
        z64 = fast.gamma(KEY, jnp.float64(2.0), (50_000,))
        assert z64.dtype == jnp.float64
        assert st.kstest(np.asarray(z64), st.gamma(2.0).cdf).pvalue > 1e-4


@pytest.mark.parametrize("a,b", [(0.3, 2.0), (5.0, 1.0), (100.0, 1e4)])
def test_beta_and_betaprime_law(a, b):
    x = np.asarray(FastBeta(a, b).sample(KEY, (50_000,)), np.float64)
    assert st.kstest(x, st.beta(a, b).cdf).pvalue > 1e-4
    y = np.asarray(BetaPrime(a, b).sample(KEY, (50_000,)), np.float64)
    assert st.kstest(y, st.betaprime(a, b).cdf).pvalue > 1e-4


def test_dirichlet_law():
    alpha = np.array([0.3, 2.0, 40.0])
    x = np.asarray(FastDirichlet(jnp.asarray(alpha)).sample(KEY, (50_000,)), np.float64)
    np.testing.assert_allclose(x.sum(-1), 1, rtol=1e-5)
    for k in range(3):  # marginals are Beta(alpha_k, sum - alpha_k)
        assert st.kstest(x[:, k], st.beta(alpha[k], alpha.sum() - alpha[k]).cdf).pvalue > 1e-4


def test_families_use_the_fast_distributions():
    beta = BETA.make(jnp.ones(3), 2 * jnp.ones(3))
    assert isinstance(beta, FastBeta) and family_of(beta)[0] is BETA
    assert family_of(BETA_PRIME.make(1.0, 2.0))[0] is BETA_PRIME
    assert family_of(DIRICHLET.make(jnp.ones(3)))[0] is DIRICHLET


def _grad_samples(draw, n):
    """Per-draw gradients of g(z) w.r.t. the concentration(s), one row per draw."""
    return jax.jit(jax.vmap(jax.grad(draw), in_axes=(None, 0)), static_argnums=())


@pytest.mark.parametrize("a", SHAPES)
def test_gamma_mean_gradient_closed_forms(a):
    # d/da E[log z] = trigamma(a), d/da E[z] = 1 for z ~ Gamma(a).
    n = 200_000
    for g, exact in ((jnp.log, sc.polygamma(1, a)), (lambda z: z, 1.0)):
        per_draw = jax.jit(jax.grad(lambda a: jnp.sum(g(fast.gamma(KEY, a, (n,))))))
        # Gradient of the sum: mean = total / n; per-draw spread from a second, split run.
        parts = np.array([
            float(jax.jit(jax.grad(lambda a, k=k: jnp.mean(g(fast.gamma(k, a, (n // 20,))))))(
                jnp.float32(a)))
            for k in jax.random.split(KEY, 20)])
        mean = float(per_draw(jnp.float32(a))) / n
        se = parts.std(ddof=1) / np.sqrt(len(parts))
        assert abs(mean - exact) < 5 * se + 1e-5 * abs(exact), (a, mean, exact, se)
