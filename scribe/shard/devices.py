"""The ``devices=`` argument of ``scribe.fit``, the engine and the analyses.

``None`` is one device: today's single-device code path, unchanged. An integer ``n``
takes the first ``n`` of ``jax.devices()`` (all processes' devices in a multi-host run,
:func:`jax.distributed.initialize` first); a list names them. Cells are split over a
one-axis mesh named ``"cells"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scribe.shard.layout import CellLayout

#: The mesh axis cells are split over.
AXIS = "cells"


def resolve_devices(devices) -> tuple | None:
    """Validated ``devices``: None (one device, unsharded) or a tuple of ``jax.Device``.

    Raises
    ------
    TypeError
        Not None, an integer or a sequence of ``jax.Device`` (bools refused).
    ValueError
        An integer below 1 or above ``len(jax.devices())``, an empty list, a device
        listed twice or not among ``jax.devices()``.
    """
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, bool | np.bool_):
        raise TypeError(f"devices must be None, a positive integer or a list of "
                        f"jax.Device, got {devices!r}")
    if isinstance(devices, int | np.integer):
        n = int(devices)
        if not 1 <= n <= len(available):
            raise ValueError(f"devices={n}: must be between 1 and the {len(available)} "
                             f"device(s) jax.devices() lists ({_describe(available)})")
        return None if n == 1 else tuple(available[:n])
    if isinstance(devices, jax.Device):
        devices = [devices]
    if not isinstance(devices, Sequence) or isinstance(devices, str):
        raise TypeError(f"devices must be None, a positive integer or a list of "
                        f"jax.Device, got {type(devices).__name__}")
    devices = tuple(devices)
    if not devices:
        raise ValueError("devices is an empty list: give at least one jax.Device")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(f"devices must hold jax.Device objects, got "
                            f"{type(device).__name__} ({device!r})")
        if device not in available:
            raise ValueError(f"device {device} is not among jax.devices() "
                             f"({_describe(available)})")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices lists a device twice: {list(devices)}")
    if len(devices) == 1 and devices[0] == available[0]:
        return None
    return devices


def _describe(devices) -> str:
    return ", ".join(str(d) for d in devices[:8]) + (" ..." if len(devices) > 8 else "")


@attrs.frozen(eq=False)
class CellMesh:
    """A one-axis mesh over ``devices`` and the layout of ``n_cells`` cells on it."""

    devices: tuple
    layout: CellLayout
    mesh: Mesh

    @classmethod
    def create(cls, devices: tuple, n_cells: int) -> CellMesh:
        devices = tuple(devices)
        return cls(devices, CellLayout(int(n_cells), len(devices)),
                   Mesh(np.array(devices), (AXIS,)))

    @property
    def n_devices(self) -> int:
        return len(self.devices)

    def sharded(self) -> NamedSharding:
        """Leading axis split over the devices."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())


def check_sharded_fit(cell_mesh_devices: tuple, n_cells: int, batch_size: int | None,
                      composed: bool) -> None:
    """Checks of a sharded fit that need the data's size (before training).

    Raises
    ------
    ValueError
        Fewer cells than devices, a ``batch_size`` not divisible by the number of
        devices, or a plugin model type with its own model (only model types composed
        from a likelihood are sharded).
    """
    n = len(cell_mesh_devices)
    if not composed:
        raise ValueError(f"devices={n}: only model types composed from a likelihood can be "
                         f"sharded across devices; use devices=None for this model type")
    if n_cells < n:
        raise ValueError(f"devices={n} but the data have only {n_cells} cells: each "
                         f"device needs at least one cell")
    if batch_size is not None and batch_size < n_cells and batch_size % n:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {n} devices: "
                         f"each device draws batch_size / devices of its own cells per "
                         f"step; use a multiple of {n}")
