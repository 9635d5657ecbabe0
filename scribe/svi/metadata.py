"""``obs``, ``var``, ``uns`` and ``prior_params``: stored encoded, handed out as objects.

Each item is decoded from the container once and handed out as an ordinary mutable
object (a DataFrame, a dict); edits made to it in place are encoded back into the
container by :meth:`Metadata.flush`, which the results call whenever their ``idata`` is
read or saved. An item the container holds differently from what was handed out (its
group replaced by hand) is decoded afresh.

An item that cannot be encoded losslessly (say, a scanpy ``uns`` entry holding a sparse
matrix) does not stop a fit from returning: it is kept in memory with a warning, the
container holds what can be stored (the cell or gene names of a frame), and saving
raises :class:`~scribe.svi.arrays.UnstorableError` until it is changed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from scribe.parameterization import CELL, GENE
from scribe.svi import frames, idata, nested
from scribe.svi.arrays import UnstorableError

OBS, VAR, UNS, PRIORS = "obs", "var", "uns", "prior_params"
PRIORS_ATTR = "scribe_prior_params"
FRAME_DIMS = {OBS: CELL, VAR: GENE}


class Metadata:
    """The metadata items of one results container.

    Parameters
    ----------
    container : arviz.InferenceData
        Holds (or will hold) groups ``obs``, ``var``, optionally ``uns``, and the global
        attribute ``scribe_prior_params``.
    """

    def __init__(self, container):
        self._container = container
        self._held: dict[str, tuple[Any, Any]] = {}   # name -> (object, stored form)
        self._unstored: set[str] = set()

    def _stored(self, name: str):
        if name == PRIORS:
            return idata.container_attrs(self._container).get(PRIORS_ATTR)
        return idata.get_group(self._container, name)

    def get(self, name: str):
        """The object of item ``name`` (the same object until the container changes)."""
        stored = self._stored(name)
        held = self._held.get(name)
        if held is None or held[1] is not stored:
            if name == PRIORS:
                value = nested.loads(stored)
            elif name == UNS:
                value = None if stored is None else nested.from_dataset(stored)
            else:
                value = frames.from_dataset(stored, FRAME_DIMS[name])
            self._held[name] = (value, stored)
            self._unstored.discard(name)
        return self._held[name][0]

    def set(self, name: str, value, strict: bool = False) -> None:
        """Hand out ``value`` as item ``name`` and store its encoding.

        Raises
        ------
        UnstorableError
            With ``strict``, when ``value`` cannot be stored losslessly (otherwise a
            warning, once).
        ValueError
            A frame of the wrong length.
        """
        try:
            self._store(name, value)
            self._unstored.discard(name)
        except UnstorableError as error:
            if strict:
                raise
            if name not in self._unstored:
                warnings.warn(f"{error}; kept in memory, but saving the results will fail "
                              f"until it is changed", UserWarning, stacklevel=4)
            self._unstored.add(name)
            self._store_fallback(name, value)
        self._held[name] = (value, self._stored(name))

    def _store(self, name: str, value) -> None:
        if name == PRIORS:
            idata.container_attrs(self._container)[PRIORS_ATTR] = nested.dumps(value, name)
        elif name == UNS:
            idata.set_group(self._container, UNS,
                            None if value is None else nested.to_dataset(value, UNS))
        else:
            self._store_frame(name, value)

    def _store_fallback(self, name: str, value) -> None:
        if name in FRAME_DIMS:
            try:   # at least the cell / gene names
                self._store_frame(name, value.iloc[:, :0])
            except UnstorableError:
                self._store_frame(name, None)
        elif name == UNS:
            idata.set_group(self._container, UNS, None)

    def _store_frame(self, name: str, frame) -> None:
        dim = FRAME_DIMS[name]
        current = idata.get_group(self._container, name)
        size = None if current is None else current.sizes[dim]
        dataset = frames.to_dataset(frame, dim, len(frame) if size is None else size)
        if current is not None and not np.array_equal(dataset[dim].values,
                                                      current[dim].values):
            self._rename(dim, dataset[dim].values)
        idata.set_group(self._container, name, dataset)

    def _rename(self, dim: str, names: np.ndarray) -> None:
        """New cell or gene names in every group along ``dim``."""
        for group in idata.group_names(self._container):
            dataset = idata.get_group(self._container, group)
            if dim in dataset.dims:
                idata.set_group(self._container, group, dataset.assign_coords({dim: names}))

    def flush(self, strict: bool = False) -> None:
        """Encode the handed-out objects (edited in place, maybe) back into the container."""
        for name, (value, stored) in list(self._held.items()):
            if self._stored(name) is stored:   # not replaced in the container meanwhile
                self.set(name, value, strict)
