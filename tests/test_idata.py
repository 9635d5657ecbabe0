"""The results' InferenceData: layout, views, save/load, compiled sampling, ArviZ as a client.

Small fits (24 cells x 7 genes, a few hundred steps) and hand-made variational parameters
keep this module quick; every check compares values that could be wrong: stored arrays
against the views and scipy, loaded results against the saved ones, ArviZ's numbers
against numpy.
"""

from __future__ import annotations

import copy
import json
import pickle
import time
import warnings

import anndata
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.special import logsumexp
from test_plugins import install, poisson  # noqa: F401  (fixtures)
from test_results import make_params

import scribe
from scribe import ModelConfig
from scribe.simulate import simulate_counts
from scribe.svi import ScribeSVIResults
from scribe.svi.arrays import UnstorableError

matplotlib.use("Agg")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

# ArviZ 0.23's matplotlib backend trips a deprecation of matplotlib >= 3.11 on every plot.
pytestmark = pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping")

C, G, S = 24, 7, 60
CELLS = [f"cell{c}" for c in range(C)]
GENES = [f"gene{g}" for g in range(G)]


class DenseForbidden(sp.csr_matrix):
    """A sparse matrix that fails if anything densifies it."""

    def toarray(self, *args, **kwargs):
        raise AssertionError("observed counts were densified")

    todense = toarray


def rich_obs(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "batch": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n) % 3]),
        "stage": pd.Categorical(np.where(np.arange(n) % 4 == 0, None, "late"),
                                categories=["late", "early"], ordered=True),
        "label": [f"l{i % 5}" for i in range(n)],
        "depth": rng.normal(size=n),
        "n_genes": np.arange(n, dtype=np.int32),
        "doublet": np.arange(n) % 7 == 0,
        "when": pd.date_range("2024-01-01", periods=n, freq="37min"),
        "took": pd.to_timedelta(np.arange(n), unit="s"),
        "maybe": pd.array(np.where(np.arange(n) % 3 == 0, None, np.arange(n)), dtype="Int64"),
        "note": pd.array(np.where(np.arange(n) % 2 == 0, None, "x"), dtype="string"),
        "a/b": np.linspace(0, 1, n, dtype=np.float32),   # not a netCDF name
        7: np.arange(n, dtype=np.uint16),                # not a str name
    }, index=pd.Index(CELLS[:n], name="barcode"))


def rich_uns() -> dict:
    return {
        "study": "demo",
        "params": {"n_pcs": 30, "scale": 0.5, "flags": [True, False], "none": None},
        "nested": {"deeper": {"arr": np.arange(12, dtype=np.float32).reshape(3, 4)}},
        "colors": np.array(["#ff0000", "#00ff00"]),
        "objects": np.array(["x", "yy"], dtype=object),
        "mask": np.array([True, False, True]),
        "dates": np.array(["2024-01-01", "NaT"], dtype="datetime64[s]"),
        "codes": np.arange(4, dtype=np.uint8),
        "scalar": np.float32(2.5),
        "count": np.int64(-3),
        "pair": (1, "x", 2.0),
        "special": [float("nan"), float("inf"), -0.0],
        "empty": {},
        "big": 2**70,
    }


def assert_same(a, b, path="value"):
    """Equal values of the same types, recursively (NaN equal to NaN)."""
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float):
        assert np.isnan(a) and np.isnan(b) or (a == b and repr(a) == repr(b)), path
    else:
        assert a == b, path


