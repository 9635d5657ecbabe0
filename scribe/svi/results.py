"""``ScribeSVIResults``: a fitted variational posterior and the analyses on it."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scribe.config import ModelConfig
from scribe.families import family_of
from scribe.likelihood import CAPTURE
from scribe.parameterization import CELL, COMPONENT, GENE
from scribe.scipy_backend import to_scipy
from scribe.svi import idata, layout, nested
from scribe.svi.analyses import AnalysesMixin
from scribe.svi.biology import BiologyMixin
from scribe.svi.collapse import CollapseRecordMixin
from scribe.svi.metadata import PRIORS_ATTR
from scribe.svi.model_view import distribution_mode_and_mean
from scribe.svi.run_record import RunRecordMixin
from scribe.svi.storage import (
    CONFIG_ATTR,
    LOG_LIKELIHOOD,
    OBSERVED,
    PARAMS,
    POSTERIOR,
    PREDICTIVE,
    ResultsStore,
)
from scribe.validation import (
    check_bool,
    check_choice,
    check_int,
    check_optional_positive_int,
    check_positive_int,
    check_rng_key,
)

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


def _frame_copy(frame):
    """A pandas copy of ``obs`` / ``var``; a lazy AnnData's (anndata.experimental.read_lazy)
    are read into memory (their ``len`` is not the number of rows)."""
    return frame.to_memory() if hasattr(frame, "to_memory") else frame.copy()


class ScribeSVIResults(AnalysesMixin, BiologyMixin, RunRecordMixin, CollapseRecordMixin,
                       ResultsStore):
    """Results of SCRIBE variational inference: variational parameters, loss history,
    dataset dimensions, model configuration, optional AnnData metadata and samples.

    Everything is stored in an ``arviz.InferenceData``, ``results.idata`` (layout in
    :mod:`scribe.svi.storage`); the attributes below are views of it.

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
    converged : bool, optional
        Whether the fit met its stopping rule (keyword only; None: not recorded).

    Attributes
    ----------
    n_steps_run : int
        Steps the fit ran (``len(loss_history)``).
    converged : bool or None
    """

    @classmethod
    def from_anndata(cls, adata, params: dict, loss_history: jnp.ndarray,
                     model_config: ModelConfig, **kwargs) -> ScribeSVIResults:
        """Create results carrying ``obs``, ``var`` and ``uns`` (copies) of an AnnData.

        ``kwargs`` are the constructor's other arguments (``prior_params``,
        ``posterior_samples``, ``converged``, ...). Those the AnnData and the
        configuration determine (``model_type``, ``n_components``, ``n_cells``,
        ``n_genes``, ``n_obs``, ``n_vars``, ``obs``, ``var``, ``uns``) may be given too,
        but must agree with them.

        Raises
        ------
        ValueError
            A keyword that disagrees with the AnnData or the configuration.
        """
        derived = {"model_type": model_config.model_type,
                   "n_components": model_config.n_components,
                   "n_cells": adata.n_obs, "n_genes": adata.n_vars,
                   "n_obs": adata.n_obs, "n_vars": adata.n_vars}
        for name, value in derived.items():
            given = kwargs.pop(name, value)
            if given != value:
                raise ValueError(f"from_anndata: {name}={given!r} disagrees with "
                                 f"{value!r} from the AnnData / model_config")
        kwargs.setdefault("prior_params", {})
        kwargs.setdefault("obs", _frame_copy(adata.obs))
        kwargs.setdefault("var", _frame_copy(adata.var))
        kwargs.setdefault("uns", copy.deepcopy(dict(adata.uns)))
        return cls(params=params, loss_history=loss_history, model_config=model_config,
                   **derived, **kwargs)

    # ---- distributions and point estimates -------------------------------------------
    def get_distributions(self, backend: str = "numpyro", split: bool = False) -> dict[str, Any]:
        """Variational distribution of every sampled site.

        Parameters
        ----------
        backend : {"numpyro", "scipy"}
        split : bool, default False
            Return (nested) lists of single-element distributions instead of batched ones.
        """
        check_choice("backend", backend, ("numpyro", "scipy"))
        split = check_bool("split", split)
        distributions = self._view.posterior_distributions(self.params)
        if split:
            distributions = {k: _split_distribution(d) for k, d in distributions.items()}
        if backend == "scipy":
            distributions = {k: jax.tree.map(to_scipy, d, is_leaf=lambda x: not isinstance(x, list))
                             for k, d in distributions.items()}
        return distributions

    def get_map(self, use_mean: bool = False, canonical: bool = True,
                verbose: bool = True, point: str = "mode") -> dict[str, jnp.ndarray]:
        """Point estimates: the mode (or mean) of each variational distribution (SPEC 3).

        Parameters
        ----------
        use_mean : bool, default False
            With ``point="mode"``: replace undefined modes (NaN) by means (a Dirichlet as
            a whole vector).
        canonical : bool, default True
            Add ``p``, ``r``, ``gate``, ``p_capture``, ``mixing_weights``, ``p_hat``,
            computed from the sampled sites' estimates.
        verbose : bool, default True
            Warn when modes were replaced.
        point : {"mode", "mean"}, default "mode"
            ``"mode"``: each factor's mode (the MAP of that factor alone); ``"mean"``:
            each factor's mean, for every site (``use_mean`` is then moot).

        Returns
        -------
        dict
            ``{name: array}`` with the sites' shapes (``(G,)``, ``(K, G)``, ``(C,)``...).

        Notes
        -----
        Mode or mean. A LogNormal factor ``LogNormal(loc, scale)`` (``r``, ``mu``) has
        mode ``exp(loc - scale**2)``, median ``exp(loc)`` and mean
        ``exp(loc + scale**2 / 2)``: the mode is below the mean by the factor
        ``exp(-1.5 scale**2)``. Each factor's mode is the most probable value of that
        parameter alone; a quantity built from several (the NB mean
        ``r (1 - p) / p``, or ``r`` from ``mu`` and ``p``) evaluated at the modes is not
        the mode, nor the mean, of that quantity. Use ``point="mean"`` when the estimate
        feeds an expectation (expected counts, a comparison with data means, plug-in
        predictions): the mean is the estimate that minimises squared error, and
        products of independent factors' means are the means of the products. The mode
        is the natural choice for a single most probable value, and where the factor is
        narrow (``scale`` of a few percent) the two agree to ``1.5 scale**2``. See
        docs/results.md, "Point estimates".

        A NaN is never returned silently: undefined modes (a Beta, BetaPrime or
        Dirichlet factor with a concentration <= 1) and non-finite parameters warn.

        What the counts identify: ``r`` (and ``gate``) per gene and, in capture models,
        ``p_hat`` per cell. In a capture model ``p`` and ``p_capture`` are identified
        separately only through the capture anchor (``scribe.fit(..., mrna_per_cell=...)``);
        without one (``self.capture_anchored`` is False) only the combination
        ``p_hat = p nu / (1 - p (1 - nu))`` is, and the split between ``p`` and
        ``p_capture`` reflects the priors and the starting point, not the data.
        """
        use_mean = check_bool("use_mean", use_mean)
        canonical = check_bool("canonical", canonical)
        verbose = check_bool("verbose", verbose)
        check_choice("point", point, ("mode", "mean"))
        if self.diverged:
            warnings.warn(f"these results come from a fit whose optimiser diverged at step "
                          f"{self.divergence_step}: the estimates are those of the last "
                          f"finite parameters, not of a fitted posterior; refit with a "
                          f"lower learning rate", RuntimeWarning, stacklevel=2)
        estimates, replaced = {}, []
        for name, distribution in self._view.posterior_distributions(self.params).items():
            mode, mean = distribution_mode_and_mean(distribution)
            if point == "mean":
                mode = mean
            elif use_mean and bool(jnp.any(jnp.isnan(mode))):
                replaced.append(name)
                mode = jnp.where(jnp.isnan(mode), mean, mode)
            estimates[name] = mode
        if replaced and verbose:
            warnings.warn(f"undefined modes replaced by means for: {', '.join(replaced)}",
                          UserWarning, stacklevel=2)
        if canonical:
            estimates.update(self._view.canonical(estimates))
        self._warn_nan(estimates)
        return estimates

    def _warn_nan(self, estimates: dict) -> None:
        """Warn (always) when point estimates hold NaN, with the cause."""
        nan = [name for name, value in estimates.items()
               if bool(jnp.any(jnp.isnan(jnp.asarray(value, dtype=float))))]
        if not nan:
            return
        finite = all(bool(jnp.all(jnp.isfinite(v))) for v in self.params.values()
                     if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact))
        cause = ("their modes are undefined (a Beta, BetaPrime or Dirichlet factor with a "
                 "concentration <= 1 has no interior mode); pass use_mean=True or "
                 "point='mean'") if finite else (
                 "the variational parameters are not finite (the optimiser diverged); "
                 "refit with a lower learning rate")
        warnings.warn(f"get_map returns NaN for {', '.join(nan)}: {cause}", RuntimeWarning,
                      stacklevel=3)

    @property
    def capture_anchored(self) -> bool | None:
        """Whether ``p`` and ``p_capture`` were separately identified by a capture anchor.

        True when the fit had ``mrna_per_cell``; False for a capture model fitted without
        one (then only ``p_hat`` and ``r`` are identified by the counts; ``p`` and
        ``p_capture`` are not); None for model types without a per-cell capture.
        """
        spec = self._view.spec
        if spec.likelihood is None or not any(
                latent.kind == CAPTURE for latent in spec.likelihood.latents):
            return None
        return self.model_config.mrna_per_cell is not None

    # ---- sampling -----------------------------------------------------------------------
    def get_posterior_samples(self, rng_key=_DEFAULT_KEY, n_samples: int = 100,
                              store_samples: bool = True) -> dict:
        """Draw from the variational posterior; adds canonical parameters to the draws.

        The sampler is compiled once per ``n_samples`` and results object.

        Parameters
        ----------
        rng_key : jax PRNG key, default PRNGKey(42)
        n_samples : int, default 100
            A positive integer (numpy integers accepted; floats, bools, 0 and negatives
            are errors).
        store_samples : bool, default True
            Keep the draws in ``posterior_samples`` (the ``posterior`` group).

        Raises
        ------
        TypeError, ValueError
            An argument of the wrong type or range, naming it.

        Returns
        -------
        dict
            ``{name: array (n_samples, ...)}`` for sampled sites and canonical parameters.
        """
        check_rng_key("rng_key", rng_key)
        n_samples = check_positive_int("n_samples", n_samples)
        store_samples = check_bool("store_samples", store_samples)
        samples = self._samplers.posterior(self.params, rng_key, n_samples)
        if store_samples:
            self.posterior_samples = samples
        return dict(samples)

    def _predict(self, samples: dict, rng_key, batch_size: int | None) -> jnp.ndarray:
        sampled = {k: samples[k] for k in self._view.sampled_sites(samples)}
        return self._samplers.predictive(sampled, rng_key, batch_size)

    def get_predictive_samples(self, rng_key=_DEFAULT_KEY, batch_size: int | None = None,
                               store_samples: bool = True) -> jnp.ndarray:
        """Predictive counts ``(n_samples, n_cells, n_genes)`` from the stored posterior draws.

        ``batch_size`` posterior draws are simulated at a time (None: all at once); the
        result does not depend on it.
        """
        check_rng_key("rng_key", rng_key)
        batch_size = check_optional_positive_int("batch_size", batch_size)
        store_samples = check_bool("store_samples", store_samples)
        samples = self.posterior_samples
        if samples is None:
            raise ValueError("no posterior samples: call get_posterior_samples() first")
        predictive = self._predict(samples, rng_key, batch_size)
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
        check_rng_key("rng_key", rng_key)
        n_samples = check_positive_int("n_samples", n_samples)
        batch_size = check_optional_positive_int("batch_size", batch_size)
        store_samples = check_bool("store_samples", store_samples)
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
        """Results restricted to a subset of genes (an int keeps a gene axis of length 1).

        Every group follows along its ``gene`` dim; the per-cell log-likelihood, a sum
        over all genes, is dropped.
        """
        genes = self._gene_indices(index)
        groups = {}
        for name in idata.group_names(self.idata):
            dataset = self._group(name)
            if name == LOG_LIKELIHOOD:
                continue
            if name == OBSERVED:
                counts = self.observed_counts[:, genes]
                dataset = layout.observed_dataset(counts, self._axes_for(genes))
            elif name == PREDICTIVE:
                dataset = layout.predictive_dataset(
                    dataset["counts"].values[0][..., genes], self._axes_for(genes))
            else:
                dataset = dataset.isel({GENE: genes}, missing_dims="ignore")
            groups[name] = dataset
        attrs = dict(idata.container_attrs(self._idata), n_vars=len(genes))
        return self._from_container(idata.make_container(groups, attrs))

    def _axes_for(self, genes: np.ndarray) -> layout.Axes:
        axes = self._axes()
        return layout.Axes(axes.coords[CELL], axes.coords[GENE][genes], self.n_components,
                           axes.scopes)

    def get_component(self, component_index: int) -> ScribeSVIResults:
        """The results of one mixture component, as a non-mixture model of the base type.

        Variables along ``component`` keep component ``k``; mixture-only quantities (the
        mixing weights and their parameters), predictive counts and the log-likelihood are
        dropped.
        """
        if not self.model_config.is_mixture:
            raise ValueError(f"get_component needs a mixture model; '{self.model_type}' is not")
        k = check_int("component_index", component_index)
        if not 0 <= k < self.n_components:
            raise IndexError(f"component {component_index} out of range for "
                             f"{self.n_components} components")
        dropped = {name for name, scope in self._view.all_scopes().items()
                   if scope == COMPONENT}
        groups = {}
        for name in idata.group_names(self.idata):
            if name in (PREDICTIVE, LOG_LIKELIHOOD):
                continue
            dataset = self._group(name)
            if name in (POSTERIOR, PARAMS):
                dataset = dataset.drop_vars(dropped & set(dataset.data_vars))
            if COMPONENT in dataset.dims:
                dataset = dataset.isel({COMPONENT: k}).drop_vars(COMPONENT)
            groups[name] = dataset
        config = ModelConfig(
            model_type=self.model_config.base_model_type,
            parameterization=self.model_config.parameterization,
            priors={n: v for n, v in self.model_config.priors.items() if n not in dropped},
            guide_family=self.model_config.guide_family,
        )
        attrs = dict(idata.container_attrs(self._idata))
        attrs[CONFIG_ATTR] = nested.dumps(config.to_dict(), "model_config")
        attrs[PRIORS_ATTR] = nested.dumps(
            {n: v for n, v in self.prior_params.items() if n not in dropped}, "prior_params")
        return self._from_container(idata.make_container(groups, attrs))
