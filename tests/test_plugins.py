"""Third-party plugins installed through the ``scribe`` entry-point group.

The plugin packages live in ``tests/plugin_packages/``. A fixture "installs" them the way
pip would, as far as ``importlib.metadata`` can tell: it writes a
``<name>-0.0.dist-info/`` folder (``METADATA`` and ``entry_points.txt`` with a ``[scribe]``
section) into a temporary directory, puts that directory and the packages' parent on
``sys.path`` and calls ``scribe.reload_plugins()``. Teardown removes both and reloads, so
other tests see only the built-ins.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pluggy
import pytest
from numpyro import handlers
from scipy import stats

import scribe
from scribe import plugins
from scribe.compose import Composition
from scribe.simulate import simulate_counts

PACKAGES = Path(__file__).parent / "plugin_packages"
BUILTIN_TYPES = ["nbdm", "nbdm_mix", "nbvcp", "nbvcp_mix", "zinb", "zinb_mix", "zinbvcp",
                 "zinbvcp_mix"]
BUILTIN_PARAMETERIZATIONS = ["linked", "odds_ratio", "standard", "unconstrained"]
BUILTIN_PLUGINS = {"composition", "guide_families", "negative_binomial", "parameterizations"}


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist_name, {entry_point_name: module})`` -> the reloaded plugin manager.

    ``install.uninstall()`` removes every installed distribution and reloads (teardown
    does it too).
    """
    modules: set[str] = set()

    def _install(dist_name: str, entry_points: dict[str, str]) -> pluggy.PluginManager:
        site = tmp_path / f"site-{dist_name}"
        info = site / f"{dist_name}-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.0\n")
        (info / "entry_points.txt").write_text(
            "[scribe]\n" + "".join(f"{name} = {module}\n" for name, module in entry_points.items()))
        monkeypatch.syspath_prepend(str(PACKAGES))
        monkeypatch.syspath_prepend(str(site))
        modules.update(entry_points.values())
        return scribe.reload_plugins()

    def _uninstall() -> pluggy.PluginManager:
        monkeypatch.undo()  # restores sys.path
        for module in modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()
        return scribe.reload_plugins()

    _install.uninstall = _uninstall
    yield _install
    _uninstall()


@pytest.fixture
def poisson(install):
    install("scribe_test_poisson", {"test_poisson": "scribe_test_poisson"})
    return sys.modules["scribe_test_poisson"]


@pytest.fixture
def mean_odds(install):
    install("scribe_test_mean_odds", {"test_mean_odds": "scribe_test_mean_odds"})
    return sys.modules["scribe_test_mean_odds"]


@pytest.fixture
def hurdle(install):
    install("scribe_test_hurdle", {"test_hurdle": "scribe_test_hurdle"})
    return sys.modules["scribe_test_hurdle"]


# ---- loading and unloading -------------------------------------------------------------------


def test_only_builtins_without_installed_plugins():
    manager = scribe.reload_plugins()
    assert {name for name, _ in manager.list_name_plugin()} == BUILTIN_PLUGINS
    assert scribe.available_model_types() == BUILTIN_TYPES
    assert scribe.available_parameterizations() == BUILTIN_PARAMETERIZATIONS


def test_install_registers_through_entry_point_and_uninstall_removes(install):
    manager = install("scribe_test_poisson", {"test_poisson": "scribe_test_poisson"})
    assert {name for name, _ in manager.list_name_plugin()} == BUILTIN_PLUGINS | {"test_poisson"}
    dists = {dist.metadata["Name"] for _, dist in manager.list_plugin_distinfo()}
    assert {"scribe_test_poisson", "scribe-sc"} <= dists
    assert scribe.available_model_types() == sorted(BUILTIN_TYPES + ["poisson"])

    install.uninstall()
    assert scribe.available_model_types() == BUILTIN_TYPES
    assert "scribe_test_poisson" not in sys.modules
    with pytest.raises(ValueError, match="unknown model type 'poisson'"):
        scribe.ModelConfig("poisson")


def test_unknown_hook_fails_plugin_validation(install):
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'scribe_not_a_hook'"):
        install("scribe_test_bad_hook", {"test_bad_hook": "scribe_test_bad_hook"})
    install.uninstall()
    assert scribe.available_model_types() == BUILTIN_TYPES


