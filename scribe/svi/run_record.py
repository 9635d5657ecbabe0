"""The optimiser's divergence record, kept in the ``optimization`` group's attributes.

Attributes (integers: netCDF has no booleans or None), written by ``scribe.fit`` and
absent for results built without a record (then the properties are None):

* ``n_nonfinite_steps``: steps whose loss or new parameters were not finite;
* ``divergence_step``: the first of them (only when there was one);
* ``diverged``: 0/1, the run ended non-finite and the stored parameters are the last
  ones at which the loss was finite (see :mod:`scribe.svi.divergence`).

* ``n_devices``: devices the cells were split across in the fit (docs/scale.md).

They survive ``save`` / ``load`` with the rest of the group.
"""

from __future__ import annotations

from scribe.svi import layout
from scribe.svi.divergence import Divergence
from scribe.svi.storage import OPTIMIZATION

NONFINITE_ATTR, DIVERGENCE_STEP_ATTR, DIVERGED_ATTR = (
    "n_nonfinite_steps", "divergence_step", "diverged")
N_DEVICES_ATTR = "n_devices"
RECORD_ATTRS = (NONFINITE_ATTR, DIVERGENCE_STEP_ATTR, DIVERGED_ATTR, N_DEVICES_ATTR)


def divergence_attrs(divergence: Divergence | None) -> dict[str, int]:
    """The attributes recording ``divergence`` (empty: not recorded)."""
    if divergence is None:
        return {}
    attrs = {NONFINITE_ATTR: int(divergence.n_nonfinite),
             DIVERGED_ATTR: int(bool(divergence.diverged))}
    if divergence.first_step is not None:
        attrs[DIVERGENCE_STEP_ATTR] = int(divergence.first_step)
    return attrs


class RunRecordMixin:
    """``n_nonfinite_steps``, ``divergence_step`` and ``diverged`` of a results object."""

    def _record(self, name: str) -> int | None:
        value = self._group(OPTIMIZATION).attrs.get(name)
        return None if value is None else int(value)

    @property
    def n_nonfinite_steps(self) -> int | None:
        """SVI steps whose loss or new parameters were not finite (None: not recorded)."""
        return self._record(NONFINITE_ATTR)

    @property
    def divergence_step(self) -> int | None:
        """0-based index of the first non-finite step (None: none, or not recorded)."""
        return self._record(DIVERGENCE_STEP_ATTR)

    @property
    def diverged(self) -> bool | None:
        """Whether the optimiser diverged: the run ended with a non-finite loss or
        parameters, and ``params`` are the last ones at which the loss was finite, not a
        fitted posterior (None: not recorded)."""
        value = self._record(DIVERGED_ATTR)
        return None if value is None else bool(value)

    @property
    def n_devices(self) -> int | None:
        """Devices the fit split the cells across (None: not recorded). The results
        themselves are never sharded: they load and analyse on one device."""
        return self._record(N_DEVICES_ATTR)

    def _set_n_devices(self, n_devices: int) -> None:
        group = self._group(OPTIMIZATION).copy()
        group.attrs = {**group.attrs, N_DEVICES_ATTR: int(n_devices)}
        self._set_group(OPTIMIZATION, group)

    def _set_divergence(self, divergence: Divergence | None) -> None:
        """Record ``divergence`` (None: remove the record)."""
        group = self._group(OPTIMIZATION)
        attrs = divergence_attrs(divergence)
        converged = group.attrs.get(layout.CONVERGED_ATTR)
        self._set_group(OPTIMIZATION, layout.loss_dataset(
            group["loss"].values, None if converged is None else bool(int(converged)), attrs))

