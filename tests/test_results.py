"""Tests of ``scribe.svi.ScribeSVIResults`` and ``SVIResultsFactory``.

Results objects are mostly built directly from hand-chosen variational parameters, so that
every estimate, distribution and sample can be checked against closed forms (SPEC sections
2-3), scipy, or Monte Carlo tolerances derived from the analytic moments.
"""

from __future__ import annotations

import warnings

import anndata
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer.svi import SVIRunResult
from scipy import stats

from scribe import ModelConfig
from scribe.svi import ScribeSVIResults, SVIResultsFactory

C, G, K = 20, 6, 3
BASES = ("nbdm", "zinb", "nbvcp", "zinbvcp")
PARAMETERIZATIONS = ("standard", "linked", "odds_ratio", "unconstrained")
FAMILY_ARGS = {
    "beta": ("alpha", "beta"),
    "betaprime": ("alpha", "beta"),
    "lognormal": ("loc", "scale"),
    "normal": ("loc", "scale"),
    "dirichlet": ("concentrations",),
}


# --------------------------------------------------------------------------------------
# Helpers written from SPEC section 2, independently of the library's composition code.
# --------------------------------------------------------------------------------------
def spec_sites(model_type: str, parameterization: str) -> dict[str, tuple[str, str]]:
    """``{site: (family, scope)}`` of the sampled sites listed in SPEC section 2."""
    base = model_type.removesuffix("_mix")
    unc = parameterization == "unconstrained"
    sites = {
        "standard": {"p": ("beta", "shared"), "r": ("lognormal", "gene")},
        "linked": {"p": ("beta", "shared"), "mu": ("lognormal", "gene")},
        "odds_ratio": {"phi": ("betaprime", "shared"), "mu": ("lognormal", "gene")},
        "unconstrained": {"p_unconstrained": ("normal", "shared"),
                          "r_unconstrained": ("normal", "gene")},
    }[parameterization].copy()
    if base in ("zinb", "zinbvcp"):
        sites["gate_unconstrained" if unc else "gate"] = ("normal" if unc else "beta", "gene")
    if base in ("nbvcp", "zinbvcp"):
        sites.update({
            "standard": {"p_capture": ("beta", "cell")},
            "linked": {"p_capture": ("beta", "cell")},
            "odds_ratio": {"phi_capture": ("betaprime", "cell")},
            "unconstrained": {"p_capture_unconstrained": ("normal", "cell")},
        }[parameterization])
    if model_type.endswith("_mix"):
        if unc:
            sites["mixing_logits_unconstrained"] = ("normal", "component")
        else:
            sites["mixing_weights"] = ("dirichlet", "component")
    return sites


def param_names(site: str, family: str) -> list[str]:
    prefix = "mixing" if site == "mixing_weights" else site
    return [f"{prefix}_{arg}" for arg in FAMILY_ARGS[family]]


def site_shape(scope, n_cells, n_genes, n_components, component_specific):
    return {
        "cell": (n_cells,),
        "gene": (n_components, n_genes) if n_components else (n_genes,),
        "shared": (n_components,) if (n_components and component_specific) else (),
        "component": (n_components,),
    }[scope]


def make_params(model_type, parameterization, n_cells=C, n_genes=G, n_components=None,
                component_specific=False, seed=0) -> dict:
    """Hand-chosen variational parameters with every mode interior."""
    rng = np.random.default_rng(seed)
    params = {}
    for site, (family, scope) in spec_sites(model_type, parameterization).items():
        shape = site_shape(scope, n_cells, n_genes, n_components, component_specific)
        names = param_names(site, family)
        if family == "beta":
            values = [rng.uniform(2.0, 9.0, shape), rng.uniform(2.0, 9.0, shape)]
        elif family == "betaprime":
            # beta > 4 keeps the fourth moment finite (Monte Carlo variance checks).
            values = [rng.uniform(2.0, 9.0, shape), rng.uniform(10.0, 20.0, shape)]
        elif family in ("lognormal", "normal"):
            values = [rng.normal(0.0, 0.7, shape), rng.uniform(0.1, 0.5, shape)]
        else:
            values = [rng.uniform(2.0, 9.0, shape)]
        for name, value in zip(names, values, strict=True):
            params[name] = jnp.asarray(value, jnp.float32)
    return params


def make_results(model_type="nbdm", parameterization="standard", n_components=None,
                 component_specific=False, seed=0, params=None, n_cells=C, n_genes=G,
                 **kwargs) -> ScribeSVIResults:
    config = ModelConfig(model_type, parameterization, n_components=n_components,
                         component_specific_params=component_specific,
                         guide_family="mean_field")
    if params is None:
        params = make_params(model_type, parameterization, n_cells, n_genes, n_components,
                             component_specific, seed)
    return ScribeSVIResults(params=params, loss_history=jnp.zeros(3), n_cells=n_cells,
                            n_genes=n_genes, model_type=model_type, model_config=config,
                            prior_params={}, **kwargs)


