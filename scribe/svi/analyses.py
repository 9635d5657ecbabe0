"""Analyses on a fitted posterior: log-likelihoods, assignments, normalisation, divergences.

:class:`AnalysesMixin` is inherited by :class:`~scribe.svi.ScribeSVIResults`. Every
method works for any model type, plugins included: types composed from a likelihood are
evaluated on the non-zeros of the counts, others through their elementwise ``log_prob``
on dense blocks of ``batch_size`` cells (:mod:`scribe.svi.loglik`).

Conventions (SPEC section 4), with ``l_cgk = log f(x_cg | theta_k)``:

* by ``cell``: ``L_ck = sum_g l_cgk + log w_k``; by ``gene``: ``L_gk = sum_c l_cgk +
  log w_k`` (the gene's counts in all cells, all drawn from component ``k``, weighted by
  its prior probability ``w_k``). Without ``split_components``: ``logsumexp_k``.
* ``weights`` ``(G,)``: ``"multiplicative"`` uses ``w_g l_cgk``, ``"additive"``
  ``l_cgk + w_g``, in both modes.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from scribe.cell_blocks import is_lazy_counts
from scribe.counts import SparseCounts
from scribe.counts_cache import COUNTS_CACHE
from scribe.data import prepare_counts
from scribe.parameterization import GENE
from scribe.scipy_backend import to_scipy
from scribe.shard.devices import resolve_devices
from scribe.stats import (
    assignment_entropy,
    assignment_probabilities,
    dirichlet_normalize,
    fit_dirichlet_minka,
    pairwise_component_divergences,
)
from scribe.svi.assignment_nan import warn_nan_probabilities
from scribe.svi.loglik import ADDITIVE, MULTIPLICATIVE, LogLikelihoodEvaluator
from scribe.svi.stream_loglik import streamed_log_likelihood
from scribe.validation import (
    check_bool,
    check_choice,
    check_int,
    check_optional_positive_int,
    check_positive_int,
    check_rng_key,
)

_DEFAULT_KEY = jax.random.PRNGKey(42)
_RETURN_BY = ("cell", "gene")


def _cast_draws(draws: dict, dtype) -> dict:
    """Floating draws in ``dtype`` (new arrays; the caller's are not modified)."""
    return {k: (jnp.asarray(v, dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)
                else jnp.asarray(v)) for k, v in draws.items()}


class AnalysesMixin:
    """Analyses of :class:`~scribe.svi.ScribeSVIResults` (see the module doc)."""

    # ---- helpers ------------------------------------------------------------------------
    def _evaluator(self) -> LogLikelihoodEvaluator:
        """The compiled log-likelihood evaluator of this results object (kept across calls)."""
        evaluator = self.__dict__.get("_loglik_evaluator")
        if evaluator is None or evaluator.view is not self._view:
            evaluator = LogLikelihoodEvaluator(self._view)
            self.__dict__["_loglik_evaluator"] = evaluator
        return evaluator

    def _sparse_counts(self, counts, cells_axis: int, dtype, draws: dict) -> SparseCounts:
        """Validate the user's counts and build their :class:`SparseCounts`, once per
        counts object and content (:mod:`scribe.counts_cache`)."""

        def build() -> SparseCounts:
            matrix, _ = prepare_counts(counts, cells_axis=cells_axis, warn_zero_genes=False)
            return SparseCounts.from_matrix(matrix, dtype=np.dtype(dtype))

        sparse = COUNTS_CACHE.get(counts, cells_axis, dtype, build)
        n_cells, n_genes = sparse.shape
        if n_genes != self.n_genes:
            raise ValueError(f"counts have {n_genes} genes but the model was fitted to "
                             f"{self.n_genes} genes")
        evaluator = self._evaluator()
        per_cell = evaluator.cell_names(
            {n: draws[n] for n in evaluator.parameter_names(draws)}, leading=1)
        if per_cell and n_cells != self.n_cells:
            raise ValueError(f"counts have {n_cells} cells but the model has per-cell "
                             f"parameters ({', '.join(sorted(per_cell))}) for "
                             f"{self.n_cells} cells")
        return sparse

    def _require_mixture(self, method: str) -> None:
        if not self.model_config.is_mixture:
            raise ValueError(f"{method} needs a mixture model; '{self.model_type}' is not one")

    def _require_samples(self, method: str) -> dict:
        samples = self.posterior_samples
        if samples is None:
            raise ValueError(f"{method} needs posterior samples: call "
                             f"get_posterior_samples() first")
        return samples

    def _check_weights(self, weights, weight_type: str | None, dtype):
        if weight_type not in (None, MULTIPLICATIVE, ADDITIVE):
            raise ValueError(f"weight_type must be 'multiplicative' or 'additive', got "
                             f"{weight_type!r}")
        if weights is None:
            return None, None
        if weight_type is None:
            raise ValueError("weights were given without weight_type: pass "
                             "weight_type='multiplicative' or 'additive'")
        array = np.asarray(weights)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"weights must be numeric, got dtype {array.dtype}")
        if array.shape != (self.n_genes,):
            raise ValueError(f"weights must have shape ({self.n_genes},) (one per gene), "
                             f"got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("weights must be finite")
        return jnp.asarray(array, dtype), weight_type

    def _evaluate(self, counts, draws: dict, *, return_by: str, split: bool, weights,
                  weight_type, batch_size, cells_axis: int, dtype,
                  devices=None) -> jnp.ndarray:
        if return_by not in _RETURN_BY:
            raise ValueError(f"return_by must be 'cell' or 'gene', got {return_by!r}")
        if split and not self.model_config.is_mixture:
            raise ValueError(f"split_components needs a mixture model; '{self.model_type}' "
                             f"is not one")
        batch_size = check_optional_positive_int("batch_size", batch_size)
        weights, weight_type = self._check_weights(weights, weight_type, dtype)
        devices = resolve_devices(devices)
        if devices is not None:
            return self._evaluate_sharded(counts, draws, devices, return_by=return_by,
                                          split=split, weights=weights,
                                          weight_type=weight_type, batch_size=batch_size,
                                          cells_axis=cells_axis, dtype=dtype)
        if is_lazy_counts(counts):
            # On disk / lazy: read in blocks, never held whole (scribe.svi.stream_loglik).
            if cells_axis != 0:
                raise ValueError("counts read from disk must have cells as rows: "
                                 "cells_axis must be 0")
            return streamed_log_likelihood(
                self._evaluator(), counts, _cast_draws(draws, dtype), n_cells=self.n_cells,
                n_genes=self.n_genes, by=return_by, split=split, weights=weights,
                weight_type=weight_type, batch_size=batch_size, dtype=dtype)
        sparse = self._sparse_counts(counts, cells_axis, dtype, draws)
        draws = _cast_draws(draws, dtype)
        return self._evaluator()(sparse, draws, by=return_by, split=split, weights=weights,
                                 weight_type=weight_type, batch_size=batch_size)

    def _evaluate_sharded(self, counts, draws: dict, devices: tuple, *, return_by: str,
                          split: bool, weights, weight_type, batch_size, cells_axis: int,
                          dtype) -> jnp.ndarray:
        """:meth:`_evaluate` with the cells split across ``devices`` (scribe.shard)."""
        from scribe.shard import analyses as sharded
        from scribe.shard.devices import CellMesh

        if self._view.spec.likelihood is None:
            raise ValueError(f"devices: only model types composed from a likelihood are "
                             f"evaluated across devices, not '{self.model_type}'")
        matrix, _ = prepare_counts(counts, cells_axis=cells_axis, warn_zero_genes=False)
        n_cells, n_genes = matrix.shape
        if n_genes != self.n_genes:
            raise ValueError(f"counts have {n_genes} genes but the model was fitted to "
                             f"{self.n_genes} genes")
        evaluator = self._evaluator()
        if (evaluator.cell_names({n: draws[n] for n in evaluator.parameter_names(draws)},
                                 leading=1) and n_cells != self.n_cells):
            raise ValueError(f"counts have {n_cells} cells but the model has per-cell "
                             f"parameters for {self.n_cells} cells")
        if n_cells < len(devices):
            raise ValueError(f"devices={len(devices)} but the counts have only {n_cells} "
                             f"cells: each device needs at least one cell")
        draws = {k: (jnp.asarray(v, dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)
                     else jnp.asarray(v)) for k, v in draws.items()}
        return sharded.log_likelihood(evaluator, matrix, draws,
                                      CellMesh.create(devices, n_cells), by=return_by,
                                      split=split, weights=weights, weight_type=weight_type,
                                      batch_size=batch_size, dtype=dtype)

    @staticmethod
    def _drop_nan_draws(values: jnp.ndarray, ignore_nans: bool) -> jnp.ndarray:
        if not ignore_nans:
            return values
        bad = np.asarray(jnp.any(jnp.isnan(values.reshape(values.shape[0], -1)), axis=1))
        if bad.any():
            warnings.warn(f"dropped {int(bad.sum())} of {bad.size} posterior draws with NaN "
                          f"log-likelihoods", UserWarning, stacklevel=3)
            values = values[~bad]
        return values

    def _map_draw(self, use_mean: bool, verbose: bool) -> dict:
        """MAP canonical parameters with a leading draw axis of 1."""
        estimates = self.get_map(use_mean=use_mean, canonical=True, verbose=verbose)
        return {k: jnp.asarray(v)[None] for k, v in estimates.items()}

    # ---- log-likelihoods ----------------------------------------------------------------
    def log_likelihood(self, counts, batch_size: int | None = None, return_by: str = "cell",
                       cells_axis: int = 0, ignore_nans: bool = False,
                       split_components: bool = False, weights=None,
                       weight_type: str | None = None, dtype=jnp.float32,
                       devices=None) -> jnp.ndarray:
        """Log-likelihood of ``counts`` under each posterior draw (SPEC section 4).

        Parameters
        ----------
        counts : array, scipy sparse matrix or AnnData, shape (C, G) (``cells_axis=0``)
            A backed AnnData, zarr / h5py array or dask array (or an AnnData whose ``.X``
            is one) is read in blocks of cells and never held whole (docs/atlas.md);
            each call re-reads it.
        batch_size : int, optional
            Cells per block (memory bound); None: all cells at once, except that per-cell
            sums over more than 4 M non-zeros run in blocks of about that many (counts on
            disk: blocks of 10,000 cells, split into batches of about 4 M non-zeros). The
            result does not depend on it.
        return_by : {"cell", "gene"}
            Sum over genes (per cell) or over cells (per gene).
        cells_axis : {0, 1}
        ignore_nans : bool, default False
            Drop draws whose log-likelihoods contain NaN (with a warning).
        split_components : bool, default False
            Mixtures: keep the component axis (``log w_k`` included).
        weights : array (G,), optional
            Gene weights, applied as ``weight_type`` says.
        weight_type : {"multiplicative", "additive"}, optional
            ``w_g l_cgk`` or ``l_cgk + w_g``; required with ``weights``.
        dtype : jnp dtype, default float32
        devices : None, int or list of jax.Device, optional
            Split the cells across these devices (docs/scale.md), each evaluating its
            own cells; the result equals the single-device one to float rounding and is
            returned on one device. None: one device. Also accepted by
            ``log_likelihood_map`` and ``cell_type_probabilities[_map]``.

        Returns
        -------
        jax.Array
            ``(S, C)`` or ``(S, G)``; mixtures with ``split_components``: ``(S, C, K)`` or
            ``(S, G, K)``. An unsplit, unweighted per-cell result is also stored in
            ``idata.log_likelihood`` (for ``az.loo``) when it covers every stored draw.

        Raises
        ------
        ValueError
            No posterior samples, wrong gene count, bad weights or options.
        """
        samples = self._require_samples("log_likelihood")
        result = self._evaluate(counts, samples, return_by=return_by, split=split_components,
                                weights=weights, weight_type=weight_type,
                                batch_size=batch_size, cells_axis=cells_axis, dtype=dtype,
                                devices=devices)
        result = self._drop_nan_draws(result, ignore_nans)
        n_draws = next(iter(samples.values())).shape[0]
        if (return_by == "cell" and not split_components and weights is None
                and result.shape == (n_draws, self.n_cells)):
            self._store_log_likelihood(result)
        return result

    def log_likelihood_map(self, counts, batch_size: int | None = None,
                           gene_batch_size: int | None = None, return_by: str = "cell",
                           cells_axis: int = 0, split_components: bool = False, weights=None,
                           weight_type: str | None = None, use_mean: bool = True,
                           verbose: bool = True, dtype=jnp.float32,
                           devices=None) -> jnp.ndarray:
        """Log-likelihood of ``counts`` at the MAP estimate.

        Parameters are those of :meth:`log_likelihood`, plus:

        gene_batch_size : int, optional
            Accepted for compatibility. The sparse evaluation never materialises a
            gene axis per cell, so genes need no batching; for plugin model types
            evaluated densely, memory is bounded by ``batch_size`` cells.
        use_mean : bool, default True
            Replace undefined modes by means (see :meth:`get_map`).
        verbose : bool, default True
            Warn when modes were replaced.

        Returns
        -------
        jax.Array
            ``(C,)`` or ``(G,)``; ``(C, K)`` / ``(G, K)`` with ``split_components``.
        """
        check_optional_positive_int("gene_batch_size", gene_batch_size)
        draw = self._map_draw(use_mean, verbose)
        return self._evaluate(counts, draw, return_by=return_by, split=split_components,
                              weights=weights, weight_type=weight_type, batch_size=batch_size,
                              cells_axis=cells_axis, dtype=dtype, devices=devices)[0]

    # ---- assignments --------------------------------------------------------------------
    def mixture_component_entropy(self, counts, return_by: str = "gene",
                                  batch_size: int | None = None, cells_axis: int = 0,
                                  ignore_nans: bool = False, temperature: float | None = None,
                                  dtype=jnp.float32) -> jnp.ndarray:
        """Entropy of the component assignment probabilities per posterior draw.

        ``P_k = softmax_k(L_k / T)`` with ``L`` the split log-likelihood by ``return_by``;
        ``H = -sum_k P_k log P_k`` in ``[0, log K]``.

        Returns
        -------
        jax.Array
            ``(S, C)`` or ``(S, G)``.

        Raises
        ------
        ValueError
            Not a mixture, or no posterior samples.
        """
        self._require_mixture("mixture_component_entropy")
        samples = self._require_samples("mixture_component_entropy")
        log_lik = self._evaluate(counts, samples, return_by=return_by, split=True,
                                 weights=None, weight_type=None, batch_size=batch_size,
                                 cells_axis=cells_axis, dtype=dtype)
        log_lik = self._drop_nan_draws(log_lik, ignore_nans)
        return assignment_entropy(assignment_probabilities(log_lik, temperature))

    def assignment_entropy_map(self, counts, return_by: str = "gene",
                               batch_size: int | None = None, cells_axis: int = 0,
                               temperature: float | None = None, use_mean: bool = True,
                               verbose: bool = True, dtype=jnp.float32) -> jnp.ndarray:
        """Entropy of the component assignment probabilities at the MAP.

        Returns
        -------
        jax.Array
            ``(C,)`` with ``return_by="cell"``, ``(G,)`` with ``"gene"``.

        Raises
        ------
        ValueError
            Not a mixture.
        """
        self._require_mixture("assignment_entropy_map")
        log_lik = self.log_likelihood_map(
            counts, batch_size=batch_size, return_by=return_by, cells_axis=cells_axis,
            split_components=True, use_mean=use_mean, verbose=verbose, dtype=dtype)
        return assignment_entropy(assignment_probabilities(log_lik, temperature))

    def cell_type_probabilities(self, counts, batch_size: int | None = None,
                                cells_axis: int = 0, ignore_nans: bool = False,
                                dtype=jnp.float32, fit_distribution: bool = True,
                                temperature: float | None = None, weights=None,
                                weight_type: str | None = None,
                                verbose: bool = True,
                                devices=None) -> dict[str, jnp.ndarray]:
        """Per-draw cell-type probabilities and a Dirichlet fitted to them per cell.

        Returns
        -------
        dict
            ``sample_probabilities`` ``(S, C, K)``; with ``fit_distribution``:
            ``concentration`` ``(C, K)`` (Minka's maximum likelihood over the draws) and
            ``mean_probabilities`` ``(C, K)`` (its mean).

        Raises
        ------
        ValueError
            Not a mixture, or no posterior samples.
        """
        self._require_mixture("cell_type_probabilities")
        samples = self._require_samples("cell_type_probabilities")
        log_lik = self._evaluate(counts, samples, return_by="cell", split=True,
                                 weights=weights, weight_type=weight_type,
                                 batch_size=batch_size, cells_axis=cells_axis, dtype=dtype,
                                 devices=devices)
        log_lik = self._drop_nan_draws(log_lik, ignore_nans)
        probabilities = assignment_probabilities(log_lik, temperature)
        result = {"sample_probabilities": probabilities}
        if fit_distribution:
            concentration = fit_dirichlet_minka(probabilities, sample_axis=0)
            result["concentration"] = concentration
            result["mean_probabilities"] = concentration / jnp.sum(
                concentration, axis=-1, keepdims=True)
        return result

    def cell_type_probabilities_map(self, counts, batch_size: int | None = None,
                                    cells_axis: int = 0, dtype=jnp.float32,
                                    temperature: float | None = None, weights=None,
                                    weight_type: str | None = None, use_mean: bool = False,
                                    verbose: bool = True,
                                    devices=None) -> dict[str, jnp.ndarray]:
        """Cell-type probabilities at the MAP: ``{"probabilities": (C, K)}``.

        Raises
        ------
        ValueError
            Not a mixture.
        """
        self._require_mixture("cell_type_probabilities_map")
        log_lik = self.log_likelihood_map(
            counts, batch_size=batch_size, return_by="cell", cells_axis=cells_axis,
            split_components=True, weights=weights, weight_type=weight_type,
            use_mean=use_mean, verbose=verbose, dtype=dtype, devices=devices)
        probabilities = assignment_probabilities(log_lik, temperature)
        warn_nan_probabilities(probabilities, use_mean)
        return {"probabilities": probabilities}

    # ---- normalisation ------------------------------------------------------------------
    def normalize_counts(self, rng_key=_DEFAULT_KEY, n_samples_dirichlet: int = 1,
                         fit_distribution: bool = False, store_samples: bool = True,
                         sample_axis: int = 0, return_concentrations: bool = False,
                         backend: str = "numpyro", verbose: bool = True) -> dict[str, Any]:
        """Gene-proportion profiles from posterior draws of ``r`` as Dirichlet concentrations.

        Parameters
        ----------
        rng_key : jax PRNG key, default PRNGKey(42)
        n_samples_dirichlet : int, default 1
            Dirichlet draws per posterior draw (and component).
        fit_distribution : bool, default False
            Fit one Dirichlet (per component) to all draws (Minka's fixed point).
        store_samples : bool, default True
            Include the Dirichlet draws as ``samples``.
        sample_axis : int, default 0
            Axis on which the draws are stacked for the fit (any but the last).
        return_concentrations : bool, default False
            Include the posterior draws of ``r`` as ``original_concentrations``.
        backend : {"numpyro", "scipy"}
            Type of ``distributions``.
        verbose : bool, default True

        Returns
        -------
        dict
            ``samples``: ``(S, G, n)`` (mixtures ``(S, K, G, n)``), without the last axis
            when ``n_samples_dirichlet == 1``; ``concentrations`` ``(G,)`` / ``(K, G)``,
            ``mean_probabilities`` likewise and ``distributions`` (one Dirichlet / a list
            of K) with ``fit_distribution``; ``original_concentrations`` ``(S, G)`` /
            ``(S, K, G)``.

        Raises
        ------
        ValueError
            No posterior samples, no ``r`` among them, or a bad backend.
        """
        check_choice("backend", backend, ("numpyro", "scipy"))
        check_rng_key("rng_key", rng_key)
        n_samples_dirichlet = check_positive_int("n_samples_dirichlet", n_samples_dirichlet)
        for name, value in (("fit_distribution", fit_distribution),
                            ("store_samples", store_samples),
                            ("return_concentrations", return_concentrations),
                            ("verbose", verbose)):
            check_bool(name, value)
        check_int("sample_axis", sample_axis)
        samples = self._require_samples("normalize_counts")
        if "r" not in samples:
            raise ValueError("normalize_counts needs posterior samples of 'r'; this model's "
                             f"are: {', '.join(sorted(samples))}")
        r = jnp.asarray(samples["r"])
        draws = dirichlet_normalize(rng_key, r, n_samples_dirichlet)
        result: dict[str, Any] = {}
        if store_samples:
            result["samples"] = draws
        if return_concentrations:
            result["original_concentrations"] = r
        if fit_distribution:
            if verbose:
                print(f"fitting Dirichlet distributions to {draws.shape[0]} x "
                      f"{n_samples_dirichlet} draws")
            # (S, [K,] G[, n]) -> (S * n, [K,] G), then the draw axis to sample_axis.
            stacked = draws[..., None] if n_samples_dirichlet == 1 else draws
            stacked = jnp.moveaxis(stacked, -1, 1).reshape(-1, *r.shape[1:])
            if not -stacked.ndim <= sample_axis < stacked.ndim \
                    or sample_axis % stacked.ndim == stacked.ndim - 1:
                raise ValueError(f"sample_axis {sample_axis} must be an axis of the "
                                 f"{stacked.ndim}-D draws other than the gene (last) axis")
            stacked = jnp.moveaxis(stacked, 0, sample_axis)
            concentrations = fit_dirichlet_minka(stacked, sample_axis=sample_axis)
            result["concentrations"] = concentrations
            result["mean_probabilities"] = concentrations / jnp.sum(
                concentrations, axis=-1, keepdims=True)
            if concentrations.ndim == 1:
                distributions = dist.Dirichlet(concentrations)
                result["distributions"] = (to_scipy(distributions) if backend == "scipy"
                                           else distributions)
            else:
                distributions = [dist.Dirichlet(c) for c in concentrations]
                result["distributions"] = ([to_scipy(d) for d in distributions]
                                           if backend == "scipy" else distributions)
        return result

    # ---- divergences --------------------------------------------------------------------
    def component_divergences(self, metric: str = "hellinger",
                              site: str | None = None) -> jnp.ndarray:
        """Divergence between the variational posteriors of every pair of components.

        Parameters
        ----------
        metric : {"hellinger", "kl", "js"}
            Hellinger distance, ``KL(component i || component j)`` or Jensen-Shannon.
        site : str, optional
            A gene-scoped sampled site with a component axis; default ``"r"`` if it is
            sampled, else the first such site (e.g. ``"mu"``).

        Returns
        -------
        jax.Array, shape (K, K, G)

        Raises
        ------
        ValueError
            Not a mixture, or no such site.
        """
        self._require_mixture("component_divergences")
        distributions = self.get_distributions()
        scopes = self._view.site_scopes()
        candidates = [name for name, d in distributions.items()
                      if scopes.get(name, GENE) == GENE
                      and tuple(d.batch_shape) + tuple(d.event_shape)
                      == (self.n_components, self.n_genes)]
        if site is None:
            if not candidates:
                raise ValueError("no gene-level sampled site with a component axis")
            site = "r" if "r" in candidates else candidates[0]
        elif site not in candidates:
            raise ValueError(f"site must be a gene-level sampled site with a component "
                             f"axis; choices: {', '.join(candidates) or '(none)'}")
        return pairwise_component_divergences(distributions[site], metric)
