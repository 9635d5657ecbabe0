"""Parameter recovery on data simulated with known parameters.

Thresholds (model zoo issue): without capture, median relative error of r < 10 % and
|p - p_true| < 0.02; with capture (p and capture not separately identifiable), r < 15 %
and per-cell p_hat < 10 %; mixtures, >= 95 % of cells assigned to the right component.
The default run covers every model type and every parameterization on small data; the
``slow`` run covers all 32 combinations at 1,000 x 500.
"""

from __future__ import annotations

import itertools

import pytest

import scribe
from scribe.simulate import recovery_errors, simulate_counts

MODEL_TYPES = ["nbdm", "zinb", "nbvcp", "zinbvcp",
               "nbdm_mix", "zinb_mix", "nbvcp_mix", "zinbvcp_mix"]
PARAMETERIZATIONS = ["standard", "linked", "odds_ratio", "unconstrained"]


def check_recovery(model_type, parameterization, n_cells, n_genes, n_steps, seed=0):
    k = 3 if model_type.endswith("_mix") else None
    counts, truth = simulate_counts(model_type, n_cells, n_genes, n_components=k, seed=seed)
    results = scribe.fit(counts, model_type, parameterization, n_components=k,
                         n_steps=n_steps, seed=seed, progress=False)
    errors = recovery_errors(results, counts, truth)
    capture = "p_hat" in truth
    assert errors["r_error"] < (0.15 if capture else 0.10), errors
    if capture:
        assert errors["p_hat_error"] < 0.10, errors
    else:
        assert errors["p_error"] < 0.02, errors
    if k is not None:
        assert errors["assignment_accuracy"] >= 0.95, errors
    return errors


# Each model type once and each parameterization twice, on small data.
FAST_CASES = list(zip(MODEL_TYPES, PARAMETERIZATIONS * 2, strict=True))


@pytest.mark.parametrize(("model_type", "parameterization"), FAST_CASES)
def test_recovery_small(model_type, parameterization):
    # Capture in a 3-component mixture needs more cells and genes to be identified:
    # at 400 x 60 the fit drifts along the unidentified p-capture ridge.
    capture_mixture = model_type in ("nbvcp_mix", "zinbvcp_mix")
    n_cells, n_genes = (1000, 150) if capture_mixture else (400, 60)
    # n_steps is a cap: the convergence stop ends most fits (capture mixtures need the
    # most). nbdm_mix `standard` at 400 x 60 has not met the stop by 12,000 steps; at the
    # 4,000-step cap its p error is 0.021 (threshold 0.02), at 12,000 0.017.
    n_steps = 8000 if capture_mixture else 12000 if model_type == "nbdm_mix" else 4000
    check_recovery(model_type, parameterization, n_cells, n_genes, n_steps=n_steps)


@pytest.mark.slow
@pytest.mark.parametrize(("model_type", "parameterization"),
                         list(itertools.product(MODEL_TYPES, PARAMETERIZATIONS)))
def test_recovery_full(model_type, parameterization):
    check_recovery(model_type, parameterization, n_cells=1000, n_genes=500, n_steps=3000)
