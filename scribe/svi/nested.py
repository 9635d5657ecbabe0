"""Lossless JSON encoding of nested metadata (``uns``, prior parameters, configuration).

netCDF attributes hold strings and flat arrays, not nested dicts. A value is written as a
JSON tree in which every container that JSON would not give back unchanged is tagged:

========================  ============================================================
Python value              JSON node
========================  ============================================================
None, bool, int, float,   itself (floats keep NaN and infinities as Python's ``json``
str                       writes them)
list                      a JSON array of encoded items
dict with str keys        ``{"__dict__": {key: node, ...}}`` (order kept)
tuple                     ``{"__tuple__": [node, ...]}``
numpy array               ``{"__ndarray__": ref}``
numpy scalar              ``{"__npscalar__": ref}`` (restored as the same numpy type)
========================  ============================================================

``ref`` comes from an *array sink*: :func:`dumps` writes arrays inline
(``{"dtype", "shape", "data"}``, exact for every storable dtype since JSON floats are
written with ``repr``), :func:`to_dataset` stores them as netCDF variables beside the
tree. Anything else (other mappings' types, sets, DataFrames, complex numbers, non-str
keys, arbitrary objects) raises :class:`~scribe.svi.arrays.UnstorableError` naming its
path, rather than being dropped or converted silently. Mappings are restored as ``dict``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from scribe.svi.arrays import UnstorableError, restored_array, storable_array

DICT, TUPLE, ARRAY, SCALAR = "__dict__", "__tuple__", "__ndarray__", "__npscalar__"
TREE_ATTR = "scribe_tree"

ArraySink = Callable[[np.ndarray, str], Any]
ArraySource = Callable[[Any], np.ndarray]


def encode(value: Any, sink: ArraySink, path: str = "value") -> Any:
    """JSON-able tree of ``value``; arrays go to ``sink(array, path) -> ref``."""
    # numpy scalars first: np.float64 is a float subclass and would lose its type.
    if isinstance(value, np.generic):
        return {SCALAR: sink(np.asarray(value), path)}
    if value is None or isinstance(value, bool | int | float | str):
        if type(value) not in (type(None), bool, int, float, str):
            raise UnstorableError(f"{path}: {type(value).__name__} (a subclass of a plain "
                                  f"type) cannot be stored")
        return value
    if isinstance(value, np.ndarray):
        return {ARRAY: sink(value, path)}
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise UnstorableError(f"{path}: only str keys can be stored, got {bad[0]!r}")
        return {DICT: {k: encode(v, sink, f"{path}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, tuple | list):
        items = [encode(v, sink, f"{path}[{i}]") for i, v in enumerate(value)]
        return {TUPLE: items} if isinstance(value, tuple) else items
    raise UnstorableError(f"{path}: values of type {type(value).__name__} cannot be stored")


def decode(node: Any, source: ArraySource) -> Any:
    """Inverse of :func:`encode`; ``source(ref)`` returns the stored array."""
    if isinstance(node, list):
        return [decode(v, source) for v in node]
    if not isinstance(node, dict):
        return node
    (tag, content), = node.items()
    if tag == DICT:
        return {k: decode(v, source) for k, v in content.items()}
    if tag == TUPLE:
        return tuple(decode(v, source) for v in content)
    if tag == ARRAY:
        return source(content)
    if tag == SCALAR:
        return source(content)[()]
    raise ValueError(f"unknown tag {tag!r} in stored metadata")


# ---- inline form: one JSON string (attributes) ------------------------------------------
def _inline(array: np.ndarray, path: str) -> dict:
    values, attrs = storable_array(array, path)
    if values.dtype.kind in "Mm":
        # Dates as their integer ticks, restored through the recorded dtype.
        values = values.view(np.int64)
    return {"dtype": attrs["scribe_dtype"], "shape": list(values.shape),
            "data": values.ravel().tolist()}


def _from_inline(ref: dict) -> np.ndarray:
    dtype = np.dtype(ref["dtype"])
    if dtype.kind in "Mm":
        return np.asarray(ref["data"], np.int64).view(dtype).reshape(ref["shape"])
    return np.asarray(ref["data"], dtype=dtype).reshape(ref["shape"])


def dumps(value: Any, path: str = "value") -> str:
    """``value`` as one JSON string, arrays inline."""
    return json.dumps(encode(value, _inline, path))


def loads(text: str) -> Any:
    """Inverse of :func:`dumps`."""
    return decode(json.loads(text), _from_inline)


# ---- dataset form: JSON tree in an attribute, arrays as variables -----------------------
def to_dataset(value: Any, path: str = "uns") -> xr.Dataset:
    """A dataset holding ``value``: arrays as variables ``a0, a1, ...`` (dims
    ``a0_dim_0, ...``), the tree in the ``scribe_tree`` attribute."""
    variables = {}

    def sink(array: np.ndarray, where: str) -> str:
        values, attrs = storable_array(array, where)
        name = f"a{len(variables)}"
        dims = tuple(f"{name}_dim_{i}" for i in range(values.ndim))
        variables[name] = xr.Variable(dims, values, attrs)
        return name

    tree = json.dumps(encode(value, sink, path))
    return xr.Dataset(variables, attrs={TREE_ATTR: tree})


def from_dataset(dataset: xr.Dataset) -> Any:
    """Inverse of :func:`to_dataset`."""

    def source(name: str) -> np.ndarray:
        variable = dataset[name].variable
        return restored_array(variable.values, variable.attrs)

    return decode(json.loads(dataset.attrs[TREE_ATTR]), source)
