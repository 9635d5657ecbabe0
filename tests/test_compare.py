"""``scribe.compare``: PSIS-LOO over cells through ArviZ, and when a comparison is invalid.

Fast checks: ArviZ's table on log-likelihoods with a known difference, and the refusals.
The comparison of real fits (nbvcp against nbdm) is ``slow`` (test_biology_fits.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_results import make_results

import scribe
from scribe.svi import idata


def test_loo_difference_of_shifted_log_likelihoods():
    """A fit whose every log p(x_c | theta_s) is lower by 1 has, exactly, elpd_loo lower
    by C (a constant shift per cell leaves the PSIS weights unchanged) and stacking
    weight ~ 0."""
    rng = np.random.default_rng(0)
    n_draws, n_cells = 200, 50
    good = rng.normal(-10, 0.3, (n_draws, n_cells))
    table, pareto_k = idata.compare_loo({"good": good, "worse": good - 1.0})
    assert list(table.index) == ["good", "worse"]
    assert table.loc["worse", "elpd_diff"] == pytest.approx(n_cells, rel=1e-6)
    assert table.loc["good", "weight"] > 0.99
    assert pareto_k["good"].shape == (n_cells,) and np.all(pareto_k["good"] < 0.7)


def test_invalid_comparisons_are_refused():
    a = make_results("nbdm", n_cells=20, n_genes=6)
    counts = np.ones((20, 6))
    with pytest.raises(ValueError, match="at least two"):
        scribe.compare({"a": a}, counts)
    with pytest.raises(ValueError, match="6 genes, fit 'b' 5"):
        scribe.compare({"a": a, "b": make_results("nbdm", n_cells=20, n_genes=5)}, counts)
    named = make_results("nbvcp", n_cells=20, n_genes=6)
    named.var = pd.DataFrame(index=[f"g{i}" for i in range(6)])
    with pytest.raises(ValueError, match="genes differ at position 0"):
        scribe.compare({"a": a, "b": named}, counts)
    with pytest.raises(TypeError, match="not results"):
        scribe.compare({"a": a, "b": "nbdm"}, counts)
    with pytest.raises(ValueError, match="genes"):
        scribe.compare({"a": a, "b": make_results("zinb", n_cells=20, n_genes=6)},
                       counts[:, :3])
    stored = make_results("zinb", n_cells=20, n_genes=6)
    stored.set_observed_counts(counts * 2)
    with pytest.raises(ValueError, match="other counts"):
        scribe.compare({"a": a, "b": stored}, counts)
