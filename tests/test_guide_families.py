"""Guide families: registry and defaults, the ``joint_gene`` guide's density against
scipy, its marginals against its draws, the logit-normal family, short fits with every
likelihood x parameterization, and the generic results methods on a joint posterior.

Monte Carlo tolerances are derived from the sampling standard error of the checked
statistic (stated where used), never tuned.
"""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.optim import Adam
from scipy import integrate, special, stats

import scribe
from scribe import ModelConfig, plugins
from scribe.compose import Composition
from scribe.families import LOGIT_NORMAL, family_of
from scribe.logit_normal import LogitNormal, logitnorm
from scribe.simulate import simulate_counts
from scribe.svi import ScribeSVIResults
from tests._guide_params import guide_trace, hand_params

BASES = ("nbdm", "zinb", "nbvcp", "zinbvcp")
PARAMETERIZATIONS = ("standard", "linked", "odds_ratio", "unconstrained")
C, G, K = 30, 8, 2


# --------------------------------------------------------------------------------------
# Registry, defaults and configuration
# --------------------------------------------------------------------------------------
def test_builtin_guide_families_registered():
    names = ["joint_capture", "joint_gene", "mean_field", "skew_gene"]
    assert plugins.available_guide_families() == names
    assert scribe.available_guide_families() == names


@pytest.mark.parametrize("model_type,expected", [
    ("nbdm", "mean_field"), ("nbvcp", "mean_field"), ("zinb", "joint_gene"),
    ("zinbvcp", "joint_gene"), ("nbdm_mix", "mean_field"), ("zinb_mix", "joint_gene")])
def test_default_guide_family_resolved_per_model_type(model_type, expected):
    k = K if model_type.endswith("_mix") else None
    config = ModelConfig(model_type, n_components=k)
    assert config.guide_family == expected
    assert ModelConfig(model_type, n_components=k, guide_family="mean_field").guide_family \
        == "mean_field"
    assert config.to_dict()["guide_family"] == expected
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_config_saved_before_guide_families_loads_as_mean_field():
    old = {"model_type": "zinb", "parameterization": "standard", "n_components": None,
           "priors": {}, "component_specific_params": False}
    assert ModelConfig.from_dict(old).guide_family == "mean_field"


def test_bad_guide_family_errors():
    with pytest.raises(ValueError, match="unknown guide family 'joint'.*joint_gene"):
        ModelConfig("zinb", guide_family="joint")
    with pytest.raises(TypeError, match="guide_family must be a string"):
        ModelConfig("zinb", guide_family=3)
    with pytest.raises(ValueError, match="unknown guide family"):
        scribe.fit(np.ones((4, 3), int), "nbdm", guide_family="nope", n_steps=1,
                   progress=False)


# --------------------------------------------------------------------------------------
# The logit-normal family
# --------------------------------------------------------------------------------------
LOGIT_CASES = [(-2.0, 0.3), (0.5, 1.0), (1.5, 1.3), (-0.2, 0.05)]


@pytest.mark.parametrize("loc,scale", LOGIT_CASES)
def test_logit_normal_mean_mode_density_against_quadrature(loc, scale):
    pdf = lambda x: stats.norm.pdf((special.logit(x) - loc) / scale) / (scale * x * (1 - x))  # noqa: E731
    mean = integrate.quad(lambda x: x * pdf(x), 0, 1, limit=200)[0]
    np.testing.assert_allclose(float(LOGIT_NORMAL.mean(jnp.float32(loc), jnp.float32(scale))),
                               mean, rtol=1e-5)
    grid = np.linspace(1e-5, 1 - 1e-5, 400_001)
    mode = grid[np.argmax(pdf(grid))]
    np.testing.assert_allclose(float(LOGIT_NORMAL.mode(jnp.float32(loc), jnp.float32(scale))),
                               mode, atol=1e-4)
    x = np.array([0.1, 0.3, 0.7])
    np.testing.assert_allclose(LogitNormal(loc, scale).log_prob(jnp.asarray(x, jnp.float32)),
                               stats.norm.logpdf((special.logit(x) - loc) / scale)
                               - np.log(scale * x * (1 - x)), rtol=1e-5)
    frozen = logitnorm(loc, scale)
    np.testing.assert_allclose(frozen.mean(), mean, rtol=1e-7)
    np.testing.assert_allclose(frozen.pdf(x), pdf(x), rtol=1e-10)
    np.testing.assert_allclose(frozen.cdf(frozen.ppf([0.05, 0.5, 0.95])), [0.05, 0.5, 0.95])
    np.testing.assert_allclose(integrate.quad(frozen.pdf, 0, 1, limit=200)[0], 1.0, rtol=1e-7)


