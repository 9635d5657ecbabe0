"""``scribe.fit``: counts in, fitted posterior out."""

from __future__ import annotations

import time
import warnings
from typing import Any

from numpyro.infer import TraceMeanField_ELBO

from scribe.anchoring import DEFAULT_LOG_SD, warn_clipped_anchor
from scribe.batching import AUTO, auto_batch_size
from scribe.compose import check_prior_shapes, validated_priors
from scribe.config import ModelConfig
from scribe.counts_stream import StreamedCounts, record_sample, warn_zero_genes
from scribe.data import prepare_counts
from scribe.empirical_prior import with_empirical_prior
from scribe.fit_counts import stream_for_fit
from scribe.fit_defaults import (  # noqa: E402  (re-exported: scribe.fitting's names)
    AUTO_DRIFT,
    DEFAULT_LEARNING_RATE,
    DEFAULT_PATIENCE,
    DEFAULT_TOL,
    DRIFT_TOLS,
    GUIDE_STAGED_RATES,
    STAGED_RATES,
    default_drift_tol,
    default_optimizer,
)
from scribe.plugins import lookup_model_type
from scribe.shard.devices import check_sharded_fit, resolve_devices
from scribe.svi.collapse import detect_collapse
from scribe.svi.convergence import ConvergenceMonitor, check_stopping_args
from scribe.svi.drift import check_drift_tol
from scribe.svi.engine import SVIInferenceEngine, canonical_guess
from scribe.svi.factory import SVIResultsFactory
from scribe.svi.results import ScribeSVIResults
from scribe.svi.runaway import loss_runaway
from scribe.validation import (
    check_bool,
    check_loss,
    check_optimizer,
    check_optional_positive_int,
    check_positive_int,
    check_seed,
)

__all__ = ["fit", "AUTO_DRIFT", "DEFAULT_LEARNING_RATE", "DEFAULT_PATIENCE", "DEFAULT_TOL",
           "DRIFT_TOLS", "GUIDE_STAGED_RATES", "STAGED_RATES", "default_drift_tol",
           "default_optimizer"]


def _format(value: float | None) -> str:
    return "not yet resolved" if value is None else f"{value:.1e}"


def _drift_note(monitor: ConvergenceMonitor) -> str:
    state = monitor.drift_state
    if state is None:
        return ""
    if state.drift is None:
        return "; parameter drift not yet resolved"
    return (f"; parameter drift {state.drift:.2g} sd per 100 steps at site "
            f"'{state.site}', threshold {state.threshold:.2g}")


def check_fit_args(*, n_steps, batch_size, seed, optimizer, loss, stable_update, progress,
                   component_specific_params, store_counts) -> None:
    """Validate ``fit``'s scalar arguments before any data are read (TypeError/ValueError)."""
    check_positive_int("n_steps", n_steps)
    if isinstance(batch_size, str):
        if batch_size != AUTO:
            raise ValueError(f"batch_size must be a positive integer, None or {AUTO!r}, "
                             f"got {batch_size!r}")
    else:
        check_optional_positive_int("batch_size", batch_size)
    check_seed("seed", seed)
    if optimizer is not None:
        check_optimizer("optimizer", optimizer)
    if loss is not None:
        check_loss("loss", loss)
    for name, value in (("stable_update", stable_update), ("progress", progress),
                        ("component_specific_params", component_specific_params),
                        ("store_counts", store_counts)):
        check_bool(name, value)


def check_data_fit(config: ModelConfig, n_cells: int, n_genes: int) -> None:
    """Checks that need the data's size: components vs cells, per-gene prior shapes."""
    if config.n_components is not None and config.n_components > n_cells:
        raise ValueError(
            f"n_components={config.n_components} exceeds the number of cells ({n_cells}): "
            f"a mixture with more components than cells is not identifiable; use at most "
            f"{n_cells} components")
    check_prior_shapes(config, n_genes)


