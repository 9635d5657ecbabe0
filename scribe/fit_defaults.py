"""``scribe.fit``'s defaults per model type, each chosen by measurement.

``SVIInferenceEngine.run_inference`` and ``ModelConfig`` keep the API document's
defaults (Adam(1e-3), a fixed number of steps, each likelihood's own guide family);
``scribe.fit`` is the convenience entry point whose defaults aim at a converged,
calibrated fit in the fewest seconds (docs/benchmarks.md, docs/convergence.md).
"""

from __future__ import annotations

from numpyro.optim import Adam

from scribe.svi.drift import DRIFT_TOL
from scribe.svi.staged_rate import StagedAdam

DEFAULT_TOL = 1e-5
DEFAULT_PATIENCE = 3
# Adam 3e-3: measured against 1e-3 ... 3e-2, decaying schedules and ClippedAdam in
# benchmarks/optimizer_choice.py (docs/models.md, "Convergence and the default optimiser").
DEFAULT_LEARNING_RATE = 3e-3
#: Model types whose default optimiser is ``StagedAdam(rates)``: a high rate until the
#: stop fires, then the default rate until it fires again. zinbvcp drifts for thousands
#: of steps along its r / gate / capture ridges; at 20,000 x 2,000 the staged rate stops
#: after 0.56x the steps with errors near those of a 3x longer Adam(3e-3) fit
#: (docs/benchmarks.md, "zinbvcp: where the time goes").
STAGED_RATES = {"zinbvcp": (3e-2, DEFAULT_LEARNING_RATE)}
#: The same for a model type fitted with a guide family the user chose: zinb with
#: ``skew_gene`` needs the high rate to get its per-gene shapes most of the way in ~3,000
#: steps (r / gate coverage 83 % / 82 % after 4,700 steps with the drift stop, against
#: 84 % / 84 % after 12,800 steps of Adam(3e-3); docs/benchmarks.md, "zinb with
#: skew_gene: which optimiser").
GUIDE_STAGED_RATES = {("zinb", "skew_gene"): (3e-2, DEFAULT_LEARNING_RATE)}
#: ``drift_tol="auto"``: the stop's drift threshold per model type (default ``DRIFT_TOL``,
#: 0.003 posterior sd per 100 steps). zinbvcp's gates drift together for tens of
#: thousands of steps at 0.003-0.01 sd per 100 steps: at 20,000 x 2,000 a 0.003 stop took
#: 23,800 steps with r error 14.0 %, 0.01 took 10,000 steps with 12.7 % and better gate
#: and r coverage (docs/convergence.md, "Measured effect").
DRIFT_TOLS = {"zinbvcp": 1e-2}
AUTO_DRIFT = "auto"


def default_drift_tol(model_type: str) -> float:
    """``drift_tol="auto"`` for ``model_type``: ``DRIFT_TOLS`` or ``DRIFT_TOL``."""
    return DRIFT_TOLS.get(model_type, DRIFT_TOL)


def default_optimizer(model_type: str | None = None, stopping: bool = True,
                      guide_family: str | None = None):
    """``scribe.fit``'s optimiser when none is given for ``model_type`` (and the
    ``guide_family`` the user named, if any): Adam at ``DEFAULT_LEARNING_RATE``, or
    :class:`~scribe.svi.staged_rate.StagedAdam` over the rates of ``GUIDE_STAGED_RATES``
    or ``STAGED_RATES`` when the convergence stop is on (``stopping``; without it a
    staged rate would never leave its first stage)."""
    rates = GUIDE_STAGED_RATES.get((model_type, guide_family),
                                   STAGED_RATES.get(model_type))
    if rates is not None and stopping:
        return StagedAdam(rates)
    return Adam(step_size=DEFAULT_LEARNING_RATE)
