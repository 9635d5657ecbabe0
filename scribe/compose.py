"""Compose a model, guide and posterior from likelihood x parameterization (x mixture).

One :class:`Composition` serves every model type built from a
:class:`~scribe.Likelihood` with every registered parameterization: the likelihood
declares its latents, the parameterization supplies the sites for them, and the
mixture wrapper adds the component axis and the weights. The guide, its variational
parameters and the posterior marginals come from the configured
:class:`~scribe.guide_family.GuideFamily`.
"""

from __future__ import annotations

import difflib

import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import Distribution

from scribe import plugins
from scribe.anchoring import capture_anchor
from scribe.counts import SparseCounts
from scribe.families import validate_prior_args
from scribe.initial_widths import site_concentrations
from scribe.likelihood import PROBABILITY
from scribe.observation import CellCounts
from scribe.parameterization import CELL, COMPONENT, GENE, SHARED, Site
from scribe.shard.counts import ShardedCounts
from scribe.shard.observe import ShardedCellCounts


class Composition:
    """The model, guide and variational posterior of a composed model type.

    Parameters
    ----------
    model_config : ModelConfig
        Its model type must have been built with ``ModelType.from_likelihood``.
    """

    def __init__(self, model_config, check_priors: bool = True):
        spec = plugins.lookup_model_type(model_config.model_type)
        if spec.likelihood is None:
            raise ValueError(f"model type '{spec.name}' is not composed from a likelihood")
        self.config = model_config
        self.likelihood = spec.likelihood
        self.mixture = spec.mixture
        self.n_components = model_config.n_components
        parameterization = plugins.lookup_parameterization(model_config.parameterization)
        blocks = [parameterization.expression()]
        capture_blocks = {}
        for latent in self.likelihood.latents:
            if latent.kind == PROBABILITY:
                blocks.append(parameterization.probability(latent.name, latent.scope))
            else:
                blocks.append(parameterization.capture(latent.name))
                capture_blocks[latent.name] = blocks[-1]
        if self.mixture:
            blocks.append(parameterization.mixing())
        self.blocks = tuple(blocks)
        self.sites: dict[str, Site] = {}
        for block in self.blocks:
            for site in block.sites:
                if site.name in self.sites:
                    raise ValueError(f"site '{site.name}' is defined twice")
                self.sites[site.name] = site
        # Capture anchoring: the anchored sites' priors are centred per cell on L_c / M_0.
        m0 = model_config.mrna_total
        self.anchors = {} if m0 is None else {
            anchor.site.name: anchor for anchor in (
                capture_anchor(block, name, parameterization.name, m0, model_config.mrna_log_sd)
                for name, block in capture_blocks.items())}
        for name in self.anchors:
            if name in model_config.priors:
                raise ValueError(f"priors['{name}'] and mrna_per_cell both set the capture "
                                 f"prior; give one of them")
        # Validated once here: the model runs under jit, where checks cannot branch.
        user_priors = model_config.priors if check_priors else {}
        self.prior_params = {
            name: (site.family.default_prior if name not in user_priors
                   else validate_prior_args(site.family, model_config.priors[name], name,
                                            self.n_components))
            for name, site in self.sites.items()
        }
        self.global_sites = tuple(s for s in self.sites.values() if s.scope != CELL)
        self.guide_family = plugins.lookup_guide_family(model_config.guide_family)
        self.cell_sites = tuple(s for s in self.sites.values() if s.scope == CELL)

    # ---- shapes and priors -------------------------------------------------------------
    def value_shape(self, site: Site, n_genes: int) -> tuple[int, ...]:
        """Shape of a global site's value (cell sites live in the ``cells`` plate)."""
        k = self.n_components
        if site.scope == SHARED:
            return (k,) if self.mixture and self.config.component_specific_params else ()
        if site.scope == GENE:
            return (k, n_genes) if self.mixture else (n_genes,)
        if site.scope == COMPONENT:
            return (k,)
        raise ValueError(f"site '{site.name}' is per cell and has no global shape")

    def prior_args(self, site: Site) -> tuple:
        """Prior arguments of ``site``: the user's (validated) or the family default."""
        return self.prior_params[site.name]

    def distribution(self, site: Site, args, shape: tuple[int, ...]) -> Distribution:
        """``site``'s family with ``args`` broadcast to ``shape``, batch dims made event dims."""
        fam = site.family
        batch = shape[: len(shape) - fam.event_ndim]
        if fam.event_ndim:
            # A vector-valued family (Dirichlet) takes all values as one argument.
            args = [jnp.broadcast_to(jnp.ravel(_as_float(args)), shape)]
        else:
            args = [jnp.broadcast_to(_as_float(a), shape) for a in args]
        return fam.make(*args).to_event(len(batch)) if batch else fam.make(*args)

    def prior(self, site: Site, n_genes: int) -> Distribution:
        return self.distribution(site, self.prior_args(site), self.value_shape(site, n_genes))

    def canonical(self, values: dict) -> dict:
        """Canonical parameters from sampled-site values (unbatched)."""
        canonical = {}
        for block in self.blocks:
            canonical.update(block.to_canonical(values))
        return canonical

    # ---- model and guide ---------------------------------------------------------------
    def model(self, n_cells: int, n_genes: int, counts=None, batch_size: int | None = None):
        """The generative model.

        ``counts`` is a :class:`~scribe.counts.SparseCounts` when fitting (observed as
        one matrix: its exact total log-likelihood, scaled by ``C/B`` for a mini-batch),
        a dense ``(C, G)`` array (observed per cell), a
        :class:`~scribe.shard.counts.ShardedCounts` (cells split across devices: each
        device sums its own cells, :mod:`scribe.shard.observe`), or None (counts are
        sampled).

        With a capture anchor, each cell's capture prior is centred on its UMI total over
        ``M_0`` (:mod:`scribe.anchoring`); without counts (predictive sampling) the
        capture keeps the un-anchored prior, as there are no totals to centre it on.
        """
        values = {site.name: numpyro.sample(site.name, self.prior(site, n_genes))
                  for site in self.global_sites}
        sparse = isinstance(counts, SparseCounts)
        sharded = isinstance(counts, ShardedCounts)
        with numpyro.plate("cells", n_cells, subsample_size=batch_size) as idx:
            totals = self._cell_totals(counts, idx, batch_size) if self.anchors else None
            if totals is not None:
                # Centre nu_c on L_c / (M_0 retained): other losses (gates) also lower L_c.
                totals = totals / self._retained_fraction(values)
            for site in self.cell_sites:
                if totals is not None and site.name in self.anchors:
                    prior = self.anchors[site.name].prior(totals)
                else:
                    prior = self.distribution(site, self.prior_args(site), ())
                values[site.name] = numpyro.sample(site.name, prior)
            params = self.canonical(values)
            if not (sparse or sharded):
                if counts is not None and batch_size is not None:
                    counts = counts[idx]
                numpyro.sample("counts", CellCounts(self.likelihood, params,
                                                    (idx.shape[0], n_genes), self.mixture),
                               obs=counts)
        if sparse:
            batch = counts if batch_size is None else counts.take_cells(idx)
            with numpyro.handlers.scale(scale=n_cells / idx.shape[0]):
                numpyro.sample("counts", CellCounts(self.likelihood, params,
                                                    (idx.shape[0], n_genes), self.mixture,
                                                    joint=True), obs=batch)
        elif sharded:   # each device sums its own cells (scribe.shard.observe)
            batch = counts if batch_size is None else counts.take_cells(idx)
            with numpyro.handlers.scale(scale=n_cells / idx.shape[0]):
                numpyro.sample("counts", ShardedCellCounts(self.likelihood, params,
                                                           (idx.shape[0], n_genes),
                                                           self.mixture), obs=batch)

    def _retained_fraction(self, values: dict) -> jnp.ndarray:
        """The likelihood's retained fraction at the global sites' values (a scalar).

        In a mixture, the components' fractions averaged with the mixing weights.
        """
        canonical = {}
        for block in self.blocks:
            if all(site.name in values for site in block.sites):
                canonical.update(block.to_canonical(values))
        fraction = self.likelihood.retained_fraction(canonical)
        if self.mixture:
            fraction = jnp.sum(canonical["mixing_weights"] * fraction, axis=-1)
        return fraction

    @staticmethod
    def _cell_totals(counts, idx, batch_size: int | None) -> jnp.ndarray | None:
        """UMI totals ``(B,)`` of the cells in the plate (None without counts)."""
        if counts is None:
            return None
        if isinstance(counts, SparseCounts | ShardedCounts):
            totals = counts.cell_totals
        else:
            totals = jnp.sum(jnp.asarray(counts, jnp.float32), axis=-1)
        return totals if batch_size is None else totals[idx]

    def guide(self, n_cells: int, n_genes: int, counts=None, batch_size: int | None = None):
        """The guide of the configured guide family (``model_config.guide_family``)."""
        self.guide_family.guide(self, n_cells, n_genes, counts, batch_size)

    # ---- posterior ---------------------------------------------------------------------
    def posterior_distributions(self, params: dict) -> dict[str, Distribution]:
        """Variational marginal of every sampled site, batch-shaped like its value."""
        return self.guide_family.posterior_distributions(self, params)

    def variational_params(self, n_cells: int, n_genes: int) -> dict:
        """``{name: VariationalParam}`` (scope, shape, constraint) the guide declares."""
        return self.guide_family.variational_params(self, n_cells, n_genes)

    def initial_params(self, canonical_guess: dict, n_cells: int,
                       n_genes: int) -> dict[str, jnp.ndarray]:
        """Variational parameters centred on a guess of the canonical parameters.

        Each factor's width matches the number of counts informing its site (all counts
        for a shared site, a gene's cells, a cell's genes), within [50, 1e5]
        pseudo-observations.
        """
        informing = {SHARED: n_cells * n_genes / 50, GENE: n_cells / 2, CELL: n_genes / 2,
                     COMPONENT: n_cells}
        canonical_guess = dict(canonical_guess)
        log_variances = canonical_guess.pop("_log_var", None)
        sampled = {}
        for block in self.blocks:
            sampled.update(block.from_canonical(canonical_guess))
        concentrations = {name: min(max(informing[site.scope], 50.0), 1e5)
                          for name, site in self.sites.items()}
        if log_variances:
            # Capture models: Laplace widths per gene and cell (scribe.initial_widths).
            concentrations = site_concentrations(self.blocks, self.sites, canonical_guess,
                                                 log_variances, concentrations)
        return self.guide_family.initial_params(self, sampled, concentrations)


