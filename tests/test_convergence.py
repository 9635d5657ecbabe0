"""The convergence stop (SPEC section 6): the rule on synthetic loss traces, and fits."""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np
import pytest
from numpyro.optim import Adam

import scribe
from scribe.config import ModelConfig
from scribe.simulate import simulate_counts
from scribe.svi import idata, layout
from scribe.svi.convergence import ConvergenceMonitor, relative_improvement
from scribe.svi.engine import SVIInferenceEngine
from scribe.svi.storage import OPTIMIZATION

WINDOW, TOL, PATIENCE = 100, 1e-5, 3


def run_monitor(losses: np.ndarray, tol=TOL, patience=PATIENCE, window=WINDOW):
    """Feed ``losses`` to a monitor chunk by chunk, as the engine does; the stop step."""
    monitor = ConvergenceMonitor(tol=tol, patience=patience, window=window)
    for n in range(window, losses.size + 1, window):
        if monitor.update(losses[:n]):
            return monitor.converged_step
    return None


def span_windows(sigma: float, level: float) -> int:
    # The span the rule needs to resolve tol/2 (see scribe.svi.convergence, step 2).
    c = math.sqrt(math.pi / 2) * sigma * math.sqrt(2 / WINDOW) / level
    return max(1, math.ceil((2 * c / TOL) ** (2 / 3)))


