"""``skew_gene``: ``joint_gene`` with a skewed, curved per-gene block.

Per gene (and mixture component) the gene sites are drawn by a triangular map of
standard Normals ``eps`` (probability sites such as ``gate`` first, then the rest in the
model's order):

    y_i = sinh((asinh(eps_i) + k_i) / t_i)                    skew k_i, tail t_i > 0
    w   = loc + L y
    z_i = w_i + sum_{j prob.} c_ij softplus(w_j)              (positive sites i only)
            + sum_a b_ia (z_a - loc_a)                        as in ``joint_gene``

then each site is its support's bijection of ``z``. At ``k = 0``, ``t = 1``, ``c = 0``
this is ``joint_gene``'s Normal, which is where a fit starts. Why: in zinb the counts
pin down ``log(r (1 - gate)) = log r - softplus(logit gate)`` (the ungated mean) much
better than ``r`` or ``gate`` alone, so the exact posterior of ``(log r, logit gate)``
lies along the curved ridge ``log r = const + softplus(logit gate)``, skewed towards
small gates; a Normal fitted by reverse KL locks onto its mode and is 0.4-0.6x too
narrow (docs/models.md, "Diagnosis"). ``c`` follows the ridge, ``k`` and ``t`` the skew.

The Jacobian ``dz/deps`` is triangular with diagonal ``L_ii y_i'(eps_i)`` (the softplus
shift feeds only later coordinates), so each site's ``Delta`` carries
``-log L_ii - log y_i'(eps_i) - log|d site / d z_i|`` and the auxiliary ``gene_joint``
site the standard Normal density of ``eps``: any ELBO sees the exact joint density.

Extra variational parameters (shaped like the site's value) on top of ``joint_gene``'s:
``<site>_joint_skew`` (real), ``<site>_joint_tail`` (positive) and, for a positive site
after a probability site, ``<site>_joint_softplus_<prob site>`` (real). The marginals
are :class:`~plugins.scribe_builtin.guides.skew_marginal.SkewMarginal` distributions
(exact draws; density, cdf, quantiles, mean and mode by quadrature), for blocks of at
most two gene sites (every built-in likelihood).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
from numpyro.distributions import Normal, constraints

from scribe.guide_family import VariationalParam
from scribe.parameterization import GENE, Site

from .joint_gene import (
    GENE_LATENT,
    JointGene,
    _align,
    loc_name,
    marginal_family,
    scale_name,
)
from .skew_marginal import _inverse as _sas_inverse
from .skew_marginal import sinh_arcsinh, skew_marginal


def skew_name(site: Site) -> str:
    return f"{site.name}_joint_skew"


def tail_name(site: Site) -> str:
    return f"{site.name}_joint_tail"


def softplus_name(site: Site, probability: Site) -> str:
    return f"{site.name}_joint_softplus_{probability.name}"


def _is_probability(site: Site) -> bool:
    return site.family.support is constraints.unit_interval


class SkewGene(JointGene):
    name = "skew_gene"
    description = ("joint_gene with per gene a sinh-arcsinh skew and tail per site and a "
                   "softplus shift of positive sites along probability sites (zinb's "
                   "r-gate ridge); per-cell sites mean-field")

    #: Gradient estimator of the gene blocks (see ``_stl_log_density``).
    stick_the_landing: bool = True
    #: Starting scale of every gene-block site (None: joint_gene's start).
    initial_scale: float | None = None

    def joint_sites(self, composition) -> tuple[Site, ...]:
        """Gene sites in the joint block, probability sites first (stable otherwise)."""
        sites = super().joint_sites(composition)
        return (tuple(s for s in sites if _is_probability(s))
                + tuple(s for s in sites if not _is_probability(s)))

    def softplus_pairs(self, composition) -> tuple[tuple[int, int], ...]:
        """``(i, j)`` index pairs in the block: positive site ``i`` shifted along
        probability site ``j`` (``j < i`` by the ordering)."""
        joint = self.joint_sites(composition)
        return tuple((i, j) for i, s in enumerate(joint)
                     if s.family.support is constraints.positive
                     for j, prob in enumerate(joint[:i]) if _is_probability(prob))

    # ---- declared parameters -------------------------------------------------------------
    def variational_params(self, composition, n_cells: int,
                           n_genes: int) -> dict[str, VariationalParam]:
        declared = super().variational_params(composition, n_cells, n_genes)
        joint = self.joint_sites(composition)
        for site in joint:
            shape = composition.value_shape(site, n_genes)
            declared[skew_name(site)] = VariationalParam(GENE, shape, constraints.real)
            declared[tail_name(site)] = VariationalParam(GENE, shape, constraints.positive)
        for i, j in self.softplus_pairs(composition):
            shape = composition.value_shape(joint[i], n_genes)
            declared[softplus_name(joint[i], joint[j])] = VariationalParam(
                GENE, shape, constraints.real)
        return declared

    def _shape_params(self, composition, get):
        """Skew ``(..., d)``, tail ``(..., d)`` and the softplus matrix ``(..., d, d)``."""
        joint = self.joint_sites(composition)
        skew = jnp.stack([get(skew_name(s)) for s in joint], axis=-1)
        tail = jnp.stack([get(tail_name(s)) for s in joint], axis=-1)
        bend = jnp.zeros(skew.shape + (len(joint),), skew.dtype)
        for i, j in self.softplus_pairs(composition):
            bend = bend.at[..., i, j].set(get(softplus_name(joint[i], joint[j])))
        return skew, tail, bend

    # ---- the guide -----------------------------------------------------------------------
    def draw_gene_block(self, composition, get, shared_z):
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        loc, tril, coupling = self._gene_params(joint, anchors, get)
        skew, tail, bend = self._shape_params(composition, get)
        eps = numpyro.sample(GENE_LATENT, Normal(jnp.zeros_like(loc), 1.0)
                             .to_event(loc.ndim), infer={"is_auxiliary": True})
        y, log_slope = sinh_arcsinh(eps, skew, tail)
        w = loc + jnp.einsum("...ij,...j->...i", tril, y)
        gene_z = w + jnp.einsum("...ij,...j->...i", bend, jax.nn.softplus(w))
        if anchors:
            # Added after the shift, so each coordinate's anchor term is an independent
            # Normal given eps (what keeps the marginals exact).
            a_loc, _ = self._anchor_params(anchors, get)
            gene_z = gene_z + jnp.sum(coupling * _align(shared_z - a_loc), axis=-1)
        if self.stick_the_landing:
            return gene_z, self._stl_log_density(gene_z, eps, get, composition, joint,
                                                 anchors, shared_z)
        # Diagonal of dz/deps: L_ii y_i'(eps_i).
        return gene_z, -(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)) + log_slope)

    def _stl_log_density(self, gene_z, eps, get, composition, joint, anchors, shared_z):
        """Per-coordinate ``log q`` terms with the variational parameters held fixed.

        "Sticking the landing" (Roeder et al. 2017): the value equals
        ``-log L_ii - log y_i'(eps_i)``, but the gradient reaches the parameters only
        through the draw ``z``; the score term, whose mean is zero and whose noise does
        not vanish as ``q`` approaches the posterior, is dropped (the mean gradients
        agree with the plain estimator's within Monte Carlo error). The auxiliary site's
        ``log N(eps)`` is swapped for ``log N(eps(z))`` with ``eps(z)`` the inverse map
        at the held parameters (numerically ``eps``).
        """
        sg = jax.lax.stop_gradient
        loc, tril, coupling = (None if x is None else sg(x)
                               for x in self._gene_params(joint, anchors, get))
        skew, tail, bend = (sg(x) for x in self._shape_params(composition, get))
        z = gene_z
        if anchors:
            a_loc, _ = self._anchor_params(anchors, get)
            z = z - jnp.sum(coupling * _align(shared_z - sg(a_loc)), axis=-1)
        # Probability coordinates carry no shift: undo the softplus shift from them.
        w = z - jnp.einsum("...ij,...j->...i", bend, jax.nn.softplus(z))
        y = jax.scipy.linalg.solve_triangular(tril, (w - loc)[..., None], lower=True)[..., 0]
        eps_z, log_slope_inv = _sas_inverse(y, skew, tail)
        log_diag = jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)) - log_slope_inv
        return -0.5 * eps_z**2 + 0.5 * sg(eps) ** 2 - log_diag

    # ---- the fitted posterior --------------------------------------------------------------
    def joint_marginals(self, composition, params: dict) -> dict:
        joint, anchors = self.joint_sites(composition), self.anchor_sites(composition)
        if len(joint) > 2:
            raise NotImplementedError(
                f"skew_gene marginals are computed for blocks of at most two gene sites; "
                f"this model has {len(joint)} ({', '.join(s.name for s in joint)})")
        get = self._getter(composition, params, 0)
        marginals = {}
        if not joint:
            return marginals
        loc, tril, coupling = self._gene_params(joint, anchors, get)
        skew, tail, bend = self._shape_params(composition, get)
        anchor_sd = jnp.zeros_like(loc)
        if anchors:
            a_loc, a_scale = self._anchor_params(anchors, get)
            # The anchors enter every gene coordinate as one independent Normal term.
            anchor_sd = jnp.sqrt(jnp.sum(coupling**2 * _align(a_scale**2), axis=-1))
            for k, anchor in enumerate(anchors):
                marginals[anchor.name] = marginal_family(anchor).make(a_loc[..., k],
                                                                      a_scale[..., k])
        for i, site in enumerate(joint):
            lead = (loc[..., 0], tril[..., 0, 0], skew[..., 0], tail[..., 0],
                    tril[..., i, 0], bend[..., i, 0]) if i else None
            marginals[site.name] = skew_marginal(
                site.family.support, loc[..., i], tril[..., i, i], skew[..., i],
                tail[..., i], anchor_sd[..., i], lead)
        return marginals

    # ---- starting values -------------------------------------------------------------------
    def initial_params(self, composition, values: dict, concentrations: dict) -> dict:
        params = super().initial_params(composition, values, concentrations)
        joint = self.joint_sites(composition)
        if self.initial_scale is not None:
            for site in joint:
                params[scale_name(site)] = jnp.full_like(params[scale_name(site)],
                                                         self.initial_scale)
        for site in joint:
            zeros = jnp.zeros_like(params[loc_name(site)])
            params[skew_name(site)] = zeros
            params[tail_name(site)] = jnp.ones_like(params[scale_name(site)])
        for i, j in self.softplus_pairs(composition):
            params[softplus_name(joint[i], joint[j])] = jnp.zeros_like(
                params[loc_name(joint[i])])
        return params