def assert_arrays_equal(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def assert_loaded_equal(res, loaded):
    assert_arrays_equal(res.params, loaded.params)
    assert_arrays_equal(res.get_map(), loaded.get_map())
    np.testing.assert_array_equal(np.asarray(res.loss_history), np.asarray(loaded.loss_history))
    for name in ("posterior_samples", "predictive_samples"):
        a, b = getattr(res, name), getattr(loaded, name)
        assert (a is None) == (b is None), name
        if isinstance(a, dict):
            assert_arrays_equal(a, b)
        elif a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.model_config == res.model_config
    assert_same(res.prior_params, loaded.prior_params)
    for name in ("n_cells", "n_genes", "n_obs", "n_vars", "model_type", "n_components"):
        assert getattr(loaded, name) == getattr(res, name), name
    for name in ("obs", "var"):
        a, b = getattr(res, name), getattr(loaded, name)
        if a is None:
            assert b is None
        else:
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert_same(res.uns, loaded.uns)
    assert set(loaded.idata.groups()) == set(res.idata.groups())


def per_cell_nb_log_likelihood(counts: np.ndarray, samples: dict) -> np.ndarray:
    """``sum_g log NB(x_cg | r_sg, p_s)`` by scipy, ``(S, C)``."""
    p = np.asarray(samples["p"], np.float64)
    r = np.asarray(samples["r"], np.float64)
    return stats.nbinom.logpmf(counts[None], r[:, None, :], 1 - p[:, None, None]).sum(-1)


# --------------------------------------------------------------------------------------
# A small nbdm fit with AnnData metadata, predictive draws, observed counts and a
# per-cell log-likelihood.
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nbdm_fit():
    counts, _ = simulate_counts("nbdm", C, G, seed=3)
    var = pd.DataFrame({"symbol": [f"S{g}" for g in range(G)]}, index=GENES)
    adata = anndata.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=rich_obs(C),
                            var=var, uns=rich_uns())
    res = scribe.fit(adata, "nbdm", n_steps=300, progress=False)
    res.get_ppc_samples(jax.random.PRNGKey(0), n_samples=S)
    res.set_observed_counts(DenseForbidden(adata.X))
    log_lik = per_cell_nb_log_likelihood(counts, res.posterior_samples)
    res._store_log_likelihood(log_lik)
    return res, counts, log_lik


def test_groups_dims_and_coordinates(nbdm_fit):
    res, counts, log_lik = nbdm_fit
    data = res.idata
    assert set(data.groups()) == {"posterior", "posterior_predictive", "log_likelihood",
                                  "observed_data", "variational_parameters", "optimization",
                                  "obs", "var", "uns"}
    post = data.posterior
    assert post["p"].dims == ("chain", "draw")
    assert post["r"].dims == ("chain", "draw", "gene")
    assert (post.sizes["chain"], post.sizes["draw"]) == (1, S)
    assert list(post["gene"].values) == GENES
    pred = data.posterior_predictive
    assert pred["counts"].dims == ("chain", "draw", "cell", "gene")
    assert list(pred["cell"].values) == CELLS and list(pred["gene"].values) == GENES
    np.testing.assert_array_equal(pred["total_counts"].values, pred["counts"].values.sum(-1))
    assert data.log_likelihood["counts"].dims == ("chain", "draw", "cell")
    np.testing.assert_array_equal(data.log_likelihood["counts"].values[0], log_lik)
    params = data.variational_parameters
    assert params["r_loc"].dims == ("gene",) and params["p_alpha"].dims == ()
    np.testing.assert_array_equal(data.optimization["loss"].values,
                                  np.asarray(res.loss_history))
    assert data.optimization["loss"].dims == ("step",)
    config = json.loads(data.attrs["scribe_model_config"])
    assert config["__dict__"]["model_type"] == "nbdm"
    # The views read the groups: leading sample axis, no chain axis.
    for name, value in res.posterior_samples.items():
        np.testing.assert_array_equal(np.asarray(value), post[name].values[0])
    np.testing.assert_array_equal(np.asarray(res.predictive_samples), pred["counts"].values[0])


def test_observed_counts_stored_sparse(nbdm_fit):
    res, counts, _ = nbdm_fit
    observed = res.idata.observed_data
    assert observed["counts_value"].sizes["nonzero"] == np.count_nonzero(counts)
    assert np.all(observed["counts_value"].values != 0)
    dense = np.zeros((C, G))
    dense[observed["counts_cell"].values, observed["counts_gene"].values] = \
        observed["counts_value"].values
    np.testing.assert_array_equal(dense, counts)
    np.testing.assert_array_equal(observed["total_counts"].values, counts.sum(1))
    assert observed["total_counts"].dims == ("cell",)
    assert list(observed["cell"].values) == CELLS
    np.testing.assert_array_equal(res.observed_counts.toarray(), counts)


