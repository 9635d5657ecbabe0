"""Write-back of a fit to AnnData (``results.to_anndata``): values, copies, names, h5ad.

A fixed ``nbvcp_mix`` (hand-chosen variational parameters, hand-made posterior draws;
no fitting), so every written value is checked against scipy or the draws.
"""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from test_analyses import canonical_draws, reference_elementwise
from test_results import make_results

import scribe

C, G, K = 20, 6, 2


@pytest.fixture(scope="module")
def fitted():
    draws = canonical_draws("nbvcp_mix", n_draws=50, n_components=K)
    results = make_results("nbvcp_mix", "standard", K, posterior_samples=draws, seed=3)
    results.obs = pd.DataFrame(index=[f"cell{i}" for i in range(C)])
    results.var = pd.DataFrame({"symbol": list("ABCDEF")},
                               index=[f"gene{j}" for j in range(G)])
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.negative_binomial(1.5, 0.4, (C, G)).astype(np.float32))
    adata = anndata.AnnData(counts, obs=pd.DataFrame(index=results.obs.index),
                            var=pd.DataFrame(index=results.var.index))
    return results, adata, draws


@pytest.fixture(scope="module")
def written(fitted):
    results, adata, _ = fitted
    return results.to_anndata(adata, layers=("denoised", "normalized"))


def test_values(fitted, written):
    results, adata, draws = fitted
    out = written
    assert out is not adata and not any(k.startswith("scribe_") for k in adata.obs)
    assert not adata.layers and not adata.uns
    estimate = {k: np.asarray(v, np.float64)
                for k, v in results.get_map(use_mean=True, verbose=False).items()}
    np.testing.assert_allclose(out.varm["scribe_r"], estimate["r"].T, rtol=1e-6)
    np.testing.assert_allclose(out.varm["scribe_r_sd"],
                               np.asarray(draws["r"], np.float64).std(0, ddof=1).T, rtol=1e-5)
    np.testing.assert_allclose(out.obs["scribe_p_capture"], estimate["p_capture"], rtol=1e-6)
    np.testing.assert_allclose(out.obs["scribe_p_hat"], estimate["p_hat"], rtol=1e-6)
    x = adata.X.toarray()
    per_component = reference_elementwise(x, estimate).sum(1) + np.log(
        estimate["mixing_weights"])
    np.testing.assert_allclose(out.obs["scribe_log_likelihood"],
                               logsumexp(per_component, axis=1), rtol=1e-4)
    probabilities = softmax(per_component, axis=1)
    np.testing.assert_allclose(out.obsm["scribe_assignment_probabilities"], probabilities,
                               atol=1e-4)
    np.testing.assert_array_equal(out.obs["scribe_component"].astype(int),
                                  probabilities.argmax(1))
    entropy = -(probabilities * np.log(np.maximum(probabilities, 1e-300))).sum(1)
    np.testing.assert_allclose(out.obs["scribe_assignment_entropy"], entropy, atol=1e-3)
    fit = results.goodness_of_fit(adata.X)
    for column in ("rqr_mean", "rqr_var", "rqr_ks", "elpd", "flagged"):
        np.testing.assert_array_equal(out.var[f"scribe_{column}"], fit[column])
    denoised = results.denoise_counts(adata.X)
    np.testing.assert_array_equal(out.layers["scribe_denoised"], denoised)
    np.testing.assert_allclose(out.layers["scribe_normalized"].sum(1), 1, rtol=1e-5)
    fit_uns = out.uns["scribe_fit"]
    assert fit_uns["model_type"] == "nbvcp_mix" and fit_uns["n_components"] == K
    assert fit_uns["capture_anchored"] is False
    assert "scribe_denoised" in fit_uns["keys"]["layers"]
    assert set(fit_uns["keys"]["obs"]) == {c for c in out.obs if c.startswith("scribe_")}


def test_h5ad_round_trip(written, tmp_path):
    path = tmp_path / "written.h5ad"
    written.write_h5ad(path)
    back = anndata.read_h5ad(path)
    pd.testing.assert_frame_equal(back.obs, written.obs)
    pd.testing.assert_frame_equal(back.var, written.var)
    for key in written.varm:
        np.testing.assert_array_equal(back.varm[key], written.varm[key])
    np.testing.assert_array_equal(back.layers["scribe_denoised"],
                                  written.layers["scribe_denoised"])
    assert back.uns["scribe_fit"]["versions"] == written.uns["scribe_fit"]["versions"]
    assert back.uns["scribe_fit"]["keys"] == written.uns["scribe_fit"]["keys"]


def test_inplace_subset_and_no_counts(fitted):
    results, adata, _ = fitted
    target = adata.copy()
    same = scribe.to_anndata(results, target, inplace=True, prefix="s_")
    assert same is target and "s_log_likelihood" in target.obs
    # After results[genes], only those genes are written (the others NaN / NA).
    subset = results[[1, 3]]
    out = subset.to_anndata(adata)
    r = out.varm["scribe_r"]
    assert np.all(np.isnan(r[[0, 2, 4, 5]])) and not np.any(np.isnan(r[[1, 3]]))
    assert out.var["scribe_flagged"].isna().sum() == G - 2
    # A new AnnData without counts: the fit's names and the count-free results only.
    bare = results.to_anndata()
    assert list(bare.obs_names) == list(adata.obs_names)
    assert list(bare.var["symbol"]) == list("ABCDEF")
    assert "scribe_p_capture" in bare.obs and "scribe_log_likelihood" not in bare.obs
    assert "var" not in bare.uns["scribe_fit"]["keys"]


def test_refuses_mismatches(fitted):
    results, adata, _ = fitted
    renamed = adata.copy()
    renamed.obs_names = [f"cell{i}" for i in range(C - 1)] + ["other"]
    with pytest.raises(ValueError, match="position 19.*'other'"):
        results.to_anndata(renamed)
    renamed = adata.copy()
    renamed.var_names = ["x"] + list(adata.var_names[1:])
    with pytest.raises(ValueError, match="var_names.*'x'"):
        results.to_anndata(renamed)
    with pytest.raises(ValueError, match="'gene3' is not among"):
        results[[3]].to_anndata(renamed[:, [0, 1, 2]].copy())
    with pytest.raises(ValueError, match="layers may contain"):
        results.to_anndata(adata, layers=("smoothed",))
    with pytest.raises(ValueError, match="need the counts"):
        results.to_anndata(layers=("denoised",))
    with pytest.raises(TypeError, match="AnnData"):
        results.to_anndata(adata.X)


def test_plain_model_writes_var_columns():
    draws = canonical_draws("zinb", n_draws=30)
    results = make_results("zinb", posterior_samples=draws, seed=2)
    out = results.to_anndata()
    estimate = results.get_map(use_mean=True, verbose=False)
    for name in ("r", "gate"):
        np.testing.assert_allclose(out.var[f"scribe_{name}"], estimate[name], rtol=1e-6)
        np.testing.assert_allclose(out.var[f"scribe_{name}_sd"],
                                   np.asarray(draws[name], np.float64).std(0, ddof=1),
                                   rtol=1e-5)
    assert out.uns["scribe_fit"]["map"]["p"] == pytest.approx(float(estimate["p"]))
    assert "capture_anchored" not in out.uns["scribe_fit"] and not out.varm
