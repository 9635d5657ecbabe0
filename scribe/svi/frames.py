"""``obs`` / ``var`` DataFrames as xarray Datasets along the ``cell`` / ``gene`` dim.

The index becomes the dimension's coordinate (so every group's cells and genes carry
AnnData's ``obs_names`` / ``var_names``); each column becomes a variable along that dim.

Column encodings:

- numpy bool, int, uint, float, datetime64 and timedelta64 columns: as they are;
- str columns (object dtype holding only str): variable-length strings;
- categoricals: integer codes (-1 for missing) with the categories and ``ordered`` in
  attributes;
- pandas nullable dtypes (``Int64``, ``Float64``, ``boolean``, ``string``): their values
  (missing ones filled) and a boolean variable ``<name>_missing``; the pandas dtype is
  restored on reading.

Anything else (object columns holding anything but str, missing values included;
timezones, periods, intervals, ...) raises :class:`~scribe.svi.arrays.UnstorableError` naming the
column. Variables are named after their column when the name is a usable netCDF name, else
``column_<i>``; the original name (any JSON-able value) and the column order are kept in
attributes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from scribe.svi import nested
from scribe.svi.arrays import UnstorableError, restored_array, storable_array

FRAME_ATTR = "scribe_frame"            # 1: a DataFrame is stored, 0: only the coordinate
COLUMNS_ATTR = "scribe_columns"        # JSON list of variable names, in column order
COLUMN_NAME_ATTR = "scribe_column"     # JSON of the original column name
INDEX_NAME_ATTR = "scribe_index_name"
COLUMNS_NAME_ATTR = "scribe_columns_name"
KIND_ATTR = "scribe_kind"              # "categorical" or a pandas extension dtype name
CATEGORIES_ATTR = "scribe_categories"
ORDERED_ATTR = "scribe_ordered"
MISSING_ATTR = "scribe_missing"        # name of the mask variable of a nullable column


def _variable_names(columns: pd.Index, dim: str) -> list[str]:
    """Readable, unique netCDF-safe names: the column's own where possible."""
    def usable(name) -> bool:
        return (isinstance(name, str) and name and "/" not in name and name != dim
                and not name.startswith(("scribe_", "_")))

    names = [str(c) if usable(c) else None for c in columns]
    taken = {n for n in names if n is not None}
    if len(taken) != sum(n is not None for n in names):   # duplicate column names
        names, taken = [None] * len(names), set()
    for i, name in enumerate(names):
        if name is None:
            name = f"column_{i}"
            while name in taken:
                name = f"_{name}"
            names[i] = name
            taken.add(name)
    return names


def _column_variables(column: pd.Series, dim: str, name: str, taken: set[str],
                      what: str) -> dict[str, xr.Variable]:
    """The variable ``name`` of one column (and, for nullable dtypes, its mask)."""
    dtype = column.dtype
    attrs: dict = {COLUMN_NAME_ATTR: nested.dumps(column.name)}
    extra = {}
    if isinstance(dtype, pd.CategoricalDtype):
        categories, _ = storable_array(dtype.categories.to_numpy(), what)
        attrs.update({KIND_ATTR: "categorical", ORDERED_ATTR: int(dtype.ordered),
                      CATEGORIES_ATTR: nested.dumps(categories)})
        return {name: xr.Variable(dim, column.cat.codes.to_numpy(), attrs)}
    if isinstance(dtype, pd.StringDtype) or (
            isinstance(dtype, pd.api.extensions.ExtensionDtype)
            and isinstance(getattr(dtype, "numpy_dtype", None), np.dtype)):
        # Nullable dtypes: missing entries filled, and a boolean mask along the same dim
        # (a variable, so that subsetting cells or genes keeps it aligned).
        string = isinstance(dtype, pd.StringDtype)
        values = column.to_numpy(dtype=object if string else dtype.numpy_dtype,
                                 na_value="" if string else dtype.numpy_dtype.type(0))
        mask = f"{name}_missing"
        while mask in taken:
            mask = f"_{mask}"
        taken.add(mask)
        attrs.update({KIND_ATTR: str(dtype), MISSING_ATTR: mask})
        extra[mask] = xr.Variable(dim, column.isna().to_numpy())
    else:
        values = column.to_numpy()
        if getattr(dtype, "tz", None) is not None:
            raise UnstorableError(f"{what}: timezone-aware dates cannot be stored")
    values, array_attrs = storable_array(values, what)
    attrs.update(array_attrs)
    return {name: xr.Variable(dim, values, attrs), **extra}


def to_dataset(frame: pd.DataFrame | None, dim: str, size: int) -> xr.Dataset:
    """Dataset along ``dim`` holding ``frame`` (None: only a 0..size-1 coordinate).

    Parameters
    ----------
    frame : pandas.DataFrame or None
        ``size`` rows.
    dim : {"cell", "gene"}
    size : int
    """
    if frame is None:
        return xr.Dataset(coords={dim: np.arange(size)}, attrs={FRAME_ATTR: 0})
    if len(frame) != size:
        raise ValueError(f"{dim} metadata has {len(frame)} rows, expected {size}")
    if isinstance(frame.index, pd.MultiIndex) or isinstance(frame.columns, pd.MultiIndex):
        raise UnstorableError(f"{dim} metadata: MultiIndex cannot be stored")
    index, index_attrs = storable_array(frame.index.to_numpy(), f"{dim} metadata index")
    names = _variable_names(frame.columns, dim)
    taken, variables = set(names), {}
    for i, name in enumerate(names):
        variables.update(_column_variables(frame.iloc[:, i], dim, name, taken,
                                           f"{dim} metadata column {frame.columns[i]!r}"))
    attrs = {FRAME_ATTR: 1, COLUMNS_ATTR: nested.dumps(names),
             INDEX_NAME_ATTR: nested.dumps(frame.index.name),
             COLUMNS_NAME_ATTR: nested.dumps(frame.columns.name)}
    return xr.Dataset(variables, coords={dim: xr.Variable(dim, index, index_attrs)},
                      attrs=attrs)


def _column_values(dataset: xr.Dataset, name: str):
    variable = dataset[name].variable
    attrs = variable.attrs
    kind = attrs.get(KIND_ATTR)
    if kind == "categorical":
        categories = nested.loads(attrs[CATEGORIES_ATTR])
        return pd.Categorical.from_codes(np.asarray(variable.values), categories=categories,
                                         ordered=bool(attrs[ORDERED_ATTR]))
    values = restored_array(variable.values, attrs)
    if kind is None:
        return values
    values = pd.array(values, dtype=kind)
    values[dataset[attrs[MISSING_ATTR]].values.astype(bool)] = pd.NA
    return values


def from_dataset(dataset: xr.Dataset, dim: str) -> pd.DataFrame | None:
    """Inverse of :func:`to_dataset`."""
    if not int(dataset.attrs.get(FRAME_ATTR, 0)):
        return None
    coordinate = dataset[dim].variable
    index = pd.Index(restored_array(coordinate.values, coordinate.attrs),
                     name=nested.loads(dataset.attrs[INDEX_NAME_ATTR]))
    names = nested.loads(dataset.attrs[COLUMNS_ATTR])
    columns = [nested.loads(dataset[n].attrs[COLUMN_NAME_ATTR]) for n in names]
    data = {i: _column_values(dataset, n) for i, n in enumerate(names)}
    frame = pd.DataFrame(data, index=index)
    frame.columns = pd.Index(columns, name=nested.loads(dataset.attrs[COLUMNS_NAME_ATTR]),
                             dtype=object if not columns else None)
    return frame
