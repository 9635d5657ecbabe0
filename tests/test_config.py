"""``scribe.ModelConfig``: validation of model type, parameterization, components and priors."""

from __future__ import annotations

import copy

import attrs
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.distributions import (
    Beta,
    Dirichlet,
    ExpandedDistribution,
    Independent,
    LogNormal,
    Normal,
)
from scipy.special import betaln

import scribe
from scribe.compose import Composition, validated_priors
from scribe.distributions import BetaPrime

BUILTIN_TYPES = ["nbdm", "nbdm_mix", "nbvcp", "nbvcp_mix", "zinb", "zinb_mix", "zinbvcp",
                 "zinbvcp_mix"]
BUILTIN_PARAMETERIZATIONS = ["linked", "odds_ratio", "standard", "unconstrained"]


def _base(distribution):
    while isinstance(distribution, Independent | ExpandedDistribution):
        distribution = distribution.base_dist
    return distribution


# ---- registry ----------------------------------------------------------------------------------


def test_available_model_types_are_the_builtins_sorted():
    types = scribe.available_model_types()
    assert types == BUILTIN_TYPES
    assert types == sorted(types)


def test_available_parameterizations_include_the_builtins():
    found = scribe.available_parameterizations()
    assert set(BUILTIN_PARAMETERIZATIONS) <= set(found)
    assert found == sorted(found)


@pytest.mark.parametrize("model_type", BUILTIN_TYPES)
@pytest.mark.parametrize("parameterization", BUILTIN_PARAMETERIZATIONS)
def test_every_builtin_combination_is_valid(model_type, parameterization):
    n_components = 3 if model_type.endswith("_mix") else None
    cfg = scribe.ModelConfig(model_type, parameterization, n_components=n_components)
    assert cfg.is_mixture == model_type.endswith("_mix")
    assert cfg.base_model_type == model_type.removesuffix("_mix")
    assert dict(cfg.priors) == {}


# ---- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "closest"),
    [("nbdn", "nbdm"), ("zinbvpc", "zinbvcp"), ("nbdm_mixx", "nbdm_mix"), ("NBVCP", None)],
)
def test_unknown_model_type_lists_valid_names_and_closest(model_type, closest):
    with pytest.raises(ValueError, match=f"unknown model type '{model_type}'") as info:
        scribe.ModelConfig(model_type)
    message = str(info.value)
    assert "Valid choices: " + ", ".join(BUILTIN_TYPES) in message
    if closest is not None:
        assert message.endswith(f"did you mean '{closest}'?")


@pytest.mark.parametrize(
    ("parameterization", "closest"),
    [("odds_ration", "odds_ratio"), ("standart", "standard"), ("link", "linked")],
)
def test_unknown_parameterization_lists_valid_names_and_closest(parameterization, closest):
    with pytest.raises(ValueError, match=f"unknown parameterization '{parameterization}'") as info:
        scribe.ModelConfig("nbdm", parameterization)
    message = str(info.value)
    for name in BUILTIN_PARAMETERIZATIONS:
        assert name in message
    assert message.endswith(f"did you mean '{closest}'?")


# ---- mixtures ----------------------------------------------------------------------------------


def test_mixture_requires_n_components():
    with pytest.raises(ValueError, match="'zinb_mix' is a mixture: pass n_components"):
        scribe.ModelConfig("zinb_mix")


@pytest.mark.parametrize("n_components", [1, 0, -2, 2.5, 2.0, True, "3"])
def test_bad_n_components(n_components):
    with pytest.raises(ValueError, match=r"n_components must be an integer >= 2, got"):
        scribe.ModelConfig("nbdm_mix", n_components=n_components)


def test_good_n_components():
    cfg = scribe.ModelConfig("nbvcp_mix", "odds_ratio", n_components=2)
    assert cfg.n_components == 2 and cfg.is_mixture and cfg.base_model_type == "nbvcp"


@pytest.mark.parametrize("n_components", [2, 1])
def test_n_components_on_non_mixture_is_an_error(n_components):
    with pytest.raises(ValueError, match="n_components is only for mixture model types") as info:
        scribe.ModelConfig("zinb", n_components=n_components)
    assert "use 'zinb_mix'" in str(info.value)


