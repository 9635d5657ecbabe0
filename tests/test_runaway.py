"""A finite fit whose loss ran away is reported (scribe.svi.runaway)."""

from __future__ import annotations

import warnings

import numpy as np
from numpyro.optim import Adam

import scribe
from scribe.svi.runaway import loss_runaway


def _relaxing(n: int, rng, level: float = 1e6, noise: float = 1e-3) -> np.ndarray:
    """A converging loss: level (1 + exp(-t / 300)) with relative noise ``noise``."""
    t = np.arange(n)
    return level * (1 + np.exp(-t / 300)) * (1 + noise * rng.standard_normal(n))


def test_a_converging_loss_is_not_a_runaway():
    rng = np.random.default_rng(0)
    assert loss_runaway(_relaxing(3000, rng)) is None
    # Mini-batch noise of 20 % per step: window medians scatter by ~2.5 %, far below 2x.
    assert loss_runaway(_relaxing(3000, rng, noise=0.2)) is None


def test_a_loss_that_rises_above_twice_its_best_is_a_runaway():
    rng = np.random.default_rng(1)
    losses = _relaxing(2000, rng)                  # best window median ~1e6
    losses = np.concatenate([losses, np.full(300, 2.5e6), np.full(100, 3.5e16)])
    message = loss_runaway(losses)
    assert message is not None and "RAN AWAY" in message
    assert "3.5e+16" in message
    # Just below the factor: 1.9x the best is noisy-fit territory, not reported.
    assert loss_runaway(np.concatenate([_relaxing(2000, rng), np.full(200, 1.9e6)])) is None


def test_non_finite_steps_short_runs_and_non_positive_losses_are_skipped():
    rng = np.random.default_rng(2)
    losses = _relaxing(1000, rng)
    losses[::7] = np.nan                             # skipped steps: ignored in the medians
    assert loss_runaway(losses) is None
    assert loss_runaway(np.array([1.0, 1e9])) is None                 # under two windows
    assert loss_runaway(np.r_[np.full(100, -5.0), np.full(100, 50.0)]) is None  # density
    assert loss_runaway(np.r_[np.full(100, 1.0), np.full(100, np.nan)]) is None  # diverged


def test_fit_warns_and_is_not_converged_when_the_loss_runs_away():
    # Gradient *ascent* (a negative step size) drives the loss up while it stays finite
    # at the end of the run.
    x = np.random.default_rng(0).negative_binomial(2, 0.5, size=(200, 30)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = scribe.fit(x, "nbdm", optimizer=Adam(-0.05), n_steps=400, tol=None,
                             progress=False)
    messages = [str(w.message) for w in caught]
    assert any("RAN AWAY" in m for m in messages), messages
    losses = np.asarray(results.loss_history)
    assert np.isfinite(losses[-1]) and losses[-1] > 2 * np.nanmin(losses[:100])
    assert not results.converged


def test_a_sound_fit_is_not_flagged():
    x = np.random.default_rng(3).negative_binomial(2, 0.5, size=(200, 30)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scribe.fit(x, "nbdm", n_steps=400, tol=None, progress=False)
    assert not any("RAN AWAY" in str(w.message) for w in caught)
