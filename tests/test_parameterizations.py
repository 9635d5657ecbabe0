"""Built-in parameterizations: canonical maps, inverses, site and parameter names (SPEC 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.distributions import constraints
from scipy import special, stats

import scribe
from scribe.compose import Composition
from scribe.parameterization import CELL, GENE, SHARED

PARAMETERIZATIONS = ("standard", "linked", "odds_ratio", "unconstrained")
BASE_TYPES = ("nbdm", "zinb", "nbvcp", "zinbvcp")
K, N_CELLS, N_GENES = 3, 7, 5


def _param(name):
    return scribe.plugins.parameterizations()[name]


def _np(tree):
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def _f32(x):
    return np.asarray(np.asarray(x, np.float32), np.float64)


def test_builtin_parameterizations_registered():
    assert set(PARAMETERIZATIONS) <= set(scribe.available_parameterizations())
    for name in PARAMETERIZATIONS:
        assert _param(name).name == name


# ---- canonical relations ---------------------------------------------------------------------
@pytest.mark.parametrize("mixture", [False, True], ids=["single", "component_specific"])
def test_standard_is_identity(mixture):
    rng = np.random.default_rng(0)
    p = _f32(rng.uniform(0.1, 0.9, K) if mixture else rng.uniform(0.1, 0.9))
    r = _f32(rng.uniform(0.1, 9, (K, N_GENES) if mixture else N_GENES))
    out = _np(_param("standard").expression().to_canonical({"p": jnp.asarray(p, jnp.float32),
                                                             "r": jnp.asarray(r, jnp.float32)}))
    np.testing.assert_allclose(out["p"], p)
    np.testing.assert_allclose(out["r"], r)


@pytest.mark.parametrize("mixture", [False, True], ids=["single", "component_specific"])
def test_linked_relation_mean_is_mu(mixture):
    rng = np.random.default_rng(1)
    p = _f32(rng.uniform(0.1, 0.9, K) if mixture else rng.uniform(0.1, 0.9))
    mu = _f32(rng.uniform(0.1, 50, (K, N_GENES) if mixture else N_GENES))
    out = _np(_param("linked").expression().to_canonical({"p": jnp.asarray(p, jnp.float32),
                                                           "mu": jnp.asarray(mu, jnp.float32)}))
    pg = p[:, None] if mixture else p
    np.testing.assert_allclose(out["p"], p, rtol=1e-6)
    np.testing.assert_allclose(out["r"], mu * (1 - pg) / pg, rtol=1e-5)
    # The NB mean (scipy) equals mu.
    np.testing.assert_allclose(stats.nbinom(out["r"], 1 - pg).mean(), mu, rtol=1e-5)


@pytest.mark.parametrize("mixture", [False, True], ids=["single", "component_specific"])
def test_odds_ratio_relation(mixture):
    rng = np.random.default_rng(2)
    phi = _f32(rng.uniform(0.05, 5, K) if mixture else rng.uniform(0.05, 5))
    mu = _f32(rng.uniform(0.1, 50, (K, N_GENES) if mixture else N_GENES))
    out = _np(_param("odds_ratio").expression().to_canonical(
        {"phi": jnp.asarray(phi, jnp.float32), "mu": jnp.asarray(mu, jnp.float32)}))
    phig = phi[:, None] if mixture else phi
    np.testing.assert_allclose(out["p"], 1 / (1 + phi), rtol=1e-6)
    np.testing.assert_allclose(out["r"], mu * phig, rtol=1e-6)
    pg = out["p"][:, None] if mixture else out["p"]
    np.testing.assert_allclose(stats.nbinom(out["r"], 1 - pg).mean(), mu, rtol=1e-5)


def test_odds_ratio_capture_and_p_hat():
    rng = np.random.default_rng(3)
    phi, phi_c = _f32(rng.uniform(0.05, 5)), _f32(rng.uniform(0.01, 20, N_CELLS))
    block = _param("odds_ratio").capture("p_capture")
    assert [s.name for s in block.sites] == ["phi_capture"]
    assert block.sites[0].scope == CELL
    nu = np.asarray(block.to_canonical({"phi_capture": jnp.asarray(phi_c, jnp.float32)})
                    ["p_capture"], np.float64)
    np.testing.assert_allclose(nu, 1 / (1 + phi_c), rtol=1e-6)
    p = 1 / (1 + phi)
    # SPEC: p_hat = 1 / (1 + phi + phi * phi_capture), the same as p nu / (1 - p (1 - nu)).
    want = 1 / (1 + phi + phi * phi_c)
    np.testing.assert_allclose(p * nu / (1 - p * (1 - nu)), want, rtol=1e-5)
    lik = scribe.plugins.model_types()["nbvcp"].likelihood
    p_hat = lik.derived({"p": jnp.float32(p), "p_capture": jnp.asarray(nu, jnp.float32)})["p_hat"]
    np.testing.assert_allclose(np.asarray(p_hat), want, rtol=1e-5)


def test_unconstrained_relations():
    rng = np.random.default_rng(4)
    par = _param("unconstrained")
    pu, ru = rng.normal(size=K), rng.normal(size=(K, N_GENES))
    out = _np(par.expression().to_canonical({"p_unconstrained": jnp.asarray(pu, jnp.float32),
                                              "r_unconstrained": jnp.asarray(ru, jnp.float32)}))
    np.testing.assert_allclose(out["p"], special.expit(pu), rtol=1e-5)
    np.testing.assert_allclose(out["r"], np.exp(ru), rtol=1e-5)
    gu = rng.normal(size=(K, N_GENES))
    gate = par.probability("gate", GENE)
    assert [s.name for s in gate.sites] == ["gate_unconstrained"]
    np.testing.assert_allclose(
        np.asarray(gate.to_canonical({"gate_unconstrained": jnp.asarray(gu, jnp.float32)})
                   ["gate"]), special.expit(gu), rtol=1e-5)
    cu = rng.normal(size=N_CELLS) * 3
    cap = par.capture("p_capture")
    assert [s.name for s in cap.sites] == ["p_capture_unconstrained"]
    np.testing.assert_allclose(
        np.asarray(cap.to_canonical({"p_capture_unconstrained": jnp.asarray(cu, jnp.float32)})
                   ["p_capture"]), special.expit(cu), rtol=1e-5)
    logits = rng.normal(size=K) * 2
    mix = par.mixing()
    w = np.asarray(mix.to_canonical({"mixing_logits_unconstrained": jnp.asarray(logits)})
                   ["mixing_weights"], np.float64)
    np.testing.assert_allclose(w, special.softmax(logits), rtol=1e-5)


@pytest.mark.parametrize("name", ["standard", "linked", "odds_ratio"])
def test_default_gate_capture_mixing_are_identity(name):
    par = _param(name)
    gate = par.probability("gate", GENE)
    assert [s.name for s in gate.sites] == ["gate"]
    assert gate.sites[0].family is scribe.families.BETA
    mix = par.mixing()
    assert [s.name for s in mix.sites] == ["mixing_weights"]
    assert mix.sites[0].param_names == ("mixing_concentrations",)
    w = jnp.array([0.2, 0.5, 0.3])
    np.testing.assert_allclose(np.asarray(mix.to_canonical({"mixing_weights": w})
                                          ["mixing_weights"]), [0.2, 0.5, 0.3])


# ---- round trips ------------------------------------------------------------------------------
def _canonical_values(rng, mixture, component_specific):
    shared = (K,) if (mixture and component_specific) else ()
    gene = (K, N_GENES) if mixture else (N_GENES,)
    values = {
        "p": rng.uniform(0.05, 0.95, shared),
        "r": rng.uniform(0.05, 20, gene),
        "gate": rng.uniform(0.01, 0.9, gene),
        "p_capture": rng.uniform(0.02, 0.98, N_CELLS),
    }
    if mixture:
        w = rng.uniform(0.1, 1, K)
        values["mixing_weights"] = w / w.sum()
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def _blocks(name, mixture):
    par = _param(name)
    blocks = [par.expression(), par.probability("gate", GENE), par.capture("p_capture")]
    if mixture:
        blocks.append(par.mixing())
    return blocks


@pytest.mark.parametrize("shape", ["single", "mixture_shared_p", "mixture_component_p"])
@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_round_trip(name, shape):
    rng = np.random.default_rng(PARAMETERIZATIONS.index(name))
    mixture = shape != "single"
    canonical = _canonical_values(rng, mixture, shape == "mixture_component_p")
    for block in _blocks(name, mixture):
        sampled = block.from_canonical(canonical)
        assert set(sampled) == {s.name for s in block.sites}
        back = block.to_canonical(sampled)
        for key, value in back.items():
            np.testing.assert_allclose(np.asarray(value), np.asarray(canonical[key]),
                                       rtol=2e-5, err_msg=f"{name} {key}")
            assert np.shape(value) == np.shape(canonical[key])
        # from_canonical(to_canonical(v)) == v on the sampled scale (logits up to a constant).
        again = block.from_canonical(back)
        for key, value in again.items():
            a, b = np.asarray(value, np.float64), np.asarray(sampled[key], np.float64)
            if key == "mixing_logits_unconstrained":
                a, b = a - a.mean(), b - b.mean()
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{name} {key}")


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_round_trip_from_sampled_values(name):
    """Random sampled-site values -> canonical -> sampled values again."""
    rng = np.random.default_rng(10 + PARAMETERIZATIONS.index(name))
    for block in _blocks(name, mixture=True):
        values = {}
        for site in block.sites:
            shape = {SHARED: (K,), GENE: (K, N_GENES), CELL: (N_CELLS,)}.get(site.scope, (K,))
            fam = site.family.name
            if fam == "beta":
                v = rng.uniform(0.05, 0.95, shape)
            elif fam == "dirichlet":
                v = rng.dirichlet(np.ones(K))
            elif fam == "normal":
                v = rng.normal(size=shape)
            else:  # lognormal, betaprime: positive
                v = rng.lognormal(size=shape)
            values[site.name] = jnp.asarray(v, jnp.float32)
        back = block.from_canonical(block.to_canonical(values))
        for key, value in values.items():
            a, b = np.asarray(back[key], np.float64), np.asarray(value, np.float64)
            if key == "mixing_logits_unconstrained":
                a, b = a - a.mean(), b - b.mean()
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{name} {key}")


# ---- composed site names ----------------------------------------------------------------------
EXPRESSION = {"standard": ["p", "r"], "linked": ["p", "mu"], "odds_ratio": ["phi", "mu"],
              "unconstrained": ["p_unconstrained", "r_unconstrained"]}
GATE = {"unconstrained": "gate_unconstrained"}
CAPTURE = {"odds_ratio": "phi_capture", "unconstrained": "p_capture_unconstrained"}
MIXING = {"unconstrained": "mixing_logits_unconstrained"}
VARIATIONAL = {"beta": ("alpha", "beta"), "betaprime": ("alpha", "beta"),
               "lognormal": ("loc", "scale"), "normal": ("loc", "scale")}
FAMILY = {"p": "beta", "r": "lognormal", "mu": "lognormal", "phi": "betaprime",
          "gate": "beta", "p_capture": "beta", "phi_capture": "betaprime",
          "mixing_weights": "dirichlet"}


def _expected_sites(base, par, mixture):
    sites = list(EXPRESSION[par])
    if base.startswith("zi"):
        sites.append(GATE.get(par, "gate"))
    if base.endswith("vcp"):
        sites.append(CAPTURE.get(par, "p_capture"))
    if mixture:
        sites.append(MIXING.get(par, "mixing_weights"))
    return sites


def _expected_params(sites):
    names = set()
    for site in sites:
        if site == "mixing_weights":
            names.add("mixing_concentrations")
            continue
        fam = "normal" if site.endswith("_unconstrained") else FAMILY[site]
        names.update(f"{site}_{arg}" for arg in VARIATIONAL[fam])
    return names


def _config(base, par, mixture, **kw):
    # The guide structure tested here is the mean-field one (tests/test_guide_families.py
    # covers the others).
    kw.setdefault("guide_family", "mean_field")
    if mixture:
        return scribe.ModelConfig(base + "_mix", par, n_components=K, **kw)
    return scribe.ModelConfig(base, par, **kw)


def _structure(fn):
    """Site records of one run of ``fn`` (model or guide), traced abstractly.

    ``jax.eval_shape`` runs the NumPyro program on abstract values, so no sampler is
    compiled; only names, types, shapes and parameter constraints are recorded.
    """
    record = {}

    def run():
        with numpyro.handlers.seed(rng_seed=0):
            tr = numpyro.handlers.trace(fn).get_trace(N_CELLS, N_GENES, counts=COUNTS)
        for name, site in tr.items():
            record[name] = {
                "type": site["type"],
                "observed": site.get("is_observed", False),
                "shape": tuple(jnp.shape(site["value"])),
                "constraint": site["kwargs"].get("constraint", constraints.real)
                if site["type"] == "param" else None,
            }
        return jnp.zeros(())

    jax.eval_shape(run)
    return record


def _traces(config):
    comp = Composition(config)
    return comp, _structure(comp.model), _structure(comp.guide)


def _latent_values(comp, model_rec, rng):
    """Random values in each latent site's support, shaped as in the model trace."""
    values = {}
    for name, site in comp.sites.items():
        shape = model_rec[name]["shape"]
        fam = site.family.name
        if fam == "beta":
            v = rng.uniform(0.05, 0.95, shape)
        elif fam == "dirichlet":
            v = rng.dirichlet(np.ones(shape[-1]))
        elif fam == "normal":
            v = rng.normal(size=shape)
        else:
            v = rng.lognormal(size=shape)
        values[name] = jnp.asarray(v, jnp.float32)
    return values


