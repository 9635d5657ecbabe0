"""Counts split by cells across devices: each device holds its own cells' non-zeros.

:class:`ShardedCounts` stacks one :class:`~scribe.counts.SparseCounts` per device along a
leading axis ``D`` that the mesh splits, so device ``d`` stores only block ``d``: the
non-zeros of its ``n_d`` cells (:class:`~scribe.shard.layout.CellLayout`), their per-cell
statistics, row pointers and exceedance histogram, all padded to the longest block so
the blocks stack. Padding is inert: entries of value 0 (which every likelihood already
skips), empty rows, histogram rows with count 0; padding cells are masked by the
callers (:mod:`scribe.shard.observe`).

Each process builds only the blocks of its own devices (``jax.process_index``) and reads
only those cells' rows; the block lengths are agreed across processes before padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from scribe.counts import INT32_MAX, SparseCounts, batch_capacity
from scribe.data import _canonical_csr
from scribe.shard.devices import AXIS, CellMesh

# Padding value of each array that is padded (the rest, per gene, is not): cells point
# at the last slot so that sorted segment ids stay sorted; histogram rows at the last gene.
_ENTRY = {"values": 0, "genes": 0, "cells": "last_cell"}
_CELL = ("cell_totals", "cell_log_factorial", "cell_nonzero")
_HIST = {"hist_genes": "last_gene", "hist_shifts": 0, "hist_counts": 0}
_LARGE = {"large_values": 0, "large_genes": 0, "large_cells": "last_cell"}


def squeeze(tree):
    """A device's block inside ``shard_map``: drop the leading axis of length 1."""
    return jax.tree.map(lambda a: a[0], tree)


def expand(tree):
    """The inverse of :func:`squeeze`."""
    return jax.tree.map(lambda a: a[None], tree)


@jax.tree_util.register_pytree_node_class
class ShardedCounts:
    """A ``(C, G)`` count matrix whose cells are split across the devices of a mesh.

    Attributes
    ----------
    local : SparseCounts
        Arrays with a leading device axis ``(D, ...)``, split over the mesh; its
        ``shape`` is one block's, ``(L, G)`` (``(b, G)`` for a mini-batch).
    cell_mesh : CellMesh
    shape : (int, int)
        ``(C, G)`` of the whole matrix (``(B, G)`` for a mini-batch of ``B = D b``).
    batch_capacity : (int, int) or None
        Entries and large entries of one device's share of a mini-batch.
    is_batch : bool
        A mini-batch from :meth:`take_cells`: ``b`` cells per device, no padding cells.
    """

    def __init__(self, local: SparseCounts, cell_mesh: CellMesh, shape: tuple[int, int],
                 batch_capacity: tuple[int, int] | None = None, is_batch: bool = False):
        self.local, self.cell_mesh = local, cell_mesh
        self.shape = (int(shape[0]), int(shape[1]))
        self.batch_capacity, self.is_batch = batch_capacity, is_batch

    def tree_flatten(self):
        return (self.local,), (self.cell_mesh, self.shape, self.batch_capacity,
                               self.is_batch)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, matrix, cell_mesh: CellMesh, batch_size: int | None = None,
                    dtype=np.float32) -> ShardedCounts:
        """Split validated counts ``(C, G)`` (see :func:`scribe.data.prepare_counts`).

        Parameters
        ----------
        matrix : scipy.sparse matrix or array, shape (C, G)
            Only the rows of this process's devices are read.
        cell_mesh : CellMesh
        batch_size : int, optional
            Cells per step, all devices together (a multiple of ``D``): reserves room
            for ``batch_size / D`` cells per device in :meth:`take_cells`.
        dtype : numpy dtype, default float32
        """
        layout = cell_mesh.layout
        n_genes = int(matrix.shape[1])
        blocks = {}
        for d, device in enumerate(cell_mesh.devices):
            if device.process_index != jax.process_index():
                continue
            start, size = int(layout.starts[d]), int(layout.sizes[d])
            rows = _canonical_csr(matrix[start:start + size])
            # Built on the default device, then moved: one block at a time.
            blocks[d] = jax.device_put(SparseCounts.from_matrix(rows, dtype=dtype), device)
        lengths = _agreed_lengths(blocks, cell_mesh)
        capacity = None
        if batch_size is not None:
            share = int(batch_size) // cell_mesh.n_devices
            capacity = tuple(int(c) for c in _agree_max(np.array(
                [[batch_capacity(p, share) for p in block.host_offsets()]
                 for block in blocks.values()]), cell_mesh))
        padded = {d: _pad_block(block, layout.local, n_genes, lengths)
                  for d, block in blocks.items()}
        local = _assemble(padded, cell_mesh, (layout.local, n_genes))
        return cls(local, cell_mesh, (layout.n_cells, n_genes), capacity)

    # ---- properties ------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return self.shape[0]

    @property
    def n_genes(self) -> int:
        return self.shape[1]

    @property
    def ndim(self) -> int:
        return 2

    @property
    def cell_totals(self) -> jnp.ndarray:
        """UMI totals ``(C,)`` in the cells' original order (a full matrix only)."""
        totals = self.local.cell_totals.reshape(-1)
        return totals if self.is_batch else self.cell_mesh.layout.from_slots(totals)

    def device_bytes(self) -> dict:
        """Bytes of the counts' arrays held by each device ``{device: bytes}``."""
        held: dict = {}
        for leaf in jax.tree.leaves(self.local):
            for shard in leaf.addressable_shards:
                held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
        return held

    # ---- mini-batches ----------------------------------------------------------------------
    def take_cells(self, index: jnp.ndarray) -> ShardedCounts:
        """The counts of cells ``index`` ``(B,)``: ``B / D`` cells of each device in turn
        (device-major, as :mod:`scribe.shard.batches` draws them), gathered on the
        device that holds them."""
        if self.batch_capacity is None:
            raise ValueError("no batch capacity: build with batch_size")
        n_devices = self.cell_mesh.n_devices
        share = index.shape[0] // n_devices
        starts = jnp.asarray(self.cell_mesh.layout.starts, jnp.int32)
        local_index = jnp.asarray(index, jnp.int32).reshape(n_devices, share) - starts[:, None]
        capacity = self.batch_capacity
        spec = PartitionSpec(AXIS)

        def take(block, rows):
            return expand(squeeze(block).take_cells(rows[0], capacity))

        batch = jax.shard_map(take, mesh=self.cell_mesh.mesh, in_specs=(spec, spec),
                              out_specs=spec)(self.local, local_index)
        return ShardedCounts(batch, self.cell_mesh, (index.shape[0], self.n_genes),
                             is_batch=True)


