"""``joint_gene``: per gene, a joint Normal over the gene's sites in unconstrained space.

Every site is mapped to the real line by the bijection of its support (``log`` for
positive sites, ``logit`` for probabilities, identity for real ones). Shared scalar sites
such as ``p`` (the *anchors*) get Normals ``z_a = loc_a + s_a eps_a``. For every gene
(and mixture component) the sites of scope ``gene`` (``r`` or ``mu``, ``gate``, ...) get
a joint Normal with a full covariance whose mean moves linearly with the anchors:

    z_g = loc_g + sum_a b_ga (z_a - loc_a) + L_g eps_g,   L_g lower triangular.

The linear term carries the posterior ridge between a shared ``p`` and every gene's ``r``
(``r p / (1 - p)`` is what the data pin down); ``L_g`` carries the within-gene
correlation (``r`` against ``gate``: a zero is a dropout or a small NB draw). Per-cell
sites and mixture weights keep mean-field factors.

Variational parameters (shaped like the site's value: ``()`` or ``(K,)`` for anchors,
``(G,)`` or ``(K, G)`` for gene sites ``s_0, s_1, ...`` in the model's order):

- ``<site>_joint_loc`` (real) and ``<site>_joint_scale`` (positive: ``s_a``, ``L_ii``);
- ``<s_i>_joint_tril_<s_j>`` for ``j < i``: ``L_ij`` (real);
- ``<s_i>_joint_on_<a>``: ``b_ia`` (real).

The marginal of a gene site is its bijection applied to
``Normal(loc_i, sqrt(sum_j L_ij^2 + sum_a b_ia^2 s_a^2))``: LogNormal, LogitNormal or
Normal, which is what ``posterior_distributions`` returns. Components are independent
blocks, so every parameter keeps the axes of its site and gene subsetting and component
extraction need nothing special. The joint draws are the auxiliary sites ``shared_joint``
and ``gene_joint``; each site is a ``Delta`` at its transformed value carrying the
log-Jacobian, so any ELBO sees the exact joint density.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
from numpyro.distributions import Delta, MultivariateNormal, Normal, constraints
from numpyro.distributions.transforms import biject_to

from scribe.families import LOG_NORMAL, LOGIT_NORMAL, NORMAL, Family
from scribe.guide_family import GuideFamily, VariationalParam
from scribe.parameterization import GENE, SHARED, Site

GENE_LATENT, SHARED_LATENT = "gene_joint", "shared_joint"

# Support of a site -> family of its marginal under a Normal in unconstrained space.
_MARGINALS = ((constraints.real, NORMAL), (constraints.positive, LOG_NORMAL),
              (constraints.unit_interval, LOGIT_NORMAL))


def marginal_family(site: Site) -> Family | None:
    """Family of ``site``'s marginal under a Normal in unconstrained space (None: none)."""
    if site.family.event_ndim:
        return None
    return next((fam for support, fam in _MARGINALS if site.family.support is support), None)


def loc_name(site: Site) -> str:
    return f"{site.name}_joint_loc"


def scale_name(site: Site) -> str:
    return f"{site.name}_joint_scale"


def tril_name(site: Site, earlier: Site) -> str:
    return f"{site.name}_joint_tril_{earlier.name}"


def coupling_name(site: Site, anchor: Site) -> str:
    return f"{site.name}_joint_on_{anchor.name}"


def _align(anchors: jnp.ndarray) -> jnp.ndarray:
    """Stacked anchor values ``(n_a,)`` or ``(K, n_a)`` aligned with ``(..., G, d, n_a)``."""
    return anchors[..., None, None, :] if anchors.ndim == 2 else anchors


