"""``scribe.progress``'s switch governs every bar: analyses, the fit's and the report's."""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np
import pytest

import scribe
from scribe import fit_report, progress
from scribe.svi import engine


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal, so the automatic rule would show bars."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def switch():
    """Restores the process-wide switch to automatic after the test."""
    yield progress.set_enabled
    progress.set_enabled(None)


@pytest.mark.parametrize("terminal", [True, False])
def test_decision_table(monkeypatch, switch, terminal):
    stream = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    # Automatic: the caller's None follows the terminal; True and False are obeyed.
    assert progress.is_enabled() is terminal
    assert progress.is_enabled(None) is terminal
    assert progress.is_enabled(True) is True
    assert progress.is_enabled(False) is False
    switch(False)            # off overrides every caller, True included
    assert [progress.is_enabled(e) for e in (None, True, False)] == [False, False, False]
    switch(True)             # on: callers' None shows even off a terminal; False still off
    assert [progress.is_enabled(e) for e in (None, True, False)] == [True, True, False]


def test_bad_argument():
    with pytest.raises(TypeError, match="enabled must be True, False or None"):
        progress.is_enabled("yes")


def _fit_stderr(monkeypatch, **kwargs) -> str:
    """stderr of a tiny nbdm fit (20 steps, no convergence rule) on a fake terminal."""
    counts = np.random.default_rng(0).poisson(3.0, size=(20, 4))
    stream = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the step cap warns; only the bar matters here
        scribe.fit(counts, "nbdm", n_steps=20, tol=None, **kwargs)
    monkeypatch.undo()
    return stream.getvalue()


def test_fit_bar_decision(monkeypatch, switch):
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    assert engine.show_bar(True) is True and engine.show_bar(False) is False
    switch(False)
    assert engine.show_bar(True) is False
    monkeypatch.setattr(sys, "stderr", io.StringIO())     # not a terminal: quiet
    switch(None)
    assert engine.show_bar(True) is False


@pytest.mark.slow     # three fits: about 30 s alone, 90 s on two busy shared cores
def test_fit_bar_follows_the_switch(monkeypatch, switch):
    # On a terminal the fit's bar ("SVI", 20 steps) is drawn by default ...
    assert "SVI" in _fit_stderr(monkeypatch)
    # ... and neither drawn with progress=False nor after set_enabled(False).
    assert "SVI" not in _fit_stderr(monkeypatch, progress=False)
    switch(False)
    assert "SVI" not in _fit_stderr(monkeypatch)


def test_report_stages_follow_the_switch(monkeypatch, switch):
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    stages = [("a", None), ("b", None)]
    assert fit_report._stages(stages, progress=True) is not stages     # a tqdm bar
    assert fit_report._stages(stages, progress=False) is stages
    switch(False)
    assert fit_report._stages(stages, progress=True) is stages