def fit(
    data: Any,
    model_type: str = "nbdm",
    parameterization: str = "standard",
    *,
    n_components: int | None = None,
    priors: dict | None = None,
    n_steps: int = 100_000,
    batch_size: int | str | None = None,
    seed: int = 42,
    layer: str | None = None,
    cells_axis: int = 0,
    optimizer=None,
    loss=None,
    stable_update: bool = True,
    progress: bool = True,
    component_specific_params: bool = False,
    store_counts: bool = False,
    mrna_per_cell: float | str | None = None,
    mrna_log_sd: float = DEFAULT_LOG_SD,
    guide_family: str | None = None,
    tol: float | None = DEFAULT_TOL,
    patience: int = DEFAULT_PATIENCE,
    devices=None,
    drift_tol: float | str | None = AUTO_DRIFT,
) -> ScribeSVIResults:
    """Fit a model to UMI counts by stochastic variational inference.

    Parameters
    ----------
    data : AnnData, numpy.ndarray, jax.Array or scipy.sparse matrix/array
        Raw counts, cells x genes (or genes x cells with ``cells_axis=1``).
    model_type : str, default "nbdm"
        A registered model type; ``_mix`` types are mixtures.
    parameterization : str, default "standard"
    n_components : int, optional
        Required (>= 2) for mixtures.
    priors : dict, optional
        Prior arguments keyed by sampled site, e.g. ``{"p": (2, 2)}``. An argument may
        be an array matching the site's trailing axes, e.g. one ``loc`` per gene
        ``(G,)`` (mixtures: ``(G,)`` or ``(K, G)``). Sites not given keep the SPEC's
        fixed priors, except the per-gene expression site (``r``; ``mu`` for
        ``linked``/``odds_ratio``; ``r_unconstrained``): its (log-)Normal ``loc`` and
        ``scale`` are set from the data, the mean and sd over expressed genes of the log
        of its method-of-moments estimate (:mod:`scribe.empirical_prior`, docs/models.md
        "Calibration"); the values are in ``results.model_config.priors`` and the site in
        ``results.model_config.empirical_priors``. Pass e.g. ``{"r": (0, 1)}`` for the
        SPEC's ``LogNormal(0, 1)``.
    n_steps : int, default 100_000
        The most SVI steps to run (a positive integer; numpy integers accepted, floats
        and bools refused); the fit stops earlier once the loss has converged (see
        ``tol``) or the optimiser has diverged.
    batch_size : int, None or "auto", default None
        Cells per step (None: all cells, the public contract's default). ``"auto"``: all
        cells, except for models whose full-batch step grows with the entries (mixtures,
        ``zinbvcp``, plugin likelihoods without sparse sums) on more than 8,192 cells,
        which take 2,048 cells per step (:mod:`scribe.batching`; about 2x faster to a
        converged mixture fit at 20,000 cells, docs/benchmarks.md "Default batching").
        Mini-batches are drawn epoch by epoch (every cell once per epoch,
        :mod:`scribe.epoch_cells`) and the convergence stop judges epoch means.
    seed : int, default 42
        An integer in ``[0, 2**32 - 1]``.
    layer : str, optional
        AnnData layer (None: ``.X``).
    cells_axis : {0, 1}, default 0
    optimizer : numpyro optimizer, optional
        None: Adam(step_size=0.003), chosen by measurement (docs/models.md), except
        ``zinbvcp``, and ``zinb`` with ``guide_family="skew_gene"``:
        ``StagedAdam((3e-2, 3e-3))`` (``STAGED_RATES``, ``GUIDE_STAGED_RATES`` in
        :mod:`scribe.fit_defaults`; fewer steps to lower errors, docs/benchmarks.md).
        ``run_inference`` keeps the seed's Adam(0.001).
        :class:`scribe.svi.staged_rate.StagedAdam` lowers the rate each time the
        convergence stop fires (about 2.4x fewer steps for nbvcp/zinbvcp on real
        counts; docs/benchmarks.md "Capture models: where the steps go"); given with
        ``tol=None`` it stays at its first rate (the zinbvcp default is then Adam(3e-3)).
    loss : numpyro ELBO, default TraceMeanField_ELBO()
    stable_update : bool, default True
    progress : bool, default True
    component_specific_params : bool, default False
        Mixtures: one ``p`` (or ``phi``) per component.
    store_counts : bool, default False
        Keep the observed counts in ``results.idata.observed_data`` (as non-zeros; a
        sparse matrix is never densified) and so in saved files.
    mrna_per_cell : float or str, optional
        Capture models only: anchor the capture scale. Either ``M_0``, the total number of
        mRNA molecules in a cell (e.g. ``2e5``), or an organism name with a documented
        ``M_0`` (``"human"``, ``"mouse"``; see :mod:`scribe.mrna_totals`). Each cell's
        capture prior then has median ``L_c / M_0`` (``L_c`` its UMI total) and
        ``sd(log capture) = mrna_log_sd``, which makes ``p`` and ``p_capture`` separately
        identified. Without it (the default) the counts identify only ``p_hat`` and ``r``;
        ``p`` and ``p_capture`` are then placed by the priors alone
        (``results.capture_anchored`` is False).
    mrna_log_sd : float, default 0.3
        Log-scale spread of the anchored capture prior (how much cells differ in mRNA
        content, and how sure ``M_0`` is); only with ``mrna_per_cell``.
    guide_family : str, optional
        Shape of the variational posterior (``scribe.available_guide_families()``):
        ``mean_field`` (independent factors) or ``joint_gene`` (per gene a joint Normal
        over the gene's sites in unconstrained space) or ``skew_gene`` (that Normal
        skewed and bent along zinb's r-gate ridge: r / gate intervals cover 83 % / 82 %
        at 20,000 x 2,000 against joint_gene's 48 % / 56 %, at about twice the fit time;
        ``get_map`` 16 s at 20,000 genes, docs/benchmarks.md). None: the model type's default,
        ``joint_gene`` for the zero-inflated types, ``mean_field`` otherwise.
    tol : float or None, default 1e-5
        Convergence stop (SPEC section 6): the loss is checked every 100 steps, and the
        fit stops after ``patience`` consecutive checks whose relative improvement per
        100 steps (medians of spans of steps, resolved against the loss's noise; see
        :mod:`scribe.svi.convergence`) is below ``tol`` *and* the variational
        parameters have stopped drifting (``drift_tol``). None or 0 runs all ``n_steps``.
    patience : int, default 3
        Consecutive flat checks of the loss needed to stop.
    devices : None, int or list of jax.Device, optional
        Split the cells across JAX devices (docs/scale.md): an integer ``n`` takes the
        first ``n`` of ``jax.devices()``. Each device holds its cells' non-zeros and
        per-cell parameters; global parameters are replicated and the ELBO is reduced
        across devices. None (the default) is one device, unchanged. With
        ``batch_size`` (a multiple of the number of devices) each device draws
        ``batch_size / devices`` of its own cells per step.
    drift_tol : float, None or "auto", default "auto"
        The stop's second criterion (:mod:`scribe.svi.drift`, docs/convergence.md): the
        per-gene and per-cell posterior means, in unconstrained space, must move by less
        than ``drift_tol`` of their posterior sd per 100 steps, each coordinate (median
        over genes or cells) and all genes together (their standardized mean), resolved
        against the optimiser's jitter. It keeps mini-batched capture models running
        while they drift along the dispersion and capture ridges at a loss change far
        below ``tol``. ``"auto"``: 0.003, except zinbvcp 0.01 (``DRIFT_TOLS``; its gates
        drift for tens of thousands of steps). None: the loss rule alone (the behaviour
        before).

    Returns
    -------
    ScribeSVIResults
        ``n_steps_run`` and ``converged`` record where and why the fit stopped, and
        ``final_drift`` what the drift rule saw at its last check; a fit that
        reaches ``n_steps`` without converging warns (``RuntimeWarning``).
        ``n_nonfinite_steps``, ``divergence_step`` and ``diverged`` record non-finite
        steps; a fit with any warns, and a diverged fit (its loss never finite again)
        keeps the last parameters at which the loss was finite, is not ``converged``,
        and warns to lower the learning rate. Mixtures: ``collapse`` / ``collapsed``
        record components that ended empty (fewer than one expected cell) or
        indistinguishable from another (:mod:`scribe.svi.collapse`); a collapsed fit
        warns (``RuntimeWarning``).

    Raises
    ------
    TypeError, ValueError
        An argument of the wrong type or outside its range (the message names it),
        before any training: e.g. ``n_steps`` not a positive integer, ``seed`` not in
        ``[0, 2**32 - 1]``, ``loss`` not an ELBO instance, ``n_components`` above the
        number of cells, a per-gene prior of the wrong shape.
    """
    check_fit_args(n_steps=n_steps, batch_size=batch_size, seed=seed, optimizer=optimizer,
                   loss=loss, stable_update=stable_update, progress=progress,
                   component_specific_params=component_specific_params,
                   store_counts=store_counts)
    check_stopping_args(tol, patience)
    if isinstance(drift_tol, str):
        if drift_tol != AUTO_DRIFT:
            raise ValueError(f"drift_tol must be a positive float, None or {AUTO_DRIFT!r}, "
                             f"got {drift_tol!r}")
        drift_tol = default_drift_tol(model_type)
    check_drift_tol(drift_tol)
    devices = resolve_devices(devices)
    config = ModelConfig(model_type=model_type, parameterization=parameterization,
                         n_components=n_components, priors=priors,
                         component_specific_params=component_specific_params,
                         mrna_per_cell=mrna_per_cell, mrna_log_sd=mrna_log_sd,
                         guide_family=guide_family)
    started, started_cpu = time.perf_counter(), time.process_time()
    if lookup_model_type(model_type).likelihood is not None:
        # One pass over the counts, in memory or on disk (scribe.fit_counts).
        counts, adata = stream_for_fit(
            data, config, batch_size, seed, layer=layer, cells_axis=cells_axis,
            check_shape=lambda n_cells, n_genes: check_data_fit(config, n_cells, n_genes),
            keep_entries=devices is not None or None)
        warn_zero_genes(counts.gene_nonzero)
        library = counts.cell_totals
    else:
        counts, adata = prepare_counts(data, layer=layer, cells_axis=cells_axis)
        library = None
    n_cells, n_genes = counts.shape
    check_data_fit(config, n_cells, n_genes)
    if isinstance(batch_size, str):
        batch_size = auto_batch_size(lookup_model_type(model_type).likelihood,
                                     config.is_mixture, n_cells)
    if devices is not None:
        check_sharded_fit(devices, n_cells, None if batch_size is None or batch_size >= n_cells
                          else int(batch_size),
                          lookup_model_type(model_type).likelihood is not None)
    if config.mrna_total is not None:
        warn_clipped_anchor(counts if library is None else library[:, None],
                            config.mrna_total)
    read_s = time.perf_counter() - started
    read_cpu_s = time.process_time() - started_cpu
    guess = None
    if lookup_model_type(model_type).likelihood is not None:
        # Starting values once; they also set the data-informed prior of r (or mu) unless
        # the user gave one (scribe.empirical_prior), recorded in config.empirical_priors.
        guess = canonical_guess(config, counts, seed)
        config = with_empirical_prior(config, guess)
    monitor = ConvergenceMonitor(tol=tol, patience=patience, drift_tol=drift_tol)
    run = SVIInferenceEngine.run_inference(
        config, counts, n_cells, n_genes,
        optimizer=(default_optimizer(model_type, monitor.enabled, guide_family) if optimizer is None
                   else optimizer),
        loss=TraceMeanField_ELBO() if loss is None else loss,
        n_steps=n_steps, batch_size=batch_size, seed=seed,
        stable_update=stable_update, progress=progress, stopping=monitor, devices=devices,
        epoch_batches=True, initial_guess=guess)
    divergence = run.divergence
    message = divergence.message(len(run.losses))
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    runaway = loss_runaway(run.losses)
    if runaway is not None:
        warnings.warn(runaway, RuntimeWarning, stacklevel=2)
    if (monitor.enabled and not monitor.converged and not divergence.diverged
            and runaway is None):
        warnings.warn(
            f"the fit did not converge within n_steps={int(n_steps)} steps (relative loss "
            f"improvement per 100 steps {_format(monitor.improvement)}, tol={tol:g}"
            f"{_drift_note(monitor)}); "
            f"raise n_steps, or the optimizer's learning rate, or check the loss_history",
            RuntimeWarning, stacklevel=2)
    prior_params = (validated_priors(config) if lookup_model_type(model_type).likelihood
                    else dict(config.priors))
    results = SVIResultsFactory.create_results(run, config, adata, counts, n_cells, n_genes,
                                               config.model_type, config.n_components,
                                               prior_params,
                                               converged=monitor.converged and runaway is None)
    if not divergence.diverged:
        # Components that went empty or identical converge like any others: only the
        # posterior shows it (scribe.svi.collapse).
        collapse = detect_collapse(results)
        if collapse is not None:
            results._set_collapse(collapse)
            collapse_message = collapse.message(config.n_components)
            if collapse_message is not None:
                warnings.warn(collapse_message, RuntimeWarning, stacklevel=2)
    if isinstance(counts, StreamedCounts):
        record_sample(results, counts, config)
    # Wall seconds of the setup phases and the loop (benchmarks; not saved with results).
    results.timings = {"read_s": read_s, "read_cpu_s": read_cpu_s,
                       **getattr(run, "timings", {})}
    if store_counts:
        if isinstance(counts, StreamedCounts):
            # The pass kept no matrix: read the counts again (in blocks) to store them.
            counts = prepare_counts(data, layer=layer, cells_axis=cells_axis,
                                    warn_zero_genes=False)[0]
        results.set_observed_counts(counts)
    return results
