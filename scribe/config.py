"""``ModelConfig``: a validated description of the model to fit."""

from __future__ import annotations

import types
from typing import Any

import attrs
import numpy as np

from scribe import plugins
from scribe.anchoring import DEFAULT_LOG_SD, check_mrna_log_sd, resolve_mrna_per_cell
from scribe.likelihood import CAPTURE

#: Guide family of a composed model type whose likelihood names none.
DEFAULT_GUIDE_FAMILY = "mean_field"


def _freeze_priors(priors) -> types.MappingProxyType:
    if priors is None:
        return types.MappingProxyType({})
    if not isinstance(priors, dict | types.MappingProxyType):
        raise TypeError(f"priors must be a dict keyed by site name, got {type(priors).__name__}")
    frozen = {}
    for name, values in dict(priors).items():
        if isinstance(values, str) or not hasattr(values, "__iter__"):
            raise ValueError(f"prior for '{name}' must be a sequence of the family's "
                             f"arguments, e.g. (1.0, 1.0), got {values!r}")
        frozen[str(name)] = tuple(_frozen_value(v) for v in values)
    return types.MappingProxyType(frozen)


def _frozen_value(value):
    # Arrays (per-gene priors) are copied read-only: the caller's array may change later.
    if np.ndim(value) == 0 or isinstance(value, str):
        return value
    array = np.array(value)
    array.flags.writeable = False
    return array


def _priors_key(priors) -> dict:
    # Equality of configurations: arrays compared by value (== on arrays is elementwise).
    return {name: tuple(np.asarray(v).tolist() if np.ndim(v) else v for v in values)
            for name, values in priors.items()}


