"""nbvcp's capture expectation in closed form (scribe.expected_capture, issue 8 item 1).

* the series ``E[log(1 - p (1 - nu))]`` and its three partials against scipy quadrature
  of the Beta density, its slow cells finished apart, NaN rather than truncation;
* the ELBO of the wrapped guide against the mean of the sampled ELBO (current path), value
  and gradient, with the shared sites held at one draw so that only the capture varies;
* the switch: on only where exact.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import Trace_ELBO, TraceMeanField_ELBO
from scipy import integrate, special, stats

from scribe.beta_log_expectations import expected_log1m, log1m_series, spare_cells
from scribe.compose import Composition
from scribe.config import ModelConfig
from scribe.counts import SparseCounts
from scribe.expected_capture import ExpectedCapture, training_guide
from scribe.simulate import simulate_counts
from scribe.svi.engine import initial_params

# ---- the series against quadrature ------------------------------------------------------


def _quad(p: float, a: float, b: float) -> np.ndarray:
    """``E[f]``, ``dE/dp``, ``dE/da``, ``dE/db`` for ``f = log(1 - p (1 - nu))``,
    ``nu ~ Beta(a, b)``, by quadrature in float64 (relative accuracy ~1e-10)."""
    f = lambda nu: np.log1p(-p * (1 - nu))  # noqa: E731
    fp = lambda nu: -(1 - nu) / (1 - p * (1 - nu))  # noqa: E731
    ca = special.digamma(a) - special.digamma(a + b)   # E[log nu]
    cb = special.digamma(b) - special.digamma(a + b)   # E[log(1 - nu)]
    if max(a, b) <= 60:
        # Algebraic (Jacobi) weights integrate the endpoint singularities exactly.
        norm = np.exp(special.betaln(a, b))

        def e(g, weight="alg"):
            return integrate.quad(g, 0, 1, weight=weight, wvar=(a - 1, b - 1), epsabs=0,
                                  epsrel=1e-12, limit=200)[0] / norm

        value = e(f)
        return np.array([value, e(fp), e(f, "alg-loga") - value * ca,
                         e(f, "alg-logb") - value * cb])
    # Narrow factors: integrate over the central 1 - 2e-15 of the mass, in x = nu or
    # x = 1 - nu, whichever is small (so that x keeps its precision near its singular
    # end); the score integrals as covariances of centred integrands (no cancellation).
    flip = a > b
    xa, xb = (b, a) if flip else (a, b)
    dist = stats.beta(xa, xb)
    lo, hi = dist.ppf(1e-15), dist.isf(1e-15)
    log_norm = special.betaln(a, b)

    def e(g):
        def weighted(x):
            nu, one_minus = (1 - x, x) if flip else (x, 1 - x)
            return g(nu, one_minus) * np.exp((xa - 1) * np.log(x) + (xb - 1) * np.log1p(-x)
                                             - log_norm)
        return integrate.quad(weighted, lo, hi, points=[dist.median()], epsabs=0,
                              epsrel=1e-12, limit=400)[0]

    value = e(lambda nu, q: np.log1p(-p * q))
    return np.array([
        value, e(lambda nu, q: -q / (1 - p * q)),
        e(lambda nu, q: (np.log1p(-p * q) - value) * (np.log(nu) - ca)),
        e(lambda nu, q: (np.log1p(-p * q) - value) * (np.log(q) - cb))])


@jax.jit
def _series_and_partials(p, a, b):
    def total(p, a, b):
        return log1m_series(p, a, b)[0][0]
    value, converged = log1m_series(p, a, b)
    return value[0], jax.grad(total, (0, 1, 2))(p, a, b), converged[0]


_CONCENTRATIONS = (0.3, 3.0, 40.0, 1e3, 1e4)
def _rtol(p: float) -> float:
    """Float32 bound for the series at ``p``: every accumulator sums terms of one sign,
    so each term adds at most one relative ulp (2^-24), over at most
    K = log(eps (1 - p)^2) / log(p) terms (the stopping rule with m_k <= 1), plus the
    truncation, at most 2^-24."""
    terms = np.log(2.0**-24 * (1 - p) ** 2) / np.log(p)
    return (terms + 1) * 2.0**-24


@pytest.mark.parametrize("p", [0.01, 0.3, 0.7, 0.95, 0.99])
def test_series_matches_quadrature(p):
    for a in _CONCENTRATIONS:
        for b in _CONCENTRATIONS:
            args = (jnp.float32(p), jnp.full((1,), a, jnp.float32),
                    jnp.full((1,), b, jnp.float32))
            value, (dp, da, db), converged = _series_and_partials(*args)
            assert converged == 1.0
            # The reference at the float32-rounded arguments the series saw.
            ref = _quad(*(float(np.float32(x)) for x in (p, a, b)))
            got = np.array([value, dp, da[0], db[0]], np.float64)
            np.testing.assert_allclose(got, ref, rtol=_rtol(p), atol=0,
                                       err_msg=f"p={p}, a={a}, b={b}")


def test_slow_cells_go_on_alone():
    # At p = 0.97, 62 narrow factors Beta(500, 500) meet the bound after ~30 terms and
    # 2 wide ones Beta(0.5, 0.5) after ~700: the pass over all cells stops once at most
    # spare_cells(64) = 2 are short, and those two go on in their own block.
    p = 0.97
    a = jnp.asarray([500.0] * 62 + [0.5] * 2)
    assert spare_cells(64) == 2
    grad_a, values = jax.jit(jax.grad(lambda a: (jnp.sum(expected_log1m(jnp.float32(p), a, a)),
                                                 expected_log1m(jnp.float32(p), a, a)),
                                      has_aux=True))(a)
    for cells, shape in ((slice(0, 62), 500.0), (slice(62, 64), 0.5)):
        ref = _quad(p, shape, shape)
        np.testing.assert_allclose(np.asarray(values[cells], np.float64), ref[0],
                                   rtol=_rtol(p))
        # d/da with a = b: the sum of both partials.
        np.testing.assert_allclose(np.asarray(grad_a[cells], np.float64), ref[2] + ref[3],
                                   rtol=10 * _rtol(p))


def test_nan_not_truncated_beyond_max_terms():
    # p = 1 - 1e-5 with nu ~ Beta(0.5, 0.5) would need ~4e6 terms (> MAX_TERMS = 65,536):
    # the cell is NaN, not a truncated sum.
    value, converged = jax.jit(log1m_series)(jnp.float32(1 - 1e-5), jnp.asarray([0.5, 50.0]),
                                             jnp.asarray([0.5, 5.0]))
    assert np.isnan(value[0]) and converged[0] == 0.0
    assert np.isfinite(value[1]) and converged[1] == 1.0


def test_expected_cell_log_likelihood_matches_quadrature():
    # nbvcp's claim: a cell's log-likelihood depends on its capture only through
    # X_c log p_hat + R log(1 - p_hat). Then E_q[sum_g log NB(x_cg | r_g, p_hat(nu))]
    # = (its value at any nu0) + E_q[l_c] - l_c(nu0); the left side by quadrature of the
    # full scipy log-pmf over nu ~ Beta(a, b).
    from scribe_builtin.negative_binomial import LIKELIHOODS

    nbvcp = next(lik for lik in LIKELIHOODS if lik.name == "nbvcp")
    rng = np.random.default_rng(0)
    r = rng.lognormal(0.0, 1.0, 40)
    p = 0.7
    cells = [(3.0, 40.0), (50.0, 450.0), (0.8, 2.0)]          # (a, b) of nu per cell
    x = rng.negative_binomial(r, 1 - 0.1, (len(cells), r.size))
    nu_a = jnp.asarray([c[0] for c in cells], jnp.float32)
    nu_b = jnp.asarray([c[1] for c in cells], jnp.float32)
    nu0 = nu_a / (nu_a + nu_b)
    params = {"p": jnp.float32(p), "r": jnp.asarray(r, jnp.float32), "p_capture": nu0}
    totals = jnp.asarray(x.sum(axis=1), jnp.float32)
    gap = (nbvcp.expected_capture_log_prob(totals, params, nu_a, nu_b)
           - nbvcp.capture_log_prob(totals, params))

    def loglik(nu, row):
        p_hat = p * nu / (1 - p * (1 - nu))
        return stats.nbinom.logpmf(x[row], r, 1 - p_hat).sum()

    for row, (a, b) in enumerate(cells):
        expected = integrate.quad(lambda nu, row=row, a=a, b=b: loglik(nu, row)
                                  * stats.beta.pdf(nu, a, b),
                                  0, 1, epsabs=0, epsrel=1e-10, limit=200)[0]
        at_point = loglik(float(nu0[row]), row)
        # float32: the gap's terms are ~|X_c log p_hat| ~ 1e3, rounded to 1e-7 relative,
        # a few of them: 1e-4 absolute, against |E| ~ 1e2 ... 1e3.
        np.testing.assert_allclose(at_point + float(gap[row]), expected, rtol=2e-6,
                                   atol=1e-3)


# ---- the ELBO with the expectation against the sampled ELBO -------------------------------
C, G = 24, 30


@functools.cache
def _setup(parameterization: str):
    counts, _ = simulate_counts("nbvcp", C, G, r_loc=0.0, capture_range=(0.05, 0.3), seed=4)
    config = ModelConfig("nbvcp", parameterization)
    composition = Composition(config)
    params = initial_params(config, counts, 0)
    sparse = SparseCounts.from_matrix(counts).with_batch_size(C // 2)
    # One draw of the shared sites, held fixed: the capture is then the only randomness.
    guide_trace = numpyro.handlers.trace(numpyro.handlers.seed(
        numpyro.handlers.substitute(composition.guide, params), 11)).get_trace(C, G)
    fixed = {s.name: guide_trace[s.name]["value"] for s in composition.global_sites}
    return composition, params, sparse, fixed


def _losses(parameterization: str, expected: bool, n: int, batch_size=None):
    """Losses and their gradients in the parameters over ``n`` seeds, shared sites fixed
    (and, with ``batch_size``, the first half of the cells)."""
    composition, params, sparse, fixed = _setup(parameterization)
    elbo = TraceMeanField_ELBO()
    guide = composition.guide
    if expected:
        guide = training_guide(guide, elbo)
        assert isinstance(guide, ExpectedCapture)
    if batch_size is not None:
        fixed = {**fixed, "cells": jnp.arange(batch_size)}
    guide = numpyro.handlers.substitute(guide, data=fixed)

    def loss(params, key):
        return elbo.loss(key, params, composition.model, guide, C, G, counts=sparse,
                         batch_size=batch_size)

    keys = jax.random.split(jax.random.PRNGKey(0), n)
    values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss), (None, 0)))(params, keys)
    flat = jnp.concatenate([values[:, None]] + [jnp.reshape(grads[k], (n, -1))
                                                for k in sorted(grads)], axis=1)
    return np.asarray(flat, np.float64)


def _check_against_sampled(parameterization: str, batch_size=None):
    exact = _losses(parameterization, True, 4, batch_size)
    sampled = _losses(parameterization, False, 4000, batch_size)
    # The expectation has no randomness left (the shared sites are fixed).
    scale = np.abs(exact).max(axis=0) + 1.0
    assert np.all(exact.std(axis=0) <= 1e-5 * scale)
    # Unbiased draws: each of the ~110 coordinates (loss and gradient) within 4.5 standard
    # errors of the exact value (family-wise false alarm ~110 x 7e-6 < 1e-3), plus float32
    # rounding of sums of ~C x G terms (1e-5 relative).
    se = sampled.std(axis=0, ddof=1) / np.sqrt(sampled.shape[0])
    gap = np.abs(sampled.mean(axis=0) - exact[0])
    assert np.all(gap <= 4.5 * se + 1e-5 * scale), np.max(gap / (se + 1e-12))
    # ... and the capture's draws did carry noise that the expectation removed.
    assert sampled[:, 0].std() > 100 * exact[:, 0].std() + 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("parameterization", ["standard", "linked", "odds_ratio"])
def test_elbo_equals_mean_of_sampled_elbo(parameterization):
    _check_against_sampled(parameterization)


@pytest.mark.slow
@pytest.mark.parametrize("parameterization", ["standard", "odds_ratio"])
def test_minibatch_elbo_equals_mean_of_sampled_elbo(parameterization):
    _check_against_sampled(parameterization, batch_size=C // 2)


# ---- the switch -----------------------------------------------------------------------------
@pytest.mark.parametrize("model_type, parameterization, guide_family, loss, on", [
    ("nbvcp", "standard", None, TraceMeanField_ELBO(), True),
    ("nbvcp", "odds_ratio", "joint_gene", TraceMeanField_ELBO(), True),
    ("nbvcp", "standard", None, Trace_ELBO(), False),            # would bias the KL
    ("nbvcp", "unconstrained", None, TraceMeanField_ELBO(), False),   # Normal capture
    ("zinbvcp", "standard", None, TraceMeanField_ELBO(), False),  # gate: per-gene term
    ("nbdm", "standard", None, TraceMeanField_ELBO(), False),
])
def test_switch_only_where_exact(model_type, parameterization, guide_family, loss, on):
    config = ModelConfig(model_type, parameterization, guide_family=guide_family)
    guide = Composition(config).guide
    assert isinstance(training_guide(guide, loss), ExpectedCapture) is on
    assert training_guide(guide, loss, enabled=False) is guide


def test_switch_off_for_mixtures_and_plugin_guides():
    config = ModelConfig("nbvcp_mix", "standard", n_components=2)
    guide = Composition(config).guide
    assert training_guide(guide, TraceMeanField_ELBO()) is guide

    def own_guide(n_cells, n_genes, counts=None, batch_size=None):
        return None

    assert training_guide(own_guide, TraceMeanField_ELBO()) is own_guide


# ---- a fit recovers the truth as well as with draws ------------------------------------------
def _median_error_and_se(estimate, truth, rng, n_boot: int = 400):
    """Median relative error and its bootstrap standard error (resampling the entries)."""
    errors = np.abs(np.asarray(estimate, np.float64) / truth - 1)
    boot = [np.median(rng.choice(errors, errors.size)) for _ in range(n_boot)]
    return float(np.median(errors)), float(np.std(boot))


@pytest.mark.slow
def test_fit_recovers_truth_as_with_draws(monkeypatch):
    import functools

    import scribe
    from scribe import fitting
    from scribe.svi.engine import SVIInferenceEngine

    counts, truth = simulate_counts("nbvcp", 2000, 200, p=0.6, r_loc=-1.0,
                                    capture_range=(0.02, 0.1), seed=7)

    def fit():
        results = scribe.fit(counts, "nbvcp", progress=False, seed=1)
        estimate = results.get_map(use_mean=True, verbose=False)
        return results, estimate

    exact, exact_map = fit()

    class Drawn(SVIInferenceEngine):
        run_inference = staticmethod(functools.partial(SVIInferenceEngine.run_inference,
                                                       expected_capture=False))

    monkeypatch.setattr(fitting, "SVIInferenceEngine", Drawn)
    drawn, drawn_map = fit()
    assert exact.converged and drawn.converged
    rng = np.random.default_rng(0)
    for name in ("r", "p_hat"):
        new, se_new = _median_error_and_se(exact_map[name], truth[name], rng)
        old, se_old = _median_error_and_se(drawn_map[name], truth[name], rng)
        # Same objective, same data: the errors may differ by the optimiser's noise only.
        # Allow 3 bootstrap standard errors of the difference (independent-errors bound;
        # the two fits share the data, so the true spread is smaller).
        assert new <= old + 3 * np.hypot(se_new, se_old), (name, new, old, se_new, se_old)


def test_engine_refuses_a_non_bool_switch():
    from scribe.svi.engine import SVIInferenceEngine

    counts = np.ones((4, 3))
    with pytest.raises(TypeError, match="expected_capture"):
        SVIInferenceEngine.run_inference(ModelConfig("nbvcp"), counts, 4, 3, n_steps=1,
                                         progress=False, expected_capture="yes")
