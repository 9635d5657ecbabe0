"""``joint_capture``: ``joint_gene`` plus per-cell capture sites coupled to the shared sites.

With variable capture the counts of cell ``c`` pin down ``p_hat_c = p nu_c / (1 - p (1 -
nu_c))``, not ``p`` and ``nu_c`` apart: their posterior is a ridge, one per cell. A
mean-field capture factor cannot follow it, so every draw of ``p`` away from its centre
moves all ``p_hat_c`` with it and the per-cell intervals come out wrong. Here each
per-cell site ``x`` (``p_capture``, ``phi_capture``, ...) gets, in the unconstrained space
of its support (``logit``, ``log`` or identity), a Normal whose mean shifts linearly with
the *standardized* anchor draws ``eps_a = (z_a - loc_a) / s_a``:

    z_c = loc_c + sum_a b_ca eps_a + s_c eps_c,

so that ``O(C)`` extra parameters carry the ridge. The gene blocks are those of
``joint_gene`` (:mod:`.joint_gene`). Cells are coupled only to scalar anchors: with
component-specific shared sites (``(K,)`` anchors) the per-cell sites stay mean-field, as
a cell's capture does not belong to one component.

Variational parameters of a coupled cell site ``x`` (all ``(C,)``, scope ``cell``):
``x_joint_loc`` (real), ``x_joint_scale`` (positive: ``s_c``), ``x_joint_on_<a>`` (real:
``b_ca``). Its marginal is the bijection applied to ``Normal(loc_c, sqrt(s_c^2 + sum_a
b_ca^2))``. The site is drawn directly from that transformed Normal given the anchors, so
its density (and the ELBO) is exact and no auxiliary site is added.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
from numpyro.distributions import constraints

from scribe.guide_family import VariationalParam
from scribe.initial_widths import concentration_for_variance, variance_for_concentration
from scribe.parameterization import CELL, Site

from .joint_gene import JointGene, coupling_name, loc_name, marginal_family, scale_name


class JointCapture(JointGene):
    name = "joint_capture"
    description = ("joint_gene, and each cell's capture in unconstrained space shifted "
                   "linearly with the standardized draw of the shared sites")

    def coupled_cell_sites(self, composition) -> tuple[Site, ...]:
        """The per-cell sites coupled to the anchors (none with non-scalar anchors)."""
        anchors = self.anchor_sites(composition)
        if not anchors or any(composition.value_shape(a, 0) != () for a in anchors):
            return ()
        return tuple(s for s in composition.cell_sites if marginal_family(s) is not None)

    # ---- declared parameters -------------------------------------------------------------
    def variational_params(self, composition, n_cells: int,
                           n_genes: int) -> dict[str, VariationalParam]:
        declared = super().variational_params(composition, n_cells, n_genes)
        anchors = self.anchor_sites(composition)
        for site in self.coupled_cell_sites(composition):
            for name in site.param_names:         # replaced by the coupled factor's
                declared.pop(name)
            declared[loc_name(site)] = VariationalParam(CELL, (n_cells,), constraints.real)
            declared[scale_name(site)] = VariationalParam(CELL, (n_cells,),
                                                          constraints.positive)
            for anchor in anchors:
                declared[coupling_name(site, anchor)] = VariationalParam(
                    CELL, (n_cells,), constraints.real)
        return declared

    def _cell_params(self, composition, site: Site, get) -> tuple:
        """``loc (C,)``, ``scale (C,)`` and couplings ``(C, n_a)`` of a coupled site."""
        anchors = self.anchor_sites(composition)
        coupling = jnp.stack([get(coupling_name(site, a)) for a in anchors], axis=-1)
        return get(loc_name(site)), get(scale_name(site)), coupling

    # ---- the guide -----------------------------------------------------------------------
    def sample_joint_cell_sites(self, composition, n_cells: int, n_genes: int,
                                batch_size: int | None, anchor_eps) -> None:
        coupled = self.coupled_cell_sites(composition)
        if not coupled:
            return self.sample_cell_sites(composition, n_cells, n_genes, batch_size)
        declared = self.variational_params(composition, n_cells, n_genes)

        def get(name):
            return numpyro.param(name, declared[name].default(),
                                 constraint=declared[name].constraint)

        cell_args = {}
        for site in composition.cell_sites:
            if site in coupled:
                cell_args[site.name] = self._cell_params(composition, site, get)
            else:
                cell_args[site.name] = tuple(get(name) for name in site.param_names)
        with numpyro.plate("cells", n_cells, subsample_size=batch_size) as idx:
            for site in composition.cell_sites:
                args = cell_args[site.name]
                if batch_size is not None:
                    args = tuple(a[idx] for a in args)
                if site not in coupled:
                    numpyro.sample(site.name, site.family.make(*args))
                    continue
                loc, scale, coupling = args
                # The ridge: the cell's location follows the anchors' standardized draw.
                shifted = loc + jnp.sum(coupling * anchor_eps, axis=-1)
                numpyro.sample(site.name, marginal_family(site).make(shifted, scale))
        return None

    # ---- the fitted posterior --------------------------------------------------------------
    def joint_marginals(self, composition, params: dict) -> dict:
        marginals = super().joint_marginals(composition, params)

        def get(name):
            return jnp.asarray(params[name])

        for site in self.coupled_cell_sites(composition):
            loc, scale, coupling = self._cell_params(composition, site, get)
            sd = jnp.sqrt(scale**2 + jnp.sum(coupling**2, axis=-1))
            marginals[site.name] = marginal_family(site).make(loc, sd)
        return marginals

    # ---- starting values -------------------------------------------------------------------
    def initial_params(self, composition, values: dict, concentrations: dict) -> dict:
        params = super().initial_params(composition, values, concentrations)
        anchors = self.anchor_sites(composition)
        for site in self.coupled_cell_sites(composition):
            for name in site.param_names:
                params.pop(name)
            # Uncoupled at the start, as wide as a mean-field factor (same variance in the
            # unconstrained coordinate, so the concentration changes with the family).
            value, marginal = values[site.name], marginal_family(site)
            variance = variance_for_concentration(site.family, value, concentrations[site.name])
            concentration = (concentrations[site.name] if variance is None else
                             concentration_for_variance(marginal, value, variance))
            loc, scale = marginal.init_args(jnp.asarray(value, jnp.float32), concentration)
            params[loc_name(site)] = jnp.asarray(loc, jnp.float32)
            params[scale_name(site)] = jnp.asarray(scale, jnp.float32)
            for anchor in anchors:
                params[coupling_name(site, anchor)] = jnp.zeros(jnp.shape(loc), jnp.float32)
        return params