def _model_trace(comp, values):
    model = numpyro.handlers.substitute(comp.model, data=values)
    return numpyro.handlers.trace(model).get_trace(N_CELLS, N_GENES, counts=COUNTS)


COUNTS = jnp.asarray(np.random.default_rng(0).poisson(2.0, (N_CELLS, N_GENES)), jnp.float32)


@pytest.mark.parametrize("mixture", [False, True], ids=["single", "mix"])
@pytest.mark.parametrize("par", PARAMETERIZATIONS)
@pytest.mark.parametrize("base", BASE_TYPES)
def test_composed_site_and_param_names(base, par, mixture):
    expected = _expected_sites(base, par, mixture)
    comp, model_tr, guide_tr = _traces(_config(base, par, mixture))
    assert list(comp.sites) == expected
    latent = [n for n, s in model_tr.items() if s["type"] == "sample" and not s["observed"]]
    assert sorted(latent) == sorted(expected)
    assert model_tr["counts"]["observed"]
    assert model_tr["counts"]["shape"] == (N_CELLS, N_GENES)
    assert model_tr["cells"]["type"] == "plate"
    guide_latent = [n for n, s in guide_tr.items() if s["type"] == "sample"]
    assert sorted(guide_latent) == sorted(expected)
    params = {n: s for n, s in guide_tr.items() if s["type"] == "param"}
    assert set(params) == _expected_params(expected)
    # Locations are unconstrained; scales and concentrations positive.
    for name, site in params.items():
        if name.endswith("_loc"):
            assert site["constraint"] is constraints.real, name
        else:
            assert site["constraint"] is constraints.positive, name