def np_params(params: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def expected_mode(family, *args):
    """Closed-form modes of SPEC section 3 (NaN where not interior)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if family == "beta":
            a, b = args
            return np.where((a > 1) & (b > 1), (a - 1) / (a + b - 2), np.nan)
        if family == "betaprime":
            a, b = args
            return np.where(a > 1, (a - 1) / (b + 1), np.nan)
        if family == "lognormal":
            loc, scale = args
            return np.exp(loc - scale**2)
        if family == "normal":
            return args[0]
        (alpha,) = args
        if np.all(alpha > 1):
            return (alpha - 1) / (alpha.sum() - alpha.size)
        return np.full(alpha.shape, np.nan)


def expected_mean(family, *args):
    if family == "beta":
        a, b = args
        return a / (a + b)
    if family == "betaprime":
        a, b = args
        return a / (b - 1)
    if family == "lognormal":
        loc, scale = args
        return np.exp(loc + scale**2 / 2)
    if family == "normal":
        return args[0]
    (alpha,) = args
    return alpha / alpha.sum(axis=-1, keepdims=True)


def expected_variance(family, *args):
    if family == "beta":
        a, b = args
        return a * b / ((a + b) ** 2 * (a + b + 1))
    if family == "betaprime":
        a, b = args
        return a * (a + b - 1) / ((b - 2) * (b - 1) ** 2)
    if family == "lognormal":
        loc, scale = args
        return (np.exp(scale**2) - 1) * np.exp(2 * loc + scale**2)
    if family == "normal":
        return args[1] ** 2
    (alpha,) = args
    a0 = alpha.sum(axis=-1, keepdims=True)
    return alpha * (a0 - alpha) / (a0**2 * (a0 + 1))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def per_gene(shared):
    shared = np.asarray(shared)
    return shared[..., None] if shared.ndim >= 1 else shared


def expected_canonical(model_type, parameterization, v: dict) -> dict:
    """Canonical parameters of SPEC section 2 from sampled-site values (unbatched)."""
    base = model_type.removesuffix("_mix")
    out = {}
    if parameterization == "standard":
        out["p"], out["r"] = v["p"], v["r"]
    elif parameterization == "linked":
        out["p"] = v["p"]
        out["r"] = v["mu"] * per_gene((1 - v["p"]) / v["p"])
    elif parameterization == "odds_ratio":
        out["p"] = 1 / (1 + v["phi"])
        out["r"] = v["mu"] * per_gene(v["phi"])
    else:
        out["p"] = sigmoid(v["p_unconstrained"])
        out["r"] = np.exp(v["r_unconstrained"])
    if base in ("zinb", "zinbvcp"):
        out["gate"] = (sigmoid(v["gate_unconstrained"]) if parameterization == "unconstrained"
                       else v["gate"])
    if base in ("nbvcp", "zinbvcp"):
        if parameterization == "odds_ratio":
            nu = 1 / (1 + v["phi_capture"])
        elif parameterization == "unconstrained":
            nu = sigmoid(v["p_capture_unconstrained"])
        else:
            nu = v["p_capture"]
        out["p_capture"] = nu
        p = np.asarray(out["p"])
        if p.ndim == 1:
            out["p_hat"] = p[None, :] * nu[:, None] / (1 - p[None, :] * (1 - nu[:, None]))
        else:
            out["p_hat"] = p * nu / (1 - p * (1 - nu))
    if model_type.endswith("_mix"):
        if parameterization == "unconstrained":
            logits = v["mixing_logits_unconstrained"]
            e = np.exp(logits - logits.max())
            out["mixing_weights"] = e / e.sum()
        else:
            out["mixing_weights"] = v["mixing_weights"]
    return out


def assert_close(actual, expected, rtol=2e-5, atol=1e-6, **kwargs):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=rtol, atol=atol, **kwargs)


MODEL_CASES = [
    (base, par, None, False) for base in BASES for par in PARAMETERIZATIONS
] + [
    (base + "_mix", par, K, True) for base in BASES for par in PARAMETERIZATIONS
] + [
    (base + "_mix", par, K, False) for base, par in zip(BASES, PARAMETERIZATIONS)
] + [("zinbvcp_mix", par, 2, False) for par in PARAMETERIZATIONS if par != "unconstrained"]


def case_id(case):
    model_type, par, _, cs = case
    return f"{model_type}-{par}" + ("-cs" if cs else "")


# --------------------------------------------------------------------------------------
# get_map
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", MODEL_CASES, ids=case_id)
def test_get_map_modes_and_canonical_match_closed_forms(case):
    model_type, par, n_components, cs = case
    res = make_results(model_type, par, n_components, cs, seed=MODEL_CASES.index(case))
    params = np_params(res.params)
    sites = spec_sites(model_type, par)

    modes = {site: expected_mode(fam, *(params[n] for n in param_names(site, fam)))
             for site, (fam, _) in sites.items()}
    raw = res.get_map(canonical=False)
    assert set(raw) == set(sites)
    for site, mode in modes.items():
        assert np.all(np.isfinite(mode))
        assert_close(raw[site], mode, err_msg=site)

    full = res.get_map()
    canonical = expected_canonical(model_type, par, modes)
    assert set(full) == set(sites) | set(canonical)
    for name, value in canonical.items():
        assert_close(full[name], value, rtol=5e-5, err_msg=name)
    if "p_hat" in canonical:
        assert full["p_hat"].shape == ((C, n_components) if cs else (C,))
    if cs:
        assert full["p"].shape == (n_components,)
    assert full["r"].shape == ((n_components, G) if n_components else (G,))


def test_get_map_canonical_relations_for_odds_ratio_and_linked():
    odds = make_results("nbdm", "odds_ratio").get_map()
    assert_close(odds["r"], np.asarray(odds["mu"]) * float(odds["phi"]))
    assert_close(odds["p"], 1 / (1 + float(odds["phi"])))
    linked = make_results("nbdm", "linked").get_map()
    p = float(linked["p"])
    assert_close(linked["r"], np.asarray(linked["mu"]) * (1 - p) / p)
    unc = make_results("nbdm", "unconstrained").get_map()
    assert_close(unc["r"], np.exp(np.asarray(unc["r_unconstrained"])))


def _no_warnings(fn, *args, **kwargs):
    """Call ``fn`` and assert that it issued no UserWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    user = [w for w in caught if issubclass(w.category, UserWarning)]
    assert not user, [str(w.message) for w in user]
    return out


def test_get_map_beta_undefined_modes_nan_and_mean_replacement():
    params = make_params("zinb", "linked")
    gate_alpha = np.asarray(params["gate_alpha"]).copy()
    gate_beta = np.asarray(params["gate_beta"]).copy()
    gate_alpha[1], gate_beta[4] = 0.7, 1.0  # alpha <= 1 and beta <= 1
    params["gate_alpha"], params["gate_beta"] = jnp.asarray(gate_alpha), jnp.asarray(gate_beta)
    params["p_alpha"] = jnp.asarray(1.0, jnp.float32)
    params["p_beta"] = jnp.asarray(3.0, jnp.float32)
    res = make_results("zinb", "linked", params=params)
    a, b = gate_alpha.astype(np.float64), gate_beta.astype(np.float64)

    est = _no_warnings(res.get_map, use_mean=False)
    gate = np.asarray(est["gate"])
    assert np.isnan(gate[[1, 4]]).all()
    keep = np.array([0, 2, 3, 5])
    assert_close(gate[keep], ((a - 1) / (a + b - 2))[keep])
    assert np.isnan(float(est["p"]))
    assert np.isnan(np.asarray(est["r"])).all()  # r computed from the (NaN) estimate of p

    with pytest.warns(UserWarning):
        est = res.get_map(use_mean=True, verbose=True)
    gate = np.asarray(est["gate"])
    assert_close(gate[[1, 4]], (a / (a + b))[[1, 4]])
    assert_close(gate[keep], ((a - 1) / (a + b - 2))[keep])
    assert_close(est["p"], 0.25)
    mu_mode = np.exp(np.asarray(params["mu_loc"], np.float64)
                     - np.asarray(params["mu_scale"], np.float64) ** 2)
    assert_close(est["r"], mu_mode * 0.75 / 0.25, rtol=5e-5)

    quiet = _no_warnings(res.get_map, use_mean=True, verbose=False)
    for name in est:
        assert_close(quiet[name], est[name])


def test_get_map_betaprime_undefined_mode():
    params = make_params("nbvcp", "odds_ratio")
    params["phi_alpha"] = jnp.asarray(0.8, jnp.float32)
    params["phi_beta"] = jnp.asarray(5.0, jnp.float32)
    cap_alpha = np.asarray(params["phi_capture_alpha"]).copy()
    cap_alpha[3] = 1.0
    params["phi_capture_alpha"] = jnp.asarray(cap_alpha)
    res = make_results("nbvcp", "odds_ratio", params=params)
    est = _no_warnings(res.get_map, use_mean=False)
    assert np.isnan(float(est["phi"]))
    assert np.isnan(float(est["phi_capture"][3]))
    assert np.isfinite(np.delete(np.asarray(est["phi_capture"]), 3)).all()

    with pytest.warns(UserWarning):
        est = res.get_map(use_mean=True)
    assert_close(est["phi"], 0.8 / (5.0 - 1))
    b = np.asarray(params["phi_capture_beta"], np.float64)
    assert_close(est["phi_capture"][3], 1.0 / (b[3] - 1))
    phi = 0.8 / 4.0
    assert_close(est["p"], 1 / (1 + phi))
    assert_close(est["r"], np.exp(np.asarray(params["mu_loc"], np.float64)
                                  - np.asarray(params["mu_scale"], np.float64) ** 2) * phi)
    nu = np.asarray(est["p_capture"], np.float64)
    p = 1 / (1 + phi)
    assert_close(est["p_hat"], p * nu / (1 - p * (1 - nu)))
    # p_hat = 1 / (1 + phi + phi * phi_capture) (SPEC section 2)
    assert_close(est["p_hat"], 1 / (1 + phi + phi * np.asarray(est["phi_capture"])))


def test_get_map_dirichlet_undefined_mode_whole_vector_replaced():
    params = make_params("nbdm_mix", "standard", n_components=3)
    params["mixing_concentrations"] = jnp.asarray([0.5, 4.0, 7.0], jnp.float32)
    res = make_results("nbdm_mix", "standard", n_components=3, params=params)
    est = _no_warnings(res.get_map, use_mean=False)
    assert np.isnan(np.asarray(est["mixing_weights"])).all()

    with pytest.warns(UserWarning, match="mixing_weights"):
        est = res.get_map(use_mean=True)
    w = np.asarray(est["mixing_weights"], np.float64)
    assert_close(w, np.array([0.5, 4.0, 7.0]) / 11.5)
    assert w.sum() == pytest.approx(1.0, abs=1e-6)

    # Interior Dirichlet: (a_k - 1) / (sum a - K), also a point of the simplex.
    params["mixing_concentrations"] = jnp.asarray([2.0, 4.0, 7.0], jnp.float32)
    res = make_results("nbdm_mix", "standard", n_components=3, params=params)
    w = np.asarray(_no_warnings(res.get_map, use_mean=True)["mixing_weights"], np.float64)
    assert_close(w, np.array([1.0, 3.0, 6.0]) / 10.0)


def test_get_map_use_mean_without_undefined_modes_is_silent_and_unchanged():
    res = make_results("zinbvcp_mix", "standard", n_components=2, component_specific=True)
    plain = res.get_map()
    with_mean = _no_warnings(res.get_map, use_mean=True, verbose=True)
    for name in plain:
        assert_close(with_mean[name], plain[name])


# --------------------------------------------------------------------------------------
# get_distributions
# --------------------------------------------------------------------------------------
def _scipy_reference(family, *args):
    if family == "beta":
        return stats.beta(*args)
    if family == "betaprime":
        return stats.betaprime(*args)
    if family == "lognormal":
        return stats.lognorm(s=args[1], scale=np.exp(args[0]))
    return stats.norm(loc=args[0], scale=args[1])


def _points(family, shape, rng):
    if family == "beta":
        return rng.uniform(0.05, 0.95, (3, *shape))
    if family in ("betaprime", "lognormal"):
        return rng.uniform(0.1, 3.0, (3, *shape))
    return rng.normal(0.0, 1.0, (3, *shape))


@pytest.mark.parametrize("par", ["standard", "odds_ratio", "unconstrained"])
def test_get_distributions_numpyro_and_scipy_agree_with_parameters(par):
    res = make_results("zinbvcp_mix", par, n_components=2, component_specific=True, seed=3)
    params = np_params(res.params)
    numpyro_d = res.get_distributions()
    scipy_d = res.get_distributions(backend="scipy")
    sites = spec_sites("zinbvcp_mix", par)
    assert set(numpyro_d) == set(sites) == set(scipy_d)
    rng = np.random.default_rng(0)
    for site, (family, scope) in sites.items():
        args = [params[n] for n in param_names(site, family)]
        if family == "dirichlet":
            alpha = args[0]
            x = rng.dirichlet(np.ones(alpha.size), size=3)
            expected = stats.dirichlet(alpha)
            got_np = np.asarray(numpyro_d[site].log_prob(jnp.asarray(x, jnp.float32)))
            got_sp = np.array([scipy_d[site].logpdf(xi) for xi in x])
            assert_close(got_np, [expected.logpdf(xi) for xi in x], rtol=1e-4, atol=1e-4)
            assert_close(got_sp, [expected.logpdf(xi) for xi in x], rtol=1e-6)
            assert_close(numpyro_d[site].mean, alpha / alpha.sum())
            assert_close(scipy_d[site].mean(), alpha / alpha.sum())
            continue
        reference = _scipy_reference(family, *args)
        x = _points(family, args[0].shape, rng)
        want = reference.logpdf(x)
        # NumPyro's Beta log-density compiles per shape (seconds): check it on gene sites.
        if family != "beta" or scope == "gene":
            assert_close(numpyro_d[site].log_prob(jnp.asarray(x, jnp.float32)), want,
                         rtol=1e-4, atol=1e-4, err_msg=site)
        assert_close(scipy_d[site].logpdf(x), want, rtol=1e-6, err_msg=site)
        assert_close(numpyro_d[site].mean, expected_mean(family, *args), rtol=1e-5,
                     err_msg=site)
        assert_close(scipy_d[site].mean(), expected_mean(family, *args), rtol=1e-6,
                     err_msg=site)
        assert numpyro_d[site].batch_shape == args[0].shape


def test_get_distributions_bad_backend():
    res = make_results()
    with pytest.raises(ValueError):
        res.get_distributions(backend="torch")
    with pytest.raises(ValueError):
        res.get_distributions(backend="scipy ", split=True)


@pytest.mark.parametrize("backend", ["numpyro", "scipy"])
def test_get_distributions_split_nested_lists(backend):
    res = make_results("zinbvcp_mix", "standard", n_components=K, seed=5)
    params = np_params(res.params)
    dists = res.get_distributions(backend=backend, split=True)

    def mean_of(d):
        return np.asarray(d.mean() if backend == "scipy" else d.mean, np.float64)

    def logpdf(d, x):
        return float(d.logpdf(x) if backend == "scipy" else d.log_prob(jnp.float32(x)))

    # (K, G) gene site -> K lists of G single distributions.
    r = dists["r"]
    assert isinstance(r, list) and len(r) == K
    assert all(isinstance(row, list) and len(row) == G for row in r)
    for k, g in [(0, 0), (1, 4), (K - 1, G - 1)]:
        loc, scale = params["r_loc"][k, g], params["r_scale"][k, g]
        assert np.ndim(mean_of(r[k][g])) == 0
        assert_close(mean_of(r[k][g]), np.exp(loc + scale**2 / 2), rtol=1e-5)
        ref = stats.lognorm(s=scale, scale=np.exp(loc))
        assert logpdf(r[k][g], 1.3) == pytest.approx(ref.logpdf(1.3), rel=1e-4)
    gate = dists["gate"]
    a, b = params["gate_alpha"][2, 3], params["gate_beta"][2, 3]
    assert logpdf(gate[2][3], 0.3) == pytest.approx(stats.beta(a, b).logpdf(0.3), rel=1e-4)
    # (C,) cell site -> C distributions.
    cap = dists["p_capture"]
    assert isinstance(cap, list) and len(cap) == C
    for c in (0, 7, C - 1):
        a, b = params["p_capture_alpha"][c], params["p_capture_beta"][c]
        assert_close(mean_of(cap[c]), a / (a + b), rtol=1e-5)
    # Scalar shared site and the Dirichlet vector stay single distributions.
    a, b = params["p_alpha"], params["p_beta"]
    assert not isinstance(dists["p"], list)
    assert_close(mean_of(dists["p"]), a / (a + b), rtol=1e-5)
    assert not isinstance(dists["mixing_weights"], list)
    alpha = params["mixing_concentrations"]
    assert_close(mean_of(dists["mixing_weights"]), alpha / alpha.sum(), rtol=1e-5)


# --------------------------------------------------------------------------------------
# get_posterior_samples
# --------------------------------------------------------------------------------------
# Sampling compiles a fresh XLA program per call (seconds each), so draws are shared
# through module fixtures where tests only read them.
N_MC = 4000
MIX_CASE = ("zinbvcp_mix", "odds_ratio", 2, True)


def _check_moments(draws, mean, var, name):
    draws = np.asarray(draws, np.float64)
    n = draws.shape[0]
    m_hat = draws.mean(axis=0)
    v_hat = draws.var(axis=0, ddof=1)
    z_mean = np.abs(m_hat - mean) / np.sqrt(var / n)
    assert np.all(z_mean < 5.5), (name, z_mean.max())
    m4 = ((draws - m_hat) ** 4).mean(axis=0)
    se_var = np.sqrt(np.maximum(m4 - v_hat**2, 1e-30) / n)
    z_var = np.abs(v_hat - var) / se_var
    assert np.all(z_var < 5.5), (name, z_var.max())


@pytest.fixture(scope="module")
def mix_draws():
    """Variational parameters and N_MC posterior draws of an odds_ratio zinbvcp_mix (cs)."""
    model_type, par, n_components, cs = MIX_CASE
    res = make_results(model_type, par, n_components, cs, seed=11)
    samples = res.get_posterior_samples(jax.random.PRNGKey(1), n_samples=N_MC)
    assert res.posterior_samples is not samples
    predictive = np.random.default_rng(0).integers(0, 1000, (N_MC, C, G))
    return res.params, samples, jnp.asarray(predictive)


def mix_results(mix_draws, **kwargs):
    params, samples, predictive = mix_draws
    model_type, par, n_components, cs = MIX_CASE
    return make_results(model_type, par, n_components, cs, params=params,
                        posterior_samples=dict(samples), predictive_samples=predictive,
                        **kwargs)


def _check_posterior_draws(model_type, par, params, samples):
    params = np_params(params)
    sites = spec_sites(model_type, par)
    n = next(iter(samples.values())).shape[0]
    for site, (family, _) in sites.items():
        args = [params[name] for name in param_names(site, family)]
        assert samples[site].shape == (n, *args[0].shape), site
        _check_moments(samples[site], expected_mean(family, *args),
                       expected_variance(family, *args), site)
    # Canonical draws satisfy the parameterization's relations draw by draw.
    values = {site: np.asarray(samples[site], np.float64) for site in sites}
    for i in (0, 1, n // 2, n - 1):
        expected = expected_canonical(model_type, par, {k: v[i] for k, v in values.items()})
        for name, value in expected.items():
            assert_close(samples[name][i], value, rtol=1e-4, atol=1e-6, err_msg=name)
    assert set(samples) == set(sites) | set(expected)


def test_posterior_sample_moments_odds_ratio_mixture(mix_draws):
    params, samples, _ = mix_draws
    model_type, par, n_components, _ = MIX_CASE
    _check_posterior_draws(model_type, par, params, samples)
    phi, mu = np.asarray(samples["phi"], np.float64), np.asarray(samples["mu"], np.float64)
    assert_close(samples["r"], mu * phi[..., None], rtol=1e-4)
    assert_close(samples["p"], 1 / (1 + phi), rtol=1e-5)
    phi_c = np.asarray(samples["phi_capture"], np.float64)
    assert_close(samples["p_hat"], 1 / (1 + phi[:, None, :] + phi[:, None, :] * phi_c[..., None]),
                 rtol=1e-4)
    assert samples["p_hat"].shape == (N_MC, C, n_components)
    assert samples["r"].shape == (N_MC, n_components, G)
    assert_close(np.asarray(samples["mixing_weights"]).sum(-1), 1.0, rtol=1e-5)


def test_posterior_sample_moments_normal_sites():
    model_type, par = "zinbvcp_mix", "unconstrained"  # Normal sites of every scope
    res = make_results(model_type, par, n_components=3, seed=12)
    samples = res.get_posterior_samples(jax.random.PRNGKey(2), n_samples=N_MC,
                                        store_samples=False)
    assert res.posterior_samples is None
    _check_posterior_draws(model_type, par, res.params, samples)


def test_posterior_samples_storage_copies_and_keys():
    res = make_results("nbdm", "unconstrained", seed=4)  # Normal sites: quick to compile
    first = res.get_posterior_samples(jax.random.PRNGKey(0), n_samples=30, store_samples=False)
    assert res.posterior_samples is None
    assert set(first) == {"p_unconstrained", "r_unconstrained", "p", "r"}
    snapshot = {k: np.asarray(v).copy() for k, v in first.items()}

    same = res.get_posterior_samples(jax.random.PRNGKey(0), n_samples=30)
    assert res.posterior_samples is not None and res.posterior_samples is not same
    for k in same:
        np.testing.assert_array_equal(np.asarray(same[k]), snapshot[k])

    second = res.get_posterior_samples(jax.random.PRNGKey(1), n_samples=30)
    for k in second:  # another key -> other draws; earlier dicts untouched
        assert not np.allclose(np.asarray(second[k]), snapshot[k])
        np.testing.assert_array_equal(np.asarray(first[k]), snapshot[k])
        np.testing.assert_array_equal(np.asarray(same[k]), snapshot[k])
        np.testing.assert_array_equal(np.asarray(res.posterior_samples[k]),
                                      np.asarray(second[k]))
    second["p"] = None  # mutating a returned dict does not touch the stored samples
    assert res.posterior_samples["p"] is not None


# --------------------------------------------------------------------------------------
# get_predictive_samples and get_ppc_samples
# --------------------------------------------------------------------------------------
R_TRUE = np.array([0.5, 2.0, 8.0, 1.0, 4.0, 3.0])
P_TRUE = 0.4


def _nb_moment_check(counts, r, p):
    """Per-gene mean and variance of NB(r, p) draws (NumPyro convention) vs closed forms."""
    x = np.asarray(counts, np.float64).reshape(-1, np.shape(counts)[-1])
    n = x.shape[0]
    mean = r * p / (1 - p)
    var = r * p / (1 - p) ** 2
    # The same law in scipy: nbinom(n=r, p=1-p).
    ref_mean, ref_var, _, ref_kurt = stats.nbinom.stats(r, 1 - p, moments="mvsk")
    assert_close(ref_mean, mean, rtol=1e-10)
    assert_close(ref_var, var, rtol=1e-10)
    z_mean = np.abs(x.mean(axis=0) - mean) / np.sqrt(var / n)
    assert np.all(z_mean < 5), z_mean
    se_var = var * np.sqrt((2 + ref_kurt) / n)
    z_var = np.abs(x.var(axis=0, ddof=1) - var) / se_var
    assert np.all(z_var < 5), z_var


def _zero_fraction_check(counts, zero):
    x = np.asarray(counts).reshape(-1, np.shape(counts)[-1])
    z = np.abs((x == 0).mean(axis=0) - zero) / np.sqrt(zero * (1 - zero) / x.shape[0])
    assert np.all(z < 5), z


def _constant_samples(n_samples, **values):
    return {k: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n_samples, *np.shape(v)))
            for k, v in values.items()}


