"""Likelihoods: the observation model given canonical parameters.

A likelihood always uses the negative binomial pair ``p`` (shared) and ``r`` (per gene),
and declares any further latents it needs (:class:`Latent`), which the chosen
parameterization then supplies. It offers three views of the same law, so that a faster
evaluation replaces one method without touching models or analyses:

1. ``distribution(params)``: the generative observation distribution;
2. ``log_prob(counts, params)``: elementwise log-probabilities ``(C, G)``;
3. ``total_log_prob(counts, params)``: the summed log-likelihood of a dataset.

Canonical parameter shapes seen by a likelihood: ``p`` is ``()`` or ``(C,)`` (per-cell
after a mixture assignment), ``r`` and gene latents ``(G,)`` or ``(C, G)``, cell latents
``(C,)``.
"""

from __future__ import annotations

import attrs
import jax.numpy as jnp
from numpyro.distributions import Distribution

from scribe.parameterization import CELL, GENE, SHARED

#: Kinds of latent a likelihood can request from a parameterization.
PROBABILITY, CAPTURE = "probability", "capture"


@attrs.frozen
class Latent:
    """A canonical latent requested by a likelihood beyond ``p`` and ``r``.

    Parameters
    ----------
    name : str
        Canonical name, e.g. ``"gate"`` or ``"p_capture"``.
    kind : str
        ``"probability"`` (per-gene probability, e.g. a dropout gate) or ``"capture"``
        (per-cell capture probability).
    scope : str
        ``"gene"`` or ``"cell"``; gene latents are component-specific in mixtures.
    """

    name: str
    kind: str = attrs.field(validator=attrs.validators.in_((PROBABILITY, CAPTURE)))
    scope: str = attrs.field(validator=attrs.validators.in_((GENE, CELL)))


class Likelihood:
    """Base class of likelihoods; subclasses implement ``distribution`` and ``log_prob``.

    Attributes
    ----------
    name : str
        Model type name it registers under (``<name>_mix`` for its mixture).
    description : str
    latents : tuple of Latent
        Latents needed beyond ``p`` and ``r``.
    """

    name: str = ""
    description: str = ""
    latents: tuple[Latent, ...] = ()

    def scopes(self) -> dict[str, str]:
        """Scope of every canonical parameter: ``{"p": "shared", "r": "gene", ...}``."""
        return {"p": SHARED, "r": GENE, **{lat.name: lat.scope for lat in self.latents}}

    def distribution(self, params: dict) -> Distribution:
        """Generative distribution of counts, batch shape broadcastable to ``(C, G)``."""
        raise NotImplementedError

    def log_prob(self, counts: jnp.ndarray, params: dict) -> jnp.ndarray:
        """Elementwise log-probability, shape ``(C, G)``."""
        raise NotImplementedError

    def total_log_prob(self, counts: jnp.ndarray, params: dict) -> jnp.ndarray:
        """Log-likelihood of all counts, a scalar."""
        return jnp.sum(self.log_prob(counts, params))

    def derived(self, params: dict) -> dict:
        """Extra canonical quantities reported with estimates (e.g. ``p_hat``)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
