"""``joint_gene``: per gene, a joint Normal over the gene's sites in unconstrained space.

For every gene (and mixture component) the sites of scope ``gene`` (``r`` or ``mu``,
``gate``, ...) are mapped to the real line by the bijection of their support (``log``
for positive sites, ``logit`` for probabilities, identity for real ones) and given a
joint Normal with a full covariance, ``z = loc + L eps``, ``L`` lower triangular. The
remaining sites (shared, per-cell, mixture weights) keep mean-field factors.

Variational parameters, each shaped like the site's value (``(G,)``, ``(K, G)`` in a
mixture) for joint sites ``s_0, s_1, ...`` in the model's order:

- ``<s_i>_joint_loc``: ``loc_i`` (real);
- ``<s_i>_joint_scale``: ``L_ii`` (positive);
- ``<s_i>_joint_tril_<s_j>`` for ``j < i``: ``L_ij`` (real).

So ``cov = L L^T`` and the marginal of ``s_i`` is its bijection applied to
``Normal(loc_i, sqrt(sum_j L_ij^2))``: LogNormal, LogitNormal or Normal. Components are
independent of each other: a block per (component, gene) keeps every parameter's axes
those of the site, so gene subsetting and component extraction need nothing special.
The joint draw is the auxiliary site ``gene_joint``; each site is a ``Delta`` at its
transformed value carrying the log-Jacobian, so any ELBO sees the exact joint density.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
from numpyro.distributions import Delta, MultivariateNormal, constraints
from numpyro.distributions.transforms import biject_to

from scribe.families import LOG_NORMAL, LOGIT_NORMAL, NORMAL, Family
from scribe.guide_family import GuideFamily, VariationalParam
from scribe.parameterization import GENE, Site

AUXILIARY = "gene_joint"

# Support of a site -> family of its marginal under a Normal in unconstrained space.
_MARGINALS = ((constraints.real, NORMAL), (constraints.positive, LOG_NORMAL),
              (constraints.unit_interval, LOGIT_NORMAL))


def marginal_family(site: Site) -> Family | None:
    """Family of ``site``'s marginal under the joint Normal; None if it cannot join."""
    if site.scope != GENE or site.family.event_ndim:
        return None
    return next((fam for support, fam in _MARGINALS if site.family.support is support), None)


def loc_name(site: Site) -> str:
    return f"{site.name}_joint_loc"


def scale_name(site: Site) -> str:
    return f"{site.name}_joint_scale"


def tril_name(site: Site, earlier: Site) -> str:
    return f"{site.name}_joint_tril_{earlier.name}"


class JointGene(GuideFamily):
    name = "joint_gene"
    description = ("per gene a full-covariance Normal over the gene's sites in "
                   "unconstrained space; shared and per-cell sites mean-field")

    def joint_sites(self, composition) -> tuple[Site, ...]:
        """The gene sites in the joint Normal, in the model's order."""
        return tuple(s for s in composition.global_sites if marginal_family(s) is not None)

    # ---- declared parameters -------------------------------------------------------------
    def variational_params(self, composition, n_cells: int,
                           n_genes: int) -> dict[str, VariationalParam]:
        joint = self.joint_sites(composition)
        declared = {}
        for site in composition.sites.values():
            if site not in joint:
                declared.update(self.site_params(composition, site, n_cells, n_genes))
                continue
            shape = composition.value_shape(site, n_genes)
            i = joint.index(site)
            declared[loc_name(site)] = VariationalParam(GENE, shape, constraints.real)
            declared[scale_name(site)] = VariationalParam(GENE, shape, constraints.positive)
            for earlier in joint[:i]:
                declared[tril_name(site, earlier)] = VariationalParam(GENE, shape,
                                                                      constraints.real)
        return declared

    def _joint_params(self, composition, joint, params: dict | None, n_genes: int):
        """``loc (..., d)`` and ``L (..., d, d)`` from ``params`` (None: numpyro.param)."""
        declared = self.variational_params(composition, 0, n_genes) if params is None else {}

        def get(name):
            if params is not None:
                return jnp.asarray(params[name])
            return numpyro.param(name, declared[name].default(),
                                 constraint=declared[name].constraint)

        d = len(joint)
        loc = jnp.stack([get(loc_name(s)) for s in joint], axis=-1)
        tril = jnp.zeros(loc.shape + (d,), loc.dtype)
        for i, site in enumerate(joint):
            tril = tril.at[..., i, i].set(get(scale_name(site)))
            for j, earlier in enumerate(joint[:i]):
                tril = tril.at[..., i, j].set(get(tril_name(site, earlier)))
        return loc, tril

    # ---- the guide -----------------------------------------------------------------------
    def guide(self, composition, n_cells: int, n_genes: int, counts=None,
              batch_size: int | None = None) -> None:
        joint = self.joint_sites(composition)
        latent = None
        for site in composition.global_sites:
            if site not in joint:
                self.sample_global_site(composition, site, n_cells, n_genes)
                continue
            if latent is None:
                # Sampled where the first joint site sits, so sites keep the model's order.
                loc, tril = self._joint_params(composition, joint, None, n_genes)
                latent = numpyro.sample(
                    AUXILIARY, MultivariateNormal(loc, scale_tril=tril).to_event(loc.ndim - 1),
                    infer={"is_auxiliary": True})
            unconstrained = latent[..., joint.index(site)]
            transform = biject_to(site.family.support)
            value = transform(unconstrained)
            # q(value) = q(z) / |d value / d z|: the Delta carries -log|J|.
            log_density = -jnp.sum(transform.log_abs_det_jacobian(unconstrained, value))
            numpyro.sample(site.name, Delta(value, log_density=log_density,
                                            event_dim=value.ndim))
        self.sample_cell_sites(composition, n_cells, n_genes, batch_size)

    # ---- the fitted posterior --------------------------------------------------------------
    def posterior_distributions(self, composition, params: dict) -> dict:
        joint = self.joint_sites(composition)
        marginals = {}
        if joint:
            loc, tril = self._joint_params(composition, joint, params, 0)
            scale = jnp.sqrt(jnp.sum(tril**2, axis=-1))   # sqrt(diag(L L^T))
            for i, site in enumerate(joint):
                marginals[site.name] = marginal_family(site).make(loc[..., i], scale[..., i])
        return {name: marginals[name] if name in marginals else self.site_posterior(site, params)
                for name, site in composition.sites.items()}

    # ---- starting values -------------------------------------------------------------------
    def initial_params(self, composition, values: dict, concentrations: dict) -> dict:
        joint = self.joint_sites(composition)
        params = {}
        for site in composition.sites.values():
            value, concentration = values[site.name], concentrations[site.name]
            if site not in joint:
                params.update(self.site_initial(site, value, concentration))
                continue
            # Independent at the start, each marginal as wide as a mean-field factor.
            loc, scale = marginal_family(site).init_args(jnp.asarray(value, jnp.float32),
                                                         concentration)
            params[loc_name(site)] = jnp.asarray(loc, jnp.float32)
            params[scale_name(site)] = jnp.asarray(scale, jnp.float32)
            for earlier in joint[:joint.index(site)]:
                params[tril_name(site, earlier)] = jnp.zeros(jnp.shape(loc), jnp.float32)
        return params
