"""``scribe.pl``: each plot renders, and what it draws is checked against numpy/scipy."""

from __future__ import annotations

import types

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.figure import Figure
from scipy import stats

import scribe
from scribe import pl
from tests._tiny_fits import CLI_STEPS, N_CELLS, REAL_DATA, capture_mixture_fit, cli_fit

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fit():
    """An anchored capture mixture (slow tests only: it compiles a model of its own)."""
    return capture_mixture_fit()


@pytest.fixture(scope="module")
def nbdm_fit():
    """The fit ``scribe fit`` made of the shipped 10x subset (shared with test_cli)."""
    if not REAL_DATA.exists():
        pytest.skip(f"shipped data {REAL_DATA} not present")
    path, counts, process = cli_fit()
    assert process.returncode == 0, process.stderr
    return scribe.load(path), counts


def _render(ax_or_fig) -> None:
    figure = ax_or_fig if isinstance(ax_or_fig, Figure) else ax_or_fig.figure
    figure.canvas.draw()   # raises if anything drawn is malformed


# ---- loss ---------------------------------------------------------------------------------
def test_window_medians_match_brute_force():
    losses = np.random.default_rng(0).normal(size=1050)
    losses[7] = np.nan   # a skipped step is ignored
    steps, medians = pl.window_medians(losses, 100)
    np.testing.assert_array_equal(steps, np.arange(100, 1001, 100))
    expected = [np.nanmedian(losses[i * 100:(i + 1) * 100]) for i in range(10)]
    np.testing.assert_allclose(medians, expected)


def test_loss_plot_draws_the_trace_and_the_stop(nbdm_fit):
    results, _ = nbdm_fit
    ax = pl.loss(results)
    _render(ax)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.asarray(results.loss_history))
    stop = [line for line in ax.lines if "not converged" in line.get_label()]
    assert len(stop) == 1 and stop[0].get_xdata()[0] == CLI_STEPS


def test_loss_plot_accepts_an_array_and_an_ax():
    ax = Figure().add_subplot()
    assert pl.loss(np.linspace(10, 1, 300), ax=ax) is ax
    assert ax.lines[-1].get_label() == "300 steps"
    with pytest.raises(ValueError, match="non-empty 1-D"):
        pl.loss(np.zeros((2, 2)))


# ---- posterior-predictive checks --------------------------------------------------------
def test_gene_statistics_dense_sparse_and_draws_agree_with_numpy():
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.7, size=(40, 6)).astype(float)
    sparse = sp.csr_matrix(counts)
    sparse.data[0] = 0.0   # an explicitly stored zero still counts as a zero
    dense = sparse.toarray()
    expected = {"mean": dense.mean(0), "variance": dense.var(0),
                "zero_fraction": (dense == 0).mean(0)}
    for stats_ in (pl.gene_statistics(dense), pl.gene_statistics(sparse)):
        for name, value in expected.items():
            np.testing.assert_allclose(stats_[name], value, atol=1e-12)
    draws = rng.poisson(0.7, size=(3, 40, 6))
    per_draw = pl.gene_statistics(draws)
    np.testing.assert_allclose(per_draw["variance"][2], draws[2].var(0))


def test_sorted_library_sizes_band_is_the_rankwise_quantile():
    rng = np.random.default_rng(2)
    observed, predicted = rng.poisson(50, 30), rng.poisson(50, (11, 30))
    data = pl.sorted_library_sizes(observed, predicted, level=0.8)
    np.testing.assert_array_equal(data["observed"], np.sort(observed))
    ranked = np.sort(predicted, axis=1)
    for i in (0, 17, 29):
        np.testing.assert_allclose(
            [data["low"][i], data["median"][i], data["high"][i]],
            np.quantile(ranked[:, i], [0.1, 0.5, 0.9]))
    np.testing.assert_allclose(data["quantile"], (np.arange(30) + 0.5) / 30)


def test_predictive_band_covers_counts_from_the_same_law_at_its_level():
    # Known truth: observed and S = 199 predictive data sets are exchangeable draws of one
    # NB law, so each gene's observed mean falls in the central 90 % band of its S draws
    # with probability ~0.90 (the rank of the observation is uniform on S + 1 places).
    # Over G = 400 independent genes the covered fraction has sd sqrt(.9 .1 / 400) = 0.015;
    # 4 sd = 0.06 bounds it.
    rng = np.random.default_rng(3)
    r = rng.lognormal(0, 1, 400)
    draws = rng.negative_binomial(r, 0.6, size=(200, 30, 400))
    observed, predictive = draws[0], draws[1:]
    low, _, high = pl.quantile_bands(pl.gene_statistics(predictive)["mean"], 0.9)
    mean = pl.gene_statistics(observed)["mean"]
    covered = np.mean((mean >= low) & (mean <= high))
    assert abs(covered - 0.9) < 0.06


def test_ppc_plots_render_and_show_the_observed_data(nbdm_fit):
    results, counts = nbdm_fit
    predictive = pl.predictive_counts(results, n_samples=4, seed=0)
    assert predictive.shape == (4, *counts.shape)
    assert results.posterior_samples is None   # the fit is not modified
    ax = pl.ppc_library_size(results, predictive=predictive)   # stored counts
    _render(ax)
    observed = [line for line in ax.lines if line.get_label() == "observed"][0]
    np.testing.assert_array_equal(observed.get_ydata(), np.sort(counts.sum(axis=1)))
    figure = pl.ppc_genes(results, counts, predictive=predictive)
    _render(figure)
    assert len(figure.axes) == 3
    with pytest.raises(ValueError, match="3 Axes"):
        pl.ppc_genes(results, counts, predictive=predictive, ax=[figure.axes[0]])
    with pytest.raises(ValueError, match="shape"):
        pl.ppc_library_size(results, counts[:, :3], predictive=predictive)