def _as_float(value) -> jnp.ndarray:
    """Floating array: prior numbers in JAX's default float, parameters keep their dtype."""
    value = jnp.asarray(value)
    return value if jnp.issubdtype(value.dtype, jnp.floating) else value.astype(float)


def validated_priors(model_config) -> dict[str, tuple]:
    """Check ``model_config.priors`` against the composed sites; return all prior args.

    Raises
    ------
    ValueError
        A prior for a site the model does not have (naming the valid sites), or with
        the wrong number of values or values outside their support.
    """
    composition = Composition(model_config, check_priors=False)
    valid = sorted(composition.sites)
    for name in model_config.priors:
        if name not in composition.sites:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"prior given for '{name}', which model type '{model_config.model_type}' "
                f"with parameterization '{model_config.parameterization}' does not have. "
                f"Its sampled sites: {', '.join(valid)}{hint}"
            )
    return Composition(model_config).prior_params




def check_prior_shapes(model_config, n_genes: int) -> None:
    """Check the shapes of array-valued priors against the sites, once ``G`` is known.

    A prior argument may be a number or an array matching the trailing axes of the
    site's value: ``(G,)`` for a per-gene site (``(G,)`` or ``(K, G)`` in a mixture),
    ``(K,)`` for a component-specific shared site. Per-cell sites take numbers only.

    Raises
    ------
    ValueError
        An argument of another shape, naming the site, the argument and the shapes
        allowed.
    """
    if plugins.lookup_model_type(model_config.model_type).likelihood is None:
        return
    composition = Composition(model_config)
    for name in model_config.priors:
        site = composition.sites[name]
        args = composition.prior_params[name]
        if site.family.event_ndim or not any(np.ndim(a) for a in args):
            continue
        if site.scope == CELL:
            raise ValueError(f"prior for '{name}' is per cell: its arguments must be numbers, "
                             f"not arrays (capture priors per cell: use mrna_per_cell)")
        shape = composition.value_shape(site, n_genes)
        allowed = [shape[i:] for i in range(len(shape))]
        for arg_name, arg in zip(site.family.arg_names, args):
            if np.ndim(arg) and tuple(np.shape(arg)) not in allowed:
                raise ValueError(
                    f"prior for '{name}' ({site.family.name}): {arg_name} has shape "
                    f"{tuple(np.shape(arg))}; expected a number or an array of shape "
                    f"{' or '.join(map(str, allowed))} (the site's value is {shape} for "
                    f"{n_genes} genes)")