def test_predictive_requires_posterior_samples():
    with pytest.raises(ValueError):
        make_results().get_predictive_samples()


def test_predictive_zinbvcp_nb_moments_zero_fraction_and_capture():
    """Cells 0-9 capture everything (p_hat = p), cells 10-19 a quarter; genes 0-2 have
    no zero inflation, genes 3-5 gates 0.1, 0.3, 0.6."""
    nu = np.where(np.arange(C) < C // 2, 1.0, 0.25)
    gate = np.array([0.0, 0.0, 0.0, 0.1, 0.3, 0.6])
    s = 400
    res = make_results("zinbvcp", "standard")
    res.posterior_samples = _constant_samples(s, p=P_TRUE, r=R_TRUE, gate=gate, p_capture=nu)
    pred = res.get_predictive_samples(jax.random.PRNGKey(0), store_samples=False)
    assert res.predictive_samples is None
    assert pred.shape == (s, C, G)
    pred = np.asarray(pred)
    assert np.all(pred >= 0) and np.all(pred == np.round(pred))

    full, low = nu == 1.0, nu == 0.25
    p_low = P_TRUE * 0.25 / (1 - P_TRUE * 0.75)
    # NB(r, p): mean r p / (1 - p), variance r p / (1 - p)^2.
    _nb_moment_check(pred[:, full, :3], R_TRUE[:3], P_TRUE)
    # Capture: NB(r, p_hat), whose mean is exactly nu times the mRNA mean.
    assert_close(R_TRUE * p_low / (1 - p_low), 0.25 * R_TRUE * P_TRUE / (1 - P_TRUE))
    _nb_moment_check(pred[:, low, :3], R_TRUE[:3], p_low)
    # Zero inflation: P(0) = gate + (1 - gate) (1 - p)^r.
    _zero_fraction_check(pred[:, full, 3:], gate[3:] + (1 - gate[3:]) * (1 - P_TRUE) ** R_TRUE[3:])
    _zero_fraction_check(pred[:, low, 3:], gate[3:] + (1 - gate[3:]) * (1 - p_low) ** R_TRUE[3:])


@pytest.fixture(scope="module")
def mixture_predictive():
    """nbdm_mix whose two components express disjoint genes highly (r = 200 vs 1e-3)."""
    weights = np.array([0.3, 0.7])
    high, low = 200.0, 1e-3
    r = np.array([[high] * 3 + [low] * 3, [low] * 3 + [high] * 3])
    res = make_results("nbdm_mix", "standard", n_components=2)
    res.posterior_samples = _constant_samples(300, p=0.5, r=r, mixing_weights=weights)
    pred = res.get_predictive_samples(jax.random.PRNGKey(7), batch_size=None)
    return res, weights, np.asarray(pred)


def test_predictive_mixture_component_frequencies(mixture_predictive):
    _, weights, pred = mixture_predictive
    assert pred.shape == (300, C, G)
    big = pred > 50
    from_0 = big[..., :3].all(-1) & ~big[..., 3:].any(-1)
    from_1 = big[..., 3:].all(-1) & ~big[..., :3].any(-1)
    # A cell's whole count vector comes from one component.
    assert np.all(from_0 ^ from_1)
    n = from_0.size
    assert abs(from_0.mean() - weights[0]) < 5 * np.sqrt(weights[0] * weights[1] / n)
    # Counts of a highly expressed gene are NB(200, 0.5): mean 200, variance 400.
    _nb_moment_check(pred[..., :3][from_0], np.full(3, 200.0), 0.5)
    # Cells are assigned independently within a draw: not all cells of a draw agree.
    assert np.mean(from_0.all(axis=1) | from_1.all(axis=1)) < 0.05


@pytest.fixture(scope="module")
def ppc_nbdm():
    """A near-degenerate nbdm posterior (Beta ~1e6, LogNormal scale 1e-3) and its PPC."""
    conc = 1e6
    params = {
        "p_alpha": jnp.float32(P_TRUE * conc), "p_beta": jnp.float32((1 - P_TRUE) * conc),
        "r_loc": jnp.asarray(np.log(R_TRUE), jnp.float32),
        "r_scale": jnp.full(G, 1e-3, jnp.float32),
    }
    res = make_results("nbdm", params=params)
    ppc = res.get_ppc_samples(jax.random.PRNGKey(21), n_samples=200)
    return params, res, ppc


def test_ppc_structure_storage_and_nb_moments(ppc_nbdm):
    _, res, ppc = ppc_nbdm
    assert set(ppc) == {"parameter_samples", "predictive_samples"}
    post, pred = ppc["parameter_samples"], ppc["predictive_samples"]
    assert set(post) == {"p", "r"}
    assert pred.shape == (200, C, G)
    assert_close(np.asarray(post["p"]), P_TRUE, rtol=5e-3)
    assert_close(np.asarray(post["r"]), np.broadcast_to(R_TRUE, (200, G)), rtol=5e-3)
    np.testing.assert_array_equal(np.asarray(res.predictive_samples), np.asarray(pred))
    for k, v in post.items():
        np.testing.assert_array_equal(np.asarray(res.posterior_samples[k]), np.asarray(v))
    _nb_moment_check(pred, R_TRUE, P_TRUE)


def test_ppc_reproducible_batch_size_independent_and_key_dependent(ppc_nbdm):
    params, _, ppc = ppc_nbdm
    fresh = make_results("nbdm", params=params)
    # Same key, predictive draws simulated 4 at a time, nothing stored: identical.
    again = fresh.get_ppc_samples(jax.random.PRNGKey(21), n_samples=200, batch_size=4,
                                  store_samples=False)
    assert fresh.posterior_samples is None and fresh.predictive_samples is None
    np.testing.assert_array_equal(np.asarray(again["predictive_samples"]),
                                  np.asarray(ppc["predictive_samples"]))
    for k, v in ppc["parameter_samples"].items():
        np.testing.assert_array_equal(np.asarray(again["parameter_samples"][k]), np.asarray(v))

    snapshot = {k: np.asarray(v).copy() for k, v in again["parameter_samples"].items()}
    other = fresh.get_ppc_samples(jax.random.PRNGKey(22), n_samples=200)
    assert not np.array_equal(np.asarray(other["predictive_samples"]),
                              np.asarray(ppc["predictive_samples"]))
    assert not np.array_equal(np.asarray(other["parameter_samples"]["r"]), snapshot["r"])
    for k, v in snapshot.items():  # earlier results untouched by the later call
        np.testing.assert_array_equal(np.asarray(again["parameter_samples"][k]), v)
    np.testing.assert_array_equal(np.asarray(fresh.predictive_samples),
                                  np.asarray(other["predictive_samples"]))


# --------------------------------------------------------------------------------------
# __getitem__
# --------------------------------------------------------------------------------------
MIX_GENE_PARAMS = {"mu_loc", "mu_scale", "gate_alpha", "gate_beta"}
MIX_GENE_SAMPLES = {"mu", "gate", "r"}


def _gene_frames():
    var = pd.DataFrame({"symbol": [f"S{g}" for g in range(G)]},
                       index=[f"gene{g}" for g in range(G)])
    obs = pd.DataFrame({"batch": np.arange(C) % 2}, index=[f"cell{c}" for c in range(C)])
    return obs, var


@pytest.mark.parametrize("index,genes", [
    (2, [2]),
    (np.int64(-1), [G - 1]),
    (slice(1, 5, 2), [1, 3]),
    (np.array([True, False, False, True, True, False]), [0, 3, 4]),
    ([5, 0, 3], [5, 0, 3]),
    (np.array([4, 1]), [4, 1]),
], ids=["int", "np.int64", "slice", "mask", "list", "array"])
def test_getitem_subsets_gene_axis_only(mix_draws, index, genes):
    obs, var = _gene_frames()
    res = mix_results(mix_draws, obs=obs, var=var)
    sub = res[index]
    genes = np.asarray(genes)
    assert isinstance(sub, ScribeSVIResults)
    assert (sub.n_genes, sub.n_vars, sub.n_cells, sub.n_obs) == (len(genes), len(genes), C, C)
    assert res.n_genes == G  # the original is untouched
    assert set(sub.params) == set(res.params)
    for name, value in res.params.items():
        expected = np.asarray(value)[..., genes] if name in MIX_GENE_PARAMS else value
        np.testing.assert_array_equal(np.asarray(sub.params[name]), np.asarray(expected),
                                      err_msg=name)
    assert sub.params["mu_loc"].shape == (2, len(genes))
    assert sub.params["phi_capture_alpha"].shape == (C,)
    assert sub.params["phi_alpha"].shape == (2,)
    assert list(sub.var.index) == [f"gene{g}" for g in genes]
    assert list(sub.var["symbol"]) == [f"S{g}" for g in genes]
    assert sub.obs.equals(obs)
    assert set(sub.posterior_samples) == set(res.posterior_samples)
    for name, value in res.posterior_samples.items():
        expected = np.asarray(value)[..., genes] if name in MIX_GENE_SAMPLES else value
        np.testing.assert_array_equal(np.asarray(sub.posterior_samples[name]),
                                      np.asarray(expected), err_msg=name)
    np.testing.assert_array_equal(np.asarray(sub.predictive_samples),
                                  np.asarray(res.predictive_samples)[..., genes])
    # Estimates of the subset are those of the full model at the chosen genes.
    full, part = res.get_map(), sub.get_map()
    for name in ("mu", "gate", "r"):
        assert_close(part[name], np.asarray(full[name])[..., genes])
    for name in ("phi", "p", "phi_capture", "p_capture", "p_hat", "mixing_weights"):
        assert_close(part[name], full[name])


def test_getitem_nonmixture_with_as_many_cells_as_genes():
    # Per-cell parameters must not be mistaken for gene parameters when C == G.
    res = make_results("zinbvcp", "unconstrained", n_cells=G, n_genes=G, seed=9)
    sub = res[[1, 2]]
    for name, value in res.params.items():
        gene = name.startswith(("r_unconstrained", "gate_unconstrained"))
        expected = np.asarray(value)[..., [1, 2]] if gene else value
        np.testing.assert_array_equal(np.asarray(sub.params[name]), np.asarray(expected),
                                      err_msg=name)
    assert sub.params["p_capture_unconstrained_loc"].shape == (G,)
    assert sub.posterior_samples is None and sub.predictive_samples is None
    assert_close(sub.get_map()["r"], np.asarray(res.get_map()["r"])[[1, 2]])


@pytest.mark.parametrize("index,error", [
    (G, IndexError),
    (-G - 1, IndexError),
    ([0, G], IndexError),
    (np.ones(G + 1, bool), IndexError),
    (np.ones(G - 1, bool), IndexError),
    (1.5, TypeError),
    ("gene0", TypeError),
])
def test_getitem_rejects_bad_indices(index, error):
    with pytest.raises(error):
        make_results("zinb")[index]


# --------------------------------------------------------------------------------------
# get_component
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 1])
def test_get_component_component_specific(mix_draws, k):
    res = mix_results(mix_draws)
    comp = res.get_component(k)
    assert comp.model_type == "zinbvcp"
    assert comp.n_components is None and comp.model_config.n_components is None
    assert not comp.model_config.is_mixture
    assert comp.model_config.parameterization == "odds_ratio"
    assert res.model_type == "zinbvcp_mix"  # the mixture is untouched
    assert "mixing_concentrations" not in comp.params
    assert_close(comp.params["mu_loc"], np.asarray(res.params["mu_loc"])[k])
    assert_close(comp.params["phi_alpha"], np.asarray(res.params["phi_alpha"])[k])
    assert comp.params["phi_alpha"].shape == ()
    assert_close(comp.params["phi_capture_alpha"], res.params["phi_capture_alpha"])

    full, part = res.get_map(), comp.get_map()
    assert "mixing_weights" not in part
    for name in ("r", "gate", "mu", "p", "phi"):
        assert_close(part[name], np.asarray(full[name])[k], err_msg=name)
    assert_close(part["p_hat"], np.asarray(full["p_hat"])[:, k])
    assert part["p_hat"].shape == (C,)
    assert_close(part["p_capture"], full["p_capture"])

    post, mix_post = comp.posterior_samples, res.posterior_samples
    assert "mixing_weights" not in post
    for name in ("r", "gate", "mu", "p", "phi"):
        np.testing.assert_array_equal(np.asarray(post[name]),
                                      np.asarray(mix_post[name])[:, k], err_msg=name)
    np.testing.assert_array_equal(np.asarray(post["p_hat"]), np.asarray(mix_post["p_hat"])[..., k])
    for name in ("p_capture", "phi_capture"):
        np.testing.assert_array_equal(np.asarray(post[name]), np.asarray(mix_post[name]))
    assert comp.predictive_samples is None

    # The component is an ordinary results object: it can be indexed by gene.
    sub = comp[[0, 2]]
    assert_close(sub.get_map()["r"], np.asarray(full["r"])[k, [0, 2]])


