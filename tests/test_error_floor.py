"""benchmarks/error_floor.py: the oracle MLE of r equals scipy's brute-force maximum."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import optimize, stats

from scribe.simulate import simulate_counts

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from error_floor import nb_oracle_r, zinb_oracle_r  # noqa: E402


def test_nb_oracle_is_the_mle_per_component_with_capture():
    counts, truth = simulate_counts("nbvcp_mix", 1500, 12, n_components=2, seed=1,
                                    r_loc=-1.0, capture_range=(0.02, 0.1))
    estimate = nb_oracle_r(sp.csr_matrix(counts), truth)
    for k in range(2):
        cells = truth["assignment"] == k
        for g in range(3):
            res = optimize.minimize_scalar(
                lambda lr, x=counts[cells, g], q=truth["p_hat"][cells]:
                    -stats.nbinom.logpmf(x, np.exp(lr), 1 - q).sum(),
                bounds=(-10, 10), method="bounded", options={"xatol": 1e-9})
            assert estimate[k, g] == pytest.approx(np.exp(res.x), rel=1e-5)


def test_zinb_oracle_is_the_joint_mle_of_r_and_gate():
    counts, truth = simulate_counts("zinb", 1500, 3, seed=2, r_loc=-1.0)
    estimate = zinb_oracle_r(sp.csr_matrix(counts), truth)
    for g in range(3):
        x = counts[:, g]

        def negative_loglik(z, x=x):
            r, gate = np.exp(z[0]), 1 / (1 + np.exp(-z[1]))
            log_nb = stats.nbinom.logpmf(x, r, 1 - truth["p"])
            return -np.where(x == 0, np.log(gate + (1 - gate) * np.exp(log_nb)),
                             np.log1p(-gate) + log_nb).sum()

        best = min((optimize.minimize(negative_loglik, [a, b], method="Nelder-Mead",
                                      options=dict(xatol=1e-8, fatol=1e-10, maxiter=4000))
                    for a in (-2, 0.5) for b in (-3, 0)), key=lambda res: res.fun)
        assert estimate[g] == pytest.approx(np.exp(best.x[0]), rel=1e-5)
