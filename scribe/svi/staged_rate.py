"""Adam whose learning rate steps down each time the convergence stop fires.

Why: capture models (nbvcp, zinbvcp) spend most of their steps drifting along weakly
identified directions (the ``r``-odds and ``p``-capture ridges, and the widths of the
per-cell capture factors that follow them); Adam moves each coordinate by about its
learning rate per step, so the drift takes thousands of steps at 3e-3. A larger rate
covers it sooner, but its last iterate jitters by about the step size in log space, which
is comparable to a factor's posterior width and costs interval coverage (docs/models.md,
"Convergence and the default optimiser"). Running at a high rate until the loss is flat,
then continuing at the default rate until the loss is flat again, gets the drift's speed
and the low rate's end point (docs/benchmarks.md, "Capture models: where the steps go").

How: the rate is a function of Adam's step counter ``i``; stage ``k`` covers
``k * STAGE_OFFSET <= i < (k + 1) * STAGE_OFFSET``. Moving to the next stage adds
``STAGE_OFFSET`` to the counter in the optimiser state, so the compiled loop is not
recompiled and Adam's moments carry over (its bias correction ``1 - b^(i+1)`` is already 1
to float precision after a few hundred steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from numpyro.optim import Adam

#: Counter offset between stages: above any step count a fit runs (int32 counter).
STAGE_OFFSET = 1 << 24


class StagedAdam(Adam):
    """Adam with a learning rate per stage, advanced by :func:`next_stage`.

    Parameters
    ----------
    rates : sequence of float
        Learning rates of the stages, in the order they run (at least one, each > 0).
    """

    def __init__(self, rates: Sequence[float]):
        rates = tuple(float(r) for r in rates)
        if not rates or any(not (r > 0) for r in rates):
            raise ValueError(f"rates must be one or more positive learning rates, got {rates!r}")
        table = jnp.asarray(rates)
        last = len(rates) - 1
        super().__init__(step_size=lambda i: table[jnp.minimum(i // STAGE_OFFSET, last)])
        self.rates = rates

    def __repr__(self) -> str:
        return f"StagedAdam(rates={self.rates})"


def stage_of(svi_state) -> int:
    """The stage the SVI state's optimiser counter is in."""
    return int(svi_state.optim_state[0]) // STAGE_OFFSET


def next_stage(optimizer, svi_states: tuple):
    """The SVI states moved to the optimiser's next stage, or None when there is none.

    Parameters
    ----------
    optimizer : numpyro optimizer
        Anything but a :class:`StagedAdam` has no further stage.
    svi_states : tuple of numpyro SVIState
        States sharing one counter (the current and the last finite one); all are moved.
    """
    if not isinstance(optimizer, StagedAdam):
        return None
    if stage_of(svi_states[0]) + 1 >= len(optimizer.rates):
        return None
    return tuple(s._replace(optim_state=(s.optim_state[0] + STAGE_OFFSET, s.optim_state[1]))
                 for s in svi_states)
