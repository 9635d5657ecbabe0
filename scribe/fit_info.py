"""``scribe.info``: what a fit is — model, sizes, convergence, versions."""

from __future__ import annotations

import importlib.metadata
import math

import numpy as np

from scribe.svi import idata
from scribe.svi.results import ScribeSVIResults

_PACKAGES = ("scribe-sc", "jax", "numpyro", "arviz", "anndata")


def _installed(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info(results: ScribeSVIResults) -> dict:
    """A summary of a fit, as a flat dict of plain Python values.

    Parameters
    ----------
    results : ScribeSVIResults

    Returns
    -------
    dict
        ``model_type``, ``parameterization``, ``n_components``, ``guide_family``,
        ``n_cells``, ``n_genes``, ``n_steps_run``, ``converged`` (None: not recorded),
        ``final_loss`` (median of the last 100 steps' finite losses), ``capture_anchored``
        (None: no capture), ``mrna_per_cell``, ``created_at`` and the versions the fit was
        made with (``fitted_with_<package>``) next to the installed ones
        (``installed_<package>``).
    """
    if not isinstance(results, ScribeSVIResults):
        raise TypeError(f"results must be a ScribeSVIResults, got {type(results).__name__}")
    config = results.model_config
    losses = np.asarray(results.loss_history, dtype=float)
    tail = losses[-100:][np.isfinite(losses[-100:])]
    attrs = idata.container_attrs(results.idata)
    summary = {
        "model_type": results.model_type,
        "parameterization": config.parameterization,
        "n_components": results.n_components,
        "guide_family": config.guide_family,
        "n_cells": int(results.n_cells),
        "n_genes": int(results.n_genes),
        "n_steps_run": int(results.n_steps_run),
        "converged": results.converged,
        "final_loss": float(np.median(tail)) if tail.size else math.nan,
        "capture_anchored": results.capture_anchored,
        "mrna_per_cell": config.mrna_per_cell,
        "created_at": attrs.get("created_at"),
        "fitted_with_scribe": attrs.get("scribe_version", "not recorded"),
        "fitted_with_numpyro": attrs.get("inference_library_version", "not recorded"),
        "fitted_with_arviz": attrs.get("arviz_version", "not recorded"),
    }
    for package in _PACKAGES:
        summary[f"installed_{package.removesuffix('-sc')}"] = _installed(package)
    return summary


def format_info(summary: dict) -> str:
    """``info``'s dict as aligned ``key: value`` lines."""
    width = max(len(key) for key in summary)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in summary.items())
