"""Inputs and results built by hand (issue 12): backed AnnData, DataFrames, warnings once
per fit, ``from_anndata`` keywords, ``__post_init__``, results-method arguments and
``get_map(point=...)``."""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scribe
from scribe import data as data_module
from scribe.config import ModelConfig
from scribe.data import prepare_counts
from scribe.svi import ScribeSVIResults

C, G = 50, 9
RNG = np.random.default_rng(5)
COUNTS = RNG.negative_binomial(4, 0.5, size=(C, G)).astype(np.float32)
COUNTS[:, 1] = 0          # one all-zero gene: the fit warns about it
COUNTS[:, 0] += 1
ERRORS = (TypeError, ValueError)


@pytest.fixture(scope="module")
def fitted():
    frame = pd.DataFrame(COUNTS, index=[f"cell{i}" for i in range(C)],
                         columns=pd.Index([f"g{j}" for j in range(G)], name="gene_id"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = scribe.fit(frame, n_steps=20, tol=None, progress=False)
    return res, [str(w.message) for w in caught]


# ---- backed AnnData --------------------------------------------------------------------
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_backed_anndata_reads_like_in_memory(tmp_path, monkeypatch, sparse):
    matrix = sp.csr_matrix(COUNTS) if sparse else COUNTS
    path = tmp_path / "x.h5ad"
    anndata.AnnData(matrix).write_h5ad(path)
    monkeypatch.setattr(data_module, "BACKED_BLOCK", 7)   # several blocks, a ragged last one
    backed = anndata.read_h5ad(path, backed="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, adata = prepare_counts(backed)
            expected, _ = prepare_counts(anndata.read_h5ad(path))
    finally:
        backed.file.close()
    assert adata is backed and sp.issparse(got) == sparse
    dense = got.toarray() if sparse else got
    np.testing.assert_array_equal(dense, COUNTS)
    np.testing.assert_array_equal(dense, expected.toarray() if sparse else expected)


# ---- DataFrames ------------------------------------------------------------------------
def test_dataframe_names_become_obs_and_var(fitted):
    res, _ = fitted
    assert list(res.obs.index) == [f"cell{i}" for i in range(C)]
    assert list(res.var.index) == [f"g{j}" for j in range(G)]
    assert res.var.index.name == "gene_id"
    # The names are the gene coordinates of every group.
    assert list(res.idata["variational_parameters"].coords["gene"].values) == \
        [f"g{j}" for j in range(G)]


def test_dataframe_genes_by_cells():
    frame = pd.DataFrame(COUNTS.T, index=[f"g{j}" for j in range(G)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts, adata = prepare_counts(frame, cells_axis=1)
    np.testing.assert_array_equal(counts, COUNTS)
    assert list(adata.var_names) == [f"g{j}" for j in range(G)]
    assert list(adata.obs_names) == [str(i) for i in range(C)]


# ---- warnings once per fit ------------------------------------------------------------------
def test_zero_gene_warning_at_fit_not_at_analyses(fitted):
    res, messages = fitted
    assert sum("zero counts in every cell" in m for m in messages) == 1
    res.get_posterior_samples(n_samples=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res.log_likelihood(COUNTS)
        res.log_likelihood(COUNTS)
    assert not any("zero counts" in str(w.message) for w in caught)


# ---- results methods' arguments -------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, 2.5, True, None, "3"])
def test_posterior_samples_n_samples(fitted, value):
    res, _ = fitted
    with pytest.raises(ERRORS, match="n_samples"):
        res.get_posterior_samples(n_samples=value)
    with pytest.raises(ERRORS, match="n_samples"):
        res.get_ppc_samples(n_samples=value)


def test_posterior_samples_numpy_integer(fitted):
    res, _ = fitted
    draws = res.get_posterior_samples(n_samples=np.int64(4), store_samples=False)
    assert draws["r"].shape == (4, G)


@pytest.mark.parametrize("method,kwargs,name", [
    ("get_posterior_samples", {"rng_key": 42}, "rng_key"),
    ("get_posterior_samples", {"store_samples": "yes"}, "store_samples"),
    ("get_ppc_samples", {"n_samples": 2, "batch_size": 0}, "batch_size"),
    ("get_predictive_samples", {"batch_size": 1.5}, "batch_size"),
    ("get_map", {"point": "median"}, "point"),
    ("get_map", {"use_mean": 1}, "use_mean"),
    ("get_map", {"canonical": None}, "canonical"),
    ("get_distributions", {"backend": "torch"}, "backend"),
    ("get_distributions", {"split": "no"}, "split"),
    ("log_likelihood", {"counts": COUNTS, "batch_size": 2.5}, "batch_size"),
    ("log_likelihood_map", {"counts": COUNTS, "gene_batch_size": 0}, "gene_batch_size"),
    ("normalize_counts", {"n_samples_dirichlet": 2.5}, "n_samples_dirichlet"),
    ("normalize_counts", {"store_samples": 1}, "store_samples"),
    ("get_component", {"component_index": 0}, "mixture"),
])
def test_results_methods_refuse(fitted, method, kwargs, name):
    res, _ = fitted
    with pytest.raises(ERRORS, match=name):
        getattr(res, method)(**kwargs)


# ---- get_map(point=...) ---------------------------------------------------------------------
def test_point_mean_and_mode_closed_forms(fitted):
    res, _ = fitted
    params = {k: np.asarray(v, dtype=np.float64) for k, v in res.params.items()}
    loc, scale = params["r_loc"], params["r_scale"]
    a, b = params["p_alpha"], params["p_beta"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean, mode = res.get_map(point="mean"), res.get_map(point="mode")
        replaced = res.get_map(use_mean=True)
    # LogNormal: mean exp(loc + s^2/2), mode exp(loc - s^2); Beta: a/(a+b), (a-1)/(a+b-2).
    np.testing.assert_allclose(mean["r"], np.exp(loc + scale**2 / 2), rtol=1e-5)
    np.testing.assert_allclose(mode["r"], np.exp(loc - scale**2), rtol=1e-5)
    np.testing.assert_allclose(mean["p"], a / (a + b), rtol=1e-5)
    np.testing.assert_allclose(mode["p"], (a - 1) / (a + b - 2), rtol=1e-5)
    # Every mode here is defined, so use_mean (replace undefined modes) changes nothing.
    for name, value in mode.items():
        np.testing.assert_array_equal(np.asarray(replaced[name]), np.asarray(value))


def test_nan_from_get_map_is_never_silent(fitted):
    res, _ = fitted
    params = dict(res.params)
    params["p_alpha"] = np.asarray(0.5, dtype=np.float32)   # Beta(0.5, b): no interior mode
    broken = ScribeSVIResults(params=params, loss_history=res.loss_history,
                              n_cells=C, n_genes=G, model_type="nbdm",
                              model_config=res.model_config, prior_params={})
    with pytest.warns(RuntimeWarning, match=r"NaN for p.*use_mean=True or point='mean'"):
        assert np.isnan(float(broken.get_map(verbose=False)["p"]))


# ---- from_anndata and __post_init__ -----------------------------------------------------
def test_from_anndata_accepts_the_documented_kwargs(fitted):
    res, _ = fitted
    adata = anndata.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(C)]),
                            var=pd.DataFrame(index=[f"v{j}" for j in range(G)]))
    built = ScribeSVIResults.from_anndata(
        adata, res.params, res.loss_history, res.model_config, model_type="nbdm",
        prior_params={"p": (1.0, 1.0)}, n_components=None)
    assert built.prior_params == {"p": (1.0, 1.0)}
    assert list(built.var.index) == [f"v{j}" for j in range(G)] and built.n_obs == C
    with pytest.raises(ValueError, match="model_type='zinb' disagrees"):
        ScribeSVIResults.from_anndata(adata, res.params, res.loss_history,
                                      res.model_config, model_type="zinb")


def test_post_init_validates(fitted):
    res, _ = fitted
    res.__post_init__()   # a consistent object passes
    with pytest.raises(ValueError, match="r_loc"):
        ScribeSVIResults(params={**res.params, "r_loc": np.zeros(G + 1)},
                         loss_history=res.loss_history, n_cells=C, n_genes=G,
                         model_type="nbdm", model_config=res.model_config, prior_params={})
    with pytest.raises(ValueError, match="3 rows, expected 50"):
        ScribeSVIResults(params=res.params, loss_history=res.loss_history, n_cells=C,
                         n_genes=G, model_type="nbdm", model_config=res.model_config,
                         prior_params={}, obs=pd.DataFrame(index=["a", "b", "c"]))
    with pytest.raises(ERRORS, match="n_cells"):
        ScribeSVIResults(params=res.params, loss_history=res.loss_history, n_cells=0,
                         n_genes=G, model_type="nbdm", model_config=ModelConfig("nbdm"),
                         prior_params={})