def test_component_specific_params_on_non_mixture_is_an_error():
    with pytest.raises(ValueError, match="component_specific_params applies to mixture"):
        scribe.ModelConfig("nbdm", component_specific_params=True)
    cfg = scribe.ModelConfig("nbdm_mix", n_components=2, component_specific_params=True)
    # With component-specific p, the shared p has one value per component.
    composition = Composition(cfg)
    assert composition.value_shape(composition.sites["p"], 7) == (2,)
    assert composition.value_shape(composition.sites["r"], 7) == (2, 7)


# ---- priors: validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "parameterization", "site", "valid_sites"),
    [
        ("nbdm", "standard", "mu", "p, r"),
        ("nbdm", "linked", "r", "mu, p"),
        ("nbdm", "odds_ratio", "p", "mu, phi"),
        ("nbvcp", "odds_ratio", "p_capture", "mu, phi, phi_capture"),
        ("zinb", "unconstrained", "gate", "gate_unconstrained, p_unconstrained, r_unconstrained"),
        ("nbdm", "standard", "gate", "p, r"),
    ],
)
def test_prior_for_unknown_site_names_valid_sites(model_type, parameterization, site,
                                                  valid_sites):
    with pytest.raises(ValueError, match=f"prior given for '{site}'") as info:
        scribe.ModelConfig(model_type, parameterization, priors={site: (1.0, 1.0)})
    message = str(info.value)
    assert f"Its sampled sites: {valid_sites}" in message
    assert f"model type '{model_type}'" in message and f"'{parameterization}'" in message


def test_unknown_site_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'phi_capture'"):
        scribe.ModelConfig("nbvcp", "odds_ratio", priors={"p_capture": (1, 1)})


def test_r_is_valid_under_standard_but_mu_is_not():
    cfg = scribe.ModelConfig("nbdm", "standard", priors={"r": (0.5, 2.0)})
    assert cfg.priors["r"] == (0.5, 2.0)
    with pytest.raises(ValueError, match="prior given for 'mu'"):
        scribe.ModelConfig("nbdm", "standard", priors={"mu": (0.5, 2.0)})


@pytest.mark.parametrize(
    ("model_type", "priors", "pattern"),
    [
        ("nbdm", {"p": (1, 2, 3)}, r"prior for 'p' \(beta\) needs 2 values \(alpha, beta\), got 3"),
        ("nbdm", {"r": (1.0,)},
         r"prior for 'r' \(lognormal\) needs 2 values \(loc, scale\), got 1"),
        ("nbdm", {"p": (0, 2)}, r"prior for 'p' \(beta\): alpha=0\.0 is outside its support"),
        ("nbdm", {"p": (2, -1)}, r"prior for 'p' \(beta\): beta=-1\.0 is outside its support"),
        ("nbdm", {"p": (np.nan, 1)}, r"prior for 'p' \(beta\): alpha=nan is outside"),
        ("nbdm", {"r": (0, 0)}, r"prior for 'r' \(lognormal\): scale=0\.0 is outside"),
        ("nbdm", {"r": (0, -1)}, r"prior for 'r' \(lognormal\): scale=-1\.0 is outside"),
        ("nbdm", {"r": (np.inf, 1)}, r"prior for 'r' \(lognormal\): loc=inf is outside"),
        ("zinb", {"gate": (1, 0)}, r"prior for 'gate' \(beta\): beta=0\.0 is outside"),
        ("nbvcp", {"p_capture": (-1, 1)}, r"prior for 'p_capture' \(beta\): alpha=-1\.0"),
    ],
)
def test_prior_values_outside_support_or_wrong_count(model_type, priors, pattern):
    with pytest.raises(ValueError, match=pattern):
        scribe.ModelConfig(model_type, priors=priors)


def test_betaprime_and_normal_priors_are_checked():
    with pytest.raises(ValueError, match=r"prior for 'phi' \(betaprime\): alpha=0\.0"):
        scribe.ModelConfig("nbdm", "odds_ratio", priors={"phi": (0, 1)})
    with pytest.raises(ValueError, match=r"prior for 'p_unconstrained' \(normal\): scale=0\.0"):
        scribe.ModelConfig("nbdm", "unconstrained", priors={"p_unconstrained": (0, 0)})
    # A Normal location and a LogNormal loc may be negative.
    scribe.ModelConfig("nbdm", "unconstrained", priors={"p_unconstrained": (-3, 1)})
    scribe.ModelConfig("nbdm", priors={"r": (-3, 1)})