def test_get_component_shared_parameters_unconstrained():
    priors = {"p_unconstrained": (0.0, 1.0), "mixing_logits_unconstrained": (0.0, 1.0)}
    res = make_results("zinb_mix", "unconstrained", n_components=3, seed=14)
    res.prior_params = dict(priors)
    full = res.get_map()
    comp = res.get_component(2)
    part = comp.get_map()
    assert comp.model_type == "zinb"
    assert comp.prior_params == {"p_unconstrained": (0.0, 1.0)}
    assert res.prior_params == priors
    assert set(comp.params) == {"p_unconstrained_loc", "p_unconstrained_scale",
                                "r_unconstrained_loc", "r_unconstrained_scale",
                                "gate_unconstrained_loc", "gate_unconstrained_scale"}
    assert_close(part["p"], full["p"])  # shared p is untouched
    assert_close(part["r"], np.asarray(full["r"])[2])
    assert_close(part["gate"], np.asarray(full["gate"])[2])
    loc = np.asarray(res.params["r_unconstrained_loc"], np.float64)[2]
    assert_close(part["r"], np.exp(loc))


def test_get_component_errors():
    with pytest.raises(ValueError):
        make_results("zinb").get_component(0)
    res = make_results("nbdm_mix", n_components=2)
    for k in (2, 5, -3):
        with pytest.raises(IndexError):
            res.get_component(k)


