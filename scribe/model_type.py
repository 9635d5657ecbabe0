"""Model types: what users name with ``model_type=``."""

from __future__ import annotations

import functools
from collections.abc import Callable

import attrs

from scribe.likelihood import Likelihood
from scribe.mixture import component_log_prob

MIXTURE_SUFFIX = "_mix"


def _check_mixture_name(instance, attribute, value):
    if value != instance.name.endswith(MIXTURE_SUFFIX):
        raise ValueError(
            f"model type '{instance.name}': mixture types, and only they, are named "
            f"'<base>{MIXTURE_SUFFIX}'"
        )


@attrs.frozen
class ModelType:
    """A registered model type.

    Parameters
    ----------
    name : str
        Name users pass as ``model_type``; mixtures end in ``_mix``.
    description : str
        One line shown in listings.
    parameterizations : tuple of str or None
        Parameterizations it supports; None means every registered one (types composed
        from a :class:`~scribe.Likelihood` work with any parameterization).
    log_prob : callable
        ``log_prob(counts, params) -> (C, G)`` elementwise log-probability given canonical
        parameters; ``(C, G, K)`` per component for a mixture (weights not included).
    mixture : bool
        Whether this is a mixture type (requires ``n_components``).
    likelihood : Likelihood, optional
        Set for types composed from a likelihood; the built-in composition plugin then
        provides their model, guide and posterior distributions.
    """

    name: str
    description: str
    parameterizations: tuple[str, ...] | None
    log_prob: Callable = attrs.field(eq=False)
    mixture: bool = attrs.field(default=False, validator=_check_mixture_name)
    likelihood: Likelihood | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_likelihood(cls, likelihood: Likelihood) -> list[ModelType]:
        """The plain and the ``_mix`` model types of a likelihood."""
        mixture_log_prob = functools.partial(
            component_log_prob, likelihood.log_prob, likelihood.scopes()
        )
        return [
            cls(likelihood.name, likelihood.description, None, likelihood.log_prob,
                False, likelihood),
            cls(likelihood.name + MIXTURE_SUFFIX,
                f"mixture of {likelihood.description}", None, mixture_log_prob,
                True, likelihood),
        ]
