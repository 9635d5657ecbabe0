"""Sharded variational parameters of a fit.

Per-cell variational parameters (and their optimiser state) are stored in the padded
slot layout ``(D L, ...)``, split over the mesh, so each device holds its own cells'
values; global (per-gene, per-component, shared) parameters are replicated. The model
and the guide still see per-cell parameters ``(C, ...)`` in the cells' order: the SVI
object's ``constrain_fn`` drops the padding before it constrains them. The guide's
draws therefore have the same shapes, keys and values as in a single-device fit
(``jax_threefry_partitionable`` makes random bits independent of how arrays are split),
and padding slots get zero gradient.
"""

from __future__ import annotations

import jax
import numpy as np
from numpyro.infer.svi import SVIState

from scribe.shard.devices import CellMesh


def cell_param_names(composition, n_cells: int, n_genes: int) -> frozenset[str]:
    """Variational parameters the composition's guide declares per cell."""
    from scribe.parameterization import CELL
    declared = composition.variational_params(n_cells, n_genes)
    return frozenset(n for n, p in declared.items() if p.scope == CELL)


def shard_state(svi, state: SVIState, cell_mesh: CellMesh, cell_names: frozenset):
    """``state`` with per-cell parameters padded and split, the rest replicated.

    The optimiser state is rebuilt by ``svi.optim.init`` from the padded parameters
    (at initialisation it holds only the parameters and zero moments, so nothing is
    lost). ``svi.constrain_fn`` is wrapped to drop the padding: call once per ``svi``.
    """
    layout = cell_mesh.layout
    unconstrained = svi.optim.get_params(state.optim_state)
    sharded, replicated = cell_mesh.sharded(), cell_mesh.replicated()

    def place(name, value):
        if name in cell_names:
            return jax.device_put(layout.host_to_slots(np.asarray(value)), sharded)
        return jax.device_put(value, replicated)

    padded = {n: place(n, v) for n, v in unconstrained.items()}
    # Moments are zeros_like the parameters: they keep each parameter's sharding.
    optim_state = svi.optim.init(padded)
    constrain = svi.constrain_fn

    def constrain_cells(params):
        return constrain({n: (layout.from_slots(v) if n in cell_names else v)
                          for n, v in params.items()})

    svi.constrain_fn = constrain_cells
    mutable = (None if state.mutable_state is None
               else jax.device_put(state.mutable_state, replicated))
    return SVIState(optim_state, mutable, jax.device_put(state.rng_key, replicated))


def place_carry(carry, cell_mesh: CellMesh):
    """A training loop's carry on the mesh, and its shardings (kept across compiled
    chunks): arrays already split over the mesh stay so, the rest are replicated."""
    sharded, replicated = cell_mesh.sharded(), cell_mesh.replicated()

    def sharding(leaf):
        return sharded if getattr(leaf, "sharding", None) == sharded else replicated

    shardings = jax.tree.map(sharding, carry)
    return jax.device_put(carry, shardings), shardings


def gather_params(params: dict) -> dict:
    """Fitted parameters as single-device arrays (results are unsharded); in a multi-host
    run every process gets all of them."""
    device = jax.local_devices()[0]

    def host(value):
        if getattr(value, "is_fully_addressable", True):
            return np.asarray(jax.device_get(value))
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(value, tiled=True))

    return {n: jax.device_put(host(v), device) for n, v in params.items()}