# --------------------------------------------------------------------------------------
# __post_init__ validation
# --------------------------------------------------------------------------------------
def _build(model_type="nbdm", config=None, params=None, **kwargs):
    config = config or ModelConfig(model_type)
    if params is None:
        params = make_params(config.model_type, config.parameterization,
                             n_components=config.n_components,
                             component_specific=config.component_specific_params)
    fields = dict(params=params, loss_history=jnp.zeros(2), n_cells=C, n_genes=G,
                  model_type=model_type, model_config=config, prior_params={})
    fields.update(kwargs)
    return ScribeSVIResults(**fields)


def test_post_init_defaults():
    res = _build("zinb", ModelConfig("zinb", guide_family="mean_field"))
    assert (res.n_obs, res.n_vars, res.n_components) == (C, G, None)
    assert res.posterior_samples is None and res.predictive_samples is None
    res = _build("nbdm_mix", ModelConfig("nbdm_mix", n_components=3))
    assert res.n_components == 3
    res = _build("nbdm", n_obs=7, n_vars=3)
    assert (res.n_obs, res.n_vars) == (7, 3)


def test_post_init_rejects_inconsistent_configuration():
    with pytest.raises(ValueError):
        _build("zinb", ModelConfig("nbdm"))
    with pytest.raises(ValueError):
        _build("nbdm_mix", ModelConfig("nbdm_mix", n_components=3), n_components=2)
    with pytest.raises(ValueError):
        _build("nbdm", ModelConfig("nbdm"), n_components=2)
    with pytest.raises(TypeError):
        _build("nbdm", config=None, model_config={"model_type": "nbdm"})


