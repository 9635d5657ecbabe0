"""Collapsed mixture components (scribe.svi.collapse) and NaN MAP assignments.

Constructed posteriors with known truth: which components are empty or indistinguishable
is set by hand, and the distances are checked against their closed forms.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from numpyro.distributions import Beta

import scribe
from scribe.compose import validated_priors
from scribe.config import ModelConfig
from scribe.svi.assignment_nan import warn_nan_probabilities
from scribe.svi.collapse import (
    INDISTINGUISHABLE_Z,
    detect_collapse,
    unconstrained_moments,
)
from scribe.svi.results import ScribeSVIResults

C, G, K = 1000, 400, 3
SD = 0.1      # posterior sd of every log r


def _results(r_loc, concentrations, p_alpha=60.0, p_beta=40.0, n_cells=C):
    """nbdm_mix results (mean-field) with the given factors."""
    config = ModelConfig(model_type="nbdm_mix", n_components=K)
    params = {"r_loc": np.asarray(r_loc, np.float32),
              "r_scale": np.full(np.shape(r_loc), SD, np.float32),
              "p_alpha": np.float32(p_alpha), "p_beta": np.float32(p_beta),
              "mixing_concentrations": np.asarray(concentrations, np.float32)}
    return ScribeSVIResults(n_cells=n_cells, n_genes=np.shape(r_loc)[1],
                            model_type="nbdm_mix", params=params,
                            loss_history=np.zeros(3), model_config=config,
                            prior_params=validated_priors(config), n_components=K)


def _r_loc(seed=0):
    """Components 0 and 1 estimate the same log r (independent errors of sd SD, the
    posterior's); component 2's log r is 1 higher on every gene."""
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 1.0, G)
    return np.stack([m + SD * rng.normal(size=G), m + SD * rng.normal(size=G), m + 1.0])


def test_indistinguishable_pair_is_found_with_its_closed_form_distance():
    r_loc = _r_loc()
    # Weights: the prior Dirichlet(1) plus 300, 300, 400 cells (sum C + K).
    res = _results(r_loc, [301.0, 301.0, 401.0])
    found = detect_collapse(res)
    # D_kj = mean_g (m_k - m_j)^2 / (s_k^2 + s_j^2) for LogNormal factors, exactly.
    for k, j in [(0, 1), (0, 2), (1, 2)]:
        expected = np.mean((r_loc[k] - r_loc[j]) ** 2 / (2 * SD**2))
        assert found.distance[k, j] == pytest.approx(expected, rel=1e-4)
    # Equal truths: D ~ chi2_G / G (mean 1, sd sqrt(2/G) = 0.071); below the threshold
    # 1 + 3.1 * 0.071 with probability 0.999. Component 2 differs by 1 / (0.1 sqrt 2)
    # = 7.1 sd on every gene: D ~ 50 (+1 from the noise).
    assert found.threshold == pytest.approx(1 + INDISTINGUISHABLE_Z * np.sqrt(2 / G))
    assert found.distance[0, 1] <= found.threshold
    assert 45 < found.distance[0, 2] < 56 and 45 < found.distance[1, 2] < 56
    assert found.indistinguishable == ((0, 1),) and found.empty == ()
    # Cells each component explains: the concentrations minus the prior's pseudo-count.
    np.testing.assert_allclose(found.expected_cells, [300, 300, 400], rtol=1e-5)
    message = found.message(K)
    assert "components 0 and 1 are indistinguishable" in message and "empty" not in message


def test_empty_component_is_found_and_excluded_from_pairs():
    r_loc = _r_loc()
    r_loc[1] = r_loc[0] - 2.0            # all three distinct
    # Component 2 holds 0.2 cells' worth beyond its prior pseudo-count of 1.
    res = _results(r_loc, [500.4 + 1, 499.4 + 1, 1.2])
    found = detect_collapse(res)
    np.testing.assert_allclose(found.expected_cells, [500.4, 499.4, 0.2], atol=1e-3)
    assert found.empty == (2,) and found.indistinguishable == ()
    assert "component 2 is empty (0.2 expected cells)" in found.message(K)


def test_distinct_populated_components_are_not_collapsed():
    r_loc = _r_loc()
    r_loc[1] = r_loc[0] - 2.0
    found = detect_collapse(_results(r_loc, [301.0, 301.0, 401.0]))
    assert not found.collapsed and found.message(K) is None


@pytest.mark.parametrize("a, b", [(0.7, 3.0), (4.0, 2.5)])
def test_beta_unconstrained_moments_against_quadrature(a, b):
    mean, sd = unconstrained_moments(Beta(np.float32(a), np.float32(b)))
    density = scipy.stats.beta(a, b).pdf

    def logit(x):
        return np.log(x) - np.log1p(-x)

    m1 = scipy.integrate.quad(lambda x: logit(x) * density(x), 0, 1)[0]
    m2 = scipy.integrate.quad(lambda x: logit(x) ** 2 * density(x), 0, 1)[0]
    assert float(mean) == pytest.approx(m1, rel=1e-4, abs=1e-5)
    assert float(sd) == pytest.approx(np.sqrt(m2 - m1**2), rel=1e-4)


def test_collapse_record_survives_save_and_load(tmp_path):
    res = _results(_r_loc(), [301.0, 301.0, 401.0])
    assert res.collapse is None and res.collapsed is None      # not recorded
    res._set_collapse(detect_collapse(res))
    assert res.collapse == {"empty": [], "indistinguishable": [[0, 1]]} and res.collapsed
    res.save(tmp_path / "fit.nc")
    loaded = scribe.load(tmp_path / "fit.nc")
    assert loaded.collapse == res.collapse and loaded.collapsed is True
    res._set_collapse(None)
    assert res.collapse is None


def _two_population_counts(seed=3, n_cells=200, n_genes=30):
    """nbdm_mix counts of two populations whose r differ by exp(+-1.5) on every gene."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.5, 0.5, n_genes)
    r = np.stack([base * np.exp(1.5), base * np.exp(-1.5)])
    labels = rng.integers(0, 2, n_cells)
    # numpy's p is NumPyro's 1 - p: NumPyro p = 0.6.
    return rng.negative_binomial(r[labels], 0.4).astype(np.float32), labels


def test_cell_type_probabilities_map_warns_on_undefined_modes():
    counts, labels = _two_population_counts()
    rng = np.random.default_rng(0)
    base = np.log(rng.lognormal(0.5, 0.5, 30))
    # The p factor Beta(0.8, 0.6) has no interior mode: get_map() is NaN for p, so every
    # cell's MAP probabilities are NaN (the zinbvcp_mix benchmark's "ARI 0").
    config = ModelConfig(model_type="nbdm_mix", n_components=2)
    r_loc = np.stack([base + 1.5, base - 1.5]).astype(np.float32)
    params = {"r_loc": r_loc, "r_scale": np.full_like(r_loc, 0.05),
              "p_alpha": np.float32(0.8), "p_beta": np.float32(0.6),
              "mixing_concentrations": np.float32([100, 100])}
    res = ScribeSVIResults(n_cells=200, n_genes=30, model_type="nbdm_mix", params=params,
                           loss_history=np.zeros(3), model_config=config,
                           prior_params=validated_priors(config), n_components=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probabilities = np.asarray(res.cell_type_probabilities_map(
            counts, verbose=False)["probabilities"])
    assert np.isnan(probabilities).all()
    assert any("cell-type probabilities are NaN for 200 of 200 cells" in str(w.message)
               and "use_mean=True" in str(w.message) for w in caught)
    # At the means (p = 0.57) the components' r differ by a factor e^3 on 30 genes:
    # the assignment is certain for every cell (the data's own labels, up to relabelling).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probabilities = np.asarray(res.cell_type_probabilities_map(
            counts, verbose=False, use_mean=True)["probabilities"])
    assert not any("cell-type probabilities are NaN" in str(w.message) for w in caught)
    assigned = probabilities.argmax(1)
    assert (assigned == labels).all() or (assigned == 1 - labels).all()


