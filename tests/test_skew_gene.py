"""The ``skew_gene`` guide family: its density against the change of variables with a
numerical Jacobian, the law of its draws against its quadrature marginals, the generic
results methods, fits of every likelihood and (slow) zinb's interval coverage."""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.optim import Adam
from scipy import special, stats

import scribe
from scribe import ModelConfig
from scribe.compose import Composition
from scribe.families import family_of
from scribe.simulate import simulate_counts
from scribe.svi import ScribeSVIResults
from tests._guide_params import hand_params

C, G, K = 30, 7, 2


def _params(config, n_cells=C, n_genes=G, seed=0) -> dict:
    return hand_params(config, n_cells, n_genes, seed, shape_params=True)


def _sas(eps, skew, tail):
    return np.sinh((np.arcsinh(eps) + skew) / tail)


def _forward(eps, z_p, prm, g):
    """Independent numpy version of the map eps -> (z_gate, z_r) of gene ``g``."""
    y_gate = _sas(eps[0], prm["gate_joint_skew"][g], prm["gate_joint_tail"][g])
    y_r = _sas(eps[1], prm["r_joint_skew"][g], prm["r_joint_tail"][g])
    w_gate = prm["gate_joint_loc"][g] + prm["gate_joint_scale"][g] * y_gate
    w_r = (prm["r_joint_loc"][g] + prm["r_joint_tril_gate"][g] * y_gate
           + prm["r_joint_scale"][g] * y_r)
    shift = z_p - prm["p_joint_loc"]
    return np.array([w_gate + prm["gate_joint_on_p"][g] * shift,
                     w_r + prm["r_joint_softplus_gate"][g] * np.logaddexp(0.0, w_gate)
                     + prm["r_joint_on_p"][g] * shift])


def test_skew_guide_density_is_the_change_of_variables_density():
    """log q of a draw = log N(z_p) + sum_g [log N(eps_g) - log|det dz_g/deps_g|] minus
    the bijections' log-Jacobians; the determinant by central differences (float64,
    step 1e-5: truncation error ~1e-10, far below rtol)."""
    config = ModelConfig("zinb", "standard", guide_family="skew_gene")
    params = _params(config)
    prm = {k: np.asarray(v, np.float64) for k, v in params.items()}
    guide = Composition(config).guide
    tr = handlers.trace(handlers.seed(handlers.substitute(guide, data=params), 3)).get_trace(C, G)
    p, r, gate = (np.asarray(tr[n]["value"], np.float64) for n in ("p", "r", "gate"))
    eps = np.asarray(tr["gene_joint"]["value"], np.float64)          # (G, 2): gate, r
    z_p = special.logit(p)
    expected = stats.norm(prm["p_joint_loc"], prm["p_joint_scale"]).logpdf(z_p)
    expected -= np.log(p * (1 - p))
    h = 1e-5
    for g in range(G):
        z = _forward(eps[g], z_p, prm, g)
        np.testing.assert_allclose(z, [special.logit(gate[g]), np.log(r[g])], rtol=1e-4,
                                   atol=1e-5)
        jac = np.stack([(_forward(eps[g] + h * e, z_p, prm, g)
                         - _forward(eps[g] - h * e, z_p, prm, g)) / (2 * h)
                        for e in np.eye(2)], axis=1)
        expected += (stats.norm.logpdf(eps[g]).sum() - np.log(abs(np.linalg.det(jac)))
                     - np.log(r[g]) - np.log(gate[g] * (1 - gate[g])))
    actual = sum(float(jnp.sum(site["fn"].log_prob(site["value"])))
                 for site in tr.values() if site["type"] == "sample")
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def skew_results():
    config = ModelConfig("zinb", "standard", guide_family="skew_gene")
    return ScribeSVIResults(params=_params(config, seed=5), loss_history=jnp.zeros(2),
                            n_cells=C, n_genes=G, model_type="zinb", model_config=config,
                            prior_params={})


N_DRAWS = 4000