def test_logit_normal_mode_nan_where_possibly_bimodal():
    assert np.isnan(float(LOGIT_NORMAL.mode(jnp.float32(0.0), jnp.float32(1.5))))
    assert float(LOGIT_NORMAL.mode(jnp.float32(0.0), jnp.float32(1.0))) == pytest.approx(0.5)


def test_family_of_recognises_logit_normal():
    found = family_of(LogitNormal(jnp.zeros(3), jnp.ones(3)).to_event(1))
    assert found[0] is LOGIT_NORMAL


# --------------------------------------------------------------------------------------
# The joint guide's density, entropy and draws
# --------------------------------------------------------------------------------------
def _joint_params(config, n_cells=C, n_genes=G, seed=0) -> dict:
    return hand_params(config, n_cells, n_genes, seed)


def _guide_trace(config, params, key=0, n_cells=C, n_genes=G):
    return guide_trace(config, params, n_cells, n_genes, key)


def test_joint_guide_density_matches_scipy_multivariate_normal():
    """log q of a draw = log N(z_p) + sum_g log MVN(z_g | loc_g + b_g (z_p - loc_p), L L^T)
    minus the log-Jacobians of p = sigmoid(z_p), r = exp(z_r), gate = sigmoid(z_gate)."""
    config = ModelConfig("zinb", "standard", guide_family="joint_gene")
    params = {k: np.asarray(v, np.float64) for k, v in _joint_params(config).items()}
    tr = _guide_trace(config, _joint_params(config))
    p, r, gate = (np.asarray(tr[n]["value"], np.float64) for n in ("p", "r", "gate"))
    z_p, z_r, z_g = special.logit(p), np.log(r), special.logit(gate)
    expected = stats.norm(params["p_joint_loc"], params["p_joint_scale"]).logpdf(z_p)
    expected -= np.log(p * (1 - p))
    shift = z_p - params["p_joint_loc"]
    for g in range(G):
        mean = [params["r_joint_loc"][g] + params["r_joint_on_p"][g] * shift,
                params["gate_joint_loc"][g] + params["gate_joint_on_p"][g] * shift]
        tril = np.array([[params["r_joint_scale"][g], 0.0],
                         [params["gate_joint_tril_r"][g], params["gate_joint_scale"][g]]])
        expected += stats.multivariate_normal(mean, tril @ tril.T).logpdf([z_r[g], z_g[g]])
    expected -= np.sum(np.log(r) + np.log(gate * (1 - gate)))
    actual = sum(float(jnp.sum(site["fn"].log_prob(site["value"])))
                 for site in tr.values() if site["type"] == "sample")
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_joint_guide_entropy_matches_scipy():
    """-E[log q(z)] over guide draws (unconstrained space) equals the joint Normal's
    entropy: anchor entropy plus per-gene MVN entropies of the conditional covariance.
    Tolerance: 5 standard errors of the Monte Carlo mean over 4000 draws."""
    config = ModelConfig("zinb", "unconstrained", guide_family="joint_gene")
    params = _joint_params(config)
    np_p = {k: np.asarray(v, np.float64) for k, v in params.items()}

    def neg_log_q(key):
        tr = _guide_trace(config, params, key)
        return -sum(jnp.sum(tr[n]["fn"].log_prob(tr[n]["value"]))
                    for n in ("shared_joint", "gene_joint"))

    draws = np.asarray(jax.vmap(neg_log_q)(jax.random.split(jax.random.PRNGKey(3), 4000)))
    expected = stats.norm(0, np_p["p_unconstrained_joint_scale"]).entropy()
    for g in range(G):
        tril = np.array([[np_p["r_unconstrained_joint_scale"][g], 0.0],
                         [np_p["gate_unconstrained_joint_tril_r_unconstrained"][g],
                          np_p["gate_unconstrained_joint_scale"][g]]])
        expected += stats.multivariate_normal(np.zeros(2), tril @ tril.T).entropy()
    assert abs(draws.mean() - expected) < 5 * draws.std() / np.sqrt(draws.size)


