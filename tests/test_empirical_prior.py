"""The data-informed prior of r (or mu) that scribe.fit sets (scribe.empirical_prior).

Values are checked against the closed form of the rule: loc and scale are the mean and the
(population) standard deviation over expressed genes of log r0, the method-of-moments r
(mu0 = r0 p0 / (1 - p0) for linked and odds_ratio; log r0 itself for unconstrained).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import scribe
from scribe.compose import Composition
from scribe.empirical_prior import (
    MIN_GENES,
    MIN_SCALE,
    empirical_gene_prior,
    with_empirical_prior,
)
from scribe.initial_values import initial_canonical
from scribe.plugins import lookup_model_type
from scribe.simulate import simulate_counts

R = np.exp(np.linspace(-3.0, 1.0, 40))          # log r evenly spaced: sd known
P = 0.6


def _guess(r=R, p=P):
    return {"p": np.float64(p), "r": np.asarray(r, float), "_gate": np.zeros_like(r)}


@pytest.mark.parametrize("parameterization,site,shift", [
    ("standard", "r", 0.0),
    ("linked", "mu", np.log(P / (1 - P))),      # mu = r p / (1 - p)
    ("odds_ratio", "mu", np.log(P / (1 - P))),
    ("unconstrained", "r_unconstrained", 0.0),   # a Normal on log r
])
def test_rule_matches_closed_form(parameterization, site, shift):
    config = scribe.ModelConfig("nbdm", parameterization)
    prior = empirical_gene_prior(Composition(config), _guess())
    log_r = np.log(R)
    expected = (log_r.mean() + shift, np.sqrt(np.mean((log_r - log_r.mean()) ** 2)))
    assert list(prior) == [site]
    # The block maps in JAX's float32: agreement to float32 rounding.
    np.testing.assert_allclose(prior[site], expected, rtol=1e-6)


def test_unexpressed_genes_are_left_out_and_scale_has_a_floor():
    # Genes without counts sit at the 1e-3 floor of the starting values: not genes' r.
    r = np.concatenate([np.full(30, 0.2), np.full(10, 1e-3)])
    prior = empirical_gene_prior(Composition(scribe.ModelConfig("nbdm")), _guess(r))
    assert prior == {"r": (pytest.approx(np.log(0.2), rel=1e-12), MIN_SCALE)}


def test_too_few_genes_or_a_user_prior_keep_the_given_prior():
    few = empirical_gene_prior(Composition(scribe.ModelConfig("nbdm")),
                               _guess(R[:MIN_GENES - 1]))
    user = empirical_gene_prior(
        Composition(scribe.ModelConfig("nbdm", priors={"r": (0.0, 1.0)})), _guess())
    assert few == {} and user == {}


def test_mixture_pools_components():
    r = np.stack([R, 3 * R])                     # (K, G)
    config = scribe.ModelConfig("nbdm_mix", n_components=2)
    prior = empirical_gene_prior(Composition(config), _guess(r))
    log_r = np.log(r).ravel()
    np.testing.assert_allclose(prior["r"], (log_r.mean(), log_r.std()), rtol=1e-12)


def test_fit_records_the_rule_and_saves_it(tmp_path):
    # One fit (its compile dominates the test's time); the rule's values are above.
    counts, _ = simulate_counts("nbdm", 300, 60, r_loc=-1.0, seed=4)
    counts = sp.csr_matrix(counts.astype(np.float32))
    before = counts.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # the short step cap
        results = scribe.fit(counts, "nbdm", n_steps=5, progress=False, seed=3)
    guess = initial_canonical(counts, lookup_model_type("nbdm").likelihood, None, False, 3)
    log_r = np.log(guess["r"][guess["r"] > 1e-3])
    config = results.model_config
    assert config.empirical_priors == ("r",)
    np.testing.assert_allclose(config.priors["r"], (log_r.mean(), log_r.std()), rtol=1e-6)
    np.testing.assert_allclose(results.prior_params["r"], config.priors["r"], rtol=1e-6)
    assert (counts != before).nnz == 0                       # input untouched
    path = tmp_path / "fit.nc"
    results.save(path)
    loaded = scribe.load(path).model_config
    assert loaded.empirical_priors == ("r",)
    np.testing.assert_allclose(loaded.priors["r"], config.priors["r"])


def test_user_prior_wins():
    config = scribe.ModelConfig("nbdm", priors={"r": (0.0, 1.0)})
    assert with_empirical_prior(config, _guess()) is config
    plain = with_empirical_prior(scribe.ModelConfig("nbdm", priors={"p": (2, 2)}), _guess())
    assert plain.empirical_priors == ("r",) and tuple(plain.priors["p"]) == (2, 2)


def test_empirical_priors_must_name_a_given_prior():
    with pytest.raises(ValueError, match="empirical_priors"):
        scribe.ModelConfig("nbdm", empirical_priors=("r",))
