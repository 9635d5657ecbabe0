"""When to stop SVI: a convergence rule on the (noisy) loss trace, checked on the host.

The criterion (SPEC section 6, "Convergence")
---------------------------------------------
The loss is stochastic (guide draws, mini-batches), so single steps say nothing; the rule
compares *medians of spans of steps* and weighs their change against the noise.

Every ``window`` steps, with ``L`` the loss trace so far and ``m = |median(L[-window:])|``
its current level:

1. Noise. ``sigma`` is the robust standard deviation of one step's loss, from the median
   absolute deviation of first differences over the last ``20 * window`` steps (differences
   cancel the slow trend; white noise has ``var(diff) = 2 sigma^2``). With epoch-drawn
   mini-batches (``block`` = steps per epoch, :mod:`scribe.epoch_cells`) the unit is an
   epoch's mean loss instead of a step's, in which the noise of which cells were drawn
   cancels; the spans below then hold ``window / block`` units per window.
2. Resolution. The change of the loss per window is estimated from the medians of the last
   ``j`` windows and of the ``j`` windows before them, divided by ``j``. The median of
   ``n`` noisy values has standard error ``1.2533 sigma / sqrt(n)``, so this estimate has
   relative standard error ``se_j = 1.2533 sigma sqrt(2 / (j window)) / (j m)``. ``j`` is
   the smallest span with ``se_j <= tol / 2``: one window for full-batch losses, longer
   spans for noisy mini-batch losses (``se_j`` falls as ``j^-1.5``). Until the trace holds
   ``2 j`` windows the change cannot be resolved at ``tol`` and the check is "not flat".
3. Flat window. ``delta = (median(older span) - median(newer span)) / (j m)`` is the
   relative improvement per window; the window is flat when ``delta < tol``.
4. Stop. The fit has converged after ``patience`` consecutive flat windows, and, when the
   monitor also watches the parameters (``drift_tol``, :mod:`scribe.svi.drift`; on in
   ``scribe.fit``), the posterior means' drift is flat at that check too: a slow
   collective drift along a weakly identified ridge can leave the loss's relative change
   far below ``tol`` while the estimates still move by a sizeable fraction of their sd.

Properties that follow. A plateau that still falls by more than ``tol`` per window is
flat with probability at most ``P(Z < -(delta - tol) / se_j)``; at ``delta = 2 tol`` that
is 2.3 % per check, so a real trend keeps the fit going. Stationary noise (``delta = 0``)
is flat with probability ``P(Z < 2) = 97.7 %`` per check once enough history exists, so a
converged fit does not run on forever. A mini-batch fit needs a longer history before it
can stop, in proportion to ``(sigma / (tol m))^(2/3)`` windows. For a loss relaxing as
``a + b exp(-t / tau)`` the stop comes about ``(patience - 1) window`` steps after the
per-window relative improvement ``b (1 - exp(-window / tau)) exp(-t / tau) / a`` falls
below ``tol``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scribe.svi.drift import DriftMonitor, DriftState, check_drift_tol

_MEDIAN_SE = math.sqrt(math.pi / 2)   # se of a normal sample's median, in units of sd/sqrt(n)
_MAD_TO_SD = 1.482602218505602        # sd = 1.4826 MAD for normal data
_Z = 2.0                              # resolution: the estimate's se at most tol / _Z
_NOISE_WINDOWS = 20                   # windows of history that estimate the noise


def check_stopping_args(tol, patience, window=100) -> None:
    """Validate the stopping rule's arguments (``ValueError`` / ``TypeError`` naming each)."""
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, int | float | np.integer | np.floating):
            raise TypeError(f"tol must be a non-negative float or None, got {tol!r}")
        if not math.isfinite(tol) or tol < 0:
            raise ValueError(f"tol must be a finite number >= 0 (0 or None: run all n_steps), "
                             f"got {tol!r}")
    for name, value in (("patience", patience), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be a positive integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if window < 2:
        raise ValueError(f"window must be at least 2 steps, got {window!r}")


def relative_improvement(losses: np.ndarray, tol: float, window: int,
                         block: int = 1) -> float | None:
    """Relative improvement of the loss per ``window`` steps, resolved to ``tol / 2``.

    Parameters
    ----------
    losses : numpy.ndarray, shape (n_steps,)
        The loss trace so far (non-finite values, skipped steps, are ignored).
    tol : float
        Resolution target (> 0): the estimate's standard error is at most ``tol / 2``.
    window : int
    block : int, default 1
        Steps per epoch of an epoch-drawn mini-batch (:mod:`scribe.epoch_cells`): the
        rule then works on the means of the epochs (blocks of ``block`` steps from step 0),
        in which the cells' sampling noise cancels, and takes the noise from their
        differences. 1: every step on its own (full batch, independent draws).

    Returns
    -------
    float or None
        ``(older span median - newer span median) / (j * |current median|)``, positive
        while the loss falls; None while the trace is too short to resolve it.
    """
    trace = np.asarray(losses, dtype=np.float64)
    losses = trace[np.isfinite(trace)]
    n_windows = losses.size // window
    if n_windows < 2:
        return None
    level = abs(float(np.median(losses[-window:])))
    level = max(level, np.finfo(np.float64).tiny)
    block = max(1, min(int(block), window))
    if block == 1:
        units = losses
    else:
        # Epochs start at step 0: blocks aligned to the start of the trace (an incomplete
        # last epoch is left out), skipped (non-finite) steps left out of their block.
        n_blocks = trace.size // block
        blocks = np.where(np.isfinite(trace), trace, np.nan)[: n_blocks * block]
        blocks = blocks.reshape(n_blocks, block)
        kept = np.isfinite(blocks).any(axis=1)
        units = np.nanmean(blocks[kept], axis=1) if kept.any() else np.zeros(0)
    n_blocks = units.size
    per_window = window / block           # units per window
    recent = units[-min(n_blocks, int(_NOISE_WINDOWS * per_window)):]
    sigma = _MAD_TO_SD * float(np.median(np.abs(np.diff(recent) - np.median(np.diff(recent)))))
    sigma /= math.sqrt(2.0)
    # se_j = c / j^1.5 with c the relative se of one window's change; smallest j with se_j <= tol/Z
    c = _MEDIAN_SE * sigma * math.sqrt(2.0 / per_window) / level
    span = max(1, math.ceil((_Z * c / tol) ** (2.0 / 3.0) - 1e-9)) if c > 0 else 1
    if 2 * span > n_windows:
        return None
    count = max(1, round(span * per_window))   # units per span
    if 2 * count > n_blocks:
        return None
    older = float(np.median(units[-2 * count:-count]))
    newer = float(np.median(units[-count:]))
    return (older - newer) / (span * level)


@dataclass
class ConvergenceMonitor:
    """Stateful stopping rule: feed it the loss trace after each chunk of steps.

    Parameters
    ----------
    tol : float or None
        Relative improvement per ``window`` below which a window is flat; None or 0
        disables stopping (the fit runs every step).
    patience : int
        Consecutive flat windows that mean convergence.
    window : int
        Steps per check; the engine runs one compiled chunk per window.
    block : int, default 1
        Steps per epoch when mini-batches are drawn epoch by epoch (the engine sets it;
        see :func:`relative_improvement`).
    drift_tol : float or None, default None
        Also require the variational posterior's drift to be flat: below ``drift_tol``
        posterior sd per window (:mod:`scribe.svi.drift`; the engine feeds it a snapshot
        of the parameters per window). None: the loss rule alone.

    Attributes
    ----------
    converged : bool
    converged_step : int or None
        Steps run when convergence was declared.
    improvement : float or None
        The latest relative improvement per window (None: not yet resolved).
    flat_windows : int
        Current run of consecutive flat windows (of the loss).
    drift : DriftMonitor or None
        The drift criterion (None without ``drift_tol``).
    """

    tol: float | None = 1e-5
    patience: int = 3
    window: int = 100
    block: int = 1
    drift_tol: float | None = None
    converged: bool = field(default=False, init=False)
    converged_step: int | None = field(default=None, init=False)
    improvement: float | None = field(default=None, init=False)
    flat_windows: int = field(default=0, init=False)
    drift: DriftMonitor | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        check_stopping_args(self.tol, self.patience, self.window)
        check_drift_tol(self.drift_tol)
        self.tol = None if not self.tol else float(self.tol)
        if self.drift_tol is not None:
            self.drift = DriftMonitor(self.drift_tol)

    @property
    def watches_drift(self) -> bool:
        """Whether the rule needs a parameter snapshot per window."""
        return self.enabled and self.drift is not None

    @property
    def drift_state(self) -> DriftState | None:
        """The drift rule's latest check (None: not watched)."""
        return None if self.drift is None else self.drift.state

    @property
    def enabled(self) -> bool:
        return self.tol is not None

    def reset(self) -> None:
        self.converged, self.converged_step = False, None
        self.improvement, self.flat_windows = None, 0
        if self.drift is not None:
            self.drift.reset()

    def update(self, losses: np.ndarray, snapshot: dict | None = None) -> bool:
        """Record the trace (and the parameters' snapshot, :mod:`scribe.svi.drift`) after
        a chunk; True once the fit has converged.

        ``snapshot``: ``{site: (mean, sd)}`` of this window; None leaves the drift rule
        without news (it then blocks the stop unless its last check was flat).
        """
        if not self.enabled or self.converged:
            return self.converged
        self.improvement = relative_improvement(losses, self.tol, self.window, self.block)
        flat = self.improvement is not None and self.improvement < self.tol
        self.flat_windows = self.flat_windows + 1 if flat else 0
        if self.drift is not None and snapshot is not None:
            self.drift.update(snapshot)
        drift_flat = self.drift is None or self.drift.flat
        if self.flat_windows >= self.patience and drift_flat:
            self.converged, self.converged_step = True, int(np.size(losses))
        return self.converged

    def describe(self) -> str:
        """Short state for a progress bar."""
        if not self.enabled:
            return "fixed steps"
        if self.converged:
            return f"converged at step {self.converged_step}"
        drift = "" if self.drift is None else f", {self.drift.describe()}"
        if self.improvement is None:
            return f"converging{drift}"
        return f"converging (Δ={self.improvement:.1e}/{self.tol:.0e}{drift})"