# ---- residuals ------------------------------------------------------------------------------
def test_qq_data_matches_scipy():
    values = np.random.default_rng(4).normal(size=(30, 10))
    data = pl.qq_data(values, level=0.9)
    n = 300
    i = np.arange(1, n + 1)
    np.testing.assert_allclose(data["theoretical"], stats.norm.ppf((i - 0.5) / n))
    np.testing.assert_array_equal(data["sample"], np.sort(values.ravel()))
    np.testing.assert_allclose(data["low"], stats.norm.ppf(stats.beta.ppf(0.05, i, n + 1 - i)))
    np.testing.assert_allclose(data["high"], stats.norm.ppf(stats.beta.ppf(0.95, i, n + 1 - i)))
    thinned = pl.qq_data(values, max_points=50)
    assert thinned["sample"].size == 50 and thinned["n"] == n
    assert thinned["sample"][0] == values.min() and thinned["sample"][-1] == values.max()


def test_residual_qq_from_array_and_from_goodness_of_fit_table():
    values = np.random.default_rng(5).normal(size=200)
    ax = pl.residual_qq(values)
    _render(ax)
    points = [line for line in ax.lines if line.get_label() == "residuals"][0]
    np.testing.assert_array_equal(points.get_ydata(), np.sort(values))
    table = pd.DataFrame({"rqr_mean": [0.1, -0.2, 0.05]}, index=["a", "b", "c"])
    ax = pl.residual_qq(table, n_cells=100)
    points = [line for line in ax.lines if line.get_label() == "residuals"][0]
    np.testing.assert_allclose(points.get_ydata(), np.sort([1.0, -2.0, 0.5]))
    with pytest.raises(ValueError, match="n_cells"):
        pl.residual_qq(table)


# ---- capture --------------------------------------------------------------------------------
@pytest.mark.slow
def test_capture_vs_library_plots_map_capture_against_totals(fit):
    results, counts = fit
    data = pl.capture_data(results, counts)
    np.testing.assert_array_equal(data["library_size"], counts.sum(axis=1))
    expected = results.get_map(use_mean=True, verbose=False)["p_capture"]
    np.testing.assert_allclose(data["p_capture"], np.asarray(expected))
    assert data["mrna_per_cell"] == results.model_config.mrna_total
    ax = pl.capture_vs_library(results)
    _render(ax)
    np.testing.assert_allclose(ax.collections[0].get_offsets(),
                               np.column_stack([counts.sum(axis=1), expected]), rtol=1e-6)
    assert "anchored" in ax.get_title()
    plain = types.SimpleNamespace(capture_anchored=None, model_type="nbdm")
    with pytest.raises(ValueError, match="no per-cell capture"):
        pl.capture_data(plain, counts)


# ---- mixtures -------------------------------------------------------------------------------
def test_assignment_order_matches_a_brute_force_sort():
    probabilities = np.random.default_rng(6).dirichlet([1, 1, 1], size=50)
    order = pl.assignment_order(probabilities)
    expected = sorted(range(50), key=lambda c: (probabilities[c].argmax(),
                                                -probabilities[c].max()))
    np.testing.assert_array_equal(order, expected)
    ax = pl.assignments(probabilities)
    _render(ax)
    np.testing.assert_allclose(ax.images[0].get_array(), probabilities[order])
    with pytest.raises(ValueError, match="n_components >= 2"):
        pl.assignments(probabilities[:, :1])


@pytest.mark.slow
def test_assignments_and_weights_of_the_fit(fit):
    results, counts = fit
    probabilities = np.asarray(results.cell_type_probabilities_map(
        counts, verbose=False)["probabilities"])
    assert probabilities.shape == (N_CELLS, 2)
    _render(pl.assignments(probabilities))
    weights = np.asarray(results.get_map(use_mean=True, verbose=False)["mixing_weights"])
    ax = pl.mixture_weights(weights)
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], weights)


# ---- volcano --------------------------------------------------------------------------------
def _de_table() -> pd.DataFrame:
    table = pd.DataFrame({"lfc_mean": [2.0, -1.5, 0.1, 0.0], "lfc_sd": [0.1] * 4,
                          "lfsr": [0.0, 0.01, 0.4, 0.5], "prob_effect": [1, 0.99, 0.1, 0],
                          "is_de": [True, True, False, False]},
                         index=pd.Index(["A", "B", "C", "D"], name="gene"))
    table.attrs.update(tau=np.log(1.5), target_pefp=0.05, pefp=0.005)
    return table


def test_volcano_data_and_plot():
    table = _de_table()
    data = pl.volcano_data(table, lfsr_floor=1e-3)
    np.testing.assert_allclose(data["y"], -np.log10([1e-3, 0.01, 0.4, 0.5]))
    np.testing.assert_array_equal(data["x"], table["lfc_mean"])
    ax = pl.volcano(table)
    _render(ax)
    not_called, called = ax.collections[:2]
    np.testing.assert_allclose(called.get_offsets(), [[2.0, 4.0], [-1.5, 2.0]])
    np.testing.assert_allclose(not_called.get_offsets()[:, 0], [0.1, 0.0])
    assert sorted(text.get_text() for text in ax.texts) == ["A", "B"]
    with pytest.raises(ValueError, match="lacks column"):
        pl.volcano(table.drop(columns="lfsr"))