class JointGene(GuideFamily):
    name = "joint_gene"
    description = ("per gene a full-covariance Normal over the gene's sites in "
                   "unconstrained space, its mean linear in the shared sites; per-cell "
                   "sites mean-field")

    def joint_sites(self, composition) -> tuple[Site, ...]:
        """The gene sites in the per-gene joint Normals, in the model's order."""
        return tuple(s for s in composition.global_sites
                     if s.scope == GENE and marginal_family(s) is not None)

    def anchor_sites(self, composition) -> tuple[Site, ...]:
        """The shared sites the gene blocks are coupled to (only with gene sites)."""
        if not self.joint_sites(composition):
            return ()
        return tuple(s for s in composition.global_sites
                     if s.scope == SHARED and marginal_family(s) is not None)

    # ---- declared parameters -------------------------------------------------------------
    def variational_params(self, composition, n_cells: int,
                           n_genes: int) -> dict[str, VariationalParam]:
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        declared = {}
        for site in composition.sites.values():
            if site not in joint and site not in anchors:
                declared.update(self.site_params(composition, site, n_cells, n_genes))
                continue
            shape = composition.value_shape(site, n_genes)
            declared[loc_name(site)] = VariationalParam(site.scope, shape, constraints.real)
            declared[scale_name(site)] = VariationalParam(site.scope, shape,
                                                          constraints.positive)
            if site in anchors:
                continue
            for earlier in joint[:joint.index(site)]:
                declared[tril_name(site, earlier)] = VariationalParam(GENE, shape,
                                                                      constraints.real)
            for anchor in anchors:
                declared[coupling_name(site, anchor)] = VariationalParam(GENE, shape,
                                                                         constraints.real)
        return declared

    def _getter(self, composition, params: dict | None, n_genes: int):
        """Parameter lookup: from ``params``, or declared with ``numpyro.param`` if None."""
        if params is not None:
            return lambda name: jnp.asarray(params[name])
        declared = self.variational_params(composition, 0, n_genes)
        return lambda name: numpyro.param(name, declared[name].default(),
                                          constraint=declared[name].constraint)

    def _anchor_params(self, anchors, get):
        """``loc`` and ``scale`` of the anchors, stacked on a last axis ``(..., n_a)``."""
        return (jnp.stack([get(loc_name(a)) for a in anchors], axis=-1),
                jnp.stack([get(scale_name(a)) for a in anchors], axis=-1))

    def _gene_params(self, joint, anchors, get):
        """``loc (..., d)``, ``L (..., d, d)`` and couplings ``(..., d, n_a)``."""
        d = len(joint)
        loc = jnp.stack([get(loc_name(s)) for s in joint], axis=-1)
        tril = jnp.zeros(loc.shape + (d,), loc.dtype)
        for i, site in enumerate(joint):
            tril = tril.at[..., i, i].set(get(scale_name(site)))
            for j, earlier in enumerate(joint[:i]):
                tril = tril.at[..., i, j].set(get(tril_name(site, earlier)))
        coupling = jnp.stack([jnp.stack([get(coupling_name(s, a)) for a in anchors], axis=-1)
                              for s in joint], axis=-2) if anchors else None
        return loc, tril, coupling

    # ---- the guide -----------------------------------------------------------------------
    def guide(self, composition, n_cells: int, n_genes: int, counts=None,
              batch_size: int | None = None) -> None:
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        get = self._getter(composition, None, n_genes)
        shared_z = gene_z = None
        for site in composition.global_sites:
            if site not in joint and site not in anchors:
                self.sample_global_site(composition, site, n_cells, n_genes)
                continue
            # Latents are drawn where their first site sits, so sites keep the model's order.
            if shared_z is None and anchors:
                a_loc, a_scale = self._anchor_params(anchors, get)
                shared_z = numpyro.sample(
                    SHARED_LATENT, Normal(a_loc, a_scale).to_event(a_loc.ndim),
                    infer={"is_auxiliary": True})
            if site in anchors:
                _sample_delta(site, shared_z[..., anchors.index(site)])
                continue
            if gene_z is None:
                gene_z, extra = self.draw_gene_block(composition, get, shared_z)
            index = joint.index(site)
            _sample_delta(site, gene_z[..., index],
                          extra_log_density=0.0 if extra is None else extra[..., index])
        anchor_eps = None if shared_z is None else (shared_z - a_loc) / a_scale
        self.sample_joint_cell_sites(composition, n_cells, n_genes, batch_size, anchor_eps)

    def draw_gene_block(self, composition, get, shared_z):
        """Draw the gene block's unconstrained values ``(..., d)`` (auxiliary site
        ``GENE_LATENT``) given the anchors' draw ``shared_z`` (or None).

        Returns ``(gene_z, extra)``: ``extra`` ``(..., d)`` is added to each site's
        Delta log-density (a further map's log-Jacobian), or None. Here a Normal with a
        lower-triangular scale, shifted by the anchors.
        """
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        loc, tril, coupling = self._gene_params(joint, anchors, get)
        if anchors:
            a_loc, _ = self._anchor_params(anchors, get)
            loc = loc + jnp.sum(coupling * _align(shared_z - a_loc), axis=-1)
        gene_z = numpyro.sample(
            GENE_LATENT, MultivariateNormal(loc, scale_tril=tril).to_event(loc.ndim - 1),
            infer={"is_auxiliary": True})
        return gene_z, None

    def sample_joint_cell_sites(self, composition, n_cells: int, n_genes: int,
                                batch_size: int | None, anchor_eps) -> None:
        """The per-cell sites; here mean-field (``anchor_eps``, the standardized anchor
        draws ``(..., n_a)`` or None, is for families that couple cells to the anchors)."""
        self.sample_cell_sites(composition, n_cells, n_genes, batch_size)

    # ---- the fitted posterior --------------------------------------------------------------
    def posterior_distributions(self, composition, params: dict) -> dict:
        marginals = self.joint_marginals(composition, params)
        return {name: marginals[name] if name in marginals else self.site_posterior(site, params)
                for name, site in composition.sites.items()}

    def joint_marginals(self, composition, params: dict) -> dict:
        """``{site: marginal}`` of the sites in the joint Normals (the rest mean-field)."""
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        get = self._getter(composition, params, 0)
        marginals = {}
        if joint:
            loc, tril, coupling = self._gene_params(joint, anchors, get)
            variance = jnp.sum(tril**2, axis=-1)                 # diag(L L^T)
            if anchors:
                a_loc, a_scale = self._anchor_params(anchors, get)
                variance = variance + jnp.sum(coupling**2 * _align(a_scale**2), axis=-1)
                for k, anchor in enumerate(anchors):
                    marginals[anchor.name] = marginal_family(anchor).make(a_loc[..., k],
                                                                          a_scale[..., k])
            for i, site in enumerate(joint):
                marginals[site.name] = marginal_family(site).make(
                    loc[..., i], jnp.sqrt(variance[..., i]))
        return marginals

    # ---- starting values -------------------------------------------------------------------
    def initial_params(self, composition, values: dict, concentrations: dict) -> dict:
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        params = {}
        for site in composition.sites.values():
            value, concentration = values[site.name], concentrations[site.name]
            if site not in joint and site not in anchors:
                params.update(self.site_initial(site, value, concentration))
                continue
            # Independent at the start, each marginal as wide as a mean-field factor.
            loc, scale = marginal_family(site).init_args(jnp.asarray(value, jnp.float32),
                                                         concentration)
            params[loc_name(site)] = jnp.asarray(loc, jnp.float32)
            params[scale_name(site)] = jnp.asarray(scale, jnp.float32)
            if site in anchors:
                continue
            zeros = jnp.zeros(jnp.shape(loc), jnp.float32)
            for earlier in joint[:joint.index(site)]:
                params[tril_name(site, earlier)] = zeros
            for anchor in anchors:
                params[coupling_name(site, anchor)] = zeros
        return params


def _sample_delta(site: Site, unconstrained: jnp.ndarray, extra_log_density=0.0):
    """Sample ``site`` at its bijection of ``unconstrained``, with the Jacobian's density
    (plus ``extra_log_density``, elementwise, e.g. a further map's log-Jacobian)."""
    transform = biject_to(site.family.support)
    value = transform(unconstrained)
    # q(value) = q(z) / |d value / d z|: the Delta carries -log|J|.
    log_density = jnp.sum(extra_log_density
                          - transform.log_abs_det_jacobian(unconstrained, value))
    return numpyro.sample(site.name, Delta(value, log_density=log_density,
                                           event_dim=jnp.ndim(value)))