def test_draws_have_the_stated_marginals(skew_results):
    """The quadrature cdf at the draws' empirical quantiles equals the level: the cdf
    value of an empirical alpha-quantile of n draws has sd sqrt(alpha (1 - alpha) / n);
    5 sd (70 comparisons: P(any beyond) ~ 4e-5). The density is the derivative of the
    cdf in the site's own space (central differences, rtol 1e-3), quantiles invert the
    cdf, and the means agree with the draws' means within 5 standard errors."""
    res = skew_results
    draws = res.get_posterior_samples(jax.random.PRNGKey(11), N_DRAWS, store_samples=False)
    dists = res.get_distributions()
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    for name in ("r", "gate"):
        dist, x = dists[name], np.asarray(draws[name], np.float64)
        assert family_of(dist)[0].name in ("skew_lognormal", "skew_logitnormal")
        quantiles = np.quantile(x, levels, axis=0)                          # (5, G)
        cdf = np.asarray(dist.cdf(jnp.asarray(quantiles, jnp.float32)))
        tolerance = 5 * np.sqrt(levels * (1 - levels) / N_DRAWS)[:, None]
        assert np.all(np.abs(cdf - levels[:, None]) < tolerance), name
        back = np.asarray(dist.cdf(dist.icdf(levels[:, None])))
        np.testing.assert_allclose(back, np.broadcast_to(levels[:, None], back.shape), atol=1e-4)
        value = jnp.asarray(quantiles[2], jnp.float32)
        step = 1e-3 * value * (1 - value) if name == "gate" else 1e-3 * value
        slope = (dist.cdf(value + step) - dist.cdf(value - step)) / (2 * step)
        np.testing.assert_allclose(np.exp(dist.log_prob(value)), slope, rtol=1e-3)
        se = x.std(0) / np.sqrt(N_DRAWS)
        assert np.all(np.abs(np.asarray(dist.mean) - x.mean(0)) < 5 * se), name
    # The anchor keeps its closed-form LogitNormal marginal.
    assert family_of(dists["p"])[0].name == "logitnormal"


def test_unconstrained_moments_match_the_draws(skew_results):
    """The drift rule's coarse quadrature moments of log r and logit gate: the mean within
    5 standard errors of the draws' mean plus 0.01 sd (the coarse rule's error, measured
    at 0.002 sd against the fine one), the sd within 5 standard errors of the draws' sd
    (se of a sd ~ sd / sqrt(2 n)) plus 1 %."""
    draws = skew_results.get_posterior_samples(jax.random.PRNGKey(12), N_DRAWS,
                                               store_samples=False)
    dists = skew_results.get_distributions()
    for name, to_x in (("r", np.log), ("gate", special.logit)):
        x = to_x(np.asarray(draws[name], np.float64))
        mean, sd = (np.asarray(v) for v in dists[name].unconstrained_moments())
        x_sd = x.std(0)
        assert np.all(np.abs(mean - x.mean(0)) < 5 * x_sd / np.sqrt(N_DRAWS) + 0.01 * x_sd)
        assert np.all(np.abs(sd / x_sd - 1) < 5 / np.sqrt(2 * N_DRAWS) + 0.01), name


def test_mode_is_the_density_maximum(skew_results):
    """get_map's mode: no point of a fine grid (log r within +-1 of it, 1,001 points)
    has a density more than the grid resolution's worth higher."""
    res = skew_results
    mode = res.get_map(verbose=False, canonical=False)["r"]
    dist = res.get_distributions()["r"]
    log_mode = np.asarray(dist.log_prob(mode))
    sd = np.sqrt(np.asarray(dist.variance))
    grid = np.asarray(mode)[None] * np.exp(np.linspace(-1.0, 1.0, 1001))[:, None]
    log_grid = np.asarray(dist.log_prob(jnp.asarray(grid, jnp.float32)))
    assert np.all(np.isfinite(sd))
    assert np.all(log_grid.max(0) - log_mode < 1e-2)


def test_results_methods_with_skew_marginals(tmp_path):
    """Gene subsetting, component extraction and save/load keep the marginals; scipy
    conversion refuses clearly."""
    config = ModelConfig("zinb_mix", "standard", n_components=K,
                         component_specific_params=True, guide_family="skew_gene")
    res = ScribeSVIResults(params=_params(config, seed=7), loss_history=jnp.zeros(2),
                           n_cells=C, n_genes=G, model_type=config.model_type,
                           model_config=config, prior_params={})
    mean = np.asarray(res.get_distributions()["r"].mean)
    assert mean.shape == (K, G)
    genes = [1, 4, 6]
    np.testing.assert_allclose(np.asarray(res[genes].get_distributions()["r"].mean),
                               mean[:, genes], rtol=1e-6)
    component = res.get_component(1)
    assert component.model_config.guide_family == "skew_gene"
    np.testing.assert_allclose(np.asarray(component.get_distributions()["gate"].mean),
                               np.asarray(res.get_distributions()["gate"].mean)[1], rtol=1e-6)
    path = os.fspath(tmp_path / "skew.nc")
    res.save(path)
    back = scribe.load(path)
    np.testing.assert_allclose(np.asarray(back.get_distributions()["r"].mean), mean, rtol=1e-6)
    with pytest.raises(ValueError, match="no scipy equivalent.*skew_lognormal"):
        res.get_distributions("scipy")


