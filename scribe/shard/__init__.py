"""Cells sharded across JAX devices (and hosts): see docs/scale.md.

* :mod:`.devices`: the ``devices=`` argument, validated, and the one-axis mesh;
* :mod:`.layout`: which cells each device holds (contiguous, balanced, padded);
* :mod:`.counts`: :class:`ShardedCounts`, each device's cells' non-zeros;
* :mod:`.observe`: the counts' log-likelihood summed on each device and reduced;
* :mod:`.batches`: mini-batches drawn per device (stratified by device);
* :mod:`.training`: padded, sharded per-cell variational parameters;
* :mod:`.analyses`: log-likelihoods, assignments and denoising per device.
"""

from scribe.shard.devices import CellMesh, resolve_devices
from scribe.shard.layout import CellLayout

__all__ = ["CellLayout", "CellMesh", "resolve_devices"]
