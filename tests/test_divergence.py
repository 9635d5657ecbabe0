"""A diverging optimiser (issue 12, item 8): counted in the compiled loop, the last finite
parameters kept, reported truthfully per ``stable_update`` mode, stored in the idata."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import TraceMeanField_ELBO
from numpyro.optim import Adam

import scribe
from scribe.svi.divergence import Divergence

C, G = 60, 10
RNG = np.random.default_rng(11)
COUNTS = RNG.negative_binomial(5, 0.4, size=(C, G)).astype(np.float32)
COUNTS[:, 0] += 1
P_TRUE = 0.6   # numpy's p is NumPyro's 1 - p


def _fit(**kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = scribe.fit(COUNTS, "nbdm", progress=False, **kwargs)
    return res, [str(w.message) for w in caught]


@pytest.fixture(scope="module", params=[True, False], ids=["stable", "unstable"])
def wild(request):
    # Adam(10): the first step throws the parameters where the loss is NaN.
    return request.param, *_fit(optimizer=Adam(10.0), n_steps=400,
                                stable_update=request.param)


def test_divergence_is_reported_and_recorded(wild):
    stable, res, messages = wild
    diverged = [m for m in messages if "DIVERGED" in m]
    assert len(diverged) == 1 and "learning rate" in diverged[0]
    # The truth for each mode: skipped steps, or applied ones that made parameters NaN.
    assert ("were skipped" in diverged[0]) == stable
    assert ("became NaN" in diverged[0]) == (not stable)
    assert res.diverged is True and res.converged is False
    assert res.divergence_step is not None and res.divergence_step >= 0
    losses = np.asarray(res.loss_history)
    # Every non-finite loss is a counted step; the first one is at or after the start.
    assert res.n_nonfinite_steps >= int(np.sum(~np.isfinite(losses)))
    assert res.divergence_step <= int(np.argmax(~np.isfinite(losses)))
    # The run stops once a whole chunk (100 steps) had no finite loss.
    assert res.n_steps_run < 400


def test_diverged_fit_keeps_finite_parameters_and_a_sane_map(wild):
    _, res, _ = wild
    for name, value in res.params.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimates = res.get_map()
    assert any("diverged" in str(w.message) for w in caught)
    for name, value in estimates.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    # The last finite parameters are the data-informed start (step 0): method-of-moments
    # p from 60 x 10 counts, within 0.1 of the truth (its sd is about 0.02 here).
    assert abs(float(estimates["p"]) - P_TRUE) < 0.1


def test_divergence_record_survives_save_and_load(wild, tmp_path):
    _, res, _ = wild
    res.save(tmp_path / "wild.nc")
    back = scribe.load(tmp_path / "wild.nc")
    assert (back.diverged, back.n_nonfinite_steps, back.divergence_step, back.converged) == \
        (res.diverged, res.n_nonfinite_steps, res.divergence_step, res.converged)


class FlakyELBO(TraceMeanField_ELBO):
    """A loss that is NaN on a random 10 % of steps (the gradient stays finite)."""

    def loss_with_mutable_state(self, rng_key, *args, **kwargs):
        out = super().loss_with_mutable_state(rng_key, *args, **kwargs)
        flaky = jax.random.uniform(jax.random.fold_in(rng_key, 7)) < 0.1
        return {**out, "loss": jnp.where(flaky, jnp.nan, out["loss"])}


@pytest.mark.slow   # a fit (or a fresh interpreter importing JAX): > 10 s
def test_transient_nonfinite_steps_are_counted_exactly_and_not_divergence():
    res, messages = _fit(loss=FlakyELBO(), n_steps=300, tol=None)
    losses = np.asarray(res.loss_history)
    nonfinite = ~np.isfinite(losses)
    # stable_update skips those steps and the parameters stay finite, so the compiled
    # count must equal the NaN losses exactly, and the first one be the first NaN.
    assert res.n_nonfinite_steps == int(nonfinite.sum())
    assert res.divergence_step == int(np.argmax(nonfinite))
    # Binomial(300, 0.1): mean 30, sd 5.2; 5 sd either side.
    assert 4 <= res.n_nonfinite_steps <= 56
    assert res.diverged is (not np.isfinite(losses[-1]))
    if not res.diverged:
        assert any("recovered" in m for m in messages)


def test_healthy_fit_records_no_divergence():
    res, messages = _fit(n_steps=50, tol=None)
    assert (res.n_nonfinite_steps, res.divergence_step, res.diverged) == (0, None, False)
    assert not any("non-finite" in m for m in messages)


@pytest.mark.parametrize("stable", [True, False])
def test_messages_per_mode(stable):
    recovered = Divergence(3, 10, False, stable)
    assert "recovered" in recovered.message(100)
    assert ("skipped" in recovered.message(100)) == stable
    lost = Divergence(90, 10, True, stable, restored_step=9)
    assert "DIVERGED" in lost.message(100) and "step 9" in lost.message(100)
    assert Divergence(0, None, False, stable).message(100) is None
