"""Which cells each device holds.

Cells are split into ``D`` contiguous runs in their original order, as even as possible
(the first ``C mod D`` devices hold one cell more). Every device's run is padded to the
same length ``L = ceil(C / D)``, so per-cell arrays stack into ``(D, L, ...)`` blocks
that a one-axis mesh splits evenly; the padding slots are masked out of every sum.
"""

from __future__ import annotations

import attrs
import jax.numpy as jnp
import numpy as np


@attrs.frozen
class CellLayout:
    """Contiguous, balanced runs of cells on ``n_devices`` devices.

    Parameters
    ----------
    n_cells : int
        ``C``, at least ``n_devices``.
    n_devices : int
        ``D``.
    """

    n_cells: int
    n_devices: int

    def __attrs_post_init__(self):
        if not 1 <= self.n_devices <= self.n_cells:
            raise ValueError(f"{self.n_cells} cells cannot be split over {self.n_devices} "
                             f"devices: each device needs at least one cell")

    @property
    def local(self) -> int:
        """``L``: slots per device (cells plus padding)."""
        return -(-self.n_cells // self.n_devices)

    @property
    def sizes(self) -> np.ndarray:
        """Cells on each device, ``(D,)`` int64."""
        base, extra = divmod(self.n_cells, self.n_devices)
        return base + (np.arange(self.n_devices) < extra)

    @property
    def starts(self) -> np.ndarray:
        """First cell of each device, ``(D,)`` int64."""
        return np.r_[0, np.cumsum(self.sizes)[:-1]]

    @property
    def valid(self) -> np.ndarray:
        """``(D, L)`` bool: which slots hold a cell."""
        return np.arange(self.local)[None, :] < self.sizes[:, None]

    @property
    def slot_of_cell(self) -> np.ndarray:
        """``(C,)`` int32: each cell's slot in the flattened ``(D * L)`` layout."""
        device = np.repeat(np.arange(self.n_devices), self.sizes)
        within = np.arange(self.n_cells) - self.starts[device]
        return (device * self.local + within).astype(np.int32)

    @property
    def cell_of_slot(self) -> np.ndarray:
        """``(D * L,)`` int32: the cell in each slot; a padding slot repeats its device's
        last cell (so padded values are valid parameters, never NaN)."""
        within = np.minimum(np.arange(self.local)[None, :], self.sizes[:, None] - 1)
        return (self.starts[:, None] + within).reshape(-1).astype(np.int32)

    @property
    def is_even(self) -> bool:
        return self.n_cells == self.n_devices * self.local

    # ---- moving per-cell arrays between layouts ------------------------------------------
    def to_slots(self, values, axis: int = 0):
        """``(..., C, ...)`` -> ``(..., D * L, ...)`` along ``axis`` (padding repeats a
        cell of the same device)."""
        if self.is_even:
            return values
        return jnp.take(values, jnp.asarray(self.cell_of_slot), axis=axis)

    def from_slots(self, values, axis: int = 0):
        """``(..., D * L, ...)`` -> ``(..., C, ...)`` along ``axis`` (drops padding)."""
        if self.is_even:
            return values
        return jnp.take(values, jnp.asarray(self.slot_of_cell), axis=axis)

    def host_to_slots(self, values: np.ndarray, axis: int = 0) -> np.ndarray:
        """:meth:`to_slots` on the host (numpy)."""
        return np.take(np.asarray(values), self.cell_of_slot, axis=axis)
