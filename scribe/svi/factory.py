"""``SVIResultsFactory``: package a NumPyro SVI run into ``ScribeSVIResults``."""

from __future__ import annotations

from typing import Any

from scribe.config import ModelConfig
from scribe.svi.results import ScribeSVIResults


class SVIResultsFactory:
    """Factory for creating SVI results objects."""

    @staticmethod
    def create_results(svi_results: Any, model_config: ModelConfig, adata, count_data,
                       n_cells: int, n_genes: int, model_type: str,
                       n_components: int | None, prior_params: dict[str, Any], *,
                       converged: bool | None = None) -> ScribeSVIResults:
        """Package SVI results into a :class:`ScribeSVIResults`.

        Parameters
        ----------
        svi_results : numpyro.infer.svi.SVIRunResult
        model_config : ModelConfig
        adata : AnnData or None
            When given, its ``obs``, ``var`` and ``uns`` are copied into the results.
        count_data : array, shape (n_cells, n_genes)
        n_cells, n_genes : int
        model_type : str
        n_components : int or None
        prior_params : dict
        converged : bool, optional
            Whether the run met its stopping rule (None: not recorded). A run that
            diverged is recorded as not converged, whatever is passed.

        Notes
        -----
        A run from :meth:`SVIInferenceEngine.run_inference` carries its ``divergence``;
        it is recorded in the results (``n_nonfinite_steps``, ``divergence_step``,
        ``diverged``; :mod:`scribe.svi.run_record`), and so is its stopping rule's last
        drift check (``drift``, ``final_drift``).
        """
        if tuple(count_data.shape) != (n_cells, n_genes):
            raise ValueError(f"count_data has shape {tuple(count_data.shape)}, expected "
                             f"({n_cells}, {n_genes})")
        if model_type != model_config.model_type:
            raise ValueError(f"model_type '{model_type}' does not match the model "
                             f"configuration's '{model_config.model_type}'")
        divergence = getattr(svi_results, "divergence", None)
        if divergence is not None and divergence.diverged and converged is not None:
            converged = False
        common = dict(params=dict(svi_results.params), loss_history=svi_results.losses,
                      model_config=model_config, prior_params=dict(prior_params),
                      n_components=n_components, converged=converged)
        if adata is not None:
            if (adata.n_obs, adata.n_vars) != (n_cells, n_genes):
                raise ValueError(f"adata is {adata.n_obs} x {adata.n_vars}, counts are "
                                 f"{n_cells} x {n_genes}")
            results = ScribeSVIResults.from_anndata(adata, **common)
        else:
            results = ScribeSVIResults(n_cells=n_cells, n_genes=n_genes,
                                       model_type=model_type, **common)
        results._set_divergence(divergence)
        results._set_n_devices(getattr(svi_results, "n_devices", 1))
        results._set_drift(getattr(svi_results, "drift", None))
        return results
