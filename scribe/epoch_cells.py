"""Mini-batches drawn epoch by epoch: every cell once per epoch (``scribe.fit``'s batches).

With independent uniform draws per step, a mini-batch loss carries the noise of *which*
cells were drawn (at 2,048 of 20,000 cells, nbdm_mix: 6.4e-4 of the loss per step, all
of its noise), and the convergence stop needs ~1,800 steps of history to resolve a change
of ``tol`` under it. Drawn in epochs instead, the steps of one epoch cover the cells once,
so the sum of an epoch's losses is the full-data loss up to the few cells the last batch
repeats; :class:`scribe.svi.convergence.ConvergenceMonitor` with ``block`` = steps per epoch
then judges epoch means, whose noise is a small fraction of one step's.

Design (unbiased, fixed shapes, int32 only). An epoch is ``E = ceil(C / B)`` steps with
``E B`` slots; slot ``j`` of epoch ``e`` holds cell ``P[(a_e (j mod C) + b_e) mod C]`` with
``P`` a fixed random permutation, ``a_e`` a random multiplier coprime to ``C`` and ``b_e``
uniform in ``[0, C)``. For fixed ``a_e`` the map is a bijection of ``j mod C``, and ``b_e``
makes every slot a uniform draw of a cell, so each step's cells have inclusion probability
``B / C`` and the plate's ``C / B`` scaling keeps the ELBO estimate unbiased. A batch never
holds a cell twice: only the epoch's last batch wraps, onto the ``E B - C < B`` first slots.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.primitives import Messenger

PLATE = "cells"
_INT32_MAX = 2**31 - 1
_N_MULTIPLIERS = 64


def epoch_steps(n_cells: int, batch_size: int | None) -> int:
    """Steps per epoch, ``ceil(C / B)`` (1 for the full batch)."""
    if batch_size is None or batch_size >= n_cells:
        return 1
    return math.ceil(n_cells / batch_size)


def multipliers(n_cells: int, seed: int, count: int = _N_MULTIPLIERS) -> np.ndarray:
    """Up to ``count`` distinct multipliers ``a`` coprime to ``C`` with ``a C + C`` inside
    int32 (so ``(a j + b) mod C`` never overflows), ``(count,)`` int32 (1 always among
    the candidates)."""
    limit = max(2, min(n_cells, _INT32_MAX // max(n_cells, 1) - 1))
    rng = np.random.default_rng(seed)
    candidates = rng.permutation(np.arange(1, limit))[: 50 * count]
    good = [int(a) for a in candidates if math.gcd(int(a), n_cells) == 1][:count]
    return np.asarray(good or [1], np.int32)


def epoch_indices(step, n_cells: int, batch_size: int, order, table, key) -> jnp.ndarray:
    """Cells ``(B,)`` int32 of step ``step`` (a traced int) under the epoch design above.

    ``order`` is the permutation ``P`` ``(C,)``, ``table`` the multipliers, ``key`` the
    fit's base key (each epoch folds its number in).
    """
    per_epoch = epoch_steps(n_cells, batch_size)
    step = jnp.asarray(step, jnp.int32)
    epoch, within = step // per_epoch, step % per_epoch
    key_a, key_b = jax.random.split(jax.random.fold_in(key, epoch))
    a = table[jax.random.randint(key_a, (), 0, table.shape[0])]
    b = jax.random.randint(key_b, (), 0, n_cells)
    slots = (within * batch_size + jnp.arange(batch_size, dtype=jnp.int32)) % n_cells
    return order[((a * slots) % n_cells + b) % n_cells]


class EpochCells(Messenger):
    """Wrap a model or guide so that the ``cells`` plate draws :func:`epoch_indices`.

    The wrapped callable takes extra keywords ``step`` (the optimiser's step count; 0 when
    absent, e.g. at ``svi.init``) and ``order`` (``self.order`` as an array argument;
    optional), which are removed before the model sees them.
    Model and guide derive the same cells from the same step.

    Parameters
    ----------
    fn : callable
        Model or guide.
    n_cells, batch_size : int
    seed : int
        Seeds ``P``, the multipliers and the per-epoch draws.
    """

    def __init__(self, fn, n_cells: int, batch_size: int, seed: int):
        self.n_cells, self.batch_size = int(n_cells), int(batch_size)
        rng = np.random.default_rng([seed, 0x5EED])
        self.order = rng.permutation(self.n_cells).astype(np.int32)
        self.table = multipliers(self.n_cells, seed)
        self.key = jax.random.PRNGKey(int(rng.integers(0, 2**31 - 1)))
        self._step, self._order = 0, None
        super().__init__(fn)

    def __call__(self, *args, step=0, order=None, **kwargs):
        # ``order``: ``self.order`` passed as a (traced) argument, so that a compiled step
        # does not embed a C-sized constant; None: use the host copy.
        self._step, self._order = step, order
        return super().__call__(*args, **kwargs)

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["name"] == PLATE and msg["value"] is None:
            order = jnp.asarray(self.order) if self._order is None else self._order
            cells = epoch_indices(self._step, self.n_cells, self.batch_size, order,
                                  jnp.asarray(self.table), self.key)

            def subsample(n_cells, subsample_size, rng_key=None):
                return cells

            msg["fn"] = subsample
