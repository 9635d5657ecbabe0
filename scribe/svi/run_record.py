"""The optimiser's divergence record, kept in the ``optimization`` group's attributes.

Attributes (integers: netCDF has no booleans or None), written by ``scribe.fit`` and
absent for results built without a record (then the properties are None):

* ``n_nonfinite_steps``: steps whose loss or new parameters were not finite;
* ``divergence_step``: the first of them (only when there was one);
* ``diverged``: 0/1, the run ended non-finite and the stored parameters are the last
  ones at which the loss was finite (see :mod:`scribe.svi.divergence`).

* ``n_devices``: devices the cells were split across in the fit (docs/scale.md).
* ``final_drift``, ``final_drift_threshold`` (floats, posterior sd per window),
  ``final_drift_site`` (str), ``final_drift_span`` (windows): the stopping rule's last
  drift check (:mod:`scribe.svi.drift`; absent when the rule did not watch the
  parameters or never resolved the drift).

They survive ``save`` / ``load`` with the rest of the group.
"""

from __future__ import annotations

from scribe.svi import layout
from scribe.svi.divergence import Divergence
from scribe.svi.drift import DriftState
from scribe.svi.storage import OPTIMIZATION

NONFINITE_ATTR, DIVERGENCE_STEP_ATTR, DIVERGED_ATTR = (
    "n_nonfinite_steps", "divergence_step", "diverged")
N_DEVICES_ATTR = "n_devices"
DRIFT_ATTRS = {"drift": "final_drift", "threshold": "final_drift_threshold",
               "site": "final_drift_site", "span": "final_drift_span"}
RECORD_ATTRS = (NONFINITE_ATTR, DIVERGENCE_STEP_ATTR, DIVERGED_ATTR, N_DEVICES_ATTR,
                *DRIFT_ATTRS.values())


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

    @property
    def final_drift(self) -> dict | None:
        """The stopping rule's last check of the parameters' drift (None: not recorded):
        ``drift`` and ``threshold`` (posterior sd per 100-step window; flat when drift <
        threshold), ``site`` (the site closest to its threshold) and ``span`` (windows per
        span mean); see :mod:`scribe.svi.drift`."""
        attrs = self._group(OPTIMIZATION).attrs
        if DRIFT_ATTRS["drift"] not in attrs:
            return None
        casts = {"drift": float, "threshold": float, "site": str, "span": int}
        return {key: casts[key](attrs[name]) for key, name in DRIFT_ATTRS.items()}

    def _set_drift(self, state: DriftState | None) -> None:
        """Record the drift rule's last check (None or unresolved: nothing recorded)."""
        if state is None or state.drift is None:
            return
        group = self._group(OPTIMIZATION).copy()
        group.attrs = {**group.attrs, **{name: getattr(state, key)
                                         for key, name in DRIFT_ATTRS.items()}}
        self._set_group(OPTIMIZATION, group)

    def _set_divergence(self, divergence: Divergence | None) -> None:
        """Record ``divergence`` (None: remove the record); other records are kept."""
        group = self._group(OPTIMIZATION)
        attrs = {name: value for name, value in group.attrs.items()
                 if name in (N_DEVICES_ATTR, *DRIFT_ATTRS.values())}
        attrs.update(divergence_attrs(divergence))
        converged = group.attrs.get(layout.CONVERGED_ATTR)
        self._set_group(OPTIMIZATION, layout.loss_dataset(
            group["loss"].values, None if converged is None else bool(int(converged)), attrs))

