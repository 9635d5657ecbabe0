"""A mini-batched mixture fit with scribe.fit's defaults (epoch-drawn batches, the stop
on epoch means, Laplace-width start): it converges, assigns every cell right and puts
each component's r where the posterior says it is."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import scribe
from scribe.simulate import simulate_counts


@pytest.mark.slow
def test_batched_mixture_fit_recovers_the_truth():
    k, n_cells, n_genes = 2, 4000, 60
    counts, truth = simulate_counts("nbdm_mix", n_cells, n_genes, n_components=k, seed=4)
    csr = sp.csr_matrix(counts.astype(np.float32))
    res = scribe.fit(csr, "nbdm_mix", n_components=k, batch_size=512, seed=0,
                     progress=False)
    assert res.converged and res.n_steps_run < 5000
    labels = np.asarray(res.cell_type_probabilities_map(csr, verbose=False)[
        "probabilities"]).argmax(axis=1)
    # Well-separated components: every cell in its component (up to relabelling).
    order = [int(np.bincount(truth["assignment"][labels == j], minlength=k).argmax())
             for j in range(k)]
    assert sorted(order) == list(range(k))
    assert np.mean(np.asarray(order)[labels] == truth["assignment"]) == 1.0
    # r against the posterior: z = (log r_hat - log r_true) / posterior sd of log r. For a
    # calibrated posterior centred on the truth |z| has median 0.674; over 2 x 60 genes the
    # median's standard error is ~0.08, so a bound of 1.0 allows for ~4 se plus a modest
    # bias, and a fit stopped early (or a stop on noise) fails it.
    params = res.params
    loc = np.asarray(params["r_loc"])[order_inverse(order)]
    scale = np.asarray(params["r_scale"])[order_inverse(order)]
    z = (loc - np.log(truth["r"])) / scale
    assert np.median(np.abs(z)) <= 1.0


def order_inverse(order):
    """Fitted component index for each true component."""
    return np.argsort(np.asarray(order))