@attrs.frozen
class ModelConfig:
    """Which model to fit, validated on construction.

    Parameters
    ----------
    model_type : str
        A registered model type (``scribe.available_model_types()``).
    parameterization : str, default "standard"
        A registered parameterization the model type supports.
    n_components : int, optional
        Number of mixture components; required (>= 2) for ``_mix`` types, forbidden
        otherwise.
    priors : dict, optional
        Prior arguments keyed by sampled site name, e.g. ``{"p": (2, 2)}``.
    component_specific_params : bool, default False
        Mixtures only: give each component its own ``p`` (or ``phi``).
    mrna_per_cell : float or str, optional
        Capture models only: the capture anchor ``M_0``, mRNA molecules per cell, or an
        organism name with a documented ``M_0`` (:mod:`scribe.mrna_totals`). Each cell's
        capture prior is then centred on ``L_c / M_0`` (:mod:`scribe.anchoring`). Stored
        as given; :attr:`mrna_total` is the number.
    mrna_log_sd : float, default 0.3
        ``sd(log capture)`` of the anchored prior; only with ``mrna_per_cell``.
    guide_family : str, optional
        A registered guide family (``scribe.available_guide_families()``) shaping the
        variational posterior of a model type composed from a likelihood. None: the
        likelihood's default (``joint_gene`` for the zero-inflated types, whose ``r`` and
        ``gate`` are correlated per gene; ``mean_field`` otherwise). After construction it
        holds the resolved name (None for a plugin model type with its own guide).
    empirical_priors : tuple of str, default ()
        Sites whose entry in ``priors`` was set from the data by ``scribe.fit``'s rule
        (:mod:`scribe.empirical_prior`) rather than given by the user: a record, so that
        a saved fit says where its prior came from; each must be a key of ``priors``.

    Raises
    ------
    ValueError
        Unknown model type or parameterization (the message lists the valid names and
        the closest match), a bad ``n_components``, priors for unknown sites or with
        values outside their support, a capture anchor that is invalid or given to a
        model type without capture, or an unknown guide family (or one given for a model
        type that provides its own guide).
    """

    model_type: str
    parameterization: str = "standard"
    n_components: int | None = attrs.field(
        default=None, converter=lambda v: int(v) if isinstance(v, np.integer) else v)
    priors: types.MappingProxyType = attrs.field(default=None, converter=_freeze_priors,
                                                 eq=_priors_key)
    component_specific_params: bool = False
    mrna_per_cell: float | str | None = attrs.field(
        default=None, converter=lambda v: float(v) if isinstance(v, np.floating | np.integer)
        else v)
    mrna_log_sd: float = attrs.field(
        default=DEFAULT_LOG_SD,
        converter=lambda v: float(v) if isinstance(v, np.floating | np.integer) else v)
    guide_family: str | None = None
    empirical_priors: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        spec = plugins.lookup_model_type(self.model_type)
        plugins.lookup_parameterization(self.parameterization)
        supported = spec.parameterizations
        if supported is not None and self.parameterization not in supported:
            raise ValueError(
                plugins.unknown_name_message(
                    f"parameterization for model type '{self.model_type}'",
                    self.parameterization, list(spec.parameterizations))
            )
        if spec.mixture:
            if self.n_components is None:
                raise ValueError(
                    f"model type '{self.model_type}' is a mixture: pass n_components (>= 2)"
                )
            if isinstance(self.n_components, bool) \
                    or not isinstance(self.n_components, int | np.integer) or self.n_components < 2:
                raise ValueError(
                    f"n_components must be an integer >= 2, got {self.n_components!r}"
                )
        else:
            if self.n_components is not None:
                raise ValueError(
                    f"n_components is only for mixture model types; '{self.model_type}' is "
                    f"not one (use '{self.model_type}_mix')"
                )
            if self.component_specific_params:
                raise ValueError("component_specific_params applies to mixture model types only")
        self._check_anchor(spec)
        self._resolve_guide_family(spec)
        for name in self.empirical_priors:
            if not isinstance(name, str) or name not in self.priors:
                raise ValueError(f"empirical_priors names sites whose prior is in priors; "
                                 f"{name!r} is not a key of priors ({sorted(self.priors)})")
        if spec.likelihood is not None:
            # Composed types know their sites: check prior names, sizes and supports now,
            # before any fitting starts.
            from scribe.compose import validated_priors

            validated_priors(self)

    def _check_anchor(self, spec) -> None:
        resolve_mrna_per_cell(self.mrna_per_cell)
        check_mrna_log_sd(self.mrna_log_sd)
        if self.mrna_per_cell is None:
            if self.mrna_log_sd != DEFAULT_LOG_SD:
                raise ValueError("mrna_log_sd applies only with a capture anchor: pass "
                                 "mrna_per_cell too (a number or an organism name)")
            return
        has_capture = spec.likelihood is not None and any(
            latent.kind == CAPTURE for latent in spec.likelihood.latents)
        if not has_capture:
            raise ValueError(
                f"mrna_per_cell anchors the per-cell capture, which model type "
                f"'{self.model_type}' does not have; use a capture model type (nbvcp, "
                f"zinbvcp or their _mix) or leave mrna_per_cell=None")

    @property
    def mrna_total(self) -> float | None:
        """The capture anchor ``M_0`` in molecules per cell (None: not anchored)."""
        return resolve_mrna_per_cell(self.mrna_per_cell)

    def _resolve_guide_family(self, spec) -> None:
        name = self.guide_family
        if name is not None and not isinstance(name, str):
            raise TypeError(f"guide_family must be a string or None, got {type(name).__name__}")
        if spec.likelihood is None:
            if name is not None:
                raise ValueError(f"guide_family applies to model types composed from a "
                                 f"likelihood; '{self.model_type}' provides its own guide")
            return
        if name is None:
            name = getattr(spec.likelihood, "guide_family", None) or DEFAULT_GUIDE_FAMILY
        plugins.lookup_guide_family(name)
        # Stored resolved, so that a saved configuration names the guide it was fitted with.
        object.__setattr__(self, "guide_family", name)

    @property
    def is_mixture(self) -> bool:
        return plugins.lookup_model_type(self.model_type).mixture

    @property
    def base_model_type(self) -> str:
        return self.model_type.removesuffix("_mix")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for saving alongside results."""
        return {
            "model_type": self.model_type,
            "parameterization": self.parameterization,
            "n_components": self.n_components,
            "priors": {k: list(v) for k, v in self.priors.items()},
            "component_specific_params": self.component_specific_params,
            "mrna_per_cell": self.mrna_per_cell,
            "mrna_log_sd": self.mrna_log_sd,
            "guide_family": self.guide_family,
            "empirical_priors": list(self.empirical_priors),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict` (validated like any construction).

        Raises
        ------
        ValueError
            Unknown keys, or a model type or parameterization no installed plugin provides.
        """
        unknown = set(values) - {f.name for f in attrs.fields(cls)}
        if unknown:
            raise ValueError(f"unknown model configuration keys: {', '.join(sorted(unknown))}")
        if "guide_family" not in values and "model_type" in values \
                and plugins.lookup_model_type(values["model_type"]).likelihood is not None:
            # Saved before guide families existed: every fit then was mean-field.
            values = {**values, "guide_family": DEFAULT_GUIDE_FAMILY}
        return cls(**values)