def test_two_plugins_with_the_same_model_type_name(install):
    install("scribe_test_poisson", {"test_poisson": "scribe_test_poisson"})
    install("scribe_test_poisson_clash", {"test_poisson_clash": "scribe_test_poisson_clash"})
    with pytest.raises(ValueError, match="two plugins register the model type 'poisson'"):
        scribe.available_model_types()
    with pytest.raises(ValueError, match="two plugins register the model type 'poisson'"):
        scribe.ModelConfig("nbdm")


def test_mixture_naming_is_enforced():
    def log_prob(counts, params):
        return counts

    with pytest.raises(ValueError, match="mixture types, and only they, are named"):
        scribe.ModelType("foo_mix", "x", None, log_prob, mixture=False)
    with pytest.raises(ValueError, match="mixture types, and only they, are named"):
        scribe.ModelType("foo", "x", None, log_prob, mixture=True)


# ---- (a) a whole new model type --------------------------------------------------------------


def test_poisson_model_type_registration(poisson):
    spec = plugins.model_types()["poisson"]
    assert spec.parameterizations == ("standard",) and not spec.mixture
    assert spec.likelihood is None
    cfg = scribe.ModelConfig("poisson")
    assert not cfg.is_mixture
    with pytest.raises(ValueError, match="parameterization for model type 'poisson' 'linked'"
                                         r".*Valid choices: standard"):
        scribe.ModelConfig("poisson", "linked")
    with pytest.raises(ValueError, match="n_components is only for mixture model types"):
        scribe.ModelConfig("poisson", n_components=2)
    with pytest.raises(ValueError, match="unknown model type 'poisson_mix'"):
        scribe.ModelConfig("poisson_mix", n_components=2)

    # Hooks: the first non-None answer wins; each plugin answers only for its own types.
    from scribe_builtin import composition

    hook = plugins.get_plugin_manager().hook
    assert composition.scribe_model(cfg) is None
    assert composition.scribe_guide(cfg) is None
    assert composition.scribe_posterior_distributions(cfg, {}) is None
    assert hook.scribe_model(model_config=cfg) is poisson.model
    assert hook.scribe_guide(model_config=cfg) is poisson.guide
    nbdm = scribe.ModelConfig("nbdm")
    assert poisson.scribe_model(nbdm) is None and poisson.scribe_guide(nbdm) is None
    assert poisson.scribe_posterior_distributions(nbdm, {}) is None
    assert isinstance(hook.scribe_model(model_config=nbdm).__self__, Composition)


def test_poisson_log_prob_matches_scipy(poisson):
    counts = jnp.array([[0.0, 1.0, 7.0], [3.0, 0.0, 12.0]])
    rate = jnp.array([0.5, 2.0, 9.0])
    log_prob = plugins.model_types()["poisson"].log_prob(counts, {"rate": rate})
    np.testing.assert_allclose(log_prob, stats.poisson.logpmf(np.asarray(counts), rate),
                               rtol=1e-5)


