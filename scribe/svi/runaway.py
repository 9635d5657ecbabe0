"""A fit whose loss ran away: finite, but far above the best it reached.

Non-finite steps are caught inside the compiled loop (:mod:`scribe.svi.divergence`); a
learning rate that is too high can also throw the parameters somewhere the loss is
finite but enormous (a ``skew_gene`` fit at a rate of 3e-2 ended at 3.5e16 after
starting at 2e7, docs/benchmarks.md), and such a fit must not pass for a result.

The check, on the host after the fit: medians of the loss over consecutive windows of
100 steps (non-finite steps ignored); the fit ran away when the last window's median
exceeds ``factor`` times the smallest window median. For count data the loss (the
negative ELBO, mini-batch scaled or not) estimates a quantity ``>= -log p(x) >= 0``, so
the best median is positive, and a working optimiser's later windows stay within the
loss's noise of it (a window median's relative scatter is far below 1 %); ``factor = 2``
is a doubling of the whole loss, which no converging fit shows. Losses that are not
positive (plugin models with densities) are not checked.
"""

from __future__ import annotations

import numpy as np

#: The last window's median loss, over the best window's, above which a fit ran away.
RUNAWAY_FACTOR = 2.0


def loss_runaway(losses, window: int = 100, factor: float = RUNAWAY_FACTOR) -> str | None:
    """A warning when the loss ran away, else None.

    Parameters
    ----------
    losses : array-like, shape (n_steps,)
        The loss history of the fit.
    window : int, default 100
    factor : float, default RUNAWAY_FACTOR
    """
    losses = np.asarray(losses, dtype=np.float64)
    n_windows = losses.shape[0] // window
    if n_windows < 2:
        return None
    spans = losses[losses.shape[0] - n_windows * window:].reshape(n_windows, window)
    finite = np.isfinite(spans)
    medians = np.array([np.median(row[ok]) if ok.any() else np.nan
                        for row, ok in zip(spans, finite, strict=True)])
    if not np.isfinite(medians[-1]) or not np.any(np.isfinite(medians[:-1])):
        return None
    best_index = int(np.nanargmin(medians))
    best, last = medians[best_index], medians[-1]
    if not best > 0 or last <= factor * best:
        return None
    step = (losses.shape[0] - n_windows * window) + best_index * window
    return (f"the optimiser RAN AWAY: the loss reached {best:.6g} (median of the 100 steps "
            f"from step {step}) and ended at {last:.6g}, {last / best:.3g} times higher; the "
            f"results are not a fitted posterior (results.converged is False). Lower the "
            f"optimizer's learning rate and fit again.")
