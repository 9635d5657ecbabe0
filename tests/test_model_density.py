"""The composed models' ``counts`` log-density against an independent scipy computation.

For each model type (one parameterization each, all four used, component-specific
parameters in some mixtures) latent values are drawn from the model's own prior
distributions, the observation site is evaluated on counts simulated from those
latents, and the result is compared with ``scipy.stats.nbinom`` (SPEC sections 1-2).

Prior draws: the model is traced with a ``substitute_fn`` that draws each latent site
from that site's own prior distribution (``site["fn"]``) with numpy. This is a draw from
the prior exactly as ``seed`` + ``trace`` would give, without compiling NumPyro's
gamma samplers for every shape (which takes seconds per shape on CPU). One test also
uses NumPyro's own prior sampling (an all-Normal parameterization). Observed counts are
simulated with numpy rather than by ``counts=None`` for the same reason.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from scipy import special, stats

import scribe
from scribe.compose import Composition
from scribe.families import family_of

C, G, K = 30, 12, 3

# (model type, parameterization, n_components, component_specific_params)
CASES = [
    ("nbdm", "standard", None, False),
    ("zinb", "linked", None, False),
    ("nbvcp", "odds_ratio", None, False),
    ("zinbvcp", "unconstrained", None, False),
    ("nbdm_mix", "linked", K, False),
    ("zinb_mix", "standard", K, True),
    ("nbvcp_mix", "unconstrained", K, True),
    ("zinbvcp_mix", "odds_ratio", K, True),
    ("zinbvcp_mix", "linked", K, False),
]
IDS = [f"{m}-{p}{'-cs' if cs else ''}" for m, p, k, cs in CASES]


def _config(model_type, par, k, cs):
    return scribe.ModelConfig(model_type, par, n_components=k, component_specific_params=cs)


def _prior_drawer(rng):
    """``substitute_fn`` drawing every latent site from its own prior, with numpy."""

    def draw(site):
        if site["type"] != "sample" or site.get("is_observed"):
            return None
        fam, args = family_of(site["fn"])
        shape = site["fn"].shape()
        if fam.name == "dirichlet":
            return jnp.asarray(rng.dirichlet(np.asarray(args[0], float)), jnp.float32)
        a, b = (np.broadcast_to(np.asarray(x, float), shape) for x in args)
        if fam.name == "beta":
            v = rng.beta(a, b)
        elif fam.name == "betaprime":
            v = rng.gamma(a) / rng.gamma(b)
        elif fam.name == "lognormal":
            v = rng.lognormal(a, b)
        else:
            v = rng.normal(a, b)
        return jnp.asarray(v, jnp.float32)

    return draw


def _np(tree):
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def _canonical_reference(par, v):
    """Canonical parameters from sampled values, written out from SPEC section 2 (numpy)."""
    v = _np(v)

    def gene(x):  # align a shared value (scalar or (K,)) with gene values
        return x[..., None] if np.ndim(x) == 1 else x

    out = {}
    if par == "standard":
        out["p"], out["r"] = v["p"], v["r"]
    elif par == "linked":
        out["p"], out["r"] = v["p"], v["mu"] * gene((1 - v["p"]) / v["p"])
    elif par == "odds_ratio":
        out["p"], out["r"] = 1 / (1 + v["phi"]), v["mu"] * gene(v["phi"])
    else:
        out["p"], out["r"] = special.expit(v["p_unconstrained"]), np.exp(v["r_unconstrained"])
    if par == "unconstrained":
        for name in ("gate", "p_capture"):
            if f"{name}_unconstrained" in v:
                out[name] = special.expit(v[f"{name}_unconstrained"])
        if "mixing_logits_unconstrained" in v:
            out["mixing_weights"] = special.softmax(v["mixing_logits_unconstrained"])
    else:
        for name in ("gate", "p_capture", "mixing_weights"):
            if name in v:
                out[name] = v[name]
        if "phi_capture" in v:
            out["p_capture"] = 1 / (1 + v["phi_capture"])
    return out


def _component(canon, k, mixture):
    """Parameters of component k (or the only one): p scalar, r/gate (G,)."""
    if not mixture:
        return canon
    out = dict(canon)
    if np.ndim(canon["p"]) == 1:
        out["p"] = canon["p"][k]
    out["r"] = canon["r"][k]
    if "gate" in canon:
        out["gate"] = canon["gate"][k]
    return out


def _elementwise_reference(counts, theta):
    """(C, G) log-probabilities of one component by scipy.stats.nbinom."""
    p = np.asarray(theta["p"], float)
    if "p_capture" in theta:
        nu = theta["p_capture"]
        p = p * nu / (1 - p * (1 - nu))
    p = p[:, None] if np.ndim(p) == 1 else p
    r = theta["r"]
    log_nb = stats.nbinom.logpmf(counts, r, 1 - p)
    if "gate" not in theta:
        return np.broadcast_to(log_nb, counts.shape)
    gate = theta["gate"]
    zero = np.log(gate + (1 - gate) * stats.nbinom.pmf(0, r, 1 - p))
    return np.where(counts == 0, zero, np.log1p(-gate) + log_nb)


def _simulate(canon, mixture, n_components, rng):
    """Counts from the canonical parameters (numpy), components drawn per cell."""
    w = canon.get("mixing_weights", np.ones(1))
    ks = rng.choice(n_components, C, p=w / w.sum()) if mixture else np.zeros(C, int)
    x = np.zeros((C, G))
    for c in range(C):
        theta = _component(canon, ks[c], mixture)
        p = float(np.ravel(theta["p"])[0]) if np.ndim(theta["p"]) else float(theta["p"])
        if "p_capture" in theta:
            nu = theta["p_capture"][c]
            p = p * nu / (1 - p * (1 - nu))
        x[c] = rng.negative_binomial(theta["r"], 1 - p)
        if "gate" in theta:
            x[c] = np.where(rng.uniform(size=G) < theta["gate"], 0, x[c])
    x[0, 0] = 0  # always exercise the zero branch
    return x


@functools.cache
def _setup(case):
    model_type, par, k, cs = case
    config = _config(*case)
    comp = Composition(config)
    rng = np.random.default_rng(CASES.index(case))
    mixture = k is not None
    dummy = jnp.zeros((C, G), jnp.float32)
    model = numpyro.handlers.substitute(comp.model, substitute_fn=_prior_drawer(rng))
    tr = numpyro.handlers.trace(model).get_trace(C, G, counts=dummy)
    values = {n: s["value"] for n, s in tr.items()
              if s["type"] == "sample" and not s["is_observed"]}
    canon = _canonical_reference(par, values)
    counts = _simulate(canon, mixture, k or 1, rng)
    return comp, values, canon, counts, mixture


_JITTED = {}


def _counts_log_prob(comp, values, counts):
    """Per-cell log-density of the ``counts`` site with the latents substituted, the
    observed value, and ``ModelType.log_prob`` on ``comp.canonical(values)``; one
    compiled function per composition."""
    if id(comp) not in _JITTED:
        spec = scribe.plugins.model_types()[comp.config.model_type]

        @jax.jit
        def run(values, counts):
            model = numpyro.handlers.substitute(comp.model, data=values)
            site = numpyro.handlers.trace(model).get_trace(C, G, counts=counts)["counts"]
            elementwise = spec.log_prob(counts, comp.canonical(values))
            return site["fn"].log_prob(site["value"]), site["value"], elementwise

        _JITTED[id(comp)] = (comp, run)  # keep comp alive so its id stays unique
    return _JITTED[id(comp)][1](values, jnp.asarray(counts, jnp.float32))


def _reference_cell_log_prob(canon, counts, mixture, n_components):
    if not mixture:
        return _elementwise_reference(counts, canon).sum(axis=1)
    per_k = np.stack([_elementwise_reference(counts, _component(canon, k, True)).sum(axis=1)
                      for k in range(n_components)], axis=-1)
    return special.logsumexp(per_k + np.log(canon["mixing_weights"]), axis=-1)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_counts_site_log_density_matches_scipy(case):
    comp, values, canon, counts, mixture = _setup(case)
    # The library's canonical map agrees with the SPEC formulas.
    lib_canon = _np(comp.canonical(values))
    assert set(lib_canon) == set(canon)
    for name in canon:
        np.testing.assert_allclose(lib_canon[name], canon[name], rtol=2e-5, err_msg=name)
    got, observed, _ = _counts_log_prob(comp, values, counts)
    np.testing.assert_array_equal(np.asarray(observed), counts)
    want = _reference_cell_log_prob(canon, counts, mixture, case[2])
    assert np.asarray(got).shape == (C,)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case", [c for c in CASES if c[2] is not None],
                         ids=[i for i, c in zip(IDS, CASES, strict=True) if c[2] is not None])
def test_model_type_log_prob_per_component(case):
    comp, values, canon, counts, _ = _setup(case)
    assert scribe.plugins.model_types()[case[0]].mixture
    got = np.asarray(_counts_log_prob(comp, values, counts)[2], np.float64)
    n_k = case[2]
    assert got.shape == (C, G, n_k)
    for k in range(n_k):
        want = _elementwise_reference(counts, _component(canon, k, True))
        np.testing.assert_allclose(got[..., k], want, rtol=1e-4, atol=1e-4, err_msg=f"k={k}")
    # Adding log weights and marginalising gives the scipy per-cell mixture density.
    marginal = special.logsumexp(got.sum(axis=1) + np.log(canon["mixing_weights"]), axis=-1)
    np.testing.assert_allclose(marginal, _reference_cell_log_prob(canon, counts, True, n_k),
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case", [c for c in CASES if c[2] is None],
                         ids=[i for i, c in zip(IDS, CASES, strict=True) if c[2] is None])
def test_model_type_log_prob_single(case):
    comp, values, canon, counts, _ = _setup(case)
    assert not scribe.plugins.model_types()[case[0]].mixture
    got = np.asarray(_counts_log_prob(comp, values, counts)[2], np.float64)
    np.testing.assert_allclose(got, _elementwise_reference(counts, canon), rtol=1e-4,
                               atol=1e-4)


def test_mixture_with_one_dominant_component_reduces_to_it():
    """With weights (1-eps, eps, ...) the mixture density tends to component 0's density."""
    comp, values, canon, counts, _ = _setup(("zinbvcp_mix", "odds_ratio", K, True))
    w = np.array([1 - 2e-7, 1e-7, 1e-7])
    values = dict(values, mixing_weights=jnp.asarray(w, jnp.float32))
    got = _counts_log_prob(comp, values, counts)[0]
    want = _elementwise_reference(counts, _component(canon, 0, True)).sum(axis=1)
    # Other components can only add mass: log p >= log w0 + log f0.
    assert np.all(np.asarray(got, np.float64) >= want + np.log(w[0]) - 1e-3)
    # ... and with components made identical the mixture equals the single component.
    same = dict(values)
    for name in ("phi", "mu", "gate"):
        same[name] = jnp.broadcast_to(values[name][:1], values[name].shape)
    got_same = _counts_log_prob(comp, same, counts)[0]
    np.testing.assert_allclose(np.asarray(got_same, np.float64), want, rtol=1e-4, atol=1e-3)


def test_with_numpyro_prior_sampling():
    """Latents drawn by NumPyro itself (seed + trace). The unconstrained parameterization
    has only Normal sites, whose sampler compiles quickly; counts are simulated with numpy
    from those latents and observed."""
    case = ("zinbvcp_mix", "unconstrained", K, True)
    comp = Composition(_config(*case))
    dummy = jnp.zeros((C, G), jnp.float32)

    @jax.jit
    def prior_draw(key):
        with numpyro.handlers.seed(rng_seed=key):
            tr = numpyro.handlers.trace(comp.model).get_trace(C, G, counts=dummy)
        return {n: s["value"] for n, s in tr.items()
                if s["type"] == "sample" and not s["is_observed"]}

    draw = prior_draw(jax.random.PRNGKey(0))
    assert set(draw) == set(comp.sites)
    canon = _canonical_reference("unconstrained", draw)
    counts = _simulate(canon, True, K, np.random.default_rng(1))
    got = _counts_log_prob(comp, draw, counts)[0]
    want = _reference_cell_log_prob(canon, counts, True, K)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=1e-3)
