"""``scribe.fit``'s automatic mini-batch size (``batch_size="auto"``, the default).

A full-batch step costs what one evaluation of the exact log-likelihood costs. For the
built-in non-mixture types without a per-cell zero term (``nbdm``, ``zinb``, ``nbvcp``)
that is independent of the number of non-zeros (sufficient statistics), so a full batch
is always cheapest and noise-free. Mixtures evaluate every non-zero under every component,
``zinbvcp`` every (cell, gene) pair, and a plugin likelihood without sparse sums densifies
the counts: their step grows with the cells, and on many cells a mini-batch of
:data:`AUTO_BATCH_CELLS` cells reaches the same optimum sooner (docs/benchmarks.md,
"Default batching"). The convergence stop resolves the mini-batch loss's noise
(:mod:`scribe.svi.convergence`).

Rule: full batch when the model's full-batch cost does not grow with the entries, or
when there are at most :data:`AUTO_FULL_BATCH_CELLS` cells; otherwise
:data:`AUTO_BATCH_CELLS` cells per step.
"""

from __future__ import annotations

AUTO = "auto"

#: Cells per step of an automatic mini-batch.
AUTO_BATCH_CELLS = 2048

#: Up to this many cells every model is fitted on the full batch: a mini-batch would
#: save less than a factor 4 per step and add noise.
AUTO_FULL_BATCH_CELLS = 4 * AUTO_BATCH_CELLS


def cost_grows_with_entries(likelihood, mixture: bool) -> bool:
    """Whether a full-batch evaluation of the model's log-likelihood grows with the
    non-zeros or the cells x genes entries (True for mixtures and likelihoods that do not
    declare ``statistics_only``)."""
    if likelihood is None:        # a whole model type from a plugin: assume it does
        return True
    return mixture or not getattr(likelihood, "statistics_only", False)


def auto_batch_size(likelihood, mixture: bool, n_cells: int) -> int | None:
    """The batch size ``batch_size="auto"`` stands for (None: all cells).

    Parameters
    ----------
    likelihood : scribe.Likelihood or None
        The model type's likelihood (None for a model type without one).
    mixture : bool
    n_cells : int
    """
    if n_cells <= AUTO_FULL_BATCH_CELLS or not cost_grows_with_entries(likelihood, mixture):
        return None
    return AUTO_BATCH_CELLS
