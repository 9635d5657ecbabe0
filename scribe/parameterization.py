"""Parameterizations: which sites are sampled, and how canonical parameters follow.

A parameterization answers four requests, each with a :class:`Block` (the sampled sites
plus the maps between their values and canonical values):

- ``expression()``: the NB pair, canonical ``p`` and ``r``;
- ``probability(name, scope)``: a probability latent such as ``gate``;
- ``capture(name)``: the per-cell capture probability ``p_capture``;
- ``mixing()``: mixture weights on the simplex.

The base class gives Beta probabilities, Beta capture and Dirichlet weights; a new
parameterization overrides what it changes. Shapes are resolved by the composer from
each site's *scope*; the canonical maps receive unbatched values (no sample axis).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import jax.numpy as jnp

from scribe.families import BETA, DIRICHLET, Family

#: Scopes of a site. ``shared``: a scalar, or ``(K,)`` in a mixture with
#: component-specific parameters; ``gene``: ``(G,)`` or ``(K, G)`` in a mixture; ``cell``:
#: one per cell, inside the ``cells`` plate; ``component``: ``(K,)``.
SHARED, GENE, CELL, COMPONENT = "shared", "gene", "cell", "component"
SCOPES = (SHARED, GENE, CELL, COMPONENT)


@attrs.frozen
class Site:
    """A sampled latent site.

    Parameters
    ----------
    name : str
        NumPyro site name, e.g. ``"phi_capture"``.
    family : Family
        Prior and variational family.
    scope : str
        One of :data:`SCOPES`.
    param_prefix : str, optional
        Prefix of the variational parameter names (default: the site name), so that
        ``mixing_weights`` has ``mixing_concentrations``.
    """

    name: str
    family: Family
    scope: str = attrs.field(validator=attrs.validators.in_(SCOPES))
    param_prefix: str | None = None

    @property
    def param_names(self) -> tuple[str, ...]:
        prefix = self.param_prefix or self.name
        return tuple(f"{prefix}_{arg}" for arg in self.family.arg_names)


@attrs.frozen
class Block:
    """Sites that jointly determine some canonical parameters.

    Parameters
    ----------
    sites : tuple of Site
    to_canonical : callable
        ``{site name: value} -> {canonical name: value}``.
    from_canonical : callable
        Inverse map, used to start the variational factors at data-informed values.
    """

    sites: tuple[Site, ...]
    to_canonical: Callable[[dict], dict]
    from_canonical: Callable[[dict], dict]


def per_gene(shared: jnp.ndarray) -> jnp.ndarray:
    """Align a shared parameter (scalar or ``(K,)``) with a gene parameter (``(G,)``/``(K, G)``)."""
    shared = jnp.asarray(shared)
    return shared[..., None] if shared.ndim == 1 else shared


def identity_block(site: Site) -> Block:
    """A block whose sampled site *is* the canonical parameter of the same name."""
    name = site.name
    return Block((site,), lambda v: {name: v[name]}, lambda c: {name: c[name]})


class Parameterization:
    """Base class of parameterizations; subclasses set ``name`` and override requests.

    Attributes
    ----------
    name : str
        Registered name, passed as ``parameterization=`` by users.
    description : str
        One line shown in listings.
    """

    name: str = ""
    description: str = ""

    def expression(self) -> Block:
        """Sites for the negative binomial pair; canonical ``p`` (shared) and ``r`` (gene)."""
        raise NotImplementedError

    def probability(self, name: str, scope: str) -> Block:
        """Sites for a probability latent (e.g. the zero-inflation ``gate``)."""
        return identity_block(Site(name, BETA, scope))

    def capture(self, name: str) -> Block:
        """Sites for the per-cell capture probability."""
        return self.probability(name, CELL)

    def mixing(self) -> Block:
        """Sites for the mixture weights (canonical ``mixing_weights``)."""
        return identity_block(Site("mixing_weights", DIRICHLET, COMPONENT, "mixing"))

    def __repr__(self) -> str:
        return f"Parameterization({self.name!r})"