@pytest.mark.parametrize(
    ("priors", "pattern"),
    [
        ({"mixing_weights": (1, 1)}, r"needs 3 Dirichlet concentrations \(one per component\), "
                                     r"got 2"),
        ({"mixing_weights": (1, 1, 1, 1)}, r"needs 3 Dirichlet concentrations.*got 4"),
        ({"mixing_weights": (1, 0, 1)}, r"prior for 'mixing_weights': concentrations must be "
                                        r"positive"),
        ({"mixing_weights": (1, -2, 1)}, "concentrations must be positive"),
    ],
)
def test_dirichlet_mixing_weights_prior_checked(priors, pattern):
    with pytest.raises(ValueError, match=pattern):
        scribe.ModelConfig("zinb_mix", n_components=3, priors=priors)


def test_mixing_weights_prior_on_non_mixture_is_unknown_site():
    with pytest.raises(ValueError, match="prior given for 'mixing_weights'"):
        scribe.ModelConfig("zinb", priors={"mixing_weights": (1, 1)})


def test_scalar_prior_is_a_value_error_naming_the_site():
    with pytest.raises(ValueError, match="'p'"):
        scribe.ModelConfig("nbdm", priors={"p": 2.0})


def test_priors_must_be_a_dict():
    with pytest.raises(TypeError, match="priors must be a dict keyed by site name, got list"):
        scribe.ModelConfig("nbdm", priors=[("p", (1, 1))])


