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
