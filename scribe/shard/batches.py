"""Mini-batches of a sharded fit: every device draws its share from its own cells.

With ``batch_size=B`` on ``D`` devices, each step device ``d`` draws ``b = B / D`` of
its ``n_d`` cells uniformly without replacement (a stratified sample, strata = devices),
so no counts move between devices. The batch is ordered device by device. Device
``d``'s cells then stand for its ``n_d`` cells with weight ``n_d / b``: the ``cells``
plate already scales by ``C / B``, and :class:`StratifiedCells` multiplies each drawn
cell's sites by ``n_d D / C`` (1 when the cells divide evenly; within ``D / C`` of 1
otherwise, as the layout is balanced). The ELBO estimate stays unbiased.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.primitives import Messenger

from scribe.shard.layout import CellLayout

PLATE = "cells"


def stratified_indices(key, layout: CellLayout, batch_size: int) -> jnp.ndarray:
    """``(B,)`` int32 cells: ``B / D`` distinct cells of each device, device-major."""
    share = batch_size // layout.n_devices
    noise = jax.random.uniform(key, (layout.n_devices, layout.local))
    # Padding slots sort last (uniform draws are < 1); b <= n_d, so they are never taken.
    noise = jnp.where(jnp.asarray(layout.valid), noise, 2.0)
    within = jnp.argsort(noise, axis=1)[:, :share]
    return (jnp.asarray(layout.starts, jnp.int32)[:, None] + within).reshape(-1).astype(
        jnp.int32)


def cell_weights(layout: CellLayout, batch_size: int) -> np.ndarray:
    """``(B,)`` weight of each drawn cell relative to the plate's ``C / B``."""
    share = batch_size // layout.n_devices
    per_device = layout.sizes * layout.n_devices / layout.n_cells
    return np.repeat(per_device, share).astype(np.float32)


class StratifiedCells(Messenger):
    """Draw the ``cells`` plate's mini-batch per device and weight its sites.

    Wraps a model or guide: the plate's subsample function is replaced by
    :func:`stratified_indices` (the ``seed`` handler still supplies its key, and the
    model replays the guide's draw), and every sample site inside the plate is scaled
    by :func:`cell_weights`.
    """

    def __init__(self, fn, layout: CellLayout, batch_size: int):
        self.layout, self.batch_size = layout, int(batch_size)
        self.weights = cell_weights(layout, batch_size)
        self.uniform = bool(np.all(self.weights == 1.0))
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["name"] == PLATE and msg["value"] is None:
            layout, size = self.layout, self.batch_size

            def subsample(n_cells, subsample_size, rng_key=None):
                return stratified_indices(rng_key, layout, size)

            msg["fn"] = subsample
        elif (msg["type"] == "sample" and not self.uniform
              and any(f.name == PLATE for f in msg.get("cond_indep_stack", ()))):
            weights = jnp.asarray(self.weights)
            msg["scale"] = weights if msg.get("scale") is None else msg["scale"] * weights