def test_spec_example_names_odds_ratio_zinbvcp_mix():
    comp, _, guide_tr = _traces(_config("zinbvcp", "odds_ratio", True))
    assert set(comp.sites) == {"phi", "mu", "gate", "phi_capture", "mixing_weights"}
    params = {n for n, s in guide_tr.items() if s["type"] == "param"}
    assert params == {"phi_alpha", "phi_beta", "mu_loc", "mu_scale", "gate_alpha", "gate_beta",
                      "phi_capture_alpha", "phi_capture_beta", "mixing_concentrations"}
    comp = Composition(_config("zinbvcp", "unconstrained", True))
    assert set(comp.sites) == {"p_unconstrained", "r_unconstrained", "gate_unconstrained",
                               "p_capture_unconstrained", "mixing_logits_unconstrained"}


@pytest.mark.parametrize("component_specific", [False, True])
@pytest.mark.parametrize("par", PARAMETERIZATIONS)
def test_value_shapes_in_model_trace(par, component_specific):
    config = _config("zinbvcp", par, True, component_specific_params=component_specific)
    _, model_tr, guide_tr = _traces(config)
    shared, gene = ((K,) if component_specific else ()), (K, N_GENES)
    want = dict(zip(EXPRESSION[par], [shared, gene], strict=True))
    want[GATE.get(par, "gate")] = gene
    want[CAPTURE.get(par, "p_capture")] = (N_CELLS,)
    want[MIXING.get(par, "mixing_weights")] = (K,)
    for name, shape in want.items():
        assert model_tr[name]["shape"] == shape, name
        assert guide_tr[name]["shape"] == shape, name
    for name, site in guide_tr.items():
        if site["type"] == "param":
            prefix = name.rsplit("_", 1)[0]
            prefix = "mixing_weights" if prefix == "mixing" else prefix
            assert site["shape"] == want[prefix], name


