"""Compositional differential expression (``results.differential_expression``).

Fast tests use fixed concentrations: every posterior draw of ``r`` the same, so ``Delta``
is a difference of CLR-transformed log-Gamma vectors with closed-form moments,
``E[log gamma] = psi(r)``, ``Var[log gamma] = psi'(r)``. The recovery test on fits to
simulated conditions is ``slow``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.special import polygamma, psi
from test_results import make_results

import scribe
from scribe.svi import de

G, S = 6, 4000


def clr_moments(r_a: np.ndarray, r_b: np.ndarray):
    """Mean and sd of ``Delta_g`` for fixed concentrations (independent Gammas)."""
    n = r_a.size
    mean = (psi(r_a) - psi(r_a).mean()) - (psi(r_b) - psi(r_b).mean())

    def clr_var(r):
        v = polygamma(1, r)
        return v * (1 - 2 / n) + v.sum() / n**2

    return mean, np.sqrt(clr_var(r_a) + clr_var(r_b))


def test_clr_differences_match_closed_form():
    """Mean within 5 standard errors (sd / sqrt(S)); sd within 5 relative standard errors
    of a sample sd, ``1 / sqrt(2 (S - 1))`` (near-normal draws: r >= 5)."""
    rng = np.random.default_rng(0)
    r_a = rng.uniform(5, 50, G)
    r_b = r_a * np.array([4.0, 0.25, 1, 1, 1, 1])
    delta = np.asarray(de.clr_differences(
        jax.random.PRNGKey(0), jnp.tile(jnp.asarray(r_a, jnp.float32), (S, 1)),
        jnp.tile(jnp.asarray(r_b, jnp.float32), (S, 1))))
    mean, sd = clr_moments(r_a, r_b)
    assert np.all(np.abs(delta.mean(0) - mean) < 5 * sd / np.sqrt(S))
    assert np.all(np.abs(delta.std(0, ddof=1) / sd - 1) < 5 / np.sqrt(2 * (S - 1)))


@pytest.mark.parametrize("rule", ["directional", "magnitude"])
def test_pefp_call_rule(rule):
    """Genes ranked by their evidence; the largest prefix whose mean of
    (1 - evidence) is <= target is called. Hand-computed: 0.01, 0.015, 0.0433, 0.1575.
    Every effect here has one sign, so both rules agree."""
    probabilities = np.array([0.5, 0.99, 0.1, 0.9, 0.98])
    # S = 100 draws per gene with exactly that fraction beyond tau = 1.
    delta = np.where(np.arange(100)[:, None] < probabilities * 100, 2.0, -0.5)
    columns, pefp = de.summarize(delta, tau=1.0, target_pefp=0.05, rule=rule)
    np.testing.assert_allclose(columns["prob_effect"], probabilities)
    np.testing.assert_allclose(columns["prob_signed_effect"], probabilities)
    np.testing.assert_array_equal(columns["is_de"], [False, True, False, True, True])
    assert pefp == pytest.approx((0.01 + 0.02 + 0.1) / 3)
    np.testing.assert_allclose(columns["lfsr"], np.minimum(probabilities, 1 - probabilities))


def test_directional_rule_skips_undetermined_signs():
    """Gene 0: half the draws at +3, half at -3 (|Delta| > tau always, sign a coin flip);
    gene 1: every draw at +3. The magnitude rule (SPEC's literal rule) calls both with
    evidence 1; the directional rule gives gene 0 evidence 0.5 and calls only gene 1."""
    delta = np.column_stack([np.where(np.arange(100) % 2 == 0, 3.0, -3.0), np.full(100, 3.0)])
    columns, _ = de.summarize(delta, tau=1.0, target_pefp=0.05, rule="magnitude")
    np.testing.assert_array_equal(columns["is_de"], [True, True])
    columns, pefp = de.summarize(delta, tau=1.0, target_pefp=0.05, rule="directional")
    np.testing.assert_allclose(columns["prob_signed_effect"], [0.5, 1.0])
    np.testing.assert_array_equal(columns["is_de"], [False, True])
    assert pefp == 0.0


def _draws(r: np.ndarray, n_components=None) -> dict:
    rng = np.random.default_rng(1)
    n = r.shape[0]
    draws = {"p": rng.uniform(0.3, 0.6, n), "r": r}
    if n_components:
        draws["mixing_weights"] = rng.dirichlet(np.ones(n_components), n)
    return {k: jnp.asarray(v, jnp.float32) for k, v in draws.items()}


@pytest.fixture(scope="module")
def groups():
    """A 2-component mixture and two single fits with the same (fixed) r draws."""
    base = np.array([400.0, 300, 500, 800, 200, 600])
    fold = np.array([3.0, 1 / 3, 1, 1, 1, 1])
    n = 400
    r_a, r_b = np.tile(base, (n, 1)), np.tile(base / fold, (n, 1))
    mixture = make_results("nbdm_mix", "standard", 2, n_genes=G,
                           posterior_samples=_draws(np.stack([r_a, r_b], 1), 2))
    fit_a = make_results("nbdm", n_genes=G, posterior_samples=_draws(r_a))
    fit_b = make_results("nbdm", n_genes=G, posterior_samples=_draws(r_b), seed=1)
    return mixture, fit_a, fit_b, fold


def test_components_and_fits_recover_fold_changes(groups):
    """With r in the hundreds the Dirichlet noise is small (sd ~ 0.1), so the calls are
    exactly the two changed genes, with their signs, and lfc_mean is the CLR of the fold
    changes within 5 standard errors."""
    mixture, fit_a, fit_b, fold = groups
    tau = math.log(1.5)
    by_component = mixture.differential_expression(0, 1, n_samples=None, tau=tau)
    by_fits = fit_a.differential_expression(fit_b, n_samples=None,
                                            rng_key=jax.random.PRNGKey(3))
    by_tl = scribe.tl.differential_expression(fit_a, fit_b, n_samples=None)
    expected = np.log(fold) - np.log(fold).mean()
    for frame in (by_component, by_fits, by_tl):
        assert isinstance(frame, pd.DataFrame)
        assert list(frame.columns) == list(de.COLUMNS)
        np.testing.assert_array_equal(frame["is_de"], [True, True, False, False, False, False])
        n_draws = frame.attrs["n_samples"]
        assert n_draws == 400
        assert np.all(np.abs(frame["lfc_mean"] - expected) < 5 * frame["lfc_sd"] / np.sqrt(n_draws))
        assert frame["lfc_mean"].iloc[0] > 0 > frame["lfc_mean"].iloc[1]
        assert frame.attrs["pefp"] <= 0.05 and frame.attrs["tau"] == pytest.approx(tau)
    assert by_component.attrs["group_a"] == "component 0"


def test_bad_groups(groups):
    mixture, fit_a, fit_b, _ = groups
    with pytest.raises(ValueError, match="same group"):
        mixture.differential_expression(1, 1, n_samples=None)
    with pytest.raises(ValueError, match="out of range"):
        mixture.differential_expression(0, 2, n_samples=None)
    with pytest.raises(ValueError, match="not a mixture"):
        fit_a.differential_expression(0, 1, n_samples=None)
    with pytest.raises(TypeError, match="group_b"):
        mixture.differential_expression(0, "b", n_samples=None)
    with pytest.raises(ValueError, match="group_b is missing"):
        mixture.differential_expression(0)
    with pytest.raises(ValueError, match="component"):
        fit_a.differential_expression(mixture, n_samples=None)
    other = make_results("nbdm", n_genes=G + 1)
    with pytest.raises(ValueError, match="different genes"):
        fit_a.differential_expression(other, n_samples=None)
    with pytest.raises(ValueError, match="tau"):
        mixture.differential_expression(0, 1, tau=-1.0)
    with pytest.raises(ValueError, match="target_pefp"):
        mixture.differential_expression(0, 1, target_pefp=1.5)
    with pytest.raises(ValueError, match="rule must be one of"):
        mixture.differential_expression(0, 1, rule="fdr")
    with pytest.raises(ValueError, match="stored posterior samples"):
        make_results("nbdm_mix", "standard", 2, n_genes=G).differential_expression(
            0, 1, n_samples=None)
