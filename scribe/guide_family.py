"""Guide families: the shape of the variational posterior of a composed model.

A :class:`GuideFamily` turns a :class:`~scribe.compose.Composition` (its sampled sites,
their families and scopes) into a NumPyro guide, the variational parameters it declares,
the posterior marginal of every sampled site, and data-informed starting values. Families
are plugins: ``scribe_guide_families()`` returns them, and users select one with
``ModelConfig(..., guide_family=name)`` or ``scribe.fit(..., guide_family=name)``.

This base class is the mean-field guide: every sampled site gets an independent factor of
its own family, with variational parameters ``<site>_<arg>`` (``mixing_concentrations``
for the mixture weights). A richer family overrides what it changes and can call the
per-site methods for the sites it leaves mean-field.
"""

from __future__ import annotations

import attrs
import jax.numpy as jnp
import numpyro
from numpyro.distributions import Distribution, constraints

from scribe.parameterization import CELL, Site


@attrs.frozen
class VariationalParam:
    """A variational parameter declared by a guide family.

    Parameters
    ----------
    scope : str
        Scope of the parameter (``shared``, ``gene``, ``cell``, ``component``): the
        results name its axes from it (a ``gene`` parameter's last axis is genes, a
        leading axis of length K in a mixture is components).
    shape : tuple of int
        Its shape for the data's ``n_cells`` and ``n_genes``.
    constraint : numpyro constraint
        Its support (``real``, ``positive``, ...).
    """

    scope: str
    shape: tuple[int, ...]
    constraint: constraints.Constraint

    def default(self) -> jnp.ndarray:
        """A placeholder value of the right shape; data-informed values replace it."""
        if self.constraint is constraints.real:
            return jnp.zeros(self.shape)
        return jnp.full(self.shape, 2.0)


class GuideFamily:
    """Base class of guide families; as it stands, the mean-field guide.

    Attributes
    ----------
    name : str
        Registered name, passed as ``guide_family=`` by users.
    description : str
        One line shown in listings.
    """

    name: str = ""
    description: str = ""

    # ---- what the guide declares -------------------------------------------------------
    def variational_params(self, composition, n_cells: int,
                           n_genes: int) -> dict[str, VariationalParam]:
        """``{parameter name: VariationalParam}`` of every variational parameter."""
        declared = {}
        for site in composition.sites.values():
            declared.update(self.site_params(composition, site, n_cells, n_genes))
        return declared

    def site_params(self, composition, site: Site, n_cells: int,
                    n_genes: int) -> dict[str, VariationalParam]:
        """The mean-field parameters ``<site>_<arg>`` of one site."""
        shape = (n_cells,) if site.scope == CELL else composition.value_shape(site, n_genes)
        return {name: VariationalParam(site.scope, shape, constraint) for name, constraint
                in zip(site.param_names, site.family.arg_constraints, strict=True)}

    # ---- the guide ---------------------------------------------------------------------
    def guide(self, composition, n_cells: int, n_genes: int, counts=None,
              batch_size: int | None = None) -> None:
        """The NumPyro guide; same signature as the model (plus the composition).

        Sites are sampled in the model's order, global ones first and then the per-cell
        ones inside the ``cells`` plate (subsampled with ``batch_size``).
        """
        for site in composition.global_sites:
            self.sample_global_site(composition, site, n_cells, n_genes)
        self.sample_cell_sites(composition, n_cells, n_genes, batch_size)

    def sample_global_site(self, composition, site: Site, n_cells: int, n_genes: int):
        """Sample one global site from its mean-field factor."""
        declared = self.site_params(composition, site, n_cells, n_genes)
        args = [numpyro.param(name, p.default(), constraint=p.constraint)
                for name, p in declared.items()]
        shape = composition.value_shape(site, n_genes)
        return numpyro.sample(site.name, composition.distribution(site, args, shape))

    def sample_cell_sites(self, composition, n_cells: int, n_genes: int,
                          batch_size: int | None) -> None:
        """Sample every per-cell site from its mean-field factor inside ``cells``."""
        cell_args = {}
        for site in composition.cell_sites:
            declared = self.site_params(composition, site, n_cells, n_genes)
            cell_args[site.name] = [numpyro.param(name, p.default(), constraint=p.constraint)
                                    for name, p in declared.items()]
        with numpyro.plate("cells", n_cells, subsample_size=batch_size) as idx:
            for site in composition.cell_sites:
                args = cell_args[site.name]
                if batch_size is not None:
                    args = [a[idx] for a in args]
                numpyro.sample(site.name, site.family.make(*args))

    # ---- the fitted posterior ----------------------------------------------------------
    def posterior_distributions(self, composition, params: dict) -> dict[str, Distribution]:
        """Posterior marginal of every sampled site, batch-shaped like its value."""
        return {site.name: self.site_posterior(site, params)
                for site in composition.sites.values()}

    def site_posterior(self, site: Site, params: dict) -> Distribution:
        """The mean-field factor of one site."""
        return site.family.make(*(jnp.asarray(params[n]) for n in site.param_names))

    # ---- starting values ---------------------------------------------------------------
    def initial_params(self, composition, values: dict, concentrations: dict) -> dict:
        """Variational parameters centred on guessed site values.

        Parameters
        ----------
        composition : Composition
        values : dict
            ``{site: guessed value}``, each shaped like the site's value (``(C,)`` for
            per-cell sites).
        concentrations : dict
            ``{site: pseudo-observations}``: how many counts inform the site; sets the
            initial width.
        """
        params = {}
        for site in composition.sites.values():
            params.update(self.site_initial(site, values[site.name],
                                            concentrations[site.name]))
        return params

    def site_initial(self, site: Site, value, concentration: float) -> dict:
        """The mean-field factor of one site centred on ``value``."""
        args = site.family.init_args(jnp.asarray(value, jnp.float32), concentration)
        return {name: jnp.asarray(arg, jnp.float32)
                for name, arg in zip(site.param_names, args, strict=True)}

    def __repr__(self) -> str:
        return f"GuideFamily({self.name!r})"
