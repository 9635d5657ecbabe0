"""Named dims of the results' arrays and the xarray Datasets of the array groups.

Dims: ``chain`` (size 1) and ``draw`` for draws; ``cell``, ``gene`` and ``component``
for the data's axes, with the cell and gene coordinates of the ``obs`` / ``var`` groups
(AnnData's ``obs_names`` / ``var_names``, or 0..n-1) and components numbered 0..K-1.
A variable's dims follow its scope when the model knows it (composed model types), else
they are inferred from its shape; axes that match nothing are ``<name>_dim_<i>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import xarray as xr

from scribe.parameterization import CELL, COMPONENT, GENE, SHARED

CHAIN, DRAW, STEP, NONZERO = "chain", "draw", "step", "nonzero"
SAMPLE_DIMS = (CHAIN, DRAW)

# Dims of a value (sample axes excluded) by scope and number of axes.
_SCOPE_DIMS = {
    GENE: {1: (GENE,), 2: (COMPONENT, GENE)},
    CELL: {1: (CELL,), 2: (CELL, COMPONENT)},   # p_hat of component-specific mixtures
    SHARED: {0: (), 1: (COMPONENT,)},
    COMPONENT: {1: (COMPONENT,)},
}


class Axes:
    """Coordinates of the named dims and the scopes that assign dims to variables.

    Parameters
    ----------
    cells, genes : numpy.ndarray, shapes (C,) and (G,)
        Coordinates of ``cell`` and ``gene``.
    n_components : int or None
    scopes : dict
        ``{name: scope}`` of the variables whose scope is known.
    """

    def __init__(self, cells: np.ndarray, genes: np.ndarray, n_components: int | None,
                 scopes: Mapping[str, str]):
        self.coords = {CELL: cells, GENE: genes}
        if n_components is not None:
            self.coords[COMPONENT] = np.arange(n_components)
        self.sizes = {dim: len(values) for dim, values in self.coords.items()}
        self.scopes = dict(scopes)

    def dims(self, name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
        """Dims of ``name``'s value of ``shape`` (sample axes excluded)."""
        dims = _SCOPE_DIMS.get(self.scopes.get(name), {}).get(len(shape))
        if dims is not None and all(self.sizes.get(d) == n for d, n in zip(dims, shape)):
            return dims
        return self._inferred(name, shape)

    def _inferred(self, name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
        # No known scope: a trailing axis as long as the genes is `gene`, then the first
        # axis as long as the cells is `cell`, one as long as the components `component`.
        dims: list[str] = []
        for i, n in enumerate(shape):
            if i == len(shape) - 1 and n == self.sizes[GENE]:
                dims.append(GENE)
            elif n == self.sizes[CELL] and CELL not in dims:
                dims.append(CELL)
            elif n == self.sizes.get(COMPONENT) and COMPONENT not in dims:
                dims.append(COMPONENT)
            else:
                dims.append(f"{name}_dim_{i}")
        return tuple(dims)

    def dataset(self, variables: Mapping[str, xr.Variable], attrs=None) -> xr.Dataset:
        """Dataset of ``variables`` with the coordinates of the data dims they use."""
        used = {d for v in variables.values() for d in v.dims}
        coords = {d: values for d, values in self.coords.items() if d in used}
        return xr.Dataset(dict(variables), coords=coords, attrs=attrs or {})


def _host(value) -> np.ndarray:
    """A NumPy copy of an array (the stored data never aliases the caller's)."""
    return np.array(value)


# ---- parameters and draws ---------------------------------------------------------------
def values_dataset(values: Mapping, axes: Axes) -> xr.Dataset:
    """Unbatched values (variational parameters): dims from scope or shape."""
    variables = {}
    for name, value in values.items():
        array = _host(value)
        variables[name] = xr.Variable(axes.dims(name, array.shape), array)
    return axes.dataset(variables)


def draws_dataset(draws: Mapping, axes: Axes) -> xr.Dataset:
    """Draws ``{name: (S, ...)}`` as ``(chain=1, draw=S, ...)`` variables."""
    variables, n_draws = {}, set()
    for name, value in draws.items():
        array = _host(value)
        if array.ndim == 0:
            raise ValueError(f"draws of '{name}' need a leading sample axis")
        n_draws.add(array.shape[0])
        variables[name] = xr.Variable(SAMPLE_DIMS + axes.dims(name, array.shape[1:]),
                                      array[None])
    if len(n_draws) > 1:
        raise ValueError(f"draws have different numbers of samples: {sorted(n_draws)}")
    dataset = axes.dataset(variables)
    return dataset.assign_coords({CHAIN: [0], DRAW: np.arange(next(iter(n_draws), 0))})


def as_dict(dataset: xr.Dataset | None, draws: bool) -> dict | None:
    """``{name: jax array}`` of a dataset's variables (draws: the chain axis dropped)."""
    if dataset is None:
        return None
    if draws:
        return {name: jnp.asarray(v.transpose(*SAMPLE_DIMS, ...).values[0])
                for name, v in dataset.data_vars.items()}
    return {name: jnp.asarray(v.values) for name, v in dataset.data_vars.items()}


# ---- predictive counts, log-likelihood, loss ----------------------------------------------
def predictive_dataset(counts, axes: Axes) -> xr.Dataset:
    """``counts`` ``(S, C, G)`` and their per-cell totals ``total_counts`` ``(S, C)``."""
    array = _host(counts)
    expected = (axes.sizes[CELL], axes.sizes[GENE])
    if array.ndim != 3 or array.shape[1:] != expected:
        raise ValueError(f"predictive samples have shape {array.shape}, expected "
                         f"(n_samples, {expected[0]}, {expected[1]})")
    totals = array.sum(axis=-1, dtype=array.dtype)
    dataset = axes.dataset({
        "counts": xr.Variable(SAMPLE_DIMS + (CELL, GENE), array[None]),
        "total_counts": xr.Variable(SAMPLE_DIMS + (CELL,), totals[None]),
    })
    return dataset.assign_coords({CHAIN: [0], DRAW: np.arange(array.shape[0])})


def log_likelihood_dataset(per_cell, axes: Axes) -> xr.Dataset:
    """Per-cell log-likelihood ``(S, C)`` as variable ``counts`` ``(chain, draw, cell)``."""
    array = _host(per_cell)
    if array.ndim != 2 or array.shape[1] != axes.sizes[CELL]:
        raise ValueError(f"per-cell log-likelihood has shape {array.shape}, expected "
                         f"(n_samples, {axes.sizes[CELL]})")
    dataset = axes.dataset({"counts": xr.Variable(SAMPLE_DIMS + (CELL,), array[None])})
    return dataset.assign_coords({CHAIN: [0], DRAW: np.arange(array.shape[0])})


CONVERGED_ATTR, STEPS_RUN_ATTR = "converged", "n_steps_run"


def loss_dataset(loss, converged: bool | None = None,
                 extra_attrs: Mapping[str, int] | None = None) -> xr.Dataset:
    """Loss per optimisation step, variable ``loss`` along ``step``.

    Attributes: ``n_steps_run`` (the trace's length) and, when known, ``converged``
    (stored as 0/1: netCDF has no boolean attributes), plus ``extra_attrs`` (the run's
    divergence record, :mod:`scribe.svi.run_record`).
    """
    array = _host(loss)
    if array.ndim != 1:
        raise ValueError(f"loss_history must be one-dimensional, got shape {array.shape}")
    attrs = {STEPS_RUN_ATTR: int(array.shape[0])}
    if converged is not None:
        attrs[CONVERGED_ATTR] = int(bool(converged))
    attrs.update(extra_attrs or {})
    return xr.Dataset({"loss": xr.Variable(STEP, array)}, attrs=attrs)


# ---- observed counts --------------------------------------------------------------------
def observed_dataset(counts, axes: Axes) -> xr.Dataset:
    """Observed counts without densifying: their non-zeros in COO form and totals.

    Variables: ``counts_cell``, ``counts_gene`` (integer positions) and ``counts_value``
    along ``nonzero``, ordered by cell then gene; ``total_counts`` ``(cell,)``, the same
    name as the predictive totals so that ``az.plot_ppc`` compares library sizes.
    """
    shape = (axes.sizes[CELL], axes.sizes[GENE])
    if tuple(counts.shape) != shape:
        raise ValueError(f"counts have shape {tuple(counts.shape)}, expected {shape}")
    # CSR then COO: canonical (row-major, sorted genes, duplicates summed, zeros dropped).
    matrix = sp.csr_array(counts, copy=True) if sp.issparse(counts) else sp.csr_array(_host(counts))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    totals = np.asarray(matrix.sum(axis=1)).astype(matrix.dtype)
    matrix = matrix.tocoo()
    rows, cols, data = matrix.row, matrix.col, matrix.data
    index_dtype = np.int32 if max(shape) < np.iinfo(np.int32).max else np.int64
    return axes.dataset({
        "counts_cell": xr.Variable(NONZERO, rows.astype(index_dtype)),
        "counts_gene": xr.Variable(NONZERO, cols.astype(index_dtype)),
        "counts_value": xr.Variable(NONZERO, data),
        "total_counts": xr.Variable(CELL, totals),
    }, attrs={"counts_format": "coo", "counts_shape": list(shape)})


def observed_matrix(dataset: xr.Dataset, shape: tuple[int, int]) -> sp.csr_array:
    """The observed counts ``(C, G)`` as a sparse CSR array."""
    return sp.csr_array((dataset["counts_value"].values,
                         (dataset["counts_cell"].values, dataset["counts_gene"].values)),
                        shape=shape)