def _default_prior_logpdf(site, value):
    value = np.asarray(value, np.float64)
    if site.endswith("_unconstrained"):
        return stats.norm(0, 1).logpdf(value).sum()
    fam = FAMILY[site]
    if fam == "beta":
        return stats.beta(1, 1).logpdf(value).sum()
    if fam == "betaprime":
        return stats.betaprime(1, 1).logpdf(value).sum()
    if fam == "lognormal":
        return stats.lognorm(1.0).logpdf(value).sum()
    return stats.dirichlet(np.ones(K)).logpdf(value / value.sum())


def _prior_log_probs(comp, values, jit=True):
    """Summed prior log-density of each latent site in the model (compiled by default)."""
    def run(values):
        tr = _model_trace(comp, values)
        return {name: jnp.sum(tr[name]["fn"].log_prob(tr[name]["value"])) for name in values}

    return {k: float(v) for k, v in (jax.jit(run) if jit else run)(values).items()}


@pytest.mark.parametrize("par", PARAMETERIZATIONS)
def test_default_priors(par):
    comp, model_rec, _ = _traces(_config("zinbvcp", par, True))
    values = _latent_values(comp, model_rec, np.random.default_rng(5))
    got = _prior_log_probs(comp, values)
    assert set(got) == set(_expected_sites("zinbvcp", par, True))
    for name, value in got.items():
        np.testing.assert_allclose(value, _default_prior_logpdf(name, values[name]),
                                   rtol=1e-4, atol=1e-4, err_msg=name)