FIT_CASES = [("zinb", "standard", None), ("nbdm", "linked", None),
             ("zinb_mix", "standard", 2), ("nbvcp", "standard", None),
             ("zinbvcp", "odds_ratio", None)]


@pytest.mark.parametrize("model_type,par,k", [
    pytest.param(m, p, k, id=f"{m}-{p}", marks=pytest.mark.slow) for m, p, k in FIT_CASES])
def test_skew_gene_fits_every_likelihood(model_type, par, k):
    counts, _ = simulate_counts(model_type, 60, 12, n_components=k, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = scribe.fit(counts, model_type, par, n_components=k, n_steps=150,
                         optimizer=Adam(0.01), progress=False, guide_family="skew_gene")
    losses = np.asarray(res.loss_history)
    assert np.all(np.isfinite(losses))
    assert losses[-20:].mean() < losses[:20].mean()
    assert set(res.params) == set(Composition(res.model_config).variational_params(60, 12))
    estimate = res.get_map(use_mean=True, verbose=False)
    assert np.all(np.isfinite(np.asarray(estimate["r"])))


@pytest.mark.slow
def test_zinb_coverage_reaches_the_band():
    """Central 90 % intervals of r and gate cover the truth for 85-95 % of genes.

    Simulation of benchmarks/time_to_fit.py at 5,000 x 1,000 (exact per-gene posterior
    there: 92.8 % / 93.6 %). A coverage fraction over G independent genes has binomial
    sd sqrt(c (1 - c) / G): the band's edges are widened by 3 such sds (0.034 at 0.85,
    0.021 at 0.95 for G = 1,000)."""
    n_cells, n_genes = 5000, 1000
    dense, truth = simulate_counts("zinb", n_cells, n_genes, seed=0, p=0.6, r_loc=-2.0,
                                   r_scale=1.0)
    # The documented settings of skew_gene (docs/models.md, "Diagnosis").
    res = scribe.fit(dense, "zinb", guide_family="skew_gene", optimizer=Adam(1e-2),
                     n_steps=10_000, tol=None, progress=False, seed=0)
    draws = res.get_posterior_samples(jax.random.PRNGKey(1), 1000, store_samples=False)
    low_edge = 0.85 - 3 * np.sqrt(0.85 * 0.15 / n_genes)
    high_edge = 0.95 + 3 * np.sqrt(0.95 * 0.05 / n_genes)
    for name in ("r", "gate"):
        low, high = np.quantile(np.asarray(draws[name]), [0.05, 0.95], axis=0)
        covered = float(np.mean((truth[name] >= low) & (truth[name] <= high)))
        assert low_edge <= covered <= high_edge, (name, covered)


def test_starts_where_joint_gene_starts():
    """Same starting locations, scales and couplings as joint_gene; skew 0, tail 1 and
    no softplus shift, so the starting guide is joint_gene's Normal."""
    from scribe.svi.engine import initial_params

    counts, _ = simulate_counts("zinb", 80, 6, seed=4)
    skew = initial_params(ModelConfig("zinb", guide_family="skew_gene"), counts, seed=0)
    joint = initial_params(ModelConfig("zinb", guide_family="joint_gene"), counts, seed=0)
    for name, value in joint.items():
        name = "r_joint_tril_gate" if name == "gate_joint_tril_r" else name
        np.testing.assert_array_equal(np.asarray(skew[name]), np.asarray(value))
    for site in ("r", "gate"):
        np.testing.assert_array_equal(np.asarray(skew[f"{site}_joint_skew"]), 0.0)
        np.testing.assert_array_equal(np.asarray(skew[f"{site}_joint_tail"]), 1.0)
    np.testing.assert_array_equal(np.asarray(skew["r_joint_softplus_gate"]), 0.0)
    assert len(skew) == len(joint) + 5