def test_posterior_draws_covariance_matches_fitted_covariance():
    """Draws of (z_p, z_r, z_gate): cov(z_g) = L L^T + b b^T s_p^2, cov(z_g, z_p) = b s_p^2.
    Correlations are compared within 5 standard errors, (1 - rho^2) / sqrt(n)."""
    config = ModelConfig("zinb", "unconstrained", guide_family="joint_gene")
    params = _joint_params(config, seed=4)
    res = ScribeSVIResults(params=params, loss_history=jnp.zeros(2), n_cells=C, n_genes=G,
                           model_type="zinb", model_config=config, prior_params={})
    n = 20_000
    draws = res.get_posterior_samples(jax.random.PRNGKey(0), n, store_samples=False)
    np_p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    s_p = np_p["p_unconstrained_joint_scale"]
    for g in range(G):
        b = np.array([np_p["r_unconstrained_joint_on_p_unconstrained"][g],
                      np_p["gate_unconstrained_joint_on_p_unconstrained"][g]])
        tril = np.array([[np_p["r_unconstrained_joint_scale"][g], 0.0],
                         [np_p["gate_unconstrained_joint_tril_r_unconstrained"][g],
                          np_p["gate_unconstrained_joint_scale"][g]]])
        cov = np.zeros((3, 3))
        cov[0, 0] = s_p**2
        cov[1:, 0] = cov[0, 1:] = b * s_p**2
        cov[1:, 1:] = tril @ tril.T + np.outer(b, b) * s_p**2
        expected = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        z = np.stack([np.asarray(draws["p_unconstrained"]),
                      np.asarray(draws["r_unconstrained"][:, g]),
                      np.asarray(draws["gate_unconstrained"][:, g])])
        actual = np.corrcoef(z)
        tol = 5 * (1 - expected**2) / np.sqrt(n) + 1e-9
        assert np.all(np.abs(actual - expected) <= tol), (g, actual, expected)
        # The reported marginals are the draws' marginals (sd within 5 standard errors).
        dist = res.get_distributions()
        sd = float(dist["gate_unconstrained"].scale[g])
        assert abs(z[2].std() - sd) < 5 * sd / np.sqrt(2 * n)
        assert float(dist["gate_unconstrained"].scale[g]) == pytest.approx(np.sqrt(cov[2, 2]),
                                                                           rel=1e-5)


# --------------------------------------------------------------------------------------
# Every likelihood x parameterization: short fits
# --------------------------------------------------------------------------------------
# Each case compiles a fit and two samplers (tens of seconds on a busy two-core machine):
# three representative cases run by default, the full cross product with `-m slow`.
_FAST = {("zinb", "standard"), ("zinbvcp", "unconstrained"), ("zinb_mix", "standard")}
FIT_CASES = [(b, par, None) for b in BASES for par in PARAMETERIZATIONS] + [
    ("zinb_mix", "standard", K), ("zinbvcp_mix", "odds_ratio", K),
    ("nbvcp_mix", "unconstrained", K)]
FIT_PARAMS = [pytest.param(m, p, k, id=f"{m}-{p}",
                           marks=() if (m, p) in _FAST else pytest.mark.slow)
              for m, p, k in FIT_CASES]