_USER_PRIORS = {"p": (2, 2), "mu": (0.5, 2), "p_capture": (3, 1.5)}


def _check_user_priors(jit):
    comp = Composition(_config("nbvcp", "linked", False, priors=_USER_PRIORS))
    nu = np.linspace(0.1, 0.9, N_CELLS)
    values = {"p": jnp.float32(0.3), "mu": jnp.linspace(0.5, 4.0, N_GENES),
              "p_capture": jnp.asarray(nu, jnp.float32)}
    got = _prior_log_probs(comp, values, jit=jit)
    want = {"p": stats.beta(2, 2).logpdf(0.3),
            "mu": stats.lognorm(2.0, scale=np.exp(0.5)).logpdf(np.asarray(values["mu"])).sum(),
            "p_capture": stats.beta(3, 1.5).logpdf(_f32(nu)).sum()}
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, err_msg=name)


def test_user_priors_used_by_model():
    _check_user_priors(jit=False)


def test_user_priors_model_traceable_under_jit():
    _check_user_priors(jit=True)


def test_user_dirichlet_prior_for_mixing_weights():
    # SPEC section 2's own example: priors={"mixing_weights": (1, 1, 1)}. (Found broken while
    # writing these tests: the K values were passed as K positional arguments; since fixed.)
    config = _config("nbdm", "linked", True, priors={"mixing_weights": (1, 2, 3)})
    comp = Composition(config)
    values = {"p": jnp.float32(0.3), "mu": jnp.ones((K, N_GENES)),
              "mixing_weights": jnp.array([0.2, 0.3, 0.5])}
    got = _prior_log_probs(comp, values)["mixing_weights"]
    np.testing.assert_allclose(got, stats.dirichlet([1, 2, 3]).logpdf([0.2, 0.3, 0.5]),
                               rtol=1e-5)


