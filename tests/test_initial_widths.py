"""Initial widths of the capture models' gene and cell factors (``scribe.initial_widths``):
the Laplace information against finite differences of scipy's NB log-likelihood, and the
factors' widths against the variance they were asked for, through every parameterization.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import special, stats

from scribe import ModelConfig
from scribe.cell_blocks import open_counts
from scribe.compose import Composition
from scribe.counts import LARGE_COUNT
from scribe.counts_stream import stream_counts
from scribe.families import BETA, BETA_PRIME, LOG_NORMAL, LOGIT_NORMAL
from scribe.initial_values import _library, _log_normalised, initial_canonical, kmeans
from scribe.initial_widths import (
    CountTally,
    concentration_for_variance,
    entry_rows,
    laplace_log_variances,
    variance_for_concentration,
    zero_inflated_log_variances,
)
from scribe.plugins import lookup_model_type
from scribe.simulate import simulate_counts


def test_entry_rows_matches_a_search_per_entry():
    matrix = sp.random(60, 9, density=0.2, format="csr", random_state=1)
    matrix = sp.csr_matrix(matrix.multiply(np.arange(60)[:, None] % 4 != 0))  # empty rows
    indptr = matrix.indptr.astype(np.int64)
    expected = np.searchsorted(indptr, np.arange(matrix.nnz), side="right") - 1
    parts = [slice(0, matrix.nnz), slice(5, 5)] + [
        slice(a, min(a + 7, matrix.nnz)) for a in range(0, matrix.nnz, 7)]
    for part in parts:
        np.testing.assert_array_equal(entry_rows(indptr, part), expected[part])


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    n_cells, n_genes = 40, 6
    r = rng.uniform(0.2, 3.0, n_genes)
    odds = rng.uniform(0.05, 2.0, n_cells)
    # NumPyro NB(r, p_hat) is scipy nbinom(r, 1 - p_hat); p_hat = odds / (1 + odds).
    x = rng.negative_binomial(r[None, :], 1 / (1 + odds[:, None])).astype(np.float64)
    x[:3, :2] = [[70, 0], [150, 3], [64, 63]]   # counts past the module's tally grid (64)
    return x, r, odds


def _tally(x, labels, n_groups):
    return CountTally.from_csr(sp.csr_matrix(x), labels, n_groups * x.shape[1])


def _loglik(x, r, odds):
    return stats.nbinom.logpmf(x, r[None, :], 1 / (1 + odds[:, None]))


def test_gene_information_matches_finite_differences(small):
    x, r, odds = small
    out = laplace_log_variances(_tally(x, None, 1), r, odds, x.sum(axis=1), None)
    # With u = log r: d2l/du2 - dl/du = r^2 l''(r), the information the module uses
    # (the score term vanishes at the optimum). Central differences with h = 1e-3 in
    # float64: truncation error O(h^2 |l''''|) ~ 1e-6 relative, rounding ~1e-16 l / h^2
    # ~ 1e-8, so rtol 1e-4 has a wide margin.
    h = 1e-3
    for g in range(x.shape[1]):
        def total(u, g=g):
            rr = r.copy()
            rr[g] = np.exp(u)
            return _loglik(x, rr, odds)[:, g].sum()
        u = np.log(r[g])
        second = (total(u + h) - 2 * total(u) + total(u - h)) / h**2
        first = (total(u + h) - total(u - h)) / (2 * h)
        information = -(second - first)
        np.testing.assert_allclose(1 / out["r"][g] - 1.0, information, rtol=1e-4)


def test_cell_information_matches_finite_differences(small):
    x, r, odds = small
    out = laplace_log_variances(_tally(x, None, 1), r, odds, x.sum(axis=1), None)
    # eta = log odds: the cell's NB log-likelihood is exactly L log p_hat + R log(1 - p_hat)
    # plus eta-free terms, so its second derivative is exact at any eta.
    h = 1e-3
    def total(eta):
        return _loglik(x, r, np.exp(eta)).sum(axis=1)
    eta = np.log(odds)
    second = (total(eta + h) - 2 * total(eta) + total(eta - h)) / h**2
    np.testing.assert_allclose(1 / out["capture"], -second, rtol=1e-4)


def test_mixture_groups_use_their_own_r(small):
    x, r, odds = small
    labels = np.arange(x.shape[0]) % 2
    rs = np.stack([r, 2 * r])
    out = laplace_log_variances(_tally(x, labels, 2), rs, odds, x.sum(axis=1), labels)
    for k in range(2):
        alone = laplace_log_variances(_tally(x[labels == k], None, 1), rs[k],
                                      odds[labels == k], x[labels == k].sum(axis=1), None)
        np.testing.assert_allclose(out["r"][k], alone["r"], rtol=1e-10)
        np.testing.assert_allclose(out["capture"][labels == k], alone["capture"], rtol=1e-10)


def test_streamed_histogram_gives_the_same_widths(small):
    # One pass keeps (gene, min(x, 16)) tallies plus every entry above 16; the widths from
    # those must equal the ones from the CSR itself (same terms, summed in another order).
    x, r, odds = small
    blocks, _ = open_counts(sp.csr_matrix(x), None, 0, 7)
    streamed = stream_counts(blocks, keep_entries=False, seed=0)
    tally = CountTally.from_histogram(streamed.pairs, LARGE_COUNT, streamed.large)
    from_stream = laplace_log_variances(tally, r, odds, x.sum(axis=1), None)
    direct = laplace_log_variances(_tally(x, None, 1), r, odds, x.sum(axis=1), None)
    np.testing.assert_allclose(from_stream["r"], direct["r"], rtol=1e-10)
    np.testing.assert_allclose(from_stream["capture"], direct["capture"], rtol=1e-12)


@pytest.mark.parametrize("family", [BETA, BETA_PRIME])
@pytest.mark.parametrize("value", [0.05, 0.5, 0.9])
def test_beta_concentration_gives_the_variance_in_logit(family, value):
    variance = 0.01
    kappa = concentration_for_variance(family, value, variance)
    m = value if family is BETA else value / (1 + value)
    a, b = m * kappa, (1 - m) * kappa
    # Exact Var(logit X) for X ~ Beta(a, b) (= Var(log phi) for the BetaPrime) is
    # psi1(a) + psi1(b) = (1/a + 1/b)(1 + O(1/min(a, b))); min(a, b) >= 5 here, so the
    # first-order formula is within 1/(2 min(a, b)) + 1/kappa ~ 12 %.
    exact = special.polygamma(1, a) + special.polygamma(1, b)
    np.testing.assert_allclose(exact, variance, rtol=0.12)
    np.testing.assert_allclose(variance_for_concentration(family, value, kappa), variance,
                               rtol=1e-10)


@pytest.mark.parametrize("family", [LOG_NORMAL, LOGIT_NORMAL])
def test_normal_like_concentration_is_inverse_variance(family):
    np.testing.assert_allclose(concentration_for_variance(family, 0.3, 0.04), 25.0)


@pytest.fixture(scope="module")
def nbvcp_counts():
    counts, _ = simulate_counts("nbvcp", 300, 200, r_loc=0.0, seed=1)
    return sp.csr_matrix(counts.astype(np.float32))


@pytest.mark.parametrize("parameterization", ["standard", "linked", "odds_ratio",
                                              "unconstrained"])
def test_factors_start_at_the_laplace_width(nbvcp_counts, parameterization):
    config = ModelConfig("nbvcp", parameterization)
    guess = initial_canonical(nbvcp_counts, lookup_model_type("nbvcp").likelihood, None,
                              False, 0)
    log_var = guess["_log_var"]
    params = {k: np.asarray(v, np.float64) for k, v in
              Composition(config).initial_params(guess, *nbvcp_counts.shape).items()}
    nu = guess["p_capture"]
    # The capture site's unconstrained coordinate moves with log nu with slope
    # 1 / (1 - nu) (logit nu, log of the odds ratio (1 - nu)/nu up to sign); its variance
    # is that squared times Var(log nu). Beta-like factors carry it to the first order
    # in 1 / concentration (concentrations here >= 10: within ~15 %, see above).
    target = log_var["p_capture"] / (1 - nu) ** 2
    if parameterization == "unconstrained":
        width = params["p_capture_unconstrained_scale"] ** 2
        floor = np.full_like(nu, np.inf)
    else:
        prefix = "phi_capture" if parameterization == "odds_ratio" else "p_capture"
        a, b = params[f"{prefix}_alpha"], params[f"{prefix}_beta"]
        width = special.polygamma(1, a) + special.polygamma(1, b)
        floor = np.minimum(a, b)
    # Cells clipped at the start (nu at 0.98) or with Beta arguments near their floor of 2
    # are excluded.
    inside = (nu < 0.97) & (floor > 10)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(width[inside], target[inside], rtol=0.15)
    # Gene factors: LogNormal r / mu (d log mu / d log r = 1) or Normal log r, scale
    # sqrt(Var(log r)) (no cap: per-element widths are used as given).
    gene = {"standard": "r_scale", "linked": "mu_scale", "odds_ratio": "mu_scale",
            "unconstrained": "r_unconstrained_scale"}[parameterization]
    expected = np.sqrt(log_var["r"])
    np.testing.assert_allclose(params[gene], expected, rtol=1e-3)


@pytest.mark.slow
def test_droplet_like_nbvcp_converges_quickly_at_the_recovery_thresholds():
    # Droplet-like sparsity (capture 2-10 %, r ~ LogNormal(-1, 1), ~5 % non-zeros), where
    # the fixed-concentration start needed 8,300 steps at 20,000 x 2,000 because the
    # factors had to widen 2.6-4x at ~1 learning rate of log-scale per step. From the
    # Laplace widths nothing has to widen; 3,000 steps leave room for the relaxation of
    # the locations (1,300 at 20,000 x 2,000). Thresholds of tests/test_recovery.py,
    # under the simulation's r prior: at this sparsity the NB is nearly Poisson and the
    # default LogNormal(0, 1) prior decides the split of each mean into r and the cells'
    # odds (r error 19 %, p_hat 14 % here; docs/models.md "Calibration of the intervals").
    import scribe
    from scribe.simulate import recovery_errors

    counts, truth = simulate_counts("nbvcp", 4000, 1000, p=0.6, r_loc=-1.0,
                                    capture_range=(0.02, 0.1), seed=0)
    results = scribe.fit(counts, "nbvcp", n_steps=3000, seed=0, progress=False,
                         priors={"r": (-1.0, 1.0)})
    assert results.converged
    errors = recovery_errors(results, counts, truth)
    assert errors["r_error"] < 0.15, errors
    assert errors["p_hat_error"] < 0.10, errors


def test_plain_mixture_r_starts_at_its_laplace_width():
    # nbdm_mix: each component's log r factor starts at the Laplace variance over the
    # cells k-means put in that component, here checked by central differences of scipy's
    # NB log-likelihood (h = 1e-3, float64: error ~1e-6 relative, as above), and the
    # standard parameterization's LogNormal r then has scale^2 equal to it (float32
    # storage: rtol 1e-5).
    counts, _ = simulate_counts("nbdm_mix", 240, 30, n_components=2, r_loc=0.0, seed=2)
    csr = sp.csr_matrix(counts.astype(np.float32))
    likelihood = lookup_model_type("nbdm_mix").likelihood
    guess = initial_canonical(csr, likelihood, 2, False, 0)
    log_var = guess["_log_var"]["r"]
    assert log_var.shape == (2, 30)
    labels = kmeans(_log_normalised(csr, _library(csr)), 2, 0)
    odds = np.full(csr.shape[0], guess["p"] / (1 - guess["p"]))
    h = 1e-3
    for k in range(2):
        x = counts[labels == k].astype(np.float64)
        r = guess["r"][k]
        information = np.empty(30)
        for g in range(30):
            def total(u, g=g, x=x, r=r):
                rr = r.copy()
                rr[g] = np.exp(u)
                return _loglik(x, rr, odds[: x.shape[0]])[:, g].sum()
            u = np.log(r[g])
            second = (total(u + h) - 2 * total(u) + total(u - h)) / h**2
            first = (total(u + h) - total(u - h)) / (2 * h)
            information[g] = -(second - first)
        np.testing.assert_allclose(1 / log_var[k] - 1.0, information, rtol=1e-4, atol=1e-6)
    params = Composition(ModelConfig("nbdm_mix", n_components=2)).initial_params(
        guess, *csr.shape)
    scale = np.asarray(params["r_scale"], np.float64)
    np.testing.assert_allclose(scale**2, np.clip(log_var, 1e-6, 0.5), rtol=1e-5)


def test_zero_inflated_r_width_matches_finite_differences():
    # ZINB at fixed p and gate: the information of log r is -(l'' - l') summed over a
    # gene's cells (the score term dropped as above), zeros included: checked by central
    # differences of scipy's pmf (h = 1e-3, float64: ~1e-6 relative error, rtol 1e-4).
    rng = np.random.default_rng(5)
    n_cells, n_genes, p = 300, 8, 0.6
    r = rng.uniform(0.3, 3.0, n_genes)
    gate = rng.uniform(0.05, 0.5, n_genes)
    x = rng.negative_binomial(r[None, :], 1 - p, (n_cells, n_genes)).astype(np.float64)
    x[rng.uniform(size=x.shape) < gate[None, :]] = 0.0
    n_zero = (x == 0).sum(axis=0)
    out = zero_inflated_log_variances(_tally(x, None, 1), r, p, gate, n_zero)

    def total(u, g):
        rr = np.exp(u)
        nb = stats.nbinom.logpmf(x[:, g], rr, 1 - p)
        zero = np.log(gate[g] + (1 - gate[g]) * np.exp(nb))
        return np.where(x[:, g] == 0, zero, np.log1p(-gate[g]) + nb).sum()

    h = 1e-3
    for g in range(n_genes):
        u = np.log(r[g])
        second = (total(u + h, g) - 2 * total(u, g) + total(u - h, g)) / h**2
        first = (total(u + h, g) - total(u - h, g)) / (2 * h)
        information = -(second - first)
        expected = 1 / (max(information, 0.0) + 1.0)
        np.testing.assert_allclose(out[g], expected, rtol=1e-4)
