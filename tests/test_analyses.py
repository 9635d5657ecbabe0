"""Tests of the analyses on a fit (``scribe.svi.analyses``, SPEC section 4).

Results are built from hand-chosen variational parameters and hand-made canonical
posterior draws (no fitting, no sampler compilation), so every log-likelihood can be
checked against ``scipy.stats``. Results objects are module fixtures: their compiled
evaluation is reused across tests, which keeps the file fast.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.special import logsumexp, softmax
from test_results import make_params, make_results

import scribe
from scribe import ModelConfig
from scribe.svi import ScribeSVIResults

C, G, S = 20, 6, 4
PACKAGES = Path(__file__).parent / "plugin_packages"


# ---- references ----------------------------------------------------------------------
def reference_elementwise(counts, draw: dict) -> np.ndarray:
    """``log f(x_cg | theta)`` from scipy: ``(C, G)``, or ``(C, G, K)`` for mixtures."""
    x = np.asarray(counts, np.float64)
    r = np.asarray(draw["r"], np.float64)
    p = np.asarray(draw["p"], np.float64)
    gate = draw.get("gate")
    if r.ndim == 2:  # mixture: one component at a time
        return np.stack([reference_elementwise(x, {
            **draw, "r": r[k], "p": p[k] if p.ndim else p,
            **({"gate": np.asarray(gate)[k]} if gate is not None else {})})
            for k in range(r.shape[0])], axis=-1)
    if "p_capture" in draw:
        nu = np.asarray(draw["p_capture"], np.float64)
        p = (p * nu / (1 - p * (1 - nu)))[:, None]
    out = stats.nbinom.logpmf(x, r, 1 - p)
    if gate is not None:
        gate = np.asarray(gate, np.float64)
        out = np.where(x == 0, np.log(gate + (1 - gate) * np.exp(out)), np.log1p(-gate) + out)
    return out


def reference_sums(counts, draw: dict, by: str, weights=None, weight_type=None,
                   split=False) -> np.ndarray:
    """SPEC section 4: weighted sums by cell or gene, ``+ log w_k`` and logsumexp."""
    ell = reference_elementwise(counts, draw)
    mixture = "mixing_weights" in draw
    if not mixture:
        ell = ell[..., None]
    w = None if weights is None else np.asarray(weights, np.float64)[None, :, None]
    if weight_type == "multiplicative":
        ell = ell * w
    elif weight_type == "additive":
        ell = ell + w
    out = ell.sum(axis=1 if by == "cell" else 0)
    if not mixture:
        return out[..., 0]
    out = out + np.log(np.asarray(draw["mixing_weights"], np.float64))
    return out if split else logsumexp(out, axis=-1)


def per_draw(samples: dict, s: int) -> dict:
    return {k: np.asarray(v)[s] for k, v in samples.items()}


def canonical_draws(model_type: str, n_draws: int = S, n_components=None,
                    component_specific=False, seed=0) -> dict:
    """Canonical posterior draws ``{p, r[, gate, p_capture, mixing_weights]}``."""
    rng = np.random.default_rng(seed)
    k = () if n_components is None else (n_components,)
    p_shape = (n_draws, *k) if component_specific else (n_draws,)
    draws = {"p": rng.uniform(0.2, 0.7, p_shape),
             "r": rng.lognormal(0.0, 0.8, (n_draws, *k, G))}
    if "zinb" in model_type:
        draws["gate"] = rng.uniform(0.05, 0.5, (n_draws, *k, G))
    if "vcp" in model_type:
        draws["p_capture"] = rng.uniform(0.3, 0.95, (n_draws, C))
    if n_components is not None:
        draws["mixing_weights"] = rng.dirichlet(np.full(n_components, 3.0), n_draws)
    return {name: jnp.asarray(v, jnp.float32) for name, v in draws.items()}


def results_with_draws(model_type, n_components=None, component_specific=False, seed=0,
                       n_draws=S) -> ScribeSVIResults:
    draws = canonical_draws(model_type, n_draws, n_components, component_specific, seed)
    return make_results(model_type, "standard", n_components, component_specific, seed=seed,
                        posterior_samples=draws)


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.negative_binomial(1.5, 0.35, (C, G))
    x[0, :] = 0  # an empty cell
    x[:, 0] = np.maximum(x[:, 0], 1) * (np.arange(C) % 3 == 0)
    return x


@pytest.fixture(scope="module")
def mix() -> ScribeSVIResults:
    """zinbvcp_mix with component-specific p: every parameter kind at once."""
    return results_with_draws("zinbvcp_mix", 3, True, seed=5)


def close(actual, expected, rtol=2e-5, atol=2e-4, **kw):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                               atol=atol, **kw)


# ---- log-likelihoods against scipy ------------------------------------------------------
@pytest.mark.parametrize("model_type,n_components", [
    ("nbdm", None), ("zinb", None), ("nbvcp", None), ("zinbvcp", None), ("nbdm_mix", 2)])
def test_log_likelihood_matches_scipy(counts, model_type, n_components):
    res = results_with_draws(model_type, n_components, seed=1)
    samples = res.posterior_samples
    by_cell = res.log_likelihood(sp.csr_matrix(counts))
    by_gene = res.log_likelihood(counts.T, return_by="gene", cells_axis=1, batch_size=7)
    assert by_cell.shape == (S, C) and by_gene.shape == (S, G)
    for s in range(S):
        draw = per_draw(samples, s)
        close(by_cell[s], reference_sums(counts, draw, "cell"))
        close(by_gene[s], reference_sums(counts, draw, "gene"))
    # MAP: the same sums at get_map's canonical estimates.
    estimates = {k: np.asarray(v) for k, v in res.get_map(use_mean=True).items()}
    close(res.log_likelihood_map(counts), reference_sums(counts, estimates, "cell"))


def test_mixture_split_batch_invariance_and_map(counts, mix):
    samples = mix.posterior_samples
    results = {b: mix.log_likelihood(counts, batch_size=b, split_components=True)
               for b in (1, 7, None)}
    assert results[None].shape == (S, C, 3)
    for b in (1, 7):
        close(results[b], results[None], rtol=1e-6, atol=1e-4)
    for s in range(S):
        close(results[None][s], reference_sums(counts, per_draw(samples, s), "cell",
                                               split=True))
    # Repeated calls reuse the compiled evaluation.
    traces = mix._evaluator().n_traces
    mix.log_likelihood(counts, batch_size=7, split_components=True)
    assert mix._evaluator().n_traces == traces
    unsplit = mix.log_likelihood(counts, batch_size=7)
    close(unsplit, logsumexp(np.asarray(results[None], np.float64), axis=-1), rtol=1e-5)
    gene_split = mix.log_likelihood(counts, return_by="gene", split_components=True,
                                    batch_size=7)
    gene = mix.log_likelihood(counts, return_by="gene")
    assert gene_split.shape == (S, G, 3) and gene.shape == (S, G)
    close(gene, logsumexp(np.asarray(gene_split, np.float64), axis=-1), rtol=1e-5)
    for s in range(S):
        close(gene_split[s], reference_sums(counts, per_draw(samples, s), "gene", split=True))
    # MAP: per-cell p_capture sliced correctly into blocks.
    estimates = {k: np.asarray(v) for k, v in mix.get_map(use_mean=True).items()}
    map_split = mix.log_likelihood_map(counts, batch_size=7, split_components=True,
                                       gene_batch_size=2)
    assert map_split.shape == (C, 3)
    close(map_split, reference_sums(counts, estimates, "cell", split=True))


@pytest.mark.parametrize("weight_type", ["multiplicative", "additive"])
def test_weights_against_scipy(counts, mix, weight_type):
    weights = np.linspace(0.2, 2.0, G)
    draw = per_draw(mix.posterior_samples, 2)
    for by in ("cell", "gene"):
        for split in (True, False):
            out = mix.log_likelihood(counts, return_by=by, split_components=split,
                                     weights=weights, weight_type=weight_type, batch_size=7)
            close(out[2], reference_sums(counts, draw, by, weights, weight_type, split),
                  err_msg=f"{by} split={split}")


def test_log_likelihood_with_sampled_posterior(counts):
    """Draws from get_posterior_samples (sampled sites, canonical and derived entries)."""
    res = make_results("zinbvcp_mix", "odds_ratio", 2, True, seed=9)
    samples = res.get_posterior_samples(jax.random.PRNGKey(3), n_samples=3)
    out = res.log_likelihood(counts, return_by="gene", split_components=True, batch_size=6)
    for s in range(3):
        close(out[s], reference_sums(counts, per_draw(samples, s), "gene", split=True))


def test_loo_after_log_likelihood(counts):
    res = results_with_draws("nbdm", n_draws=40, seed=2)
    per_cell = np.asarray(res.log_likelihood(counts), np.float64)
    lppd = np.sum(logsumexp(per_cell, axis=0) - np.log(per_cell.shape[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k warnings on 20 cells
        loo = az.loo(res.idata, pointwise=True)
    assert loo.elpd_loo <= lppd + 1e-6
    close(loo.elpd_loo + loo.p_loo, lppd, rtol=1e-5)
    assert loo.loo_i.shape == (C,)


def test_ignore_nans_drops_draws(counts):
    draws = canonical_draws("nbdm", seed=4)
    draws["r"] = draws["r"].at[1, 0].set(jnp.nan)
    res = make_results("nbdm", "standard", posterior_samples=draws)
    kept = res.log_likelihood(counts)
    assert kept.shape == (S, C) and bool(jnp.isnan(kept[1]).all())
    with pytest.warns(UserWarning, match="dropped 1 of 4"):
        dropped = res.log_likelihood(counts, ignore_nans=True)
    close(dropped, np.asarray(kept)[[0, 2, 3]], rtol=0, atol=0)


# ---- assignments --------------------------------------------------------------------------
def test_entropies_and_cell_type_probabilities(counts, mix):
    log_k = np.log(3)
    for by, n in (("cell", C), ("gene", G)):
        entropy = mix.mixture_component_entropy(counts, return_by=by, batch_size=7)
        assert entropy.shape == (S, n)
        assert np.all((np.asarray(entropy) >= 0) & (np.asarray(entropy) <= log_k + 1e-6))
        entropy_map = mix.assignment_entropy_map(counts, return_by=by, verbose=False)
        assert entropy_map.shape == (n,)
    # Temperature flattens: a very high T gives entropies near log K.
    hot = mix.mixture_component_entropy(counts, return_by="cell", temperature=1e6)
    close(hot, np.full((S, C), log_k), atol=1e-3)

    probs = mix.cell_type_probabilities(counts, batch_size=7, temperature=50.0)
    assert probs["sample_probabilities"].shape == (S, C, 3)
    assert probs["concentration"].shape == (C, 3)
    close(probs["sample_probabilities"].sum(-1), np.ones((S, C)), atol=1e-5)
    close(probs["mean_probabilities"].sum(-1), np.ones(C), atol=1e-5)
    split = np.asarray(mix.log_likelihood(counts, split_components=True), np.float64)
    close(probs["sample_probabilities"], softmax(split / 50.0, axis=-1), atol=1e-4)
    assert set(mix.cell_type_probabilities(counts, fit_distribution=False)) == {
        "sample_probabilities"}

    prob_map = mix.cell_type_probabilities_map(counts, use_mean=True, verbose=False)
    assert set(prob_map) == {"probabilities"} and prob_map["probabilities"].shape == (C, 3)
    close(prob_map["probabilities"].sum(-1), np.ones(C), atol=1e-5)


# ---- normalisation and divergences -------------------------------------------------------------
def test_normalize_counts_shapes_and_means():
    r = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0], np.float32) * 5
    res = make_results("nbdm", "standard", posterior_samples={
        "p": jnp.full(S, 0.5), "r": jnp.tile(jnp.asarray(r), (S, 1))})
    out = res.normalize_counts(n_samples_dirichlet=1)
    assert set(out) == {"samples"} and out["samples"].shape == (S, G)
    out = res.normalize_counts(n_samples_dirichlet=200, fit_distribution=True,
                               return_concentrations=True, verbose=False)
    assert out["samples"].shape == (S, G, 200)
    assert out["original_concentrations"].shape == (S, G)
    close(out["mean_probabilities"], r / r.sum(), rtol=0.05, atol=0)
    close(out["concentrations"], r, rtol=0.15, atol=0)
    assert isinstance(out["distributions"], dist.Dirichlet)

    mix_r = np.stack([r, r[::-1]])
    res = make_results("nbdm_mix", "standard", 2, posterior_samples={
        "p": jnp.full(S, 0.5), "r": jnp.tile(jnp.asarray(mix_r), (S, 1, 1)),
        "mixing_weights": jnp.full((S, 2), 0.5)})
    out = res.normalize_counts(n_samples_dirichlet=200, fit_distribution=True,
                               store_samples=False, backend="scipy", verbose=False,
                               sample_axis=1)
    assert "samples" not in out and out["concentrations"].shape == (2, G)
    close(out["mean_probabilities"], mix_r / mix_r.sum(-1, keepdims=True), rtol=0.05, atol=0)
    assert len(out["distributions"]) == 2
    close(out["distributions"][1].mean(), mix_r[1] / mix_r[1].sum(), rtol=0.05, atol=0)


def test_component_divergences():
    params = make_params("nbdm_mix", "standard", n_genes=G, n_components=3, seed=8)
    params["r_loc"] = params["r_loc"].at[1].set(params["r_loc"][0])
    params["r_scale"] = params["r_scale"].at[1].set(params["r_scale"][0])
    res = make_results("nbdm_mix", "standard", 3, params=params)
    for metric in ("hellinger", "kl", "js"):
        div = np.asarray(res.component_divergences(metric))
        assert div.shape == (3, 3, G)
        close(div[0, 1], np.zeros(G), atol=1e-5)
        close(np.diagonal(div, axis1=0, axis2=1), np.zeros((G, 3)), atol=1e-5)
        assert np.all(div >= -1e-6) and np.all(div[0, 2] > 0)
        if metric == "js":
            assert np.all(div <= np.log(2) + 1e-6)
        if metric == "hellinger":
            assert np.all(div <= 1 + 1e-6)
    with pytest.raises(ValueError, match="site must be"):
        res.component_divergences(site="p")


# ---- errors -------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(counts, mix):
    with pytest.raises(ValueError, match="5 genes but the model was fitted to 6 genes"):
        mix.log_likelihood(counts[:, :5])
    with pytest.raises(ValueError, match="per-cell parameters"):
        mix.log_likelihood(counts[:5])
    with pytest.raises(ValueError, match="weight_type must be"):
        mix.log_likelihood(counts, weights=np.ones(G), weight_type="power")
    with pytest.raises(ValueError, match="without weight_type"):
        mix.log_likelihood(counts, weights=np.ones(G))
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        mix.log_likelihood(counts, weights=np.ones(G + 1), weight_type="additive")
    with pytest.raises(ValueError, match="return_by"):
        mix.log_likelihood(counts, return_by="component")
    plain = make_results("nbdm", "standard")
    with pytest.raises(ValueError, match="get_posterior_samples"):
        plain.log_likelihood(counts)
    for method in ("mixture_component_entropy", "assignment_entropy_map",
                   "cell_type_probabilities", "cell_type_probabilities_map"):
        with pytest.raises(ValueError, match="needs a mixture model"):
            getattr(plain, method)(counts)
    with pytest.raises(ValueError, match="needs a mixture model"):
        plain.component_divergences()
    with pytest.raises(ValueError, match="split_components"):
        plain.log_likelihood_map(counts, split_components=True)
    with pytest.raises(ValueError, match="get_posterior_samples"):
        plain.normalize_counts()
    with pytest.raises(scribe.data.CountsError):
        mix.log_likelihood(-counts)


# ---- plugins ------------------------------------------------------------------------------
@pytest.fixture
def plugins_installed(tmp_path, monkeypatch):
    """Install the Poisson and hurdle test plugins through the entry-point group."""
    modules = {"test_poisson": "scribe_test_poisson", "test_hurdle": "scribe_test_hurdle"}
    for entry, module in modules.items():
        info = tmp_path / f"site-{module}" / f"{module}-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.0\n")
        (info / "entry_points.txt").write_text(f"[scribe]\n{entry} = {module}\n")
        monkeypatch.syspath_prepend(str(info.parent))
    monkeypatch.syspath_prepend(str(PACKAGES))
    scribe.reload_plugins()
    yield
    monkeypatch.undo()
    for module in modules.values():
        sys.modules.pop(module, None)
    importlib.invalidate_caches()
    scribe.reload_plugins()


def test_log_likelihood_for_plugin_model_types(counts, plugins_installed):
    # A model type with its own hooks and only an elementwise log_prob (dense blocks).
    rng = np.random.default_rng(0)
    rate = jnp.asarray(rng.lognormal(0.5, 0.5, (S, G)), jnp.float32)
    res = ScribeSVIResults(
        params={"rate_loc": jnp.zeros(G), "rate_scale": jnp.full(G, 0.1)},
        loss_history=jnp.zeros(2), n_cells=C, n_genes=G, model_type="poisson",
        model_config=ModelConfig("poisson", "standard"), prior_params={},
        posterior_samples={"rate": rate, "log_rate": jnp.log(rate)})
    expected = stats.poisson.logpmf(counts[None], np.asarray(rate, np.float64)[:, None])
    for b in (None, 7):
        close(res.log_likelihood(counts, batch_size=b), expected.sum(-1))
        close(res.log_likelihood(counts, return_by="gene", batch_size=b), expected.sum(1))
    # MAP: the LogNormal mode exp(loc - scale^2).
    close(res.log_likelihood_map(counts), stats.poisson.logpmf(counts, np.exp(-0.01)).sum(-1))

    # A plugin likelihood (hurdle NB) composed by the core, without a sparse evaluation.
    draws = canonical_draws("zinb", seed=6)
    params = {"p_alpha": jnp.asarray(3.0), "p_beta": jnp.asarray(4.0),
              "r_loc": jnp.zeros(G), "r_scale": jnp.full(G, 0.3),
              "gate_alpha": jnp.full(G, 2.0), "gate_beta": jnp.full(G, 5.0)}
    res = ScribeSVIResults(params=params, loss_history=jnp.zeros(2), n_cells=C, n_genes=G,
                           model_type="hurdle_nb",
                           model_config=ModelConfig("hurdle_nb", "standard"),
                           prior_params={}, posterior_samples=draws)
    out = res.log_likelihood(counts, batch_size=7)
    for s in range(S):
        r, p, gate = (np.asarray(draws[k][s], np.float64) for k in ("r", "p", "gate"))
        positive = (np.log1p(-gate) + stats.nbinom.logpmf(counts, r, 1 - p)
                    - np.log1p(-stats.nbinom.pmf(0, r, 1 - p)))
        close(out[s], np.where(counts == 0, np.log(gate), positive).sum(-1))

    # Its mixture: the per-component dense fallback inside the sparse interface.
    draws = canonical_draws("zinb_mix", n_components=2, seed=7)
    params = {"p_alpha": jnp.asarray(3.0), "p_beta": jnp.asarray(4.0),
              "r_loc": jnp.zeros((2, G)), "r_scale": jnp.full((2, G), 0.3),
              "gate_alpha": jnp.full((2, G), 2.0), "gate_beta": jnp.full((2, G), 5.0),
              "mixing_concentrations": jnp.full(2, 3.0)}
    res = ScribeSVIResults(params=params, loss_history=jnp.zeros(2), n_cells=C, n_genes=G,
                           model_type="hurdle_nb_mix",
                           model_config=ModelConfig("hurdle_nb_mix", "standard",
                                                    n_components=2),
                           prior_params={}, posterior_samples=draws)
    out = res.log_likelihood(counts, batch_size=7, split_components=True)
    for s in range(S):
        p = float(draws["p"][s])
        for k in range(2):
            r, gate = (np.asarray(draws[n][s, k], np.float64) for n in ("r", "gate"))
            positive = (np.log1p(-gate) + stats.nbinom.logpmf(counts, r, 1 - p)
                        - np.log1p(-stats.nbinom.pmf(0, r, 1 - p)))
            expected = (np.where(counts == 0, np.log(gate), positive).sum(-1)
                        + np.log(float(draws["mixing_weights"][s, k])))
            close(out[s, :, k], expected)