@pytest.mark.parametrize("priors", [{"r": (0, 1)}, {"phi": (1, 1)}, {"gate": (1, 1)},
                                    {"p": (1, 2, 3)}, {"mixing_weights": (1, 1)},
                                    {"p": (0, 1)}])
def test_bad_priors_rejected_at_config(priors):
    with pytest.raises(ValueError):
        scribe.ModelConfig("nbdm_mix", "linked", n_components=K, priors=priors)


def test_composition_canonical_full():
    """Composition.canonical for odds_ratio zinbvcp_mix matches the SPEC formulas."""
    comp = Composition(_config("zinbvcp", "odds_ratio", True, component_specific_params=True))
    rng = np.random.default_rng(8)
    values = {"phi": rng.lognormal(size=K), "mu": rng.lognormal(size=(K, N_GENES)),
              "gate": rng.uniform(size=(K, N_GENES)), "phi_capture": rng.lognormal(size=N_CELLS),
              "mixing_weights": rng.dirichlet(np.ones(K))}
    values = {k: _f32(v) for k, v in values.items()}
    out = _np(comp.canonical({k: jnp.asarray(v, jnp.float32) for k, v in values.items()}))
    np.testing.assert_allclose(out["p"], 1 / (1 + values["phi"]), rtol=1e-6)
    np.testing.assert_allclose(out["r"], values["mu"] * values["phi"][:, None], rtol=1e-6)
    np.testing.assert_allclose(out["gate"], values["gate"], rtol=1e-6)
    np.testing.assert_allclose(out["p_capture"], 1 / (1 + values["phi_capture"]), rtol=1e-6)
    np.testing.assert_allclose(out["mixing_weights"], values["mixing_weights"], rtol=1e-6)


@pytest.mark.parametrize("par", PARAMETERIZATIONS)
def test_initial_params_round_trip_through_guide_means(par):
    """initial_params centres each factor on the canonical guess (via from_canonical)."""
    comp = Composition(_config("zinbvcp", par, True))
    rng = np.random.default_rng(9)
    guess = {k: np.asarray(v) for k, v in _canonical_values(rng, True, False).items()}
    params = comp.initial_params(guess, N_CELLS, N_GENES)
    assert set(params) == _expected_params(_expected_sites("zinbvcp", par, True))
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in params.values())
    # Medians of the variational factors, mapped to canonical, are near the guess.
    medians = {}
    for name, site in comp.sites.items():
        args = [params[n] for n in site.param_names]
        fam = site.family.name
        if fam in ("normal",):
            medians[name] = args[0]
        elif fam == "lognormal":
            medians[name] = jnp.exp(args[0])
        elif fam == "beta":
            medians[name] = args[0] / (args[0] + args[1])
        elif fam == "betaprime":
            medians[name] = args[0] / args[1]
        else:
            medians[name] = args[0] / args[0].sum()
    canonical = _np(comp.canonical(medians))
    rel = {"p": 0.1, "r": 0.5, "gate": 0.3, "p_capture": 0.3, "mixing_weights": 0.3}
    for key, tol in rel.items():
        np.testing.assert_allclose(canonical[key], guess[key], rtol=tol, atol=0.05,
                                   err_msg=f"{par} {key}")


def test_jax_jit_of_canonical_map():
    """Canonical maps are traceable (used inside the jitted SVI step)."""
    block = _param("odds_ratio").expression()
    f = jax.jit(lambda phi, mu: block.to_canonical({"phi": phi, "mu": mu})["r"])
    np.testing.assert_allclose(np.asarray(f(jnp.float32(2.0), jnp.ones(3))), [2.0, 2.0, 2.0])
