"""Reuse of validated counts across analyses: one :class:`SparseCounts` per counts object.

Every analysis of a results object (``log_likelihood``, ``cell_type_probabilities``, ...)
takes the user's counts; validating them and building their sufficient statistics costs
far more than checking that they are the same counts as last time. The cache maps a
counts object to its :class:`~scribe.counts.SparseCounts`:

* keyed by the object's identity (with ``cells_axis`` and dtype), held through a weak
  reference: when the object is collected its entry goes, so nothing leaks and a new
  object at a recycled address can never hit an old entry;
* guarded by a content fingerprint (CRC-32 of each buffer: data, indices, row pointers;
  shape, dtype, format): an object modified in place since it was cached misses and is
  rebuilt. Hashing reads every byte once (about 0.5 s per GB), against a validation and
  rebuild that cost tens of times more. An in-place change that keeps every CRC-32 is
  missed with probability about ``2**-32`` per changed buffer;
* bounded (:data:`MAX_ENTRIES`, least recently used first out), because an entry holds
  its counts on the device (12 bytes per non-zero).

Objects that cannot be weakly referenced (a plain ``list``) are never cached.
"""

from __future__ import annotations

import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from scribe.counts import SparseCounts
from scribe.data import _is_anndata

#: Counts objects whose SparseCounts are kept at once.
MAX_ENTRIES = 2


def _buffers(matrix: Any) -> list[np.ndarray] | None:
    """The arrays holding a matrix's content, or None when it is not an array."""
    if sp.issparse(matrix):
        names = ("data", "row", "col") if matrix.format == "coo" else (
            ("data", "indices", "indptr") if hasattr(matrix, "indptr") else ())
        if not names:
            return None
        return [np.asarray(getattr(matrix, n)) for n in names]
    if isinstance(matrix, np.ndarray):
        return [matrix]
    if hasattr(matrix, "__jax_array__") or type(matrix).__module__.startswith("jax"):
        return []   # immutable: identity and shape suffice
    return None


def fingerprint(matrix: Any) -> tuple | None:
    """Content fingerprint of a count matrix (None when it cannot be fingerprinted)."""
    buffers = _buffers(matrix)
    if buffers is None:
        return None
    sums = []
    for array in buffers:
        contiguous = np.ascontiguousarray(array)
        sums.append((contiguous.dtype.str, contiguous.shape,
                     zlib.crc32(memoryview(contiguous).cast("B"))))
    return (type(matrix).__name__, getattr(matrix, "format", None),
            tuple(getattr(matrix, "shape", ())), str(getattr(matrix, "dtype", "")),
            tuple(sums))


class CountsCache:
    """A small cache of :class:`SparseCounts` keyed by the caller's counts object."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = int(max_entries)
        self._entries: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get(self, counts: Any, cells_axis: int, dtype,
            build: Callable[[], SparseCounts]) -> SparseCounts:
        """The SparseCounts of ``counts``: cached when the same, unchanged object was
        seen with the same ``cells_axis`` and ``dtype``; else ``build()`` (and cached).

        For an AnnData the fingerprint covers its ``.X`` (the matrix analyses read).
        """
        matrix = counts.X if _is_anndata(counts) else counts
        try:
            ref = weakref.ref(counts)
        except TypeError:
            self.misses += 1
            return build()
        print_ = fingerprint(matrix)
        if print_ is None:
            self.misses += 1
            return build()
        key = (id(counts), int(cells_axis), np.dtype(dtype).str)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is counts and entry[1] == print_:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[2]
        self.misses += 1
        self._entries.pop(key, None)
        value = build()
        # The entry goes when the object does (a weak callback), so ids are never reused
        # for a stale entry.
        entries = self._entries
        ref = weakref.ref(counts, lambda _, key=key: entries.pop(key, None))
        entries[key] = (ref, print_, value)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        return value


#: The cache the analyses use.
COUNTS_CACHE = CountsCache()