# ---- the rule on synthetic traces -----------------------------------------------------------
@pytest.mark.parametrize("sigma", [20.0, 1000.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exponential_decay_stops_near_its_plateau(sigma, seed):
    """L(t) = a + b exp(-t/tau) + noise stops close to where the improvement crosses tol.

    The true relative improvement per window at t is d(t) = b (1 - e^{-w/tau}) e^{-t/tau} / a,
    crossing tol at t* = tau ln(b (1 - e^{-w/tau}) / (a tol)). The estimate has standard
    error at most tol/2, so before d = 2 tol (t* - tau ln 2) a flat check needs a 2-sigma
    excursion, three times in a row; after d = tol/2 (t* + tau ln 2) checks are flat with
    probability >= 84 % each. Medians of spans of j windows lag the present by j windows,
    and the stop needs `patience` flat checks: upper bound t* + tau ln 2 + (2 j + patience) w.
    """
    a, b, tau = 1e6, 1e5, 2000.0
    t = np.arange(60_000)
    losses = a + b * np.exp(-t / tau) + np.random.default_rng(seed).normal(0, sigma, t.size)
    t_star = tau * math.log(b * (1 - math.exp(-WINDOW / tau)) / (a * TOL))
    j = span_windows(sigma, a)
    stop = run_monitor(losses)
    assert stop is not None
    assert t_star - tau * math.log(2) <= stop <= t_star + tau * math.log(2) + \
        (2 * j + PATIENCE) * WINDOW


@pytest.mark.parametrize("sigma", [20.0, 1000.0, 2e4])
def test_linear_trend_never_stops(sigma):
    """A loss still falling by 3 tol per window (a trending plateau) is never converged."""
    a = 1e6
    t = np.arange(40_000)
    slope = 3 * TOL * a / WINDOW
    losses = a - slope * t + np.random.default_rng(3).normal(0, sigma, t.size)
    assert run_monitor(losses) is None


@pytest.mark.parametrize("sigma", [20.0, 1000.0, 2e4])
def test_stationary_noise_stops(sigma):
    """Pure noise around a constant converges once the span resolving tol/2 fits in the
    trace (2 j windows), after `patience` flat checks (each flat with probability 97.7 %);
    three spare windows allow for a non-flat check."""
    a = 1e6
    losses = a + np.random.default_rng(4).normal(0, sigma, 100_000)
    j = span_windows(sigma, a)
    stop = run_monitor(losses)
    assert stop is not None
    assert stop <= (2 * j + PATIENCE + 3) * WINDOW


def test_mini_batch_noise_needs_a_longer_history():
    """The noisier the loss, the longer the span compared: nothing resolvable at first."""
    a = 1e6
    noisy = a + np.random.default_rng(5).normal(0, 2e4, 3000)
    assert span_windows(2e4, a) > 15
    assert relative_improvement(noisy, TOL, WINDOW) is None   # 30 windows < 2 j
    quiet = a + np.random.default_rng(5).normal(0, 20.0, 3000)
    assert relative_improvement(quiet, TOL, WINDOW) is not None


def test_relative_improvement_of_a_noise_free_line():
    """A straight line falling by s per step improves by s w per window, relative to the
    median of the last window (level + s * 50.5 for values level + s * (100..1))."""
    level, s = 5e5, 0.7
    losses = level + s * (1000 - np.arange(1000.0))
    expected = s * WINDOW / (level + s * 50.5)
    assert relative_improvement(losses, TOL, WINDOW) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("tol", [None, 0, 0.0])
def test_disabled_rule_never_stops(tol):
    monitor = ConvergenceMonitor(tol=tol)
    assert not monitor.enabled
    assert run_monitor(np.full(5000, 3.0), tol=tol) is None
    assert monitor.describe() == "fixed steps"


def test_progress_state_strings():
    monitor = ConvergenceMonitor()
    assert monitor.describe() == "converging"
    stop = run_monitor(np.full(2000, 7.0))
    assert stop == (1 + PATIENCE) * WINDOW   # resolvable from 2 windows, then 3 flat checks
    monitor.update(np.full(stop, 7.0))
    assert monitor.describe().startswith("converging (Δ=")
    for _ in range(PATIENCE):
        monitor.update(np.full(stop, 7.0))
    assert monitor.describe() == f"converged at step {stop}"


@pytest.mark.parametrize("kwargs, error", [
    (dict(tol=-1e-3), ValueError), (dict(tol=float("nan")), ValueError),
    (dict(tol="1e-3"), TypeError), (dict(tol=True), TypeError),
    (dict(patience=0), ValueError), (dict(patience=2.5), TypeError),
    (dict(patience=True), TypeError),
])
def test_bad_stopping_arguments_error_before_fitting(kwargs, error):
    counts = np.ones((5, 3), dtype=int)
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        scribe.fit(counts, "nbdm", "unconstrained", n_steps=10, progress=False, **kwargs)


# ---- fits -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_counts():
    counts, truth = simulate_counts("nbdm", 300, 40, seed=2)
    return counts, truth


def test_fit_stops_records_and_round_trips(small_counts, tmp_path):
    counts, truth = small_counts
    cap = 20_000
    res = scribe.fit(counts, "nbdm", "unconstrained", n_steps=cap, progress=False)
    assert res.converged is True
    assert 2 * WINDOW <= res.n_steps_run < cap
    assert res.n_steps_run % WINDOW == 0
    assert res.loss_history.shape == (res.n_steps_run,)
    assert np.all(np.isfinite(np.asarray(res.loss_history)))
    # Converged means near the answer: 300 cells give r to about 10 % per gene
    # (sd of log r ~ 1/sqrt(C r p) for these r), so the median error is well under 15 %.
    r = np.asarray(res.get_map()["r"])
    assert np.median(np.abs(r / truth["r"] - 1)) < 0.15
    group = res.idata[OPTIMIZATION]
    assert group.attrs["converged"] == 1 and group.attrs["n_steps_run"] == res.n_steps_run
    for suffix in (".nc", ".zarr"):
        if suffix == ".zarr":
            pytest.importorskip("zarr")
        res.save(tmp_path / f"fit{suffix}")
        loaded = scribe.load(tmp_path / f"fit{suffix}")
        assert loaded.converged is True and loaded.n_steps_run == res.n_steps_run
        np.testing.assert_array_equal(np.asarray(loaded.loss_history),
                                      np.asarray(res.loss_history))


def test_cap_is_respected_and_warns_once(small_counts):
    counts, _ = small_counts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = scribe.fit(counts, "nbdm", "unconstrained", n_steps=250, progress=False)
    messages = [str(w.message) for w in caught if "did not converge" in str(w.message)]
    assert len(messages) == 1 and "n_steps" in messages[0] and "learning rate" in messages[0]
    assert res.n_steps_run == 250 and res.converged is False


def test_tol_none_runs_every_step(small_counts):
    counts, _ = small_counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no convergence warning when stopping is off
        res = scribe.fit(counts, "nbdm", "unconstrained", n_steps=700, tol=None,
                         progress=False)
    assert res.n_steps_run == 700 and res.converged is False


def test_run_inference_keeps_fixed_steps(small_counts):
    """The seed's engine runs exactly n_steps, even past convergence."""
    counts, _ = small_counts
    config = ModelConfig(model_type="nbdm", parameterization="unconstrained")
    fast = dict(optimizer=Adam(step_size=1e-2), n_steps=3000, progress=False)
    run = SVIInferenceEngine.run_inference(config, counts, *counts.shape, **fast)
    assert run.losses.shape == (3000,)
    monitor = ConvergenceMonitor(tol=TOL)
    stopped = SVIInferenceEngine.run_inference(config, counts, *counts.shape, **fast,
                                               stopping=monitor)
    assert monitor.converged and stopped.losses.shape == (monitor.converged_step,)
    # Same seed, same steps: the stopped trace is the start of the fixed one.
    np.testing.assert_allclose(np.asarray(stopped.losses),
                               np.asarray(run.losses[:monitor.converged_step]), rtol=1e-6)


def test_results_without_a_record(small_counts, tmp_path):
    """Results saved before scribe recorded convergence: n_steps_run from the trace's
    length, converged None (unknown)."""
    counts, _ = small_counts
    res = scribe.fit(counts, "nbdm", "unconstrained", n_steps=300, tol=None, progress=False)
    old = idata.get_group(res.idata, OPTIMIZATION)
    idata.set_group(res.idata, OPTIMIZATION, old.drop_attrs())   # the layout before
    res.save(tmp_path / "old.nc")
    loaded = scribe.load(tmp_path / "old.nc")
    assert loaded.converged is None and loaded.n_steps_run == 300
    assert layout.CONVERGED_ATTR not in loaded.idata[OPTIMIZATION].attrs
    with pytest.raises(TypeError, match="converged"):
        loaded.converged = "yes"
    loaded.converged = True
    assert loaded.converged is True


def test_subsetting_keeps_the_record(small_counts):
    counts, _ = small_counts
    res = scribe.fit(counts, "nbdm", "unconstrained", n_steps=300, progress=False,
                     tol=None, seed=int(jax.random.randint(jax.random.PRNGKey(0), (), 0, 9)))
    assert res[:5].converged is False and res[:5].n_steps_run == 300


# ---- epoch-drawn mini-batches: the rule on epoch means (block = steps per epoch) --------------
def epoch_noise(n_steps: int, n_cells: int, batch: int, seed: int):
    """Mini-batch noise of an epoch design (scribe.epoch_cells): each epoch of E = ceil(C/B)
    steps visits every cell once and wraps its last batch onto E B - C cells;
    ``(C/B) sum_batch l_c - sum_c l_c`` per step, with per-cell losses l_c (sd 5.5),
    plus white noise of sd 20 (the guide's draws). Returns the noise and its two sds: one
    step's, and one epoch mean's (derived: the epoch's sum counts every cell once plus
    the E B - C wrapped ones, so only those are left, as a sample without replacement)."""
    rng = np.random.default_rng(seed)
    per_epoch = math.ceil(n_cells / batch)
    cell_loss = rng.normal(0.0, 5.5, n_cells)
    epochs = -(-n_steps // per_epoch)
    slots = np.concatenate([np.resize(rng.permutation(n_cells), per_epoch * batch)
                            for _ in range(epochs)])[: n_steps * batch].reshape(n_steps, batch)
    white = 20.0
    noise = (n_cells / batch) * cell_loss[slots].sum(axis=1) - cell_loss.sum()
    noise += rng.normal(0.0, white, n_steps)
    s_c, wrap = cell_loss.std(), per_epoch * batch - n_cells
    step_sd = math.hypot((n_cells / batch) * math.sqrt(batch * (1 - batch / n_cells)) * s_c,
                         white)
    epoch_sd = math.hypot((n_cells / batch) / per_epoch * math.sqrt(wrap * (1 - wrap / n_cells))
                          * s_c, white / math.sqrt(per_epoch))
    return noise, step_sd, epoch_sd, per_epoch


def run_block_monitor(losses, block):
    monitor = ConvergenceMonitor(tol=TOL, patience=PATIENCE, window=WINDOW, block=block)
    for n in range(WINDOW, losses.size + 1, WINDOW):
        if monitor.update(losses[:n]):
            return monitor.converged_step
    return None


def block_span(sd: float, level: float, per_window: float) -> int:
    c = math.sqrt(math.pi / 2) * sd * math.sqrt(2 / per_window) / level
    return max(1, math.ceil((2 * c / TOL) ** (2 / 3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epoch_means_do_not_stop_before_the_plateau(seed):
    """As test_exponential_decay_stops_near_its_plateau, with the noise of epoch-drawn
    batches (2,000 cells, 256 per step: 8 steps per epoch): the rule on epoch means keeps
    the same guarantee (not before d = 2 tol, i.e. t* - tau ln 2), and its span j is that
    of the epoch means' noise, so it stops by t* + tau ln 2 + (2 j + patience) w."""
    a, b, tau = 1e6, 1e5, 2000.0
    noise, _, epoch_sd, per_epoch = epoch_noise(20_000, 2000, 256, seed)
    t = np.arange(noise.size)
    losses = a + b * np.exp(-t / tau) + noise
    t_star = tau * math.log(b * (1 - math.exp(-WINDOW / tau)) / (a * TOL))
    j = block_span(epoch_sd, a, WINDOW / per_epoch)
    stop = run_block_monitor(losses, per_epoch)
    assert stop is not None
    assert t_star - tau * math.log(2) <= stop <= t_star + tau * math.log(2) + \
        (2 * j + PATIENCE) * WINDOW


@pytest.mark.parametrize("seed", [0, 1])
def test_epoch_means_stop_a_converged_fit_sooner(seed):
    """A loss that is already flat: per step the rule needs 2 j_step windows of history
    before it can resolve tol (so it cannot stop earlier), on epoch means 2 j_epoch; with
    the epoch means' noise ~13x below one step's (here j 3 against 9) the stop comes by
    (2 j_epoch + patience + 2) windows (flat checks have probability >= 97.7 % each, two
    spare windows for a non-flat draw: failure ~1e-3)."""
    noise, step_sd, epoch_sd, per_epoch = epoch_noise(6000, 2000, 256, seed)
    losses = 1e6 + noise
    j_step = block_span(step_sd, 1e6, WINDOW)
    j_epoch = block_span(epoch_sd, 1e6, WINDOW / per_epoch)
    assert j_epoch < j_step
    per_step = run_block_monitor(losses, 1)
    assert per_step is None or per_step >= 2 * j_step * WINDOW
    stop = run_block_monitor(losses, per_epoch)
    assert stop is not None and stop <= (2 * j_epoch + PATIENCE + 2) * WINDOW
