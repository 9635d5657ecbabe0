"""The floor of p_hat's error (``scribe.simulate.p_hat_oracle_error``) against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from scribe.simulate import p_hat_oracle_error, simulate_counts


def test_oracle_is_the_mle_with_r_known_and_matches_cramer_rao():
    counts, truth = simulate_counts("nbvcp", 4000, 300, seed=3, p=0.6, r_loc=-1.0,
                                    r_scale=1.0, capture_range=(0.02, 0.1))
    r = truth["r"]
    # Brute force on a few cells: maximise the NB likelihood (scipy's nbinom(n=r, p=1-p_hat)).
    for c in range(5):
        res = optimize.minimize_scalar(
            lambda q, x=counts[c]: -stats.nbinom.logpmf(x, r, 1 - q).sum(),
            bounds=(1e-6, 1 - 1e-6), method="bounded", options={"xatol": 1e-10})
        total = counts[c].sum()
        assert res.x == pytest.approx(total / (total + r.sum()), rel=1e-4)

    error = p_hat_oracle_error(counts, truth)
    # Cramer-Rao: MLE_c ~ N(p_hat_c, sd_c), sd_c / p_hat_c = (1 - p_hat_c) / sqrt(R p_hat_c);
    # the median m of |error| solves mean_c P(|N(0, sd_c)| <= m) = 1/2.
    rel_sd = (1 - truth["p_hat"]) / np.sqrt(r.sum() * truth["p_hat"])
    m = optimize.brentq(lambda t: np.mean(2 * stats.norm.cdf(t / rel_sd) - 1) - 0.5,
                        1e-6, 10.0)
    # Sample median of 4000 |errors|: standard error 0.5 / (sqrt(C) f(m)) with f(m) ~ 0.64 / sd,
    # i.e. ~1.9 % of m; 4 standard errors plus the MLE's O(1 / X_c) bias: 10 %.
    assert error == pytest.approx(m, rel=0.10)


def test_oracle_refuses_zero_inflated_truth():
    counts, truth = simulate_counts("zinbvcp", 50, 20, seed=0)
    with pytest.raises(ValueError, match="nbvcp"):
        p_hat_oracle_error(counts, truth)
