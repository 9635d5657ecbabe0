"""NumPy arrays that netCDF stores, each restored to its exact dtype on reading.

netCDF (through xarray) stores numbers, booleans, dates and variable-length strings, but
hands strings back as fixed-width ``<U`` arrays and may change other dtypes; the original
dtype is therefore recorded in the variable's ``scribe_dtype`` attribute and restored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DTYPE_ATTR = "scribe_dtype"

# Kinds netCDF-4 holds exactly: bool, signed/unsigned int, float, datetime, timedelta,
# unicode strings; object arrays only when every element is a str.
_STORABLE_KINDS = frozenset("biufMmU")


class UnstorableError(TypeError):
    """A value the results' storage cannot hold without loss."""


def storable_array(values: np.ndarray, what: str) -> tuple[np.ndarray, dict[str, str]]:
    """Array and attributes to store ``values`` losslessly.

    Parameters
    ----------
    values : numpy.ndarray, any shape
    what : str
        Where the array comes from, for error messages.

    Returns
    -------
    (numpy.ndarray, dict)
        The array to store (same shape) and the variable attributes recording its dtype.

    Raises
    ------
    UnstorableError
        Complex, bytes, structured arrays and object arrays holding anything but str.
    """
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind == "O":
        # One C-level pass, not a Python loop over elements.
        if values.size and pd.api.types.infer_dtype(values.ravel(), skipna=False) != "string":
            raise UnstorableError(f"{what}: object array holding values other than str "
                                  f"cannot be stored (convert it to a numeric, string or "
                                  f"categorical dtype)")
    elif kind not in _STORABLE_KINDS or values.dtype.names is not None:
        raise UnstorableError(f"{what}: arrays of dtype {values.dtype} cannot be stored")
    return values, {DTYPE_ATTR: values.dtype.str}


def restored_array(values: np.ndarray, attrs: dict) -> np.ndarray:
    """Inverse of :func:`storable_array`: ``values`` cast back to the recorded dtype."""
    dtype = attrs.get(DTYPE_ATTR)
    values = np.asarray(values)
    if dtype is None or values.dtype.str == dtype:
        return values
    return values.astype(np.dtype(dtype))
