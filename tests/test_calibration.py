"""Calibration of posterior intervals at convergence (issue 8, item 4), slow.

Counts are simulated with known truth; each model type is fitted with its default
parameterization and guide family until converged (Adam with an exponentially decaying
step, 1e-2 to 2e-4), and the central 90% interval of 1000 posterior draws must contain
the true value for 85-95% of genes (r, gate) or cells (p_hat).

Sizes: with G = 400 genes the binomial standard error of a coverage of 0.9 is
sqrt(0.9 * 0.1 / 400) = 0.015, so 3 standard errors are 0.045 and the issue's band
(half-width 0.05) leaves 0.005 for the approximation of the posterior by VI;
with C = 2000 cells the p_hat coverage has standard error 0.0067 (7.5 in the band). The
Monte Carlo error of 5% / 95% quantiles from 1000 draws moves each interval end by about
0.07 posterior sd, which changes the expected coverage by under 0.01.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np
import pytest
from numpyro.optim import Adam

import scribe
from scribe.simulate import simulate_counts

N_CELLS, N_GENES = 2000, 400
# zinbvcp converges slowly along the r-gate-capture directions: at 2000 x 200 (seed 11)
# its r coverage was 0.80 after 4000 steps and 0.85 after 12000 (benchmarks/calibration.py).
N_STEPS = {"nbdm": 4000, "zinb": 4000, "nbvcp": 4000, "zinbvcp": 12000}
BAND = (0.85, 0.95)


def _coverage(draws: np.ndarray, truth: np.ndarray) -> float:
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    return float(np.mean((truth >= low) & (truth <= high)))


# Known miss (issue 8), and not the stop's: the stop ends the fit after 1,800 of the
# 12,000 steps and r / gate / p_hat cover 80.5 / 83.8 / 78.0 %; all 12,000 steps (no
# stop, 200 nats lower loss, 1.6e-4 of it) give 79.8 / 83.3 / 81.4 % (2026-12-07,
# benchmarks/calibration_stop.py). The misses are one-sided along the r-p_hat ridge (the
# true r lies below the interval for 14.5 % of genes, above it for 5 %: r too high; p_hat
# the other way round), a direction shared by all genes and cells that the factorised
# guide does not widen; the joint_capture guide (capture coupled to p) brings p_hat to
# 88.9 % but leaves r at 81.8 %. A guide-family question, not this test's tolerance.
ZINBVCP_STOP = ("not the stop: without it (12,000 steps) r / p_hat cover 79.8 / 81.4 %, "
                "one-sided along the r-p_hat ridge (benchmarks/calibration_stop.py)")


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["nbdm", "zinb", "nbvcp", pytest.param(
    "zinbvcp", marks=pytest.mark.xfail(reason=ZINBVCP_STOP, strict=False))])
def test_ninety_percent_intervals_cover_truth(model_type):
    counts, truth = simulate_counts(model_type, N_CELLS, N_GENES, seed=11)
    n_steps = N_STEPS[model_type]
    schedule = lambda step: 1e-2 * 0.02 ** (step / n_steps)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = scribe.fit(counts, model_type, n_steps=n_steps, optimizer=Adam(schedule),
                             progress=False)
    draws = results.get_posterior_samples(jax.random.PRNGKey(0), 1000, store_samples=False)
    coverage = {name: _coverage(np.asarray(draws[name]), truth[name])
                for name in ("r", "gate", "p_hat") if name in truth}
    assert all(BAND[0] <= value <= BAND[1] for value in coverage.values()), \
        (model_type, coverage)


# ---- droplet-like data with scribe.fit's defaults (data-informed r prior) -----------------
# benchmarks/time_to_fit.py's SIMULATION: r ~ LogNormal(-2, 1) (plain) or LogNormal(-1, 1)
# with capture 2-10 % (capture models), so most genes carry little information and the r
# prior matters (docs/models.md, "Calibration").
DROPLET = {"plain": dict(p=0.6, r_loc=-2.0, r_scale=1.0),
           "capture": dict(p=0.6, r_loc=-1.0, r_scale=1.0, capture_range=(0.02, 0.1))}
# zinbvcp is smaller: at 5,000 x 1,000 its default fit takes over 10 minutes here.
DROPLET_SIZE = {"nbdm": (5000, 1000), "zinb": (5000, 1000), "nbvcp": (5000, 1000),
                "zinbvcp": (3000, 600)}
# Tolerance: with G genes a calibrated coverage of 0.90 has binomial sd sqrt(0.09 / G):
# 0.0095 for G = 1000 and 0.012 for G = 600, so the band's half-width 0.05 is 5.3 and
# 4.1 sd, and sampling error alone fails a calibrated fit with probability < 1e-4. p_hat
# over C cells has sd <= 0.0055 if the cells' misses were independent; they share p.
ZINB_MISS = ("the Gaussian guide in (log r, logit gate) is about half as wide as the exact "
             "per-gene posterior, which covers 91-93 % (benchmarks/zinb_exact_posterior.py; "
             "docs/models.md, Calibration)")


@functools.cache
def _droplet_coverage(model_type: str) -> dict:
    settings = DROPLET["capture" if model_type.endswith("vcp") else "plain"]
    counts, truth = simulate_counts(model_type, *DROPLET_SIZE[model_type], seed=0, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = scribe.fit(counts, model_type, progress=False, seed=0)
    assert results.converged and results.model_config.empirical_priors == ("r",)
    draws = results.get_posterior_samples(jax.random.PRNGKey(0), 1000, store_samples=False)
    return {name: _coverage(np.asarray(draws[name]), truth[name])
            for name in ("r", "gate", "p_hat") if name in truth}


def _known_miss(model_type: str, name: str):
    return pytest.param(model_type, name,
                        marks=pytest.mark.xfail(reason=ZINB_MISS, strict=False))


@pytest.mark.slow
@pytest.mark.parametrize("model_type,name", [
    ("nbdm", "r"), ("nbvcp", "r"), ("nbvcp", "p_hat"), ("zinbvcp", "r"),
    ("zinbvcp", "p_hat"), _known_miss("zinb", "r"), _known_miss("zinb", "gate"),
    _known_miss("zinbvcp", "gate"),
])
def test_default_fit_intervals_cover_truth_on_droplet_like_data(model_type, name):
    coverage = _droplet_coverage(model_type)
    assert BAND[0] <= coverage[name] <= BAND[1], (model_type, coverage)