def test_poisson_fit_recovers_rates_and_generic_methods_work(poisson):
    rng = np.random.default_rng(7)
    n_cells, n_genes = 300, 12
    rates = rng.lognormal(1.2, 0.7, size=n_genes)
    counts = rng.poisson(rates, size=(n_cells, n_genes))

    res = scribe.fit(counts, "poisson", n_steps=200, optimizer=numpyro.optim.Adam(0.05),
                     progress=False)
    losses = np.asarray(res.loss_history)
    assert losses.shape == (200,) and np.all(np.isfinite(losses))
    assert losses[-20:].mean() < losses[:20].mean()
    assert set(res.params) == {"rate_loc", "rate_scale"}

    # MAP: the LogNormal mode, plus the model's deterministic log_rate as canonical.
    estimates = res.get_map()
    loc, scale = np.asarray(res.params["rate_loc"]), np.asarray(res.params["rate_scale"])
    np.testing.assert_allclose(estimates["rate"], np.exp(loc - scale**2), rtol=1e-5)
    np.testing.assert_allclose(estimates["log_rate"], np.log(estimates["rate"]), rtol=1e-5,
                               atol=1e-6)
    assert np.median(np.abs(estimates["rate"] / rates - 1)) < 0.10
    assert np.max(np.abs(estimates["rate"] / rates - 1)) < 0.25

    # Distributions: NumPyro as the plugin returns them, and scipy converted by the core.
    numpyro_dists = res.get_distributions()
    np.testing.assert_allclose(numpyro_dists["rate"].loc, loc)
    scipy_dists = res.get_distributions(backend="scipy")
    np.testing.assert_allclose(scipy_dists["rate"].median(), np.exp(loc), rtol=1e-5)
    np.testing.assert_allclose(scipy_dists["rate"].mean(), np.exp(loc + scale**2 / 2),
                               rtol=1e-5)

    samples = res.get_posterior_samples(rng_key=jax.random.PRNGKey(1), n_samples=40)
    assert samples["rate"].shape == (40, n_genes)
    np.testing.assert_allclose(samples["log_rate"], np.log(samples["rate"]), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.median(np.asarray(samples["rate"]), axis=0), rates,
                               rtol=0.25)

    predictive = res.get_predictive_samples(rng_key=jax.random.PRNGKey(2))
    assert predictive.shape == (40, n_cells, n_genes)
    predictive = np.asarray(predictive)
    assert np.all(predictive >= 0) and np.all(predictive == np.round(predictive))
    # Predictive gene means follow the data's (Poisson: variance equals mean).
    np.testing.assert_allclose(predictive.mean(axis=(0, 1)), counts.mean(axis=0), rtol=0.1)
    ratio = predictive.var(axis=(0, 1)) / predictive.mean(axis=(0, 1))
    assert np.all(np.abs(ratio - 1) < 0.25)

    sub = res[0:3]
    assert (sub.n_genes, sub.n_cells) == (3, n_cells)
    np.testing.assert_array_equal(sub.params["rate_loc"], res.params["rate_loc"][:3])
    np.testing.assert_array_equal(sub.posterior_samples["rate"], samples["rate"][:, :3])
    np.testing.assert_array_equal(sub.posterior_samples["log_rate"], samples["log_rate"][:, :3])
    assert sub.predictive_samples.shape == (40, n_cells, 3)
    np.testing.assert_array_equal(sub.predictive_samples, predictive[..., :3])
    np.testing.assert_allclose(sub.get_map()["rate"], estimates["rate"][:3], rtol=1e-6)
    assert res.n_genes == n_genes  # the original is untouched


# ---- (b) a parameterization ------------------------------------------------------------------

MIX_WEIGHTS = np.array([0.3, 0.7])


def _mean_odds_values(model_type: str, n_cells: int, n_genes: int) -> dict:
    """Latent values under mean_odds (and base-class gate / capture / mixing sites)."""
    k = 2 if model_type.endswith("_mix") else None
    gene_shape = (k, n_genes) if k else (n_genes,)
    values = {"q": np.float32(0.35),
              "mu": np.linspace(0.5, 6.0, int(np.prod(gene_shape)), dtype=np.float32)
              .reshape(gene_shape)}
    if "zinb" in model_type:
        values["gate"] = np.linspace(0.05, 0.5, int(np.prod(gene_shape)), dtype=np.float32) \
            .reshape(gene_shape)
    if "vcp" in model_type:
        values["p_capture"] = np.linspace(0.3, 0.9, n_cells, dtype=np.float32)
    if k:
        values["mixing_weights"] = MIX_WEIGHTS.astype(np.float32)
    return values


def _guide_trace(composition, n_cells: int, n_genes: int):
    """Trace of the guide with every sampled site fixed (nothing drawn: fast, eager)."""
    fixed = {}
    for name, site in composition.sites.items():
        shape = (n_cells,) if site.scope == "cell" else composition.value_shape(site, n_genes)
        fixed[name] = jnp.full(shape, 1.0 / shape[-1] if site.family.event_ndim else 0.5)
    guide = handlers.substitute(handlers.seed(composition.guide, 0), data=fixed)
    return handlers.trace(guide).get_trace(n_cells, n_genes)


def _counts_log_likelihood(cfg, values: dict, counts: np.ndarray) -> float:
    model = handlers.substitute(handlers.seed(Composition(cfg).model, 0),
                                data={k: jnp.asarray(v) for k, v in values.items()})
    site = handlers.trace(model).get_trace(*counts.shape, jnp.asarray(counts))["counts"]
    return float(jnp.sum(site["fn"].log_prob(site["value"])))


@pytest.mark.parametrize("model_type", ["nbdm", "zinb", "nbvcp", "zinbvcp", "zinb_mix",
                                        "zinbvcp_mix"])