def test_warn_nan_probabilities_counts_rows():
    probabilities = np.array([[0.5, 0.5], [np.nan, np.nan], [1.0, 0.0]])
    with pytest.warns(RuntimeWarning, match="NaN for 1 of 3 cells"):
        warn_nan_probabilities(probabilities, use_mean=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_nan_probabilities(probabilities[[0, 2]], use_mean=False)


def _fit_messages(counts, k, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = scribe.fit(counts, "nbdm_mix", n_components=k, progress=False, seed=0,
                         **kwargs)
    return res, [str(w.message) for w in caught if w.category is RuntimeWarning]


def test_fit_records_no_collapse_for_distinct_components():
    # The session's shared nbvcp_mix fit (K = 2, two simulated populations): recorded by
    # scribe.fit, nothing collapsed (its components' r differ by exp(N(0, 1.5)) per gene).
    from tests._tiny_fits import capture_mixture_fit

    res, _ = capture_mixture_fit()
    assert res.collapse == {"empty": [], "indistinguishable": []} and res.collapsed is False


@pytest.mark.slow
def test_fit_warns_when_a_component_empties():
    # Two populations fitted with three components: one component must end empty (or
    # duplicate another); Adam(3e-2) gets there in ~15,000 steps instead of ~35,000.
    from numpyro.optim import Adam

    counts, _ = _two_population_counts()
    res, messages = _fit_messages(counts, 3, optimizer=Adam(3e-2))
    assert res.collapsed is True
    assert len(res.collapse["empty"]) + len(res.collapse["indistinguishable"]) >= 1
    assert any(m.startswith("mixture components collapsed") for m in messages)


@pytest.mark.slow
def test_zinbvcp_mix_defaults_keep_their_components():
    # The benchmark's "collapse" at 2,000 x 500 (docs/benchmarks.md, "zinbvcp_mix: no
    # collapse"): after 2,000 steps of the defaults some gate and capture factors have no
    # interior mode, so the MAP probabilities are NaN for every cell (argmax: all in
    # component 0, ARI 0), while the components are intact: at the means every cell is
    # assigned correctly and nothing collapsed.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from time_to_fit import SIMULATION, adjusted_rand_index

    from scribe.simulate import simulate_counts

    counts, truth = simulate_counts("zinbvcp_mix", 2000, 500, n_components=3, seed=0,
                                    **SIMULATION["capture"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scribe.fit(counts, "zinbvcp_mix", n_components=3, n_steps=2000, tol=None,
                         progress=False, batch_size="auto")
    assert res.collapsed is False
    with pytest.warns(RuntimeWarning, match="cell-type probabilities are NaN"):
        at_modes = np.asarray(res.cell_type_probabilities_map(
            counts, verbose=False)["probabilities"])
    assert np.isnan(at_modes).any()
    at_means = np.asarray(res.cell_type_probabilities_map(
        counts, verbose=False, use_mean=True)["probabilities"])
    # Components whose r differ by exp(N(0, 1.5)) on 500 genes: every cell's assignment
    # is certain (trajectory: ARI 1.000 at every 1,000 steps to 12,000).
    assert adjusted_rand_index(truth["assignment"], at_means.argmax(1)) > 0.99