def test_post_init_rejects_missing_or_misshaped_params():
    params = make_params("zinbvcp", "odds_ratio")
    config = ModelConfig("zinbvcp", "odds_ratio", guide_family="mean_field")
    _build("zinbvcp", config, params)  # valid
    for name in ("mu_scale", "phi_capture_beta", "gate_alpha", "phi_alpha"):
        broken = {k: v for k, v in params.items() if k != name}
        with pytest.raises(ValueError, match=name):
            _build("zinbvcp", config, broken)
    for name, shape in [("mu_loc", (G + 1,)), ("phi_capture_alpha", (C - 1,)),
                        ("phi_alpha", (1,)), ("gate_beta", (1, G))]:
        broken = dict(params, **{name: jnp.ones(shape)})
        with pytest.raises(ValueError, match=name):
            _build("zinbvcp", config, broken)
    # Standard-parameterization names do not satisfy an odds_ratio model.
    with pytest.raises(ValueError):
        _build("zinbvcp", config, make_params("zinbvcp", "standard"))
    # A mixture with component-specific p needs p of shape (K,).
    cs = ModelConfig("nbdm_mix", n_components=3, component_specific_params=True)
    shared = make_params("nbdm_mix", "standard", n_components=3, component_specific=False)
    with pytest.raises(ValueError, match="p_alpha"):
        _build("nbdm_mix", cs, shared)


