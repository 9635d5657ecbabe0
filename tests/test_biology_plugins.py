"""The issue-9 analyses on plugin model types, and ``scribe.progress``.

A plugin likelihood (hurdle NB, ``tests/plugin_packages``) gets quantile residuals from
the base class's generic CDF (checked against scipy), but no denoising (it does not model
molecules); a whole-model plugin (Poisson) gets a clear error for both.
"""

from __future__ import annotations

import io
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from test_analyses import plugins_installed  # noqa: F401  (fixture)

from scribe import ModelConfig, progress
from scribe.svi import ScribeSVIResults

C, G = 15, 4


@pytest.mark.slow
def test_plugin_likelihood_residuals(plugins_installed):  # noqa: F811
    params = {"p_alpha": jnp.asarray(3.0), "p_beta": jnp.asarray(4.0),
              "r_loc": jnp.zeros(G), "r_scale": jnp.full(G, 0.3),
              "gate_alpha": jnp.full(G, 2.0), "gate_beta": jnp.full(G, 5.0)}
    results = ScribeSVIResults(params=params, loss_history=jnp.zeros(2), n_cells=C,
                               n_genes=G, model_type="hurdle_nb",
                               model_config=ModelConfig("hurdle_nb", "standard"),
                               prior_params={})
    x = np.random.default_rng(0).negative_binomial(1.0, 0.5, (C, G))
    estimate = {k: np.asarray(v, np.float64)
                for k, v in results.get_map(use_mean=True, verbose=False).items()}
    r, p, gate = estimate["r"], estimate["p"], estimate["gate"]

    def cdf(k):   # hurdle: P(0) = gate, positives a zero-truncated NB scaled by 1 - gate
        nb0 = stats.nbinom.pmf(0, r, 1 - p)
        positive = (stats.nbinom.cdf(k, r, 1 - p) - nb0) / (1 - nb0)
        return np.where(k < 0, 0.0, gate + (1 - gate) * np.where(k >= 1, positive, 0.0))

    u = stats.norm.cdf(results.quantile_residuals(x).astype(np.float64))
    assert np.all(u >= cdf(x - 1) - 1e-4) and np.all(u <= cdf(x) + 1e-4)
    with pytest.raises(ValueError, match="does not define the molecules"):
        results.denoise_counts(x)


def test_whole_model_plugin_is_refused(plugins_installed):  # noqa: F811
    x = np.ones((C, G))
    poisson = ScribeSVIResults(
        params={"rate_loc": jnp.zeros(G), "rate_scale": jnp.full(G, 0.1)},
        loss_history=jnp.zeros(2), n_cells=C, n_genes=G, model_type="poisson",
        model_config=ModelConfig("poisson", "standard"), prior_params={})
    for method in (poisson.denoise_counts, poisson.quantile_residuals):
        with pytest.raises(ValueError, match="whole-model plugin"):
            method(x)


def test_progress_blocks(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.setattr(sys, "stderr", io.StringIO())     # not a terminal
    assert progress.progress_blocks(items, total=3, desc="x") is items
    wrapped = progress.progress_blocks(items, total=3, desc="x", enabled=True)
    assert wrapped is not items and list(wrapped) == items
    progress.set_enabled(False)
    try:
        assert progress.progress_blocks(items, total=3, desc="x", enabled=True) is items
    finally:
        progress.set_enabled(None)
    with pytest.raises(TypeError, match="enabled"):
        progress.set_enabled("yes")
