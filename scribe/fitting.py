"""``scribe.fit``: counts in, fitted posterior out."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpyro.infer import TraceMeanField_ELBO
from numpyro.optim import Adam

from scribe.anchoring import DEFAULT_LOG_SD, warn_clipped_anchor
from scribe.compose import validated_priors
from scribe.config import ModelConfig
from scribe.data import prepare_counts
from scribe.plugins import lookup_model_type
from scribe.svi.engine import SVIInferenceEngine
from scribe.svi.factory import SVIResultsFactory
from scribe.svi.results import ScribeSVIResults


def fit(
    data: Any,
    model_type: str = "nbdm",
    parameterization: str = "standard",
    *,
    n_components: int | None = None,
    priors: dict | None = None,
    n_steps: int = 100_000,
    batch_size: int | None = None,
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
        Prior arguments keyed by sampled site, e.g. ``{"p": (2, 2)}``.
    n_steps : int, default 100_000
    batch_size : int, optional
        Cells per step (None: all cells).
    seed : int, default 42
    layer : str, optional
        AnnData layer (None: ``.X``).
    cells_axis : {0, 1}, default 0
    optimizer : numpyro optimizer, default Adam(step_size=0.001)
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
        over the gene's sites in unconstrained space). None: the model type's default,
        ``joint_gene`` for zinb and zinbvcp (their ``r`` and ``gate`` are correlated per
        gene), ``mean_field`` otherwise.

    Returns
    -------
    ScribeSVIResults
    """
    config = ModelConfig(model_type=model_type, parameterization=parameterization,
                         n_components=n_components, priors=priors,
                         component_specific_params=component_specific_params,
                         mrna_per_cell=mrna_per_cell, mrna_log_sd=mrna_log_sd,
                         guide_family=guide_family)
    counts, adata = prepare_counts(data, layer=layer, cells_axis=cells_axis)
    n_cells, n_genes = counts.shape
    if config.mrna_total is not None:
        warn_clipped_anchor(counts, config.mrna_total)
    run = SVIInferenceEngine.run_inference(
        config, counts, n_cells, n_genes,
        optimizer=Adam(step_size=0.001) if optimizer is None else optimizer,
        loss=TraceMeanField_ELBO() if loss is None else loss,
        n_steps=n_steps, batch_size=batch_size, seed=seed,
        stable_update=stable_update, progress=progress)
    prior_params = (validated_priors(config) if lookup_model_type(model_type).likelihood
                    else dict(config.priors))
    if not np.all(np.isfinite(np.asarray(run.losses))):
        import warnings

        warnings.warn("some SVI steps had a non-finite loss; with stable_update they were "
                      "skipped", RuntimeWarning, stacklevel=2)
    results = SVIResultsFactory.create_results(run, config, adata, counts, n_cells, n_genes,
                                               config.model_type, config.n_components,
                                               prior_params)
    if store_counts:
        results.set_observed_counts(counts)
    return results