def test_fit_with_bad_priors_raises_before_any_work(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("fitting started despite invalid priors")

    monkeypatch.setattr(scribe.fitting.SVIInferenceEngine, "run_inference", must_not_run)
    monkeypatch.setattr(scribe.fitting, "prepare_counts", must_not_run)
    counts = np.ones((5, 3))
    with pytest.raises(ValueError, match="prior given for 'mu'"):
        scribe.fit(counts, "nbdm", priors={"mu": (0, 1)}, n_steps=10, progress=False)
    with pytest.raises(ValueError, match=r"scale=-1\.0 is outside"):
        scribe.fit(counts, "nbdm", "linked", priors={"mu": (0, -1)}, n_steps=10, progress=False)
    with pytest.raises(ValueError, match="needs 2 Dirichlet concentrations"):
        scribe.fit(counts, "nbdm_mix", n_components=2, priors={"mixing_weights": (1, 1, 1)},
                   n_steps=10, progress=False)


# ---- priors: accepted and used -----------------------------------------------------------------


def test_valid_priors_reach_the_composed_model_priors():
    cfg = scribe.ModelConfig("nbdm", priors={"p": (2, 5), "r": (1.5, 0.25)})
    composition = Composition(cfg)
    p_prior = composition.prior(composition.sites["p"], 4)
    assert isinstance(p_prior, Beta)
    assert float(p_prior.concentration1) == 2.0 and float(p_prior.concentration0) == 5.0
    r_prior = composition.prior(composition.sites["r"], 4)
    assert r_prior.event_shape == (4,)
    base = _base(r_prior)
    assert isinstance(base, LogNormal)
    np.testing.assert_allclose(base.loc, np.full(4, 1.5))
    np.testing.assert_allclose(base.scale, np.full(4, 0.25))
    assert validated_priors(cfg) == {"p": (2.0, 5.0), "r": (1.5, 0.25)}


def test_unset_priors_keep_defaults():
    assert validated_priors(scribe.ModelConfig("zinb", "odds_ratio", priors={"phi": (3, 2)})) \
        == {"phi": (3.0, 2.0), "mu": (0.0, 1.0), "gate": (1.0, 1.0)}


def test_priors_are_used_when_the_model_runs():
    # Trace the model itself: the sampled sites carry the user's prior arguments, the
    # per-cell capture site included.
    cfg = scribe.ModelConfig("zinbvcp", "odds_ratio",
                             priors={"phi": (3, 4), "mu": (-1, 0.5), "gate": (2, 9),
                                     "phi_capture": (5, 6)})
    # Observed counts and fixed latent values: nothing is sampled, only priors are built.
    values = {"phi": jnp.array(0.7), "mu": jnp.array([1.0, 2.0, 3.0]),
              "gate": jnp.array([0.1, 0.2, 0.3]), "phi_capture": jnp.linspace(0.5, 2.0, 5)}
    model = handlers.substitute(handlers.seed(Composition(cfg).model, 0), data=values)
    trace = handlers.trace(model).get_trace(5, 3, jnp.ones((5, 3)))
    phi = _base(trace["phi"]["fn"])
    assert isinstance(phi, BetaPrime)
    assert (float(phi.concentration1), float(phi.concentration0)) == (3.0, 4.0)
    mu = _base(trace["mu"]["fn"])
    np.testing.assert_allclose(mu.loc, -1.0)
    np.testing.assert_allclose(mu.scale, 0.5)
    gate = _base(trace["gate"]["fn"])
    np.testing.assert_allclose(gate.concentration1, 2.0)
    np.testing.assert_allclose(gate.concentration0, 9.0)
    capture = _base(trace["phi_capture"]["fn"])
    assert isinstance(capture, BetaPrime)
    np.testing.assert_allclose(capture.concentration1, 5.0)
    np.testing.assert_allclose(capture.concentration0, 6.0)
    assert trace["phi_capture"]["value"].shape == (5,)
    # And the model's log-density uses them: Beta'(3, 4) at phi = 0.7, by hand.
    expected = (3 - 1) * np.log(0.7) - (3 + 4) * np.log1p(0.7) - betaln(3, 4)
    np.testing.assert_allclose(trace["phi"]["fn"].log_prob(trace["phi"]["value"]), expected,
                               rtol=1e-5)


def test_unconstrained_normal_priors_used():
    cfg = scribe.ModelConfig("zinb", "unconstrained",
                             priors={"gate_unconstrained": (-2, 0.5)})
    composition = Composition(cfg)
    prior = _base(composition.prior(composition.sites["gate_unconstrained"], 3))
    assert isinstance(prior, Normal)
    np.testing.assert_allclose(prior.loc, -2.0)
    np.testing.assert_allclose(prior.scale, 0.5)


def test_mixing_weights_prior_is_used():
    cfg = scribe.ModelConfig("nbdm_mix", n_components=3, priors={"mixing_weights": (1, 2, 5)})
    composition = Composition(cfg)
    prior = composition.prior(composition.sites["mixing_weights"], 4)
    assert isinstance(_base(prior), Dirichlet)
    np.testing.assert_allclose(_base(prior).concentration, [1.0, 2.0, 5.0])


def test_default_mixing_weights_prior_is_flat_dirichlet():
    cfg = scribe.ModelConfig("nbdm_mix", n_components=3)
    composition = Composition(cfg)
    prior = composition.prior(composition.sites["mixing_weights"], 4)
    assert isinstance(prior, Dirichlet)
    np.testing.assert_allclose(prior.concentration, jnp.ones(3))


# ---- immutability ------------------------------------------------------------------------------


def test_config_is_frozen():
    cfg = scribe.ModelConfig("nbdm", priors={"p": (2, 2)})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.model_type = "zinb"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.n_components = 3
    with pytest.raises(TypeError):
        cfg.priors["r"] = (0, 1)
    assert cfg.model_type == "nbdm" and dict(cfg.priors) == {"p": (2, 2)}


def test_user_priors_dict_is_not_modified():
    priors = {"p": [2, 5], "r": (0.0, 1.0)}
    before = copy.deepcopy(priors)
    cfg = scribe.ModelConfig("nbdm", priors=priors)
    assert priors == before
    assert isinstance(priors["p"], list)
    priors["p"].append(7)  # later edits by the user do not reach the config
    priors["extra"] = (1, 1)
    assert dict(cfg.priors) == {"p": (2, 5), "r": (0.0, 1.0)}


def test_user_priors_not_modified_by_failed_validation():
    priors = {"p": [2, 5], "mu": [0, 1]}
    before = copy.deepcopy(priors)
    with pytest.raises(ValueError):
        scribe.ModelConfig("nbdm", priors=priors)
    assert priors == before


def test_to_dict_round_trip():
    cfg = scribe.ModelConfig("zinb_mix", "linked", n_components=3, priors={"p": (2, 2)},
                             component_specific_params=True)
    data = cfg.to_dict()
    assert data == {"model_type": "zinb_mix", "parameterization": "linked", "n_components": 3,
                    "priors": {"p": [2, 2]}, "component_specific_params": True,
                    "mrna_per_cell": None, "mrna_log_sd": 0.3,
                    "guide_family": "joint_gene", "empirical_priors": []}
    assert scribe.ModelConfig(**data) == cfg