@pytest.mark.parametrize("model_type,par,k", FIT_PARAMS)
def test_joint_gene_fits_every_likelihood_and_parameterization(model_type, par, k):
    counts, _ = simulate_counts(model_type, 60, 12, n_components=k, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = scribe.fit(counts, model_type, par, n_components=k, n_steps=150,
                         optimizer=Adam(0.01), progress=False, guide_family="joint_gene")
    losses = np.asarray(res.loss_history)
    assert np.all(np.isfinite(losses))
    assert losses[-20:].mean() < losses[:20].mean()
    declared = Composition(res.model_config).variational_params(60, 12)
    assert set(res.params) == set(declared)
    # Every sampled site's reported marginal is the law of its draws: compare the mean
    # of each gene site's draws in unconstrained space with the marginal's loc
    # (5 standard errors of 2000 draws).
    draws = res.get_posterior_samples(jax.random.PRNGKey(1), 2000, store_samples=False)
    composition = Composition(res.model_config)
    for name, dist in res.get_distributions().items():
        site = composition.sites[name]
        if site.scope != "gene":
            continue
        found, (loc, scale) = family_of(dist)
        transform = {"lognormal": np.log, "logitnormal": special.logit,
                     "normal": lambda v: v}[found.name]
        z = transform(np.asarray(draws[name], np.float64))
        assert np.all(np.abs(z.mean(0) - np.asarray(loc)) < 5 * np.asarray(scale) / np.sqrt(2000))


# --------------------------------------------------------------------------------------
# Generic results methods with a joint guide
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def joint_mixture():
    config = ModelConfig("zinbvcp_mix", "standard", n_components=K,
                         component_specific_params=True, guide_family="joint_gene")
    params = _joint_params(config, seed=7)
    return ScribeSVIResults(params=params, loss_history=jnp.zeros(2), n_cells=C, n_genes=G,
                            model_type=config.model_type, model_config=config,
                            prior_params={})


def test_map_and_scipy_distributions_of_joint_marginals(joint_mixture):
    res = joint_mixture
    p = {k: np.asarray(v, np.float64) for k, v in res.params.items()}
    var_r = (p["r_joint_scale"] ** 2
             + p["r_joint_on_p"] ** 2 * p["p_joint_scale"][:, None] ** 2)
    estimate = res.get_map(verbose=False)
    np.testing.assert_allclose(estimate["r"], np.exp(p["r_joint_loc"] - var_r), rtol=1e-4)
    var_gate = (p["gate_joint_scale"] ** 2 + p["gate_joint_tril_r"] ** 2
                + p["gate_joint_on_p"] ** 2 * p["p_joint_scale"][:, None] ** 2)
    gate_dist = res.get_distributions("scipy")["gate"]
    grid = np.linspace(1e-4, 1 - 1e-4, 20_001)
    for k, g in [(0, 0), (1, 5)]:
        density = logitnorm(p["gate_joint_loc"][k, g], np.sqrt(var_gate[k, g])).pdf(grid)
        assert estimate["gate"][k, g] == pytest.approx(grid[np.argmax(density)], abs=1e-4)
    np.testing.assert_allclose(gate_dist.mean(), logitnorm(p["gate_joint_loc"],
                                                           np.sqrt(var_gate)).mean(), rtol=1e-6)
    np.testing.assert_allclose(estimate["p"], LOGIT_NORMAL.mode(p["p_joint_loc"],
                                                                p["p_joint_scale"]), rtol=1e-4)


def test_subsetting_components_samples_and_save_load(joint_mixture, tmp_path):
    res = joint_mixture
    genes = [1, 4, 6]
    sub = res[genes]
    np.testing.assert_allclose(sub.get_map(verbose=False)["r"],
                               res.get_map(verbose=False)["r"][:, genes], rtol=1e-6)
    component = res.get_component(1)
    assert component.model_type == "zinbvcp"
    assert component.model_config.guide_family == "joint_gene"
    np.testing.assert_allclose(component.get_map(verbose=False)["gate"],
                               res.get_map(verbose=False)["gate"][1], rtol=1e-6)
    ppc = res.get_ppc_samples(jax.random.PRNGKey(2), n_samples=4)
    assert ppc["predictive_samples"].shape == (4, C, G)
    assert "gene_joint" not in ppc["parameter_samples"]
    counts = np.asarray(ppc["predictive_samples"][0])
    ll = res.log_likelihood(counts)
    assert ll.shape == (4, C) and np.all(np.isfinite(np.asarray(ll)))
    path = os.fspath(tmp_path / "joint.nc")
    res.save(path)
    back = scribe.load(path)
    assert back.model_config == res.model_config
    for name, value in res.get_map(verbose=False).items():
        np.testing.assert_array_equal(back.get_map(verbose=False)[name], value)
