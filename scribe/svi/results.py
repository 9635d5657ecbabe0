"""``ScribeSVIResults``: a fitted variational posterior and the analyses on it."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro import handlers
from numpyro.infer import Predictive

from scribe.config import ModelConfig
from scribe.families import family_of
from scribe.parameterization import COMPONENT
from scribe.scipy_backend import to_scipy
from scribe.svi.model_view import ModelView, distribution_mode_and_mean

_DEFAULT_KEY = jax.random.PRNGKey(42)


def _split_distribution(distribution):
    """Nested lists of single-element distributions over the batch axes."""
    family, args = family_of(distribution)
    args = [jnp.asarray(a) for a in args]
    batch_shape = args[0].shape[: args[0].ndim - family.event_ndim]
    if not batch_shape:
        return distribution

    def build(index):
        if len(index) == len(batch_shape):
            return family.make(*(a[index] for a in args))
        return [build(index + (i,)) for i in range(batch_shape[len(index)])]

    return build(())


@dataclass
class ScribeSVIResults:
    """Results of SCRIBE variational inference: variational parameters, loss history,
    dataset dimensions, model configuration, optional AnnData metadata and samples.

    Parameters
    ----------
    params : dict
        Constrained variational parameters, ``<site>_<arg>``.
    loss_history : jax.Array, shape (n_steps,)
    n_cells, n_genes : int
    model_type : str
    model_config : ModelConfig
    prior_params : dict
        Prior arguments per sampled site.
    obs, var : pandas.DataFrame, optional
        Cell and gene metadata from the AnnData.
    uns : dict, optional
    n_obs, n_vars : int, optional
    posterior_samples : dict, optional
        Draws of sampled sites and canonical parameters, leading axis ``n_samples``.
    predictive_samples : jax.Array, optional
        Predictive counts ``(n_samples, n_cells, n_genes)``.
    n_components : int, optional
    """

    params: dict
    loss_history: jnp.ndarray
    n_cells: int
    n_genes: int
    model_type: str
    model_config: ModelConfig
    prior_params: dict[str, Any]
    obs: pd.DataFrame | None = None
    var: pd.DataFrame | None = None
    uns: dict | None = None
    n_obs: int | None = None
    n_vars: int | None = None
    posterior_samples: dict | None = None
    predictive_samples: dict | None = None
    n_components: int | None = None

    # ---- construction ----------------------------------------------------------------
    def __post_init__(self) -> None:
        """Validate model configuration and parameters."""
        if not isinstance(self.model_config, ModelConfig):
            raise TypeError(f"model_config must be a scribe.ModelConfig, got "
                            f"{type(self.model_config).__name__}")
        if self.model_type != self.model_config.model_type:
            raise ValueError(f"model_type '{self.model_type}' does not match the model "
                             f"configuration's '{self.model_config.model_type}'")
        if self.n_components is None:
            self.n_components = self.model_config.n_components
        if self.n_components != self.model_config.n_components:
            raise ValueError(f"n_components={self.n_components} does not match the model "
                             f"configuration's {self.model_config.n_components}")
        self.n_cells, self.n_genes = int(self.n_cells), int(self.n_genes)
        self.n_obs = self.n_cells if self.n_obs is None else self.n_obs
        self.n_vars = self.n_genes if self.n_vars is None else self.n_vars
        for frame, size, what in ((self.obs, self.n_cells, "obs"), (self.var, self.n_genes, "var")):
            if frame is not None and len(frame) != size:
                raise ValueError(f"{what} has {len(frame)} rows, expected {size}")
        self._view = ModelView(self.model_config, self.n_cells, self.n_genes)
        composition = self._view.composition
        if composition is not None:
            expected = {name for site in composition.sites.values() for name in site.param_names}
            missing = expected - set(self.params)
            if missing:
                raise ValueError(f"params lack {', '.join(sorted(missing))} required by "
                                 f"'{self.model_type}' ({self.model_config.parameterization})")
            for site in composition.sites.values():
                shape = ((self.n_cells,) if site.scope == "cell"
                         else composition.value_shape(site, self.n_genes))
                for name in site.param_names:
                    if tuple(jnp.shape(self.params[name])) != shape:
                        raise ValueError(f"param '{name}' has shape "
                                         f"{tuple(jnp.shape(self.params[name]))}, expected {shape}")

    @classmethod
    def from_anndata(cls, adata, params: dict, loss_history: jnp.ndarray,
                     model_config: ModelConfig, **kwargs) -> ScribeSVIResults:
        """Create results carrying ``obs``, ``var`` and ``uns`` (copies) of an AnnData."""
        kwargs.setdefault("prior_params", {})
        kwargs.setdefault("n_components", model_config.n_components)
        return cls(
            params=params, loss_history=loss_history, n_cells=adata.n_obs,
            n_genes=adata.n_vars, model_type=model_config.model_type,
            model_config=model_config, obs=adata.obs.copy(), var=adata.var.copy(),
            uns=copy.deepcopy(dict(adata.uns)), n_obs=adata.n_obs, n_vars=adata.n_vars, **kwargs)

    # ---- distributions and point estimates -------------------------------------------
    def get_distributions(self, backend: str = "numpyro", split: bool = False) -> dict[str, Any]:
        """Variational distribution of every sampled site.

        Parameters
        ----------
        backend : {"numpyro", "scipy"}
        split : bool, default False
            Return (nested) lists of single-element distributions instead of batched ones.
        """
        if backend not in ("numpyro", "scipy"):
            raise ValueError(f"backend must be 'numpyro' or 'scipy', got {backend!r}")
        distributions = self._view.posterior_distributions(self.params)
        if split:
            distributions = {k: _split_distribution(d) for k, d in distributions.items()}
        if backend == "scipy":
            distributions = {k: jax.tree.map(to_scipy, d, is_leaf=lambda x: not isinstance(x, list))
                             for k, d in distributions.items()}
        return distributions

    def get_map(self, use_mean: bool = False, canonical: bool = True,
                verbose: bool = True) -> dict[str, jnp.ndarray]:
        """Mode of each variational distribution (SPEC section 3).

        Parameters
        ----------
        use_mean : bool, default False
            Replace undefined modes (NaN) by means (a Dirichlet as a whole vector).
        canonical : bool, default True
            Add ``p``, ``r``, ``gate``, ``p_capture``, ``mixing_weights``, ``p_hat``.
        verbose : bool, default True
            Warn when modes were replaced.
        """
        estimates, replaced = {}, []
        for name, distribution in self._view.posterior_distributions(self.params).items():
            mode, mean = distribution_mode_and_mean(distribution)
            if use_mean and bool(jnp.any(jnp.isnan(mode))):
                replaced.append(name)
                mode = jnp.where(jnp.isnan(mode), mean, mode)
            estimates[name] = mode
        if replaced and verbose:
            warnings.warn(f"undefined modes replaced by means for: {', '.join(replaced)}",
                          UserWarning, stacklevel=2)
        if canonical:
            estimates.update(self._view.canonical(estimates))
        return estimates

    # ---- sampling -----------------------------------------------------------------------
    def get_posterior_samples(self, rng_key=_DEFAULT_KEY, n_samples: int = 100,
                              store_samples: bool = True) -> dict:
        """Draw from the variational posterior; adds canonical parameters to the draws.

        Returns
        -------
        dict
            ``{name: array (n_samples, ...)}`` for sampled sites and canonical parameters.
        """
        draws = Predictive(self._view.guide(), params=self.params, num_samples=n_samples)(
            rng_key, self.n_cells, self.n_genes)
        samples = {**self._view.canonical_batched(draws), **draws}
        if store_samples:
            self.posterior_samples = dict(samples)
        return samples

    def _predict(self, samples: dict, rng_key, batch_size: int | None) -> jnp.ndarray:
        model = self._view.model()
        sampled = {k: samples[k] for k in self._view.sampled_sites(samples)}
        n_draws = next(iter(sampled.values())).shape[0]

        def one_draw(args):
            key, values = args
            conditioned = handlers.substitute(handlers.seed(model, key), data=values)
            trace = handlers.trace(conditioned).get_trace(self.n_cells, self.n_genes)
            return trace["counts"]["value"]

        keys = jax.random.split(rng_key, n_draws)
        return jax.lax.map(one_draw, (keys, sampled), batch_size=batch_size)

    def get_predictive_samples(self, rng_key=_DEFAULT_KEY, batch_size: int | None = None,
                               store_samples: bool = True) -> jnp.ndarray:
        """Predictive counts ``(n_samples, n_cells, n_genes)`` from the stored posterior draws.

        ``batch_size`` posterior draws are simulated at a time (None: all at once); the
        result does not depend on it.
        """
        if self.posterior_samples is None:
            raise ValueError("no posterior samples: call get_posterior_samples() first")
        predictive = self._predict(self.posterior_samples, rng_key, batch_size)
        if store_samples:
            self.predictive_samples = predictive
        return predictive

    def get_ppc_samples(self, rng_key=_DEFAULT_KEY, n_samples: int = 100,
                        batch_size: int | None = None, store_samples: bool = True) -> dict:
        """Posterior draws and predictive counts, each stage with its own key.

        Returns
        -------
        dict
            ``parameter_samples`` (dict) and ``predictive_samples`` ``(n_samples, C, G)``.
        """
        key_posterior, key_predictive = jax.random.split(rng_key)
        samples = self.get_posterior_samples(key_posterior, n_samples, store_samples)
        predictive = self._predict(samples, key_predictive, batch_size)
        if store_samples:
            self.predictive_samples = predictive
        return {"parameter_samples": samples, "predictive_samples": predictive}

    # ---- subsetting -----------------------------------------------------------------------
    def _gene_indices(self, index) -> np.ndarray:
        positions = np.arange(self.n_genes)
        if not isinstance(index, bool | slice | list) and np.ndim(index) == 0 \
                and np.issubdtype(np.asarray(index).dtype, np.integer):
            index = int(index)
        if isinstance(index, int | np.integer) and not isinstance(index, bool):
            if not -self.n_genes <= index < self.n_genes:
                raise IndexError(f"gene index {index} out of range for {self.n_genes} genes")
            return positions[[int(index)]]
        if isinstance(index, slice):
            return positions[index]
        array = np.asarray(index)
        if isinstance(index, list) and not index:
            array = np.zeros(0, dtype=int)
        if array.dtype == bool:
            if array.shape != (self.n_genes,):
                raise IndexError(f"boolean gene mask has shape {array.shape}, expected "
                                 f"({self.n_genes},)")
            return np.flatnonzero(array)
        if array.ndim == 1 and np.issubdtype(array.dtype, np.integer):
            if array.size and (array.max() >= self.n_genes or array.min() < -self.n_genes):
                raise IndexError(f"gene indices out of range for {self.n_genes} genes")
            return positions[array]
        raise TypeError(f"genes are indexed by int, slice, boolean mask or list of ints, "
                        f"not {type(index).__name__}")

    def __getitem__(self, index) -> ScribeSVIResults:
        """Results restricted to a subset of genes (an int keeps a gene axis of length 1)."""
        genes = self._gene_indices(index)
        take = self._view.gene_axis_entries

        def subset(values: dict | None, leading: int):
            if values is None:
                return None
            chosen = take(values, leading)
            return {k: (v[..., genes] if k in chosen else v) for k, v in values.items()}

        predictive = self.predictive_samples
        return dataclasses.replace(
            self,
            params=subset(self.params, 0),
            n_genes=len(genes),
            n_vars=len(genes),
            var=None if self.var is None else self.var.iloc[genes],
            posterior_samples=subset(self.posterior_samples, 1),
            predictive_samples=None if predictive is None else predictive[..., genes],
        )

    def get_component(self, component_index: int) -> ScribeSVIResults:
        """The results of one mixture component, as a non-mixture model of the base type."""
        if not self.model_config.is_mixture:
            raise ValueError(f"get_component needs a mixture model; '{self.model_type}' is not")
        k = int(component_index)
        if not 0 <= k < self.n_components:
            raise IndexError(f"component {component_index} out of range for "
                             f"{self.n_components} components")
        view = self._view
        dropped = {name for name, scope in view.all_scopes().items() if scope == COMPONENT}

        def select(values: dict | None, leading: int):
            if values is None:
                return None
            chosen = view.component_axis_entries(values, leading)
            out = {}
            for name, value in values.items():
                if name in dropped:
                    continue
                if name == "p_hat" and jnp.ndim(value) == leading + 2:
                    value = value[..., k]
                elif name in chosen:
                    value = value[(slice(None),) * leading + (k,)]
                out[name] = value
            return out

        config = ModelConfig(
            model_type=self.model_config.base_model_type,
            parameterization=self.model_config.parameterization,
            priors={n: v for n, v in self.model_config.priors.items() if n not in dropped},
        )
        return dataclasses.replace(
            self,
            params=select(self.params, 0),
            model_type=config.model_type,
            model_config=config,
            prior_params={n: v for n, v in self.prior_params.items() if n not in dropped},
            posterior_samples=select(self.posterior_samples, 1),
            predictive_samples=None,
            n_components=None,
        )
