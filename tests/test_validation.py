"""Argument validation (issue 12, items 5 and 7): every bad value is a TypeError or
ValueError naming the argument, raised before any data are prepared or training starts."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
import scipy.stats as st
from numpyro.infer import Trace_ELBO, TraceMeanField_ELBO
from numpyro.optim import Adam

import scribe
from scribe import validation
from scribe.compose import Composition
from scribe.config import ModelConfig
from scribe.svi.engine import SVIInferenceEngine

C, G = 40, 12
RNG = np.random.default_rng(3)
COUNTS = RNG.negative_binomial(4, 0.5, size=(C, G)).astype(np.float32)
COUNTS[:, 0] += 1   # no all-zero gene: no data warning in these tests

BAD_INTS = [None, 2.7, "10", True, np.float64(3.0)]
ERRORS = (TypeError, ValueError)


# ---- the checkers ------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1] + BAD_INTS)
def test_positive_int_refuses(value):
    with pytest.raises(ERRORS, match="n_samples"):
        validation.check_positive_int("n_samples", value)


@pytest.mark.parametrize("value", [1, np.int64(7), np.uint8(3)])
def test_positive_int_accepts_numpy_integers(value):
    out = validation.check_positive_int("n", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", ["abc", None, 2**70, -1, 2**32, 1.5, True])
def test_seed_refuses(value):
    with pytest.raises(ERRORS, match="seed"):
        validation.check_seed("seed", value)


@pytest.mark.parametrize("value", [0, 2**32 - 1, np.int32(5)])
def test_seed_accepts_the_uint32_range(value):
    assert validation.check_seed("seed", value) == int(value)
    jax.random.PRNGKey(validation.check_seed("seed", value))   # and JAX takes it


def test_bool_choice_float_key_checkers():
    with pytest.raises(TypeError, match="flag"):
        validation.check_bool("flag", 1)
    assert validation.check_bool("flag", np.bool_(True)) is True
    with pytest.raises(ValueError, match="point.*'mode', 'mean'"):
        validation.check_choice("point", "median", ("mode", "mean"))
    with pytest.raises(ValueError, match="tol"):
        validation.check_finite_float("tol", float("nan"))
    with pytest.raises(TypeError, match="rng_key"):
        validation.check_rng_key("rng_key", 42)
    validation.check_rng_key("rng_key", jax.random.PRNGKey(0))
    validation.check_rng_key("rng_key", jax.random.key(0))


def test_loss_and_optimizer_checkers():
    with pytest.raises(TypeError, match=r"loss.*TraceMeanField_ELBO\(\), not the class"):
        validation.check_loss("loss", TraceMeanField_ELBO)
    with pytest.raises(TypeError, match="loss"):
        validation.check_loss("loss", "elbo")
    validation.check_loss("loss", Trace_ELBO())
    with pytest.raises(TypeError, match="optimizer"):
        validation.check_optimizer("optimizer", 0.01)
    validation.check_optimizer("optimizer", Adam(1e-3))


# ---- scribe.fit: refused before the data are read ------------------------------------
class Exploding:
    """Data that fail loudly if ``fit`` reads them: argument checks must come first."""

    shape = (C, G)

    def __array__(self, *args, **kwargs):
        raise AssertionError("the data were read before the arguments were checked")


FIT_BAD = [("seed", v) for v in ["abc", None, 2**70, -3, 1.0, True]] + \
    [("n_steps", v) for v in [None, 2.7, 0, -5, True, "100"]] + \
    [("batch_size", v) for v in [0, 2.5, True, "8"]] + \
    [("loss", v) for v in ["elbo", TraceMeanField_ELBO]] + \
    [("optimizer", v) for v in ["adam", 0.01]] + \
    [("stable_update", v) for v in ["yes", 1]] + \
    [("progress", v) for v in [None]] + \
    [("store_counts", v) for v in [0]] + \
    [("component_specific_params", v) for v in ["no"]]


@pytest.mark.parametrize("name,value", FIT_BAD)
@pytest.mark.parametrize("model_type", ["nbdm", "nbdm_mix"])
def test_fit_refuses_before_reading_data(name, value, model_type):
    # The same error whether or not the model is a mixture (k-means never runs).
    extra = {"n_components": 2} if model_type.endswith("_mix") else {}
    with pytest.raises(ERRORS, match=name):
        scribe.fit(Exploding(), model_type, **extra, **{name: value})


def test_more_components_than_cells_is_an_error():
    with pytest.raises(ValueError, match=r"n_components=6 exceeds the number of cells \(5\)"):
        scribe.fit(COUNTS[:5], "nbdm_mix", n_components=6, n_steps=10, progress=False)


ENGINE_BAD = [("n_steps", 2.7), ("n_steps", None), ("seed", "abc"), ("seed", 2**70),
              ("loss", "elbo"), ("optimizer", None), ("stable_update", "no"),
              ("n_cells", 0), ("batch_size", 2.5)]


@pytest.mark.parametrize("name,value", ENGINE_BAD)
def test_engine_refuses(name, value):
    config = ModelConfig("nbdm")
    kwargs = {"n_cells": C, "n_genes": G, name: value}
    with pytest.raises(ERRORS, match=name):
        SVIInferenceEngine.run_inference(config, COUNTS, **kwargs)


# ---- per-gene prior arrays ---------------------------------------------------------------
def test_per_gene_prior_is_the_sum_of_per_gene_lognormals():
    loc, scale = np.linspace(-1, 1, G), np.linspace(0.5, 2, G)
    composition = Composition(ModelConfig("nbdm", priors={"r": (loc, scale)}))
    r = np.exp(RNG.normal(size=G)).astype(np.float32)
    prior = composition.prior(composition.sites["r"], G)
    expected = st.lognorm(s=scale, scale=np.exp(loc)).logpdf(r).sum()
    assert float(prior.log_prob(r)) == pytest.approx(expected, rel=1e-5)


def test_per_gene_prior_array_equal_to_the_scalar_is_the_same_prior():
    r = np.exp(RNG.normal(size=(3, G))).astype(np.float32)
    densities = []
    for prior in ((0.5, 2.0), (np.full(G, 0.5), np.full(G, 2.0))):
        composition = Composition(ModelConfig("nbdm", priors={"r": prior}))
        densities.append(np.asarray(composition.prior(composition.sites["r"], G).log_prob(r)))
    np.testing.assert_array_equal(densities[0], densities[1])


def test_fit_with_per_gene_prior_runs_and_saves(tmp_path):
    loc = np.linspace(0.0, 1.0, G)
    res = scribe.fit(COUNTS, priors={"r": (loc, 2.0)}, n_steps=5, tol=None, progress=False)
    assert np.all(np.isfinite(np.asarray(res.params["r_loc"])))
    res.save(tmp_path / "fit.nc")
    back = scribe.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(back.prior_params["r"][0], loc)
    assert back.model_config == res.model_config


@pytest.mark.parametrize("shape", [(G - 1,), (2, G), (G, 1)])
def test_per_gene_prior_of_the_wrong_shape_names_the_expected_one(shape):
    pattern = rf"prior for 'r'.*loc has shape {re.escape(str(shape))}.*\({G},\)"
    with pytest.raises(ValueError, match=pattern):
        scribe.fit(COUNTS, priors={"r": (np.zeros(shape), 1.0)}, n_steps=5, progress=False)


def test_prior_array_out_of_support_names_the_element():
    scale = np.ones(G)
    scale[4] = -1.0
    with pytest.raises(ValueError, match=r"scale=-1.0 \(at index \(4,\)\)"):
        ModelConfig("nbdm", priors={"r": (0.0, scale)})


def test_prior_arrays_are_copied_and_compared_by_value():
    loc = np.zeros(G)
    config = ModelConfig("nbdm", priors={"r": (loc, 1.0)})
    loc[0] = 5.0   # the caller's array changes later; the configuration must not
    assert config.priors["r"][0][0] == 0.0
    assert config == ModelConfig("nbdm", priors={"r": (np.zeros(G), 1.0)})
    assert config != ModelConfig("nbdm", priors={"r": (np.ones(G), 1.0)})
    assert ModelConfig.from_dict(config.to_dict()) == config
