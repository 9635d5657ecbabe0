"""Analyses with cells split across devices (``devices=`` of the analyses).

* Log-likelihoods (and what is built on them: cell-type probabilities, entropies): the
  counts become :class:`~scribe.shard.counts.ShardedCounts`; every device runs the
  single-device evaluator (:mod:`scribe.svi.loglik`, its blocks of ``batch_size`` cells
  included) on its own cells with their per-cell draws. Per cell, the devices' results
  are concatenated; per gene, their raw sums are added (``psum``) before ``log w_k`` and
  the sum over components. A device's padding slot (a copy of its last cell, no
  counts) adds ``log f(0)`` to per-gene sums: it is evaluated on a one-cell zero matrix
  and subtracted.
* Denoising: ``D`` consecutive blocks of cells at a time, one per device, each with the
  single-device block program and the same random keys, so results do not depend on
  the number of devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import NamedSharding, PartitionSpec

from scribe.counts import SparseCounts, block_capacity
from scribe.shard.counts import ShardedCounts, expand, squeeze
from scribe.shard.devices import AXIS, CellMesh
from scribe.svi.loglik import AUTO_BLOCK_NONZEROS, MULTIPLICATIVE


def _plan(pointers: tuple[np.ndarray, np.ndarray], n_slots: int, batch_size: int | None,
          by: str) -> tuple | None:
    """The evaluator's block plan for one device's ``n_slots`` cells, valid on every
    device: ``pointers`` are the devices' row pointers of all and of large entries, each
    ``(D, L + 1)``; capacities are the largest over devices."""
    nnz = int(pointers[0][:, -1].max())
    if batch_size is None and by == "cell" and nnz > AUTO_BLOCK_NONZEROS:
        batch_size = max(1, AUTO_BLOCK_NONZEROS * n_slots // nnz)
    if batch_size is None or batch_size >= n_slots:
        return None
    size = int(batch_size)
    n_blocks, n_left = divmod(n_slots, size)
    capacity = tuple(max(block_capacity(p, size) for p in ps) for ps in pointers)
    left = tuple(max(max(int(p[-1] - p[n_blocks * size]), 1) for p in ps)
                 for ps in pointers) if n_left else (0, 0)
    return size, n_blocks, capacity, n_left, left


def log_likelihood(evaluator, matrix, draws: dict, cell_mesh: CellMesh, *, by: str,
                   split: bool, weights, weight_type: str | None, batch_size: int | None,
                   dtype) -> jnp.ndarray:
    """:meth:`LogLikelihoodEvaluator.__call__` with the cells split over ``cell_mesh``.

    Parameters and result as there; ``matrix`` is the validated counts (CSR or dense).
    """
    layout = cell_mesh.layout
    counts = ShardedCounts.from_matrix(matrix, cell_mesh, dtype=np.dtype(dtype))
    names = evaluator.parameter_names(draws)
    params = {n: draws[n] for n in names}
    cell_names = evaluator.cell_names(params, leading=1)
    n_draws = next(iter(params.values())).shape[0]
    # Per-cell draws (S, C, ...) -> (D, S, L, ...): each device gets its cells'.
    per_cell = {n: jnp.moveaxis(layout.to_slots(v, axis=1).reshape(
        n_draws, layout.n_devices, layout.local, *v.shape[2:]), 1, 0)
        for n, v in params.items() if n in cell_names}
    shared = {n: v for n, v in params.items() if n not in cell_names}
    pointers = tuple(np.asarray(jax.device_get(p)).astype(np.int64)
                     for p in (counts.local.indptr, counts.local.large_indptr))
    plan = _plan(pointers, layout.local, batch_size, by)
    if weights is None:
        weights = jnp.zeros(counts.n_genes, dtype)
    weights = jnp.asarray(weights, dtype)
    cell_weights = weights if (weight_type == MULTIPLICATIVE and by == "cell") else None
    n_pad = jnp.asarray(layout.local - layout.sizes, dtype)
    zero = SparseCounts.from_matrix(sp.csr_matrix((1, counts.n_genes), dtype=np.float32),
                                    dtype=np.dtype(dtype))

    def raw(block, cells):
        if plan is None:
            return evaluator._draws_on_block(block, shared, cells, by, cell_weights)
        return evaluator._over_blocks(block, plan, shared, cells, by, cell_weights)

    def local(block, cells, pad):
        block, cells = squeeze(block), squeeze(cells)
        result = raw(block, cells)
        if by == "cell":
            return result[None]
        # The padding slot (a copy of the last cell) has no counts: remove its log f(0).
        last = {n: v[:, -1:] for n, v in cells.items()}
        padding = evaluator._draws_on_block(zero, shared, last, by, cell_weights)
        return jax.lax.psum(result - pad[0] * padding, AXIS)

    spec = PartitionSpec(AXIS)
    out = PartitionSpec(AXIS) if by == "cell" else PartitionSpec()
    # No gradients here: skip the varying-axis checks (the evaluator's scans start from
    # unsharded zeros).
    program = jax.jit(jax.shard_map(local, mesh=cell_mesh.mesh, in_specs=(spec, spec, spec),
                                    out_specs=out, check_vma=False))
    result = program(counts.local, per_cell, n_pad)
    if by == "cell":   # (D, S, L, ...) -> (S, C, ...)
        result = jnp.moveaxis(result, 0, 1)
        result = layout.from_slots(result.reshape(n_draws, -1, *result.shape[3:]), axis=1)
    result = jax.device_put(result, jax.devices()[0])
    return evaluator._finish(result, jax.device_put(params, jax.devices()[0]), weights,
                             layout.n_cells, by=by, split=split, weight_type=weight_type)


def map_blocks(devices: tuple, program, blocks):
    """``program(*args)`` on consecutive blocks, ``len(devices)`` at a time, one per device.

    Parameters
    ----------
    devices : tuple of jax.Device
    program : callable
        Takes and returns arrays of one block; every block's arguments have the same
        shapes (pad the last one).
    blocks : iterable of tuple
        The arguments of each block, in order.

    Yields
    ------
    The output of each block, in order (on the host).
    """
    cell_mesh = CellMesh.create(devices, len(devices))
    spec = PartitionSpec(AXIS)
    sharding = NamedSharding(cell_mesh.mesh, spec)
    mapped = jax.jit(jax.shard_map(lambda *a: expand(program(*squeeze(a))),
                                   mesh=cell_mesh.mesh, in_specs=spec, out_specs=spec,
                                   check_vma=False))
    group = []

    def run(group):
        real = len(group)
        group = group + [group[-1]] * (len(devices) - real)
        stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *group)
        out = np.asarray(jax.device_get(mapped(*jax.device_put(stacked, sharding))))
        return list(out[:real])

    for args in blocks:
        group.append(args)
        if len(group) == len(devices):
            yield from run(group)
            group = []
    if group:
        yield from run(group)