# ---- building blocks ---------------------------------------------------------------------------

def _lengths(block: SparseCounts) -> np.ndarray:
    """Entries, histogram rows and large entries of one block."""
    return np.array([block.values.shape[0], block.hist_genes.shape[0],
                     block.large_values.shape[0]], np.int64)


def _agree_max(local: np.ndarray, cell_mesh: CellMesh) -> np.ndarray:
    """Column maxima of ``local`` ``(n, k)`` over this process's rows and, in a
    multi-host run, over every process's."""
    mine = local.max(axis=0) if local.size else np.zeros(local.shape[1:], np.int64)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        mine = np.asarray(multihost_utils.process_allgather(mine)).max(axis=0)
    return mine


def _agreed_lengths(blocks: dict, cell_mesh: CellMesh) -> dict:
    """Padded lengths shared by all blocks (at least 1: no empty device buffers)."""
    longest = _agree_max(np.stack([_lengths(b) for b in blocks.values()]), cell_mesh)
    longest = np.maximum(longest, 1)
    if longest[0] > INT32_MAX:
        raise ValueError(f"one device would hold {int(longest[0]):,} non-zeros, more than "
                         f"2**31 - 1: use more devices")
    return {"entries": int(longest[0]), "hist": int(longest[1]), "large": int(longest[2])}


def _pad_to(array: jnp.ndarray, length: int, value) -> jnp.ndarray:
    extra = length - array.shape[0]
    return array if extra == 0 else jnp.pad(array, (0, extra), constant_values=value)


def _pad_block(block: SparseCounts, n_slots: int, n_genes: int, lengths: dict) -> dict:
    """One block's arrays padded to the shared lengths (on the block's device)."""
    fill = {"last_cell": n_slots - 1, "last_gene": n_genes - 1}
    arrays = {}
    for group, length in ((_ENTRY, lengths["entries"]), (_HIST, lengths["hist"]),
                          (_LARGE, lengths["large"])):
        for name, value in group.items():
            arrays[name] = _pad_to(getattr(block, name), length, fill.get(value, value))
    for name in _CELL:
        arrays[name] = _pad_to(getattr(block, name), n_slots, 0)
    for name in ("indptr", "large_indptr"):
        pointers = getattr(block, name).astype(jnp.int32)  # one block: < 2**31 entries
        arrays[name] = _pad_to(pointers, n_slots + 1, pointers[-1])
    for name in ("gene_totals", "gene_log_factorial", "gene_nonzero"):
        arrays[name] = getattr(block, name)
    return arrays


def _assemble(padded: dict, cell_mesh: CellMesh, block_shape: tuple[int, int]) -> SparseCounts:
    """Global ``(D, ...)`` arrays from this process's per-device blocks."""
    sharding = cell_mesh.sharded()
    names = next(iter(padded.values())).keys()
    arrays = {}
    for name in names:
        parts = [padded[d][name][None] for d in sorted(padded)]
        shape = (cell_mesh.n_devices, *parts[0].shape[1:])
        arrays[name] = jax.make_array_from_single_device_arrays(shape, sharding, parts)
    return SparseCounts(arrays, block_shape)
