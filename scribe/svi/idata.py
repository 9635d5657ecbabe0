"""The results' container: the only module that talks to ArviZ.

The rest of scribe builds one plain ``xarray.Dataset`` per group and hands the groups
here. With ArviZ 0.x they live in an ``arviz.InferenceData``; ArviZ >= 1.0 replaces it
by ``xarray.DataTree`` (one child node per group, the attributes on the root). Swapping
the backend means rewriting the five container functions below (:func:`make_container`,
:func:`group_names`, :func:`get_group`, :func:`set_group`, :func:`container_attrs`);
:func:`save` and :func:`load` already go through ``xarray.DataTree``, whose file layout
(one netCDF / zarr group per InferenceData group, the container's attributes on the root
group) is the one ``arviz.from_netcdf`` reads and writes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import xarray as xr

from scribe.svi.atomic import atomic_write

NETCDF_ENGINE = "h5netcdf"


@cache
def _arviz():
    # Imported on first use: it takes a second (matplotlib) and `import scribe` need not
    # pay for it. ArviZ 0.2x announces its 1.0 refactor with a FutureWarning on import;
    # that note is for ArviZ's users, not scribe's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def arviz_version() -> str:
    return _arviz().__version__


# ---- the container ------------------------------------------------------------------------
def make_container(groups: Mapping[str, xr.Dataset], attrs: Mapping[str, Any]):
    """An ``arviz.InferenceData`` holding ``groups`` (in order) and global ``attrs``."""
    container = _arviz().InferenceData(attrs=dict(attrs))
    for name, dataset in groups.items():
        # Item assignment keeps groups without data variables (``var`` without columns
        # still carries the gene names), which the constructor would drop.
        container[name] = dataset
    return container


def group_names(container) -> list[str]:
    return list(container.groups())


def get_group(container, name: str) -> xr.Dataset | None:
    return container[name] if name in container.groups() else None


def set_group(container, name: str, dataset: xr.Dataset | None) -> None:
    """Replace (or, with ``dataset=None``, remove) one group in place."""
    if name in container.groups():
        del container[name]
    if dataset is not None:
        container[name] = dataset


def container_attrs(container) -> dict[str, Any]:
    """The container's global attributes (a live, mutable dict)."""
    return container.attrs


# ---- files ----------------------------------------------------------------------------------
def _is_zarr(path: str | os.PathLike) -> bool:
    return str(path).rstrip("/").endswith(".zarr")


def _compression(groups: Mapping[str, xr.Dataset]) -> dict[str, dict]:
    # zlib for numeric arrays (predictive counts shrink several-fold); strings, scalars
    # and empty arrays are stored as they are (HDF5 cannot chunk them).
    encoding = {}
    for name, dataset in groups.items():
        encoding[f"/{name}"] = {
            var: {"zlib": True} for var, v in dataset.variables.items()
            if v.dtype.kind in "biuf" and v.ndim and v.size
        }
    return encoding


def save(container, path: str | os.PathLike) -> None:
    """Write every group and the global attributes to ``path``, atomically.

    netCDF-4 through h5netcdf; a path ending in ``.zarr`` writes a zarr store instead
    (needs the ``zarr`` package). The data are written to a temporary file (directory,
    for zarr) next to ``path`` and renamed over it only once complete: a failing write
    (a full disk, an exceeded quota, an unstorable value) raises and leaves an existing
    file at ``path`` untouched, with no temporary left behind.
    """
    groups = {name: get_group(container, name) for name in group_names(container)}
    tree = xr.DataTree.from_dict(
        {"/": xr.Dataset(attrs=dict(container_attrs(container))), **groups})
    atomic_write(path, lambda target: _write(tree, groups, target, _is_zarr(path)))


def _write(tree, groups, target: str, zarr: bool) -> None:
    if zarr:
        tree.to_zarr(target, mode="w", consolidated=False)
        return
    # The file is built in memory and written with plain file I/O: HDF5 then never
    # holds a file whose write failed (h5py segfaulted closing one after a full disk),
    # and a failure is an ordinary OSError. The cost is one copy of the file in memory.
    data = tree.to_netcdf(None, engine=NETCDF_ENGINE, encoding=_compression(groups))
    with open(target, "wb") as handle:
        handle.write(data)


def load(path: str | os.PathLike):
    """Read a container written by :func:`save` (fully into memory; the file is closed).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        ``path`` is not a netCDF-4 / HDF5 file (or zarr store) that can be read, naming it.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no scribe results file at '{os.fspath(path)}'")
    try:
        if _is_zarr(path):
            tree = xr.load_datatree(path, engine="zarr", consolidated=False)
        else:
            tree = xr.load_datatree(path, engine=NETCDF_ENGINE)
    except Exception as error:   # h5py, h5netcdf and zarr each raise their own types
        kind = "zarr store" if _is_zarr(path) else "netCDF-4 (HDF5) file"
        raise ValueError(f"'{os.fspath(path)}' is not a readable {kind} of scribe results: "
                         f"{type(error).__name__}: {error}") from error
    groups = {name: node.to_dataset(inherit=False) for name, node in tree.children.items()}
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in tree.attrs.items()}
    return make_container(groups, attrs)


# ---- model comparison -------------------------------------------------------------------------
PARETO_K_THRESHOLD = 0.7


def compare_loo(log_likelihoods: Mapping[str, np.ndarray], method: str = "stacking"):
    """ArviZ's PSIS-LOO comparison of fits from their per-cell log-likelihoods.

    Parameters
    ----------
    log_likelihoods : mapping of str to array (S, C)
        ``log p(x_c | theta_s)`` of each fit, cells being the observations.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}
        How ArviZ weighs the models.

    Returns
    -------
    table : pandas.DataFrame
        ``arviz.compare``'s table (``rank``, ``elpd_loo``, ``p_loo``, ``elpd_diff``,
        ``weight``, ``se``, ``dse``, ``warning``, ``scale``).
    pareto_k : dict
        Per fit, the Pareto shape estimate of every cell ``(C,)``.
    """
    az = _arviz()
    estimates, pareto_k = {}, {}
    for name, values in log_likelihoods.items():
        values = np.asarray(values, np.float64)
        container = az.from_dict(
            posterior={"draw_index": np.arange(values.shape[0])[None]},
            log_likelihood={"counts": values[None]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # reported through pareto_k by the caller
            # PSIS once per fit (one Pareto fit per cell); compare reuses the estimate.
            estimates[name] = az.loo(container, pointwise=True)
        pareto_k[name] = np.asarray(estimates[name].pareto_k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(estimates, ic="loo", method=method)
    return table, pareto_k
