"""A clear warning when MAP cell-type probabilities are NaN.

``cell_type_probabilities_map`` evaluates the likelihood at ``get_map()``, whose default
(``use_mean=False``, the public contract) is NaN wherever a factor's mode is not interior:
a gate or capture factor with a concentration <= 1, common for genes whose gate is near 0
(SPEC section 3). One such gene in a component makes every cell's probabilities NaN, and
``argmax`` of a NaN row is 0, so every cell lands in component 0 without an error: a fit
whose components are fine then looks collapsed (zinbvcp_mix, docs/benchmarks.md
"zinbvcp_mix: no collapse").
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp


def warn_nan_probabilities(probabilities, use_mean: bool, stacklevel: int = 3) -> None:
    """Warn (``RuntimeWarning``) when rows of ``probabilities`` ``(C, K)`` are not finite.

    Parameters
    ----------
    probabilities : array, shape (C, K)
    use_mean : bool
        The caller's ``use_mean`` (the advice differs).
    """
    bad = int(jnp.sum(~jnp.all(jnp.isfinite(probabilities), axis=-1)))
    if bad == 0:
        return
    n_cells = int(probabilities.shape[0])
    cause = ("some MAP estimates are undefined (a Beta, BetaPrime or logit-normal factor "
             "without an interior mode); pass use_mean=True to evaluate those at their "
             "means" if not use_mean else
             "the parameters or the counts are not finite")
    warnings.warn(f"cell-type probabilities are NaN for {bad} of {n_cells} cells: {cause}. "
                  f"Do not take argmax of them (a NaN row's argmax is component 0)",
                  RuntimeWarning, stacklevel=stacklevel)
