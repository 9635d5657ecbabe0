"""StagedAdam: a learning rate per stage, advanced when the convergence stop fires."""

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.optim import Adam

import scribe
from scribe.config import ModelConfig
from scribe.simulate import simulate_counts
from scribe.svi.convergence import ConvergenceMonitor
from scribe.svi.engine import SVIInferenceEngine
from scribe.svi.staged_rate import STAGE_OFFSET, StagedAdam, next_stage, stage_of

B1, B2 = 0.9, 0.999   # numpyro's Adam defaults


class _State:
    """Stand-in for numpyro's SVIState (only ``optim_state`` and ``_replace`` are used)."""

    def __init__(self, optim_state):
        self.optim_state = optim_state

    def _replace(self, optim_state):
        return _State(optim_state)


def test_first_step_moves_by_the_stage_rate_and_moments_carry_over():
    """Closed forms for a constant gradient g. Adam's first step is exactly the rate
    (bias-corrected m / sqrt(v) = g / |g|). After the jump to stage 1 the counter is
    ~2^24, so bias corrections are 1 and the second step is
    rate_1 (1 - b1^2) / sqrt(1 - b2^2) (moments of two steps, uncorrected)."""
    opt = StagedAdam((0.03, 0.003))
    x0, g = jnp.array([1.0, -2.0]), jnp.array([0.5, -4.0])
    state = opt.init(x0)
    state = opt.update(g, state)
    x1 = opt.get_params(state)
    np.testing.assert_allclose(x0 - x1, 0.03 * np.sign(g), rtol=1e-4)
    (moved,) = next_stage(opt, (_State(state),))
    assert stage_of(moved) == 1 and int(moved.optim_state[0]) == STAGE_OFFSET + 1
    x2 = opt.get_params(opt.update(g, moved.optim_state))
    expected = 0.003 * (1 - B1**2) / np.sqrt(1 - B2**2) * np.sign(g)
    np.testing.assert_allclose(x1 - x2, expected, rtol=1e-3)


def test_no_stage_after_the_last_or_for_plain_adam():
    opt = StagedAdam((0.03, 0.003))
    state = _State(opt.init(jnp.zeros(2)))
    (second,) = next_stage(opt, (state,))
    assert next_stage(opt, (second,)) is None
    assert next_stage(Adam(0.01), (state,)) is None


@pytest.mark.parametrize("rates", [(), (0.01, 0.0), (-1e-3,), (float("nan"),)])
def test_bad_rates_are_refused(rates):
    with pytest.raises(ValueError, match="rates"):
        StagedAdam(rates)


@pytest.fixture(scope="module")
def tiny_counts():
    counts, _ = simulate_counts("nbdm", 60, 12, p=0.5, seed=3)
    return counts


def test_engine_advances_the_stage_when_the_stop_fires(tiny_counts):
    """The engine's loop moves a staged optimiser to its next stage at the first stop and
    stops for good only when the last stage has converged."""
    monitor = ConvergenceMonitor(tol=1e-4, patience=3)
    run = SVIInferenceEngine.run_inference(
        ModelConfig(model_type="nbdm", parameterization="standard"), tiny_counts,
        *tiny_counts.shape, optimizer=StagedAdam((0.03, 0.003)), n_steps=20_000, seed=1,
        progress=False, stopping=monitor)
    assert monitor.converged and stage_of(run.state) == 1
    assert int(run.state.optim_state[0]) == STAGE_OFFSET + len(run.losses)


@pytest.mark.slow   # two compilations: ~40 s at load 10
def test_fit_runs_the_second_stage_after_the_first_stop(tiny_counts):
    """Stage 0 is bit-for-bit Adam at the first rate (same seed, same compiled step), so
    its loss trace is a prefix of the staged fit's; the staged fit goes on past the step
    where the one-rate fit stopped, and stops again (converged)."""
    kwargs = dict(progress=False, seed=1, n_steps=20_000, tol=1e-4)
    single = scribe.fit(tiny_counts, "nbdm", optimizer=Adam(0.03), **kwargs)
    staged = scribe.fit(tiny_counts, "nbdm", optimizer=StagedAdam((0.03, 0.003)), **kwargs)
    n1 = single.n_steps_run
    assert single.converged and staged.converged
    assert staged.n_steps_run > n1
    np.testing.assert_allclose(np.asarray(staged.loss_history)[:n1],
                               np.asarray(single.loss_history), rtol=1e-6)


def _capture_case(model_type: str):
    return simulate_counts(model_type, 2000, 500, p=0.6, r_loc=0.5, r_scale=1.0,
                           capture_range=(0.1, 0.3), seed=23)


def _errors(results, truth) -> tuple[float, float]:
    """Median relative errors of p_hat and r (MAP)."""
    est = {k: np.asarray(v) for k, v in results.get_map(use_mean=True, verbose=False).items()}
    return (float(np.median(np.abs(est["p_hat"] / truth["p_hat"] - 1))),
            float(np.median(np.abs(est["r"] / truth["r"] - 1))))


@pytest.mark.slow
def test_staged_fit_recovers_p_hat_and_r():
    """A staged nbvcp fit (standard parameterization, StagedAdam((3e-2, 3e-3)), the
    convergence stop) recovers what the counts identify. Tolerances as
    tests/test_anchoring.py's unanchored fixed-step fit: capture 0.1-0.3 gives ~400 UMIs
    per cell, so p_hat's relative error per cell is about sqrt((1 + o)/L) / (1 + o) ~ 4.4 %
    (sd), median absolute ~ 3 %, within 5 %; each gene's r is informed by 2,000 cells,
    median relative error within 10 %."""
    counts, truth = _capture_case("nbvcp")
    results = scribe.fit(counts, "nbvcp", progress=False, seed=0,
                         optimizer=StagedAdam((3e-2, 3e-3)))
    assert results.converged
    p_hat_error, r_error = _errors(results, truth)
    assert p_hat_error <= 0.05 and r_error <= 0.10


@pytest.mark.slow
def test_staged_zinbvcp_is_no_less_accurate_than_one_rate():
    """zinbvcp on the same data: the gates make zeros ambiguous, so the nbvcp floor above
    does not apply (measured: p_hat 5.1 % staged, 7.8 % with Adam(3e-3)); a regression
    guard instead: from the same start and seed, the staged fit's p_hat and r errors are
    at most the one-rate fit's (Adam(3e-3), scribe.fit's default before zinbvcp's became
    the staged rate)."""
    counts, truth = _capture_case("zinbvcp")
    staged = scribe.fit(counts, "zinbvcp", progress=False, seed=0,
                        optimizer=StagedAdam((3e-2, 3e-3)))
    single = scribe.fit(counts, "zinbvcp", progress=False, seed=0,
                        optimizer=Adam(step_size=3e-3))
    assert staged.converged and single.converged
    staged_errors, single_errors = _errors(staged, truth), _errors(single, truth)
    assert all(a <= b for a, b in zip(staged_errors, single_errors, strict=True))