def test_post_init_rejects_metadata_of_wrong_length():
    obs, var = _gene_frames()
    _build(obs=obs, var=var)
    with pytest.raises(ValueError):
        _build(obs=obs.iloc[:-1])
    with pytest.raises(ValueError):
        _build(var=var.iloc[:3])
    with pytest.raises(ValueError):
        _build(obs=var)


# --------------------------------------------------------------------------------------
# from_anndata and SVIResultsFactory
# --------------------------------------------------------------------------------------
def _adata():
    obs, var = _gene_frames()
    counts = np.random.default_rng(0).poisson(2.0, (C, G)).astype(np.float32)
    return anndata.AnnData(X=counts, obs=obs, var=var, uns={"study": "demo"})


def test_from_anndata_copies_metadata_and_sets_sizes():
    adata = _adata()
    config = ModelConfig("zinb_mix", "linked", n_components=2, guide_family="mean_field")
    params = make_params("zinb_mix", "linked", n_components=2)
    res = ScribeSVIResults.from_anndata(adata, params, jnp.arange(4.0), config)
    assert (res.n_cells, res.n_genes, res.n_obs, res.n_vars) == (C, G, C, G)
    assert res.model_type == "zinb_mix" and res.n_components == 2
    assert res.prior_params == {}
    assert res.obs.equals(adata.obs) and res.var.equals(adata.var)
    assert res.uns == {"study": "demo"}
    res.obs["batch"] = -1
    res.var.loc["gene0", "symbol"] = "changed"
    res.uns["study"] = "changed"
    assert list(adata.obs["batch"]) == list(np.arange(C) % 2)
    assert adata.var.loc["gene0", "symbol"] == "S0"
    assert adata.uns["study"] == "demo"
    # The metadata follows gene subsetting.
    assert list(res[[1, 4]].var.index) == ["gene1", "gene4"]
    with pytest.raises(ValueError):  # params sized for other data
        ScribeSVIResults.from_anndata(adata[:, :3], params, jnp.arange(4.0), config)