def test_mean_odds_works_with_every_builtin_likelihood(mean_odds, model_type):
    assert "mean_odds" in scribe.available_parameterizations()
    n_components = 2 if model_type.endswith("_mix") else None
    cfg = scribe.ModelConfig(model_type, "mean_odds", n_components=n_components)
    composition = Composition(cfg)
    expected_sites = {"q", "mu"}
    expected_sites |= {"gate"} if "zinb" in model_type else set()
    expected_sites |= {"p_capture"} if "vcp" in model_type else set()
    expected_sites |= {"mixing_weights"} if n_components else set()
    assert set(composition.sites) == expected_sites

    n_cells, n_genes = 6, 4
    values = _mean_odds_values(model_type, n_cells, n_genes)
    # Canonical parameters by hand: p = 1 - q, r = mu q / (1 - q).
    p = 1 - values["q"]
    r = values["mu"] * values["q"] / (1 - values["q"])
    canonical = composition.canonical({k: jnp.asarray(v) for k, v in values.items()})
    np.testing.assert_allclose(canonical["p"], p, rtol=1e-6)
    np.testing.assert_allclose(canonical["r"], r, rtol=1e-5)

    # The likelihood sees exactly those: same counts log-likelihood as 'standard' with p, r.
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)
    standard_values = {k: v for k, v in values.items() if k not in ("q", "mu")}
    standard_values.update(p=p, r=r)
    standard = scribe.ModelConfig(model_type, "standard", n_components=n_components)
    np.testing.assert_allclose(_counts_log_likelihood(cfg, values, counts),
                               _counts_log_likelihood(standard, standard_values, counts),
                               rtol=1e-5)
    if model_type == "nbdm":  # and that value is the NB law, by scipy
        expected = stats.nbinom.logpmf(counts, r[None, :], 1 - p).sum()
        np.testing.assert_allclose(_counts_log_likelihood(cfg, values, counts), expected,
                                   rtol=1e-5)


def test_mean_odds_guide_params_and_priors(mean_odds):
    cfg = scribe.ModelConfig("nbvcp", "mean_odds", priors={"q": (2, 8), "mu": (1, 0.5)})
    composition = Composition(cfg)
    guide_trace = _guide_trace(composition, 5, 3)
    params = {name for name, site in guide_trace.items() if site["type"] == "param"}
    assert params == {"q_alpha", "q_beta", "mu_loc", "mu_scale", "p_capture_alpha",
                      "p_capture_beta"}
    q_prior = composition.prior(composition.sites["q"], 3)
    assert (float(q_prior.concentration1), float(q_prior.concentration0)) == (2.0, 8.0)
    with pytest.raises(ValueError, match="Its sampled sites: mu, p_capture, q"):
        scribe.ModelConfig("nbvcp", "mean_odds", priors={"p": (1, 1)})
    with pytest.raises(ValueError, match=r"prior for 'q' \(beta\): alpha=0\.0"):
        scribe.ModelConfig("nbdm", "mean_odds", priors={"q": (0, 1)})


def test_mean_odds_fit_recovers_nbdm_parameters(mean_odds):
    counts, truth = simulate_counts("nbdm", 300, 50, p=0.6, seed=3)
    res = scribe.fit(counts, "nbdm", "mean_odds", n_steps=1500, progress=False)
    assert set(res.params) == {"q_alpha", "q_beta", "mu_loc", "mu_scale"}
    assert np.all(np.isfinite(np.asarray(res.loss_history)))
    estimates = res.get_map()
    assert abs(float(estimates["p"]) - 0.6) < 0.02
    np.testing.assert_allclose(estimates["p"], 1 - estimates["q"], rtol=1e-6)
    assert np.median(np.abs(estimates["r"] / truth["r"] - 1)) < 0.10
    # mu is the NB mean: it tracks the genes' observed means.
    means = counts.mean(axis=0)
    expressed = means > 1
    assert np.median(np.abs(estimates["mu"][expressed] / means[expressed] - 1)) < 0.10


# ---- (c) a likelihood ------------------------------------------------------------------------

PARAMETERIZATION_SITES = {
    "standard": {"p", "r", "gate"},
    "linked": {"p", "mu", "gate"},
    "odds_ratio": {"phi", "mu", "gate"},
    "unconstrained": {"p_unconstrained", "r_unconstrained", "gate_unconstrained"},
}


def _hurdle_scipy(counts, r, p, gate):
    counts = np.asarray(counts, dtype=float)
    positive = (np.log1p(-gate) + stats.nbinom.logpmf(counts, r, 1 - p)
                - np.log1p(-stats.nbinom.pmf(0, r, 1 - p)))
    return np.where(counts == 0, np.log(gate), positive)


