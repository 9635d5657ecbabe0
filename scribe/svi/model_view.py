"""What the results object needs to know about a fitted model, independent of its plugin.

For composed model types the scopes of sites and canonical parameters come from the
composition; for other plugins' types they are inferred from shapes, and canonical
parameters are the model's ``numpyro.deterministic`` sites.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from scribe import plugins
from scribe.config import ModelConfig
from scribe.families import family_of
from scribe.parameterization import CELL, COMPONENT, GENE, SHARED


class ModelView:
    """Model-specific facts used by the generic analyses.

    Parameters
    ----------
    model_config : ModelConfig
    n_cells, n_genes : int
    """

    def __init__(self, model_config: ModelConfig, n_cells: int, n_genes: int):
        self.config, self.n_cells, self.n_genes = model_config, n_cells, n_genes
        self.spec = plugins.lookup_model_type(model_config.model_type)
        self.composition = None
        if self.spec.likelihood is not None:
            from scribe.compose import Composition

            self.composition = Composition(model_config)

    # ---- hooks ---------------------------------------------------------------------------
    def model(self):
        from scribe.svi.engine import resolve_model_and_guide

        return resolve_model_and_guide(self.config)[0]

    def guide(self):
        from scribe.svi.engine import resolve_model_and_guide

        return resolve_model_and_guide(self.config)[1]

    def posterior_distributions(self, params: dict) -> dict:
        found = plugins.get_plugin_manager().hook.scribe_posterior_distributions(
            model_config=self.config, params=params)
        if found is None:
            raise ValueError(f"no plugin provides posterior distributions for "
                             f"'{self.config.model_type}'")
        return found

    # ---- scopes --------------------------------------------------------------------------
    def site_scopes(self) -> dict[str, str]:
        """Scope of each sampled site."""
        if self.composition is not None:
            return {name: site.scope for name, site in self.composition.sites.items()}
        return {}

    def canonical_scopes(self) -> dict[str, str]:
        """Scope of each canonical quantity, derived ones included."""
        scopes = {"mixing_weights": COMPONENT, "p_hat": CELL}
        if self.spec.likelihood is not None:
            scopes.update(self.spec.likelihood.scopes())
        return scopes

    def param_scopes(self) -> dict[str, str]:
        """Scope of each variational parameter."""
        if self.composition is None:
            return {}
        declared = self.composition.variational_params(self.n_cells, self.n_genes)
        return {name: param.scope for name, param in declared.items()}

    def all_scopes(self) -> dict[str, str]:
        """Scope of every sampled site, canonical quantity and variational parameter."""
        return {**self.site_scopes(), **self.canonical_scopes(), **self.param_scopes()}

    def gene_axis_entries(self, values: dict, leading: int) -> set[str]:
        """Names in ``values`` whose last axis is genes (``leading`` = sample axes)."""
        scopes = self.all_scopes()
        names = set()
        for name, value in values.items():
            scope = scopes.get(name)
            if scope == GENE or (scope is None and jnp.ndim(value) > leading
                                 and jnp.shape(value)[-1] == self.n_genes):
                names.add(name)
        return names

    def component_axis_entries(self, values: dict, leading: int) -> set[str]:
        """Names in ``values`` with a component axis right after ``leading`` sample axes.

        ``p_hat`` carries its component axis last and is handled by the caller.
        """
        if not self.config.is_mixture:
            return set()
        scopes = self.all_scopes()
        names = set()
        for name, value in values.items():
            scope = scopes.get(name)
            ndim = jnp.ndim(value) - leading
            if scope == GENE or (scope == SHARED and ndim == 1):
                names.add(name)
        return names

    # ---- canonical parameters ----------------------------------------------------------
    def canonical(self, values: dict) -> dict:
        """Canonical (and derived) parameters from unbatched sampled-site values."""
        if self.composition is not None:
            canonical = self.composition.canonical(values)
            canonical.update(self.spec.likelihood.derived(canonical))
            return canonical
        # Other plugins: run the model with these values and read its deterministic sites.
        model = handlers.substitute(handlers.seed(self.model(), 0), data=values)
        trace = handlers.trace(model).get_trace(self.n_cells, self.n_genes)
        return {name: site["value"] for name, site in trace.items()
                if site["type"] == "deterministic"}

    def canonical_batched(self, samples: dict) -> dict:
        """:meth:`canonical` mapped over a leading sample axis (``lax.map``: bounded memory)."""
        sampled = {name: samples[name] for name in self.sampled_sites(samples)}
        return jax.lax.map(self.canonical, sampled)

    def sampled_sites(self, values: dict) -> list[str]:
        if self.composition is not None:
            return [name for name in self.composition.sites if name in values]
        return [name for name in values]


def distribution_mode_and_mean(distribution) -> tuple[np.ndarray, np.ndarray]:
    """Mode (NaN where not interior) and mean of a posterior distribution."""
    found = family_of(distribution)
    if found is None:
        raise ValueError(f"cannot take the mode of {type(distribution).__name__}")
    family, args = found
    return family.mode(*args), family.mean(*args)