def test_from_anndata_uns_is_a_copy_of_nested_values():
    adata = _adata()
    adata.uns["meta"] = {"version": 1}
    res = ScribeSVIResults.from_anndata(adata, make_params("nbdm", "standard"),
                                        jnp.zeros(2), ModelConfig("nbdm"))
    res.uns["meta"]["version"] = 2
    assert adata.uns["meta"]["version"] == 1


def _run(model_type="nbdm", parameterization="standard", n_components=None):
    params = make_params(model_type, parameterization, n_components=n_components)
    return SVIRunResult(params, None, jnp.linspace(10.0, 1.0, 5))


def test_factory_without_adata():
    run = _run("zinb", "odds_ratio")
    config = ModelConfig("zinb", "odds_ratio", priors={"phi": (2.0, 3.0)},
                         guide_family="mean_field")
    counts = np.zeros((C, G))
    priors = {"phi": (2.0, 3.0)}
    res = SVIResultsFactory.create_results(run, config, None, counts, C, G, "zinb", None, priors)
    assert isinstance(res, ScribeSVIResults)
    assert (res.n_cells, res.n_genes, res.model_type, res.n_components) == (C, G, "zinb", None)
    assert res.obs is None and res.var is None and res.uns is None
    np.testing.assert_array_equal(np.asarray(res.loss_history), np.linspace(10.0, 1.0, 5))
    assert res.prior_params == priors and res.prior_params is not priors
    for name, value in run.params.items():
        np.testing.assert_array_equal(np.asarray(res.params[name]), np.asarray(value))
    a, b = np.asarray(run.params["phi_alpha"], np.float64), np.asarray(run.params["phi_beta"])
    assert_close(res.get_map()["phi"], (a - 1) / (b + 1))


def test_factory_with_adata_and_mixture():
    adata = _adata()
    run = _run("nbvcp_mix", "linked", n_components=3)
    config = ModelConfig("nbvcp_mix", "linked", n_components=3)
    res = SVIResultsFactory.create_results(run, config, adata, adata.X, C, G, "nbvcp_mix", 3, {})
    assert (res.n_cells, res.n_genes, res.n_obs, res.n_vars) == (C, G, C, G)
    assert res.n_components == 3 and res.model_type == "nbvcp_mix"
    assert res.obs.equals(adata.obs) and res.var.equals(adata.var) and res.uns == adata.uns
    assert res.obs is not adata.obs
    assert res.get_map()["p_hat"].shape == (C,)


def test_factory_rejects_mismatches():
    adata = _adata()
    config = ModelConfig("nbdm")
    counts = np.zeros((C, G))
    create = SVIResultsFactory.create_results
    with pytest.raises(ValueError):  # counts vs declared sizes
        create(_run(), config, None, np.zeros((C, G + 1)), C, G, "nbdm", None, {})
    with pytest.raises(ValueError):
        create(_run(), config, None, counts.T, C, G, "nbdm", None, {})
    with pytest.raises(ValueError):  # adata vs counts
        create(_run(), config, adata[:, :4], counts, C, G, "nbdm", None, {})
    with pytest.raises(ValueError):  # params vs declared sizes
        create(_run(), config, None, np.zeros((C, G - 1)), C, G - 1, "nbdm", None, {})
    with pytest.raises(ValueError):  # model type vs configuration
        create(_run(), config, None, counts, C, G, "zinb", None, {})
    with pytest.raises(ValueError):  # n_components vs configuration
        create(_run(), config, None, counts, C, G, "nbdm", 2, {})


def test_factory_with_adata_rejects_model_type_mismatch():
    adata = _adata()
    with pytest.raises(ValueError):
        SVIResultsFactory.create_results(_run(), ModelConfig("nbdm"), adata, adata.X, C, G,
                                         "zinb", None, {})
