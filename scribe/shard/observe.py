"""The ``counts`` observation of a sharded fit: summed per device, reduced across devices.

Each device evaluates the likelihood of its own cells' counts with its own cells'
per-cell parameters and the replicated global parameters, and the per-device sums are
added with ``psum``; the gradient of the reduced sum flows back to every device's
inputs through ``shard_map``. Non-mixtures use the likelihood's total over the block
(its sufficient statistics and exceedance histogram: for ``nbdm`` the cost does not grow
with the non-zeros), minus the padding slot's ``log f(0)`` (a copy of the device's last
cell, at most one per device); mixtures sum their per-cell marginals, padding masked.

Per-device weights: 1 in a full-batch fit. In a mini-batch, device ``d`` draws
``b = B / D`` of its ``n_d`` cells, so its sum estimates its cells' total with weight
``n_d / b``; the model already scales by ``C / B``, leaving ``n_d D / C`` here
(:mod:`scribe.shard.batches`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import PartitionSpec
from numpyro.distributions import Distribution, constraints

from scribe.counts import SparseCounts
from scribe.mixture import mixture_cell_log_prob
from scribe.parameterization import CELL
from scribe.shard.counts import ShardedCounts, squeeze
from scribe.shard.devices import AXIS


def device_weights(counts: ShardedCounts) -> np.ndarray:
    """``(D,)`` weight of each device's sum relative to the model's scale (see above)."""
    layout = counts.cell_mesh.layout
    if not counts.is_batch:
        return np.ones(layout.n_devices, np.float32)
    return (layout.sizes * layout.n_devices / layout.n_cells).astype(np.float32)


def cell_mask(counts: ShardedCounts) -> np.ndarray:
    """``(D, L)`` (or ``(D, b)``) bool: slots that hold a cell."""
    if counts.is_batch:
        return np.ones(counts.local.cell_totals.shape, bool)
    return counts.cell_mesh.layout.valid


def per_cell_to_blocks(counts: ShardedCounts, values: jnp.ndarray) -> jnp.ndarray:
    """A per-cell array ``(C, ...)`` (a batch's ``(B, ...)``) as ``(D, L, ...)`` blocks."""
    n_devices = counts.cell_mesh.n_devices
    if not counts.is_batch:
        values = counts.cell_mesh.layout.to_slots(values)
    return values.reshape(n_devices, -1, *values.shape[1:])


def _zero_cell(n_genes: int, dtype) -> SparseCounts:
    """One cell with no counts (the padding slot's likelihood)."""
    return SparseCounts.from_matrix(sp.csr_matrix((1, n_genes), dtype=np.float32),
                                    dtype=np.dtype(dtype))


class ShardedCellCounts(Distribution):
    """Counts ``(C, G)`` observed as one matrix, evaluated per device.

    Parameters
    ----------
    likelihood : Likelihood
    params : dict
        Canonical parameters: per-cell ones ``(C,)`` (``(B,)`` in a mini-batch), the
        rest global.
    shape : (int, int)
    mixture : bool
    """

    support = constraints.independent(constraints.nonnegative_integer, 2)

    def __init__(self, likelihood, params: dict, shape: tuple[int, int], mixture: bool):
        self.likelihood, self.params, self.mixture = likelihood, params, mixture
        super().__init__(batch_shape=(), event_shape=tuple(shape))

    def cell_names(self) -> set[str]:
        scopes = self.likelihood.scopes()
        return {n for n in self.params if scopes.get(n) == CELL}

    def log_prob(self, value: ShardedCounts) -> jnp.ndarray:
        if not isinstance(value, ShardedCounts):
            raise TypeError("ShardedCellCounts observes ShardedCounts")
        names = self.cell_names()
        per_cell = {n: per_cell_to_blocks(value, jnp.asarray(self.params[n])) for n in names}
        shared = {n: v for n, v in self.params.items() if n not in names}
        likelihood, mixture = self.likelihood, self.mixture
        padded = not (value.is_batch or value.cell_mesh.layout.is_even)
        zero = _zero_cell(value.n_genes, value.local.values.dtype) if padded else None

        def local(block, cells, shared, mask, n_pad, weight):
            counts, cells = squeeze(block), squeeze(cells)
            params = {**shared, **cells}
            if mixture:
                per = mixture_cell_log_prob(likelihood, counts, params)
                total = jnp.sum(jnp.where(mask[0], per, jnp.zeros((), per.dtype)))
            else:
                total = likelihood.total_log_prob(counts, params)
                if padded:
                    last = {**shared, **{n: v[-1:] for n, v in cells.items()}}
                    total = total - n_pad[0] * likelihood.cell_log_prob(zero, last)[0]
            return jax.lax.psum(total * weight[0].astype(total.dtype), AXIS)

        layout = value.cell_mesh.layout
        n_pad = (np.zeros(layout.n_devices) if value.is_batch
                 else layout.local - layout.sizes).astype(np.float32)
        spec, rep = PartitionSpec(AXIS), PartitionSpec()
        return jax.shard_map(local, mesh=value.cell_mesh.mesh,
                             in_specs=(spec, spec, rep, spec, spec, spec), out_specs=rep)(
            value.local, per_cell, shared, jnp.asarray(cell_mask(value)),
            jnp.asarray(n_pad), jnp.asarray(device_weights(value)))

    def sample(self, key, sample_shape=()):
        raise NotImplementedError("sharded counts are observed, not sampled")
