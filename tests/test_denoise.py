"""Denoised counts (``results.denoise_counts``, SPEC section 6) against brute force.

Parameters are fixed (hand-chosen variational parameters, MAP used; no fitting). The
reference enumerates the molecules ``m = x .. M`` with scipy:
``P(m | x) ∝ NB(m; r, p) P(x | m)``, ``P(x | m) = Binomial(x; m, nu)`` (with a gate:
``g [x = 0] + (1 - g) Binomial(x; m, nu)``); mixtures weight components by
``P(k | x_c) ∝ w_k prod_g f_k(x_cg)``, also from scipy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.special import softmax
from test_analyses import reference_elementwise
from test_results import make_results

import scribe
from scribe.svi import denoise

C, G = 12, 5
M_MAX = 600   # NB(r <= ~5, p <= 0.9) tails beyond 600 molecules are below 1e-12


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    x = np.random.default_rng(1).negative_binomial(1.2, 0.45, (C, G))
    x[0] = 0
    return x


def _np(estimate: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in estimate.items()}


def brute_force_mean(x: np.ndarray, params: dict) -> np.ndarray:
    """E[m | x] per cell and gene, by enumerating m (one component)."""
    m = np.arange(M_MAX)[:, None, None]
    r, p = params["r"], params["p"]
    p = p[None, :, None] if np.ndim(p) == 1 else p
    nu = params.get("p_capture")
    nu = np.ones((x.shape[0], 1)) if nu is None else nu[:, None]
    prior = stats.nbinom.pmf(m, r, 1 - p)                          # (M, C|1, G)
    captured = stats.binom.pmf(x[None], m, nu[None])               # (M, C, G)
    if "gate" in params:
        gate = params["gate"]
        captured = (1 - gate) * captured + gate * (x[None] == 0)
    joint = prior * captured
    return (m * joint).sum(0) / joint.sum(0)


def brute_force(x: np.ndarray, estimate: dict) -> np.ndarray:
    if "mixing_weights" not in estimate:
        return brute_force_mean(x, estimate)
    log_f = reference_elementwise(x, estimate)                     # (C, G, K)
    weights = softmax(log_f.sum(1) + np.log(estimate["mixing_weights"]), axis=1)
    k_count = estimate["r"].shape[0]
    per_component = []
    for k in range(k_count):
        component = {"r": estimate["r"][k], "p": estimate["p"]}
        if np.ndim(estimate["p"]) == 1:
            component["p"] = estimate["p"][k]
        if "gate" in estimate:
            component["gate"] = estimate["gate"][k]
        if "p_capture" in estimate:
            component["p_capture"] = estimate["p_capture"]
        per_component.append(brute_force_mean(x, component))
    return np.einsum("kcg,ck->cg", np.stack(per_component), weights)


@pytest.mark.parametrize("model_type,n_components", [
    ("zinb", None), ("zinbvcp", None), ("nbvcp_mix", 2),
])
def test_mean_matches_brute_force(counts, model_type, n_components):
    results = make_results(model_type, "standard", n_components, n_cells=C, n_genes=G,
                           seed=2)
    estimate = _np(results.get_map(use_mean=True, verbose=False))
    expected = brute_force(counts, estimate)
    # float32 arithmetic on values up to ~100: relative 1e-4.
    for batch_size in (5,) if n_components else (None,):
        actual = results.denoise_counts(counts, batch_size=batch_size)
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    # Observed molecules are never removed, and capture adds to every entry.
    assert np.all(actual >= counts - 1e-4)


def test_nbdm_passes_counts_through(counts):
    results = make_results("nbdm", n_cells=C, n_genes=G)
    sparse = sp.csr_matrix(counts)
    out = results.denoise_counts(sparse)
    assert sp.issparse(out)
    np.testing.assert_array_equal(out.toarray(), counts)
    assert sparse.dtype == counts.dtype   # the input is not modified


@pytest.mark.slow
def test_sample_matches_brute_force():
    """``method="sample"`` on a mixture: 2,000 identical cells (same counts, same capture)
    give 2,000 independent draws of ``m | x``; their mean must be the brute-force
    ``E[m | x]`` within 5 standard errors entrywise (P(|z| > 5) ~ 6e-7 per entry under
    the normal approximation of a mean of 2,000 draws)."""
    n_cells, row = 2000, np.array([0, 1, 3, 7])
    results = make_results("zinbvcp_mix", "standard", 2, n_cells=n_cells, n_genes=4, seed=6)
    params = dict(results.params)
    params["p_capture_alpha"] = jnp.full(n_cells, 4.0)
    params["p_capture_beta"] = jnp.full(n_cells, 6.0)
    results.params = params
    x = np.tile(row, (n_cells, 1))
    draws = results.denoise_counts(x, method="sample", batch_size=500,
                                   rng_key=jax.random.PRNGKey(1))
    assert draws.shape == (1, n_cells, 4)
    draws = draws[0]
    estimate = _np(results.get_map(use_mean=True, verbose=False))
    expected = brute_force(row[None], {**estimate, "p_capture": estimate["p_capture"][:1]})
    z = (draws.mean(0) - expected[0]) / (draws.std(0) / np.sqrt(n_cells))
    assert np.max(np.abs(z)) < 5
    assert np.all(draws[:, 1:] >= row[1:]) and np.all(draws == np.round(draws))
    same = scribe.tl.denoise_counts(results, x, method="sample", batch_size=500,
                                    rng_key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(draws, same[0])


def test_bad_input(counts):
    results = make_results("nbvcp", n_cells=C, n_genes=G)
    with pytest.raises(ValueError, match="method"):
        results.denoise_counts(counts, method="median")
    with pytest.raises(ValueError, match="genes"):
        results.denoise_counts(counts[:, :3])
    with pytest.raises(ValueError, match="batch_size"):
        results.denoise_counts(counts, batch_size=0)
    with pytest.raises(ValueError, match="n_samples"):
        results.denoise_counts(counts, n_samples=-1)
    assert denoise.METHODS == ("mean", "sample")
