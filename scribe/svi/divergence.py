"""Divergence of the optimiser: non-finite steps, tracked inside the compiled loop.

A step is *non-finite* when its loss, or the parameters it produces, are not finite.
What happens next depends on the update rule:

* ``stable_update=True`` (NumPyro's ``SVI.stable_update``): the step is skipped, the
  parameters stay where they were. A few skipped steps are harmless; a fit whose loss is
  never finite again has *diverged* (typically one wild but finite step with too high a
  learning rate put the parameters where the loss is NaN).
* ``stable_update=False``: the update is applied, NaN gradients make every parameter NaN,
  and every later step is NaN too: the fit has diverged at the first non-finite step.

The compiled loop carries, next to the SVI state, the last state at which the loss was
finite (the state a finite loss was *evaluated at*), the count of non-finite steps and the
first of them, with no host synchronisation per step. A fit that ends diverged (its last
loss not finite, or its parameters not finite) returns that last finite state instead of
the broken one.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

#: A run stops early once this many consecutive steps (at least one whole compiled chunk)
#: had no finite loss: with ``stable_update`` the parameters are frozen at a point where
#: the loss is NaN, without it they are NaN; either way further steps change nothing.
STOP_AFTER_NONFINITE = 100


def tree_finite(tree) -> jnp.ndarray:
    """Scalar bool: every floating leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def select_tree(condition, if_true, if_false):
    """Leafwise ``where(condition, if_true, if_false)`` for two trees of one structure."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


@dataclass(frozen=True)
class Divergence:
    """What the run's non-finite steps were, and what the results hold.

    Attributes
    ----------
    n_nonfinite : int
        Steps whose loss or new parameters were not finite.
    first_step : int or None
        0-based index of the first such step (None: none).
    diverged : bool
        The run ended with a non-finite loss or non-finite parameters; the returned
        parameters are the last ones at which the loss was finite.
    stable_update : bool
        Whether non-finite steps were skipped (True) or applied (False).
    restored_step : int or None
        When diverged: the step whose starting parameters were returned (None: the loss
        was never finite; the initial parameters were returned).
    """

    n_nonfinite: int
    first_step: int | None
    diverged: bool
    stable_update: bool
    restored_step: int | None = None

    def message(self, n_steps_run: int) -> str | None:
        """A warning for the user, or None when every step was finite."""
        if self.n_nonfinite == 0:
            return None
        count = (f"{self.n_nonfinite} of {n_steps_run} SVI steps had a non-finite loss or "
                 f"parameters (the first at step {self.first_step})")
        if self.stable_update:
            what = "; with stable_update=True they were skipped (parameters left unchanged)"
        else:
            what = ("; with stable_update=False they were applied, and the parameters "
                    "became NaN")
        if not self.diverged:
            return f"{count}{what}. The fit recovered; its final parameters are finite."
        where = ("the initial parameters" if self.restored_step is None
                 else f"the parameters step {self.restored_step} started from, the last "
                      f"at which the loss was finite")
        return (f"the optimiser DIVERGED: {count}{what}, and the loss never became finite "
                f"again. The results hold {where}, not a fitted posterior. Lower the "
                f"optimizer's learning rate (e.g. numpyro.optim.Adam(step_size=1e-3)) and "
                f"fit again.")
