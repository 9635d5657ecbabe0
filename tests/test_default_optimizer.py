"""scribe.fit's default optimiser per model type: StagedAdam for zinbvcp, and for zinb with
the skew_gene guide (with the stop)."""

from __future__ import annotations

import pytest
from numpyro.optim import Adam

import scribe
from scribe.fitting import (
    DEFAULT_LEARNING_RATE,
    GUIDE_STAGED_RATES,
    STAGED_RATES,
    default_optimizer,
)
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


@pytest.mark.parametrize("model_type", ["nbdm", "zinb", "nbvcp", "zinb_mix"])
def test_other_types_keep_adam(monkeypatch, tiny_zinbvcp, model_type):
    extra = {"n_components": 2} if model_type.endswith("_mix") else {}
    optimizer = _optimizer_passed(monkeypatch, tiny_zinbvcp, model_type, **extra)
    assert type(optimizer) is Adam


def _config_passed(monkeypatch, counts, model_type, **kwargs):
    seen = {}

    def capture(config, *args, **kw):
        seen["config"], seen["optimizer"] = config, kw["optimizer"]
        raise _Captured

    monkeypatch.setattr(SVIInferenceEngine, "run_inference", staticmethod(capture))
    with pytest.raises(_Captured):
        scribe.fit(counts, model_type, progress=False, **kwargs)
    return seen["config"], seen["optimizer"]


def test_zinb_keeps_joint_gene_and_adam(monkeypatch, tiny_zinbvcp):
    config, optimizer = _config_passed(monkeypatch, tiny_zinbvcp, "zinb")
    assert config.guide_family == "joint_gene" and type(optimizer) is Adam


def test_zinb_with_skew_gene_gets_the_staged_rate(monkeypatch, tiny_zinbvcp):
    """The rates measured for that pair; another guide named keeps Adam."""
    config, optimizer = _config_passed(monkeypatch, tiny_zinbvcp, "zinb",
                                       guide_family="skew_gene")
    assert config.guide_family == "skew_gene" and isinstance(optimizer, StagedAdam)
    assert optimizer.rates == GUIDE_STAGED_RATES[("zinb", "skew_gene")]
    config, optimizer = _config_passed(monkeypatch, tiny_zinbvcp, "zinb",
                                       guide_family="joint_gene")
    assert type(optimizer) is Adam
    _, optimizer = _config_passed(monkeypatch, tiny_zinbvcp, "zinb", guide_family="skew_gene",
                                  tol=None)
    assert type(optimizer) is Adam          # no stop: a stage would never advance


def test_a_given_optimizer_wins(monkeypatch, tiny_zinbvcp):
    given = Adam(step_size=1e-2)
    assert _optimizer_passed(monkeypatch, tiny_zinbvcp, "zinbvcp", optimizer=given) is given