# ---- ArviZ as a client ----------------------------------------------------------------
def test_arviz_summary_means_are_the_stored_draws(nbdm_fit):
    res, _, _ = nbdm_fit
    summary = az.summary(res.idata, kind="stats", round_to="none")
    assert list(summary.index) == ["p"] + [f"r[{g}]" for g in GENES]
    draws = res.posterior_samples
    np.testing.assert_allclose(summary.loc["p", "mean"], np.mean(np.asarray(draws["p"])),
                               rtol=1e-6)
    np.testing.assert_allclose(summary.loc[[f"r[{g}]" for g in GENES], "mean"],
                               np.asarray(draws["r"]).mean(0), rtol=1e-6)
    np.testing.assert_allclose(summary.loc["p", "sd"], np.std(np.asarray(draws["p"]), ddof=1),
                               rtol=1e-5)


def test_arviz_plot_trace_panels_show_the_draws(nbdm_fit):
    res, _, _ = nbdm_fit
    axes = az.plot_trace(res.idata)
    assert axes.shape == (2, 2)   # p and r: density and trace
    trace = axes[0, 1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(trace, np.asarray(res.posterior_samples["p"]), rtol=1e-6)
    matplotlib.pyplot.close("all")


def test_arviz_plot_ppc_compares_library_sizes(nbdm_fit):
    res, counts, _ = nbdm_fit
    ax = az.plot_ppc(res.idata, var_names=["total_counts"], kind="cumulative",
                     num_pp_samples=10, random_seed=0)
    assert np.ravel(ax).size == 1
    lines = {line.get_label(): line for line in np.ravel(ax)[0].get_lines()}
    np.testing.assert_array_equal(lines["Observed"].get_xdata(), np.sort(counts.sum(1)))
    matplotlib.pyplot.close("all")


def test_arviz_loo_treats_cells_as_observations(nbdm_fit):
    res, _, log_lik = nbdm_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # Pareto k of a 300-step fit
        loo = az.loo(res.idata, pointwise=True)
    assert loo.n_data_points == C and loo.n_samples == S
    assert loo.pareto_k.dims == ("cell",) and list(loo.pareto_k["cell"].values) == CELLS
    # ArviZ's p_loo is lppd - elpd_loo, lppd = sum_c log mean_s exp(loglik_sc).
    lppd = np.sum(logsumexp(log_lik, axis=0) - np.log(S))
    np.testing.assert_allclose(loo.elpd_loo + loo.p_loo, lppd, rtol=1e-10)


def test_arviz_loo_of_a_concentrated_posterior_is_the_lppd():
    """With draws that barely move, PSIS-LOO, plain importance-sampling LOO and the lppd
    coincide: loo reads exactly the stored per-cell values."""
    counts, _ = simulate_counts("nbdm", C, G, seed=5)
    conc = 1e6
    params = {"p_alpha": jnp.float32(0.4 * conc), "p_beta": jnp.float32(0.6 * conc),
              "r_loc": jnp.log(jnp.linspace(0.5, 4.0, G)), "r_scale": jnp.full(G, 1e-3)}
    res = ScribeSVIResults(params=params, loss_history=jnp.zeros(2), n_cells=C, n_genes=G,
                           model_type="nbdm", model_config=ModelConfig("nbdm"),
                           prior_params={})
    samples = res.get_posterior_samples(jax.random.PRNGKey(1), n_samples=100)
    log_lik = per_cell_nb_log_likelihood(counts, samples)
    res._store_log_likelihood(log_lik)
    loo = az.loo(res.idata, pointwise=True)
    # k-hat is scale-free: a concentrated posterior makes the ratios nearly equal (hence the
    # identities below) but does not shrink the tail-shape estimate, which with 100 draws is
    # noisy per cell; the typical cell is still in the "good" range.
    assert float(np.median(loo.pareto_k)) < 0.5
    lppd = np.sum(logsumexp(log_lik, axis=0) - np.log(100))
    is_loo = np.sum(np.log(100) - logsumexp(-log_lik, axis=0))
    np.testing.assert_allclose(loo.elpd_loo, lppd, rtol=1e-4)
    np.testing.assert_allclose(loo.elpd_loo, is_loo, rtol=1e-5)
    np.testing.assert_allclose(loo.loo_i.values, np.log(100) - logsumexp(-log_lik, axis=0),
                               rtol=1e-5)


def test_store_log_likelihood_checks_shapes(nbdm_fit):
    res, _, log_lik = nbdm_fit
    with pytest.raises(ValueError):
        res._store_log_likelihood(log_lik[:-1])       # draws other than the posterior's
    with pytest.raises(ValueError):
        res._store_log_likelihood(log_lik[:, :-1])    # cells
    with pytest.raises(ValueError):
        res._store_log_likelihood(log_lik[0])


# ---- save / load -----------------------------------------------------------------------
def test_save_load_round_trip_of_a_fit(nbdm_fit, tmp_path):
    res, counts, log_lik = nbdm_fit
    res.save(tmp_path / "fit.nc")
    loaded = scribe.load(tmp_path / "fit.nc")
    assert isinstance(loaded, ScribeSVIResults)
    assert_loaded_equal(res, loaded)
    np.testing.assert_array_equal(loaded.idata.log_likelihood["counts"].values[0], log_lik)
    np.testing.assert_array_equal(loaded.observed_counts.toarray(), counts)
    assert list(loaded.idata.posterior["gene"].values) == GENES
    assert list(loaded.idata.posterior_predictive["cell"].values) == CELLS
    # The file is an ordinary ArviZ netCDF file.
    plain = az.from_netcdf(str(tmp_path / "fit.nc"))
    np.testing.assert_array_equal(plain.posterior["r"].values, res.idata.posterior["r"].values)
    # Loaded results work like fresh ones, and ArviZ reads them the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # Pareto k of a 300-step fit
        np.testing.assert_allclose(az.loo(loaded.idata).elpd_loo, az.loo(res.idata).elpd_loo)
    sub = loaded[[4, 0]]
    # The mode of a 2-gene slice is computed on a shorter vector: XLA's vectorised exp
    # may round it 1 ulp (1.2e-7 relative) apart from the same gene's in all 5.
    np.testing.assert_allclose(np.asarray(sub.get_map()["r"]),
                               np.asarray(res.get_map()["r"])[[4, 0]], rtol=2.5e-7)
    assert list(sub.var.index) == ["gene4", "gene0"]
    assert "log_likelihood" not in sub.idata.groups()   # a sum over all genes
    np.testing.assert_array_equal(sub.observed_counts.toarray(), counts[:, [4, 0]])
    key = jax.random.PRNGKey(9)
    assert_arrays_equal(loaded.get_posterior_samples(key, S, store_samples=False),
                        res.get_posterior_samples(key, S, store_samples=False))


def test_metadata_round_trip_is_lossless(tmp_path):
    obs, uns = rich_obs(C), rich_uns()
    var = pd.DataFrame({"symbol": pd.Categorical([f"S{g % 3}" for g in range(G)]),
                        "highly_variable": np.arange(G) % 2 == 0},
                       index=pd.Index(GENES, name="gene_ids"))
    var.columns.name = "fields"
    res = ScribeSVIResults(params=make_params("nbdm", "standard", C, G), loss_history=jnp.ones(4),
                           n_cells=C, n_genes=G, model_type="nbdm",
                           model_config=ModelConfig("nbdm", priors={"p": (2.0, 3.0)}),
                           prior_params={"p": (2.0, 3.0), "r": (0.0, 1.0)},
                           obs=obs, var=var, uns=uns, n_obs=C + 5, n_vars=G + 1)
    res.save(tmp_path / "meta.nc")
    loaded = scribe.load(tmp_path / "meta.nc")
    assert_loaded_equal(res, loaded)
    pd.testing.assert_frame_equal(loaded.obs, obs, check_exact=True)
    assert loaded.obs.index.name == "barcode" and loaded.var.columns.name == "fields"
    assert list(loaded.obs.columns) == list(obs.columns)
    assert_same(loaded.uns, uns)
    assert_same(loaded.prior_params, {"p": (2.0, 3.0), "r": (0.0, 1.0)})
    assert list(loaded.idata.variational_parameters["r_loc"]["gene"].values) == GENES
    # Nullable columns stay aligned when genes or components are selected.
    sub = loaded[[5, 2]]
    pd.testing.assert_frame_equal(sub.var, var.iloc[[5, 2]], check_exact=True)
    pd.testing.assert_frame_equal(sub.obs, obs, check_exact=True)


def test_model_config_to_dict_from_dict_round_trip():
    from scribe.svi import nested

    configs = [ModelConfig("nbdm"),
               ModelConfig("zinbvcp_mix", "odds_ratio", n_components=3,
                           priors={"phi": (2, 3), "mixing_weights": (1.0, 2.0, 3.0)},
                           component_specific_params=True)]
    for config in configs:
        assert ModelConfig.from_dict(config.to_dict()) == config
        assert ModelConfig.from_dict(nested.loads(nested.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"model_type": "nbdm", "colour": "red"})


@pytest.fixture(scope="module")
def capture_mixture():
    """nbvcp_mix with component-specific p: per-cell capture, p_hat (C, K), K = 3."""
    config = ModelConfig("nbvcp_mix", "linked", n_components=3,
                         component_specific_params=True, priors={"p": (2.0, 2.0)})
    params = make_params("nbvcp_mix", "linked", C, G, 3, True, seed=2)
    var = pd.DataFrame(index=GENES)
    res = ScribeSVIResults(params=params, loss_history=jnp.arange(5.0), n_cells=C, n_genes=G,
                           model_type="nbvcp_mix", model_config=config,
                           prior_params={"p": (2.0, 2.0), "mu": (0.0, 1.0)}, var=var)
    res.get_posterior_samples(jax.random.PRNGKey(3), n_samples=20)
    return res


def test_mixture_and_capture_dims(capture_mixture):
    data = capture_mixture.idata
    post, params = data.posterior, data.variational_parameters
    expected = {"p": ("component",), "mu": ("component", "gene"), "r": ("component", "gene"),
                "p_capture": ("cell",), "p_hat": ("cell", "component"),
                "mixing_weights": ("component",)}
    for name, dims in expected.items():
        assert post[name].dims == ("chain", "draw", *dims), name
    assert params["mu_loc"].dims == ("component", "gene")
    assert params["p_capture_alpha"].dims == ("cell",)
    assert params["mixing_concentrations"].dims == ("component",)
    assert list(post["component"].values) == [0, 1, 2]
    assert list(post["cell"].values) == list(range(C))   # no AnnData: positions
    assert list(post["gene"].values) == GENES


def test_save_load_mixture_and_component(capture_mixture, tmp_path):
    res = capture_mixture
    res.save(tmp_path / "mix.nc")
    loaded = scribe.load(tmp_path / "mix.nc")
    assert_loaded_equal(res, loaded)
    for k in (0, 2):
        a, b = res.get_component(k), loaded.get_component(k)
        assert b.model_type == "nbvcp" and b.n_components is None
        assert_arrays_equal(a.get_map(), b.get_map())
        assert_arrays_equal(a.posterior_samples, b.posterior_samples)
        np.testing.assert_array_equal(np.asarray(b.posterior_samples["p_hat"]),
                                      np.asarray(res.posterior_samples["p_hat"])[..., k])
        assert "mixing_weights" not in b.posterior_samples
        assert b.prior_params == {"p": (2.0, 2.0), "mu": (0.0, 1.0)}
    sub = loaded.get_component(1)[[6, 1]]
    np.testing.assert_array_equal(np.asarray(sub.get_map()["r"]),
                                  np.asarray(res.get_map()["r"])[1, [6, 1]])


def test_save_load_plugin_model_type(poisson, tmp_path):  # noqa: F811
    rng = np.random.default_rng(1)
    counts = rng.poisson(np.linspace(0.5, 6.0, G), size=(C, G))
    res = scribe.fit(counts, "poisson", n_steps=100, progress=False)
    res.get_posterior_samples(jax.random.PRNGKey(0), n_samples=10)
    post = res.idata.posterior
    # No composition: dims inferred from shapes.
    assert post["rate"].dims == ("chain", "draw", "gene")
    assert post["log_rate"].dims == ("chain", "draw", "gene")
    assert res.idata.variational_parameters["rate_loc"].dims == ("gene",)
    res.save(tmp_path / "poisson.nc")
    loaded = scribe.load(tmp_path / "poisson.nc")
    assert_loaded_equal(res, loaded)
    key = jax.random.PRNGKey(5)
    assert_arrays_equal(loaded.get_posterior_samples(key, 10, store_samples=False),
                        res.get_posterior_samples(key, 10, store_samples=False))
    loc, scale = (np.asarray(res.params[n], np.float64) for n in ("rate_loc", "rate_scale"))
    np.testing.assert_allclose(loaded.get_map()["rate"], np.exp(loc - scale**2), rtol=1e-5)


def test_metadata_columns_named_like_dims_or_sites_survive_selection(capture_mixture):
    obs = pd.DataFrame({"component": np.arange(C) % 3, "mixing_weights": np.ones(C),
                        "cell": [f"x{c}" for c in range(C)]}, index=CELLS)
    res = ScribeSVIResults(params=capture_mixture.params, loss_history=jnp.zeros(2),
                           n_cells=C, n_genes=G, model_type="nbvcp_mix",
                           model_config=capture_mixture.model_config, prior_params={},
                           obs=obs, posterior_samples=capture_mixture.posterior_samples)
    for part in (res.get_component(1), res[[0, 3]]):
        pd.testing.assert_frame_equal(part.obs, obs, check_exact=True)
        assert list(part.idata.posterior["cell"].values) == CELLS


def test_pickle_and_deepcopy_round_trip(capture_mixture):
    for copied in (pickle.loads(pickle.dumps(capture_mixture)), copy.deepcopy(capture_mixture)):
        assert_loaded_equal(capture_mixture, copied)


def test_zarr_round_trip(capture_mixture, tmp_path):
    pytest.importorskip("zarr")
    capture_mixture.save(tmp_path / "mix.zarr")
    assert_loaded_equal(capture_mixture, scribe.load(tmp_path / "mix.zarr"))


def test_load_rejects_other_files(tmp_path):
    az.from_dict(posterior={"x": np.zeros((1, 3))}).to_netcdf(str(tmp_path / "other.nc"))
    with pytest.raises(ValueError, match="scribe"):
        scribe.load(tmp_path / "other.nc")


# ---- views ---------------------------------------------------------------------------------
def small_results(**kwargs) -> ScribeSVIResults:
    return ScribeSVIResults(params=make_params("nbdm", "standard", C, G),
                            loss_history=jnp.zeros(3), n_cells=C, n_genes=G,
                            model_type="nbdm", model_config=ModelConfig("nbdm"),
                            prior_params={}, **kwargs)


def test_views_write_to_the_idata():
    rng = np.random.default_rng(0)
    samples = {"p": rng.uniform(size=4).astype(np.float32),
               "r": rng.uniform(size=(4, G)).astype(np.float32)}
    res = small_results(posterior_samples=samples)
    np.testing.assert_array_equal(res.idata.posterior["r"].values[0], samples["r"])
    samples["r"][:] = -1   # the caller's array is copied, not aliased
    assert np.all(res.posterior_samples["r"] >= 0)
    res.posterior_samples = {"p": np.full(2, 0.5, np.float32)}
    assert res.idata.posterior.sizes["draw"] == 2 and set(res.idata.posterior) == {"p"}
    res.posterior_samples = None
    assert "posterior" not in res.idata.groups() and res.posterior_samples is None
    counts = rng.integers(0, 9, (3, C, G)).astype(np.int32)
    res.predictive_samples = counts
    np.testing.assert_array_equal(res.idata.posterior_predictive["counts"].values[0], counts)
    np.testing.assert_array_equal(res.idata.posterior_predictive["total_counts"].values[0],
                                  counts.sum(-1))
    with pytest.raises(ValueError):
        res.predictive_samples = counts[:, :, :-1]
    res.loss_history = jnp.arange(3.0)
    np.testing.assert_array_equal(res.idata.optimization["loss"].values, [0.0, 1.0, 2.0])


def test_metadata_edits_in_place_reach_the_idata():
    obs = pd.DataFrame({"x": np.arange(C)}, index=CELLS)
    res = small_results(obs=obs, uns={"a": 1}, posterior_samples={
        "p": np.full(2, 0.5, np.float32), "r": np.ones((2, G), np.float32)})
    assert res.obs is obs   # the caller's object, as a dataclass field would hold it
    res.obs["y"] = np.arange(C) * 2.0
    res.uns["b"] = [1, 2]
    res.prior_params["p"] = (1.0, 1.0)
    data = res.idata
    np.testing.assert_array_equal(data.obs["y"].values, np.arange(C) * 2.0)
    assert res.uns == {"a": 1, "b": [1, 2]} and res.prior_params == {"p": (1.0, 1.0)}
    # Renaming cells renames them in every group.
    res.set_observed_counts(np.ones((C, G)))
    res.obs.index = [f"c{i}" for i in range(C)]
    data = res.idata
    assert list(data.obs["cell"].values) == [f"c{i}" for i in range(C)]
    assert list(data.observed_data["cell"].values) == [f"c{i}" for i in range(C)]
    res.posterior_samples = {"p_hat": np.ones((2, C), np.float32)}   # a cell-scoped value
    assert list(res.idata.posterior["cell"].values) == [f"c{i}" for i in range(C)]
    with pytest.raises(ValueError):
        res.obs = obs.iloc[:-1]


def test_unstorable_metadata_warns_then_save_raises(tmp_path):
    uns = {"ok": 1, "bad": {1, 2}}
    with pytest.warns(UserWarning, match=r"uns\['bad'\]"):
        res = small_results(uns=uns)
    assert res.uns is uns   # kept in memory
    with pytest.raises(UnstorableError, match=r"uns\['bad'\]"):
        res.save(tmp_path / "bad.nc")
    del res.uns["bad"]   # fixed in place: saving works
    res.save(tmp_path / "bad.nc")
    assert scribe.load(tmp_path / "bad.nc").uns == {"ok": 1}

    for value in (pd.DataFrame({"a": [1]}), np.ones(2, complex), {3: "int key"},
                  np.array([1, "a"], dtype=object)):
        with pytest.warns(UserWarning):
            res = small_results(uns={"v": value})
        with pytest.raises(UnstorableError, match=r"uns\['v'\]"):
            res.save(tmp_path / "bad.nc")

    obs = pd.DataFrame({"mixed": [1, "a"] * (C // 2)}, index=CELLS)
    with pytest.warns(UserWarning, match="mixed"):
        res = small_results(obs=obs)
    assert res.obs is obs
    assert list(res.idata.obs["cell"].values) == CELLS   # the names are stored
    with pytest.raises(UnstorableError, match="mixed"):
        res.save(tmp_path / "bad.nc")


# ---- compiled sampling ---------------------------------------------------------------------
def test_sampling_compiles_once_per_size(nbdm_fit):
    """The fixture compiled its posterior (S draws) and predictive samplers; further calls
    with the same sizes reuse them, another size compiles once more."""
    res = nbdm_fit[0]
    samplers, before = res._samplers, res._samplers.n_traces
    stored = res.posterior_samples
    start = time.perf_counter()
    draws = res.get_posterior_samples(jax.random.PRNGKey(11), n_samples=S, store_samples=False)
    res.get_predictive_samples(jax.random.PRNGKey(12), store_samples=False)
    reused = time.perf_counter() - start
    assert samplers.n_traces == before
    assert not np.array_equal(np.asarray(draws["r"]), np.asarray(stored["r"]))
    start = time.perf_counter()
    res.get_posterior_samples(jax.random.PRNGKey(13), n_samples=S + 1, store_samples=False)
    compiled = time.perf_counter() - start
    assert samplers.n_traces == before + 1 and reused < compiled
    res.get_posterior_samples(jax.random.PRNGKey(14), n_samples=S + 1, store_samples=False)
    assert samplers.n_traces == before + 1


def test_fit_store_counts_keeps_the_sparse_counts(nbdm_fit, tmp_path):
    """``scribe.fit(..., store_counts=True)`` puts the counts in ``observed_data`` as
    non-zeros, and they survive save/load."""
    # The fixture's counts (with zeros), model and step chunk (100): the fits reuse its
    # compiled programs (tests/conftest.py) instead of compiling their own.
    dense = nbdm_fit[1].astype(np.float32)
    assert 0 < np.count_nonzero(dense) < dense.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # 100 steps: not converged
        results = scribe.fit(sp.csr_matrix(dense), "nbdm", n_steps=100, progress=False,
                             store_counts=True)
        plain = scribe.fit(dense, "nbdm", n_steps=100, progress=False)
    np.testing.assert_array_equal(results.observed_counts.toarray(), dense)
    path = tmp_path / "fit.nc"
    results.save(path)
    np.testing.assert_array_equal(scribe.load(path).observed_counts.toarray(), dense)
    assert plain.observed_counts is None
