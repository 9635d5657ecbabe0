"""The drift criterion in ``scribe.fit``: recorded, saved, and never earlier than the loss rule."""

import numpy as np
import pytest

import scribe
from scribe.simulate import simulate_counts


@pytest.fixture(scope="module")
def counts():
    return simulate_counts("nbdm", 300, 40, seed=3, p=0.6, r_loc=0.0, r_scale=1.0)[0]


@pytest.fixture(scope="module")
def fits(counts):
    # Same data, seed and start: the fits run the same steps until the first one stops.
    # tol=1e-4: at 300 x 40 the loss is too small against its noise to resolve 1e-5 soon.
    common = dict(n_steps=5000, seed=0, progress=False, tol=1e-4)
    return (scribe.fit(counts, "nbdm", drift_tol=None, **common),
            scribe.fit(counts, "nbdm", **common))


def test_stop_waits_for_the_drift_and_is_recorded(fits, tmp_path):
    loss_only, both = fits
    assert loss_only.converged and both.converged
    assert loss_only.final_drift is None
    # The combined rule is the loss rule plus a condition: never earlier, and the same
    # trajectory up to the earlier stop (the same compiled steps from the same start).
    assert both.n_steps_run >= loss_only.n_steps_run
    np.testing.assert_array_equal(np.asarray(both.loss_history[:loss_only.n_steps_run]),
                                  np.asarray(loss_only.loss_history))
    drift = both.final_drift
    assert drift["site"] == "r" and 1 <= drift["span"] <= 8
    assert 0 <= drift["drift"] < drift["threshold"]
    assert drift["threshold"] >= scribe.svi.drift.DRIFT_TOL
    path = tmp_path / "fit.nc"
    both.save(path)
    loaded = scribe.load(path)
    assert loaded.final_drift == drift and loaded.converged and loaded.n_devices == 1


def _median_error_and_se(estimate, truth, rng, n_boot: int = 400):
    """Median relative error and its bootstrap standard error (resampling the entries)."""
    errors = np.abs(np.asarray(estimate, np.float64) / truth - 1).ravel()
    boot = [np.median(rng.choice(errors, errors.size)) for _ in range(n_boot)]
    return float(np.median(errors)), float(np.std(boot))


@pytest.mark.slow
def test_minibatched_capture_mixture_runs_on_to_a_better_fit():
    # The case in small: a mini-batched nbvcp_mix stops early under the loss rule
    # while r still drifts together (~40 s for both fits). The same fit with the drift
    # rule must run on and end with a lower r error, by more than 3 bootstrap se of the
    # difference (independent-errors bound; both fits share the data and start).
    counts, truth = simulate_counts("nbvcp_mix", 2000, 300, n_components=2, seed=5, p=0.6,
                                    r_loc=-1.0, capture_range=(0.02, 0.1))
    common = dict(n_components=2, batch_size=200, n_steps=30000, seed=0, progress=False)
    rng = np.random.default_rng(0)
    errors = {}
    for drift_tol in (None, "auto"):
        fit = scribe.fit(counts, "nbvcp_mix", drift_tol=drift_tol, **common)
        r_hat = np.asarray(fit.get_map(use_mean=True, verbose=False)["r"])
        # components in either order: the better match is the fit's labelling
        best = min((r_hat, r_hat[::-1]), key=lambda r: np.median(np.abs(r / truth["r"] - 1)))
        errors[drift_tol] = (fit.n_steps_run, *_median_error_and_se(best, truth["r"], rng))
        assert fit.converged
    (steps_old, old, se_old), (steps_new, new, se_new) = errors[None], errors["auto"]
    assert steps_new > steps_old
    assert new + 3 * np.hypot(se_new, se_old) < old, errors