def _hurdle_values(parameterization: str, n_genes: int) -> tuple[dict, dict]:
    """Sampled-site values and the canonical p, r, gate they stand for (computed by hand)."""
    p = 0.4
    r = np.linspace(0.5, 4.0, n_genes)
    gate = np.linspace(0.1, 0.6, n_genes)
    if parameterization == "standard":
        values = {"p": p, "r": r, "gate": gate}
    elif parameterization == "linked":
        values = {"p": p, "mu": r * p / (1 - p), "gate": gate}
    elif parameterization == "odds_ratio":
        phi = (1 - p) / p
        values = {"phi": phi, "mu": r / phi, "gate": gate}
    else:
        values = {"p_unconstrained": np.log(p / (1 - p)), "r_unconstrained": np.log(r),
                  "gate_unconstrained": np.log(gate / (1 - gate))}
    return ({k: jnp.asarray(v, jnp.float32) for k, v in values.items()},
            {"p": p, "r": r, "gate": gate})


def test_hurdle_log_prob_matches_scipy(hurdle):
    counts = np.array([[0, 1, 2, 0], [5, 0, 13, 1], [0, 0, 0, 40]], dtype=np.float32)
    r = np.array([0.3, 1.0, 2.5, 8.0])
    gate = np.array([0.05, 0.3, 0.5, 0.9])
    spec = plugins.model_types()["hurdle_nb"]
    for p in (0.2, 0.7):
        log_prob = spec.log_prob(jnp.asarray(counts), {"p": p, "r": jnp.asarray(r),
                                                       "gate": jnp.asarray(gate)})
        np.testing.assert_allclose(log_prob, _hurdle_scipy(counts, r, p, gate), rtol=2e-5)
        # P(0) is exactly the gate; the positive part is a proper distribution.
        grid = np.arange(0, 400, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
        total = np.exp(spec.log_prob(jnp.asarray(grid), {"p": p, "r": jnp.asarray(r),
                                                         "gate": jnp.asarray(gate)})).sum(0)
        np.testing.assert_allclose(total, 1.0, rtol=1e-4)


def test_hurdle_registers_plain_and_mixture_types(hurdle):
    types = scribe.available_model_types()
    assert "hurdle_nb" in types and "hurdle_nb_mix" in types
    assert types == sorted(BUILTIN_TYPES + ["hurdle_nb", "hurdle_nb_mix"])
    specs = plugins.model_types()
    assert specs["hurdle_nb"].parameterizations is None  # every parameterization
    assert specs["hurdle_nb_mix"].mixture and not specs["hurdle_nb"].mixture
    assert specs["hurdle_nb_mix"].description == "mixture of hurdle negative binomial"

    cfg = scribe.ModelConfig("hurdle_nb_mix", "linked", n_components=2,
                             priors={"gate": (2, 3)})
    composition = Composition(cfg)
    assert set(composition.sites) == {"p", "mu", "gate", "mixing_weights"}
    assert composition.value_shape(composition.sites["gate"], 4) == (2, 4)

    # The mixture's log_prob is (C, G, K): the hurdle law per component.
    counts = np.array([[0, 3, 1, 0], [2, 0, 0, 7]], dtype=np.float32)
    r = np.array([[0.5, 1.0, 2.0, 3.0], [4.0, 0.7, 1.5, 2.2]])
    gate = np.array([[0.1, 0.2, 0.3, 0.4], [0.6, 0.5, 0.2, 0.05]])
    log_prob = specs["hurdle_nb_mix"].log_prob(
        jnp.asarray(counts), {"p": 0.3, "r": jnp.asarray(r), "gate": jnp.asarray(gate),
                              "mixing_weights": jnp.asarray(MIX_WEIGHTS)})
    assert log_prob.shape == (2, 4, 2)
    for k in range(2):
        np.testing.assert_allclose(log_prob[..., k], _hurdle_scipy(counts, r[k], 0.3, gate[k]),
                                   rtol=2e-5)
    with pytest.raises(ValueError, match="'hurdle_nb_mix' is a mixture"):
        scribe.ModelConfig("hurdle_nb_mix")


@pytest.mark.parametrize("parameterization", sorted(PARAMETERIZATION_SITES))
def test_hurdle_composes_under_every_parameterization(hurdle, parameterization):
    cfg = scribe.ModelConfig("hurdle_nb", parameterization)
    composition = Composition(cfg)
    expected = PARAMETERIZATION_SITES[parameterization]
    assert set(composition.sites) == expected
    n_cells, n_genes = 5, 3

    guide_trace = _guide_trace(composition, n_cells, n_genes)
    sampled = {name for name, site in guide_trace.items() if site["type"] == "sample"}
    assert sampled == expected
    params = {name for name, site in guide_trace.items() if site["type"] == "param"}
    assert params == {name for site in composition.sites.values() for name in site.param_names}
    if parameterization == "unconstrained":
        assert {"gate_unconstrained_loc", "gate_unconstrained_scale"} <= params
    else:
        assert {"gate_alpha", "gate_beta"} <= params

    # The model: its sites follow the parameterization, and its counts log-likelihood,
    # with the sampled sites fixed, is the hurdle law at the canonical values.
    values, truth = _hurdle_values(parameterization, n_genes)
    counts = np.array([[0, 1, 4], [2, 0, 0], [0, 0, 9], [1, 1, 1], [0, 3, 0]], np.float32)
    model = handlers.substitute(handlers.seed(composition.model, 0), data=values)
    trace = handlers.trace(model).get_trace(n_cells, n_genes, jnp.asarray(counts))
    assert {n for n, s in trace.items() if s["type"] == "sample"} == expected | {"counts"}
    site = trace["counts"]
    assert site["is_observed"]
    expected_ll = _hurdle_scipy(counts, truth["r"], truth["p"], truth["gate"]).sum()
    np.testing.assert_allclose(float(jnp.sum(site["fn"].log_prob(site["value"]))), expected_ll,
                               rtol=1e-4)


def test_hurdle_fit_runs_with_finite_losses(hurdle):
    rng = np.random.default_rng(11)
    gate = np.linspace(0.1, 0.7, 10)
    counts = rng.negative_binomial(3.0, 0.4, size=(40, 10))
    while np.any(counts == 0):  # zero-truncated by redrawing
        counts = np.where(counts == 0, rng.negative_binomial(3.0, 0.4, size=counts.shape), counts)
    counts = np.where(rng.random((40, 10)) < gate, 0, counts)

    res = scribe.fit(counts, "hurdle_nb", "unconstrained", n_steps=150,
                     optimizer=numpyro.optim.Adam(0.02), progress=False)
    losses = np.asarray(res.loss_history)
    assert losses.shape == (150,) and np.all(np.isfinite(losses))
    assert losses[-20:].mean() < losses[:20].mean()
    assert {"gate_unconstrained_loc", "gate_unconstrained_scale"} <= set(res.params)
    estimates = res.get_map()
    np.testing.assert_allclose(estimates["gate"],
                               jax.nn.sigmoid(res.params["gate_unconstrained_loc"]), rtol=1e-5)
    # With a hurdle, gate is P(0): it follows each gene's observed zero fraction.
    zero_fraction = (counts == 0).mean(axis=0)
    assert np.corrcoef(estimates["gate"], zero_fraction)[0, 1] > 0.8


# ---- guide families ----------------------------------------------------------------------------


def test_third_party_guide_family_registers_and_fits(install):
    install("scribe_test_guide", {"test_guide": "scribe_test_guide"})
    assert scribe.available_guide_families() == ["joint_capture", "joint_gene", "mean_field",
                                                 "skew_gene", "wide_start"]
    config = scribe.ModelConfig("zinb", "standard", guide_family="wide_start")
    counts, _ = simulate_counts("zinb", 40, 6, seed=1)
    from scribe.svi.engine import initial_params

    wide = initial_params(config, counts, seed=0)
    narrow = initial_params(scribe.ModelConfig("zinb", "standard", guide_family="mean_field"),
                            counts, seed=0)
    # The mean-field parameters, started from a quarter of the pseudo-observations: the
    # shared p's Beta factor has alpha + beta = max(C G / 50, 50) / 4 instead of 50.
    assert set(wide) == set(narrow)
    np.testing.assert_allclose(float(narrow["p_alpha"] + narrow["p_beta"]), 50.0, rtol=1e-5)
    np.testing.assert_allclose(float(wide["p_alpha"] + wide["p_beta"]), 12.5, rtol=1e-5)
    results = scribe.fit(counts, "zinb", "standard", guide_family="wide_start", n_steps=20,
                         progress=False)
    assert results.model_config.guide_family == "wide_start"
    assert set(results.params) == set(narrow)
    assert np.all(np.isfinite(np.asarray(results.loss_history)))
