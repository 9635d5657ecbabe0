"""scribe.fit's default optimiser per model type: StagedAdam for zinbvcp (with the stop)."""

from __future__ import annotations

import pytest
from numpyro.optim import Adam

import scribe
from scribe.fitting import DEFAULT_LEARNING_RATE, STAGED_RATES, default_optimizer
from scribe.simulate import simulate_counts
from scribe.svi.engine import SVIInferenceEngine
from scribe.svi.staged_rate import StagedAdam


class _Captured(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_zinbvcp():
    counts, _ = simulate_counts("zinbvcp", 40, 10, seed=5)
    return counts


def _optimizer_passed(monkeypatch, counts, model_type, **kwargs):
    """The optimiser scribe.fit hands to the engine (the run itself is cut short)."""
    seen = {}

    def capture(*args, **kw):
        seen["optimizer"] = kw["optimizer"]
        raise _Captured

    monkeypatch.setattr(SVIInferenceEngine, "run_inference", staticmethod(capture))
    with pytest.raises(_Captured):
        scribe.fit(counts, model_type, progress=False, **kwargs)
    return seen["optimizer"]


def test_zinbvcp_default_is_the_staged_rate_with_the_stop(monkeypatch, tiny_zinbvcp):
    optimizer = _optimizer_passed(monkeypatch, tiny_zinbvcp, "zinbvcp")
    assert isinstance(optimizer, StagedAdam)
    assert optimizer.rates == STAGED_RATES["zinbvcp"] == (3e-2, DEFAULT_LEARNING_RATE)


def test_zinbvcp_without_the_stop_gets_one_rate(monkeypatch, tiny_zinbvcp):
    """tol=None never advances a stage: the default is then plain Adam at 3e-3."""
    optimizer = _optimizer_passed(monkeypatch, tiny_zinbvcp, "zinbvcp", tol=None)
    assert type(optimizer) is Adam
    assert default_optimizer("zinbvcp", stopping=False).__class__ is Adam


@pytest.mark.parametrize("model_type", ["nbdm", "zinb", "nbvcp"])
def test_other_types_keep_adam(monkeypatch, tiny_zinbvcp, model_type):
    optimizer = _optimizer_passed(monkeypatch, tiny_zinbvcp, model_type)
    assert type(optimizer) is Adam


def test_a_given_optimizer_wins(monkeypatch, tiny_zinbvcp):
    given = Adam(step_size=1e-2)
    assert _optimizer_passed(monkeypatch, tiny_zinbvcp, "zinbvcp", optimizer=given) is given
